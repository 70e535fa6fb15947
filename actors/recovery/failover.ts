/**
 * Failover of arenas on an anchor (SPEC.md M16, M8; docs/recovery.md
 * "Failover of an arena"): the arena-failover machine, fed this anchor's
 * view (the node database, who the heartbeat counts alive, whether this
 * anchor is the PAN and quorate), and its hand-overs run as node-database
 * updates coordinated from here. The machine states why a new home is named
 * only once the old one can no longer write.
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Clock } from '../../bus/clock.js';
import type { NdbOp } from '../../bus/messages/index.js';
import type { NdbUpdateOutput } from '../../machines/membership/node-db-coordinator.js';
import { arenaFailoverMachine, failoverGraceMs, type ArenaFailoverEmitted, type FailoverView } from '../../machines/recovery/arena-failover.js';
import type { Log } from '../log.js';
import { nodesWithoutArena } from '../../machines/membership/node-db.js';

export interface FailoverDeps {
  self: string;
  periodMs: number;
  quorumTimeoutMs: number;
  clock: Clock;
  log: Log;
  inspect?: (e: InspectionEvent) => void;
  /** Runs a node-database update from this anchor; `done` is called within the input that ends it. */
  update(change: NdbOp, done: (out: NdbUpdateOutput) => void): void;
}

export class FailoverActor {
  private readonly actor: Actor<typeof arenaFailoverMachine>;
  /** Nodes a new arena is being asked for, until the update ends. */
  private readonly asking = new Set<string>();

  constructor(private readonly deps: FailoverDeps) {
    this.actor = createActor(arenaFailoverMachine, {
      clock: deps.clock,
      inspect: deps.inspect,
      input: { self: deps.self, graceMs: failoverGraceMs(deps.quorumTimeoutMs, deps.periodMs), retryMs: 2 * deps.periodMs },
    });
    this.actor.on('*', (e) => this.onEmitted(e as ArenaFailoverEmitted));
  }

  start(): void {
    this.actor.start();
  }

  stop(): void {
    this.actor.stop();
  }

  /** Any change of the node database, the heartbeat's view, quorum or the PAN. */
  view(v: FailoverView): void {
    this.actor.send({ type: 'VIEW', ...v });
    this.giveArenas(v);
  }

  /**
   * The PAN gives a new arena to a live node that serves none: one whose
   * arena was handed over while it was counted out (a pause, a cut-off) and
   * that lives on, and could otherwise reserve no page (M7, M16).
   */
  private giveArenas(v: FailoverView): void {
    if (!v.isPan || !v.quorate) return;
    for (const node of nodesWithoutArena(v.db, v.alive)) {
      if (this.asking.has(node)) continue;
      this.asking.add(node);
      this.deps.update({ op: 'arena_new', member: node }, (out) => {
        this.asking.delete(node);
        if (out.ok) this.deps.log.warn({ node, version: out.version }, 'a live node whose arena was handed over has a new one');
        else this.deps.log.warn({ node, code: out.code }, 'a new arena for a live node was not given; asked again at the next view');
      });
    }
  }

  private onEmitted(e: ArenaFailoverEmitted): void {
    if (e.type === 'due') {
      this.deps.log.warn({ home: e.home, arenas: e.arenas }, 'a home is down past its grace: its arenas are handed over');
      return;
    }
    const { change } = e;
    this.deps.update(change, (out) => {
      if (out.ok) {
        this.deps.log.warn({ arena: change.arena, home: change.home, gen: change.gen, version: out.version }, 'arena handed over');
        this.actor.send({ type: 'OUTCOME', arena: change.arena, ok: true });
        return;
      }
      this.deps.log.warn({ arena: change.arena, home: change.home, code: out.code, reason: out.reason }, 'handing an arena over failed; retried');
      this.actor.send({ type: 'OUTCOME', arena: change.arena, ok: false, code: out.code });
    });
  }
}
