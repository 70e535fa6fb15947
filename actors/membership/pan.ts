/**
 * The primary anchor node as this node knows it (M16). Anchors run the
 * election machine; every node also learns the PAN from pulses and keeps the
 * one with the highest term, which it reports only while the heartbeat
 * counts it alive.
 */
import { BehaviorSubject } from 'rxjs';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Clock } from '../../bus/clock.js';
import type { Envelope } from '../../bus/envelope.js';
import type { Body, NodeDbSnapshot, PanRef } from '../../bus/messages/index.js';
import { currentPan, panElectionMachine } from '../../machines/membership/pan-election.js';
import { anchorsOf, totalVotes } from '../../machines/membership/node-db.js';
import type { Outbox } from '../outbox.js';

export interface PanDeps {
  self: string;
  anchor: boolean;
  preference: readonly string[];
  periodMs: number;
  clock: Clock;
  outbox: Outbox;
  db: () => NodeDbSnapshot;
  isAlive: (id: string) => boolean;
  quorate: () => boolean;
  inspect?: (e: InspectionEvent) => void;
}

export class PanActor {
  readonly pan$ = new BehaviorSubject<PanRef | undefined>(undefined);
  private readonly actor?: Actor<typeof panElectionMachine>;
  private heard?: PanRef;

  constructor(private readonly deps: PanDeps) {
    if (!deps.anchor) return;
    this.actor = createActor(panElectionMachine, {
      clock: deps.clock,
      inspect: deps.inspect,
      input: {
        self: deps.self,
        preference: [...deps.preference],
        electionTimeoutMs: deps.periodMs * 4,
        retryMs: deps.periodMs * 2,
      },
    });
    this.actor.on('send', (e) => deps.outbox.send(e.to, e.kind, e.body as never));
    this.actor.on('pan', (e) => this.pan$.next(e.pan));
  }

  start(): void {
    this.actor?.start();
  }

  stop(): void {
    this.actor?.stop();
    this.pan$.complete();
  }

  /** The PAN to name in pulses: the election's on anchors, the best heard elsewhere. */
  known(): PanRef | undefined {
    return this.actor ? currentPan(this.actor.getSnapshot()) : this.heard;
  }

  /** The term this anchor holds the PAN role in, if it is primary. */
  primaryTerm(): number | null {
    const snap = this.actor?.getSnapshot();
    return snap && snap.value === 'primary' ? snap.context.term : null;
  }

  /** The PAN for `status`: known, counted alive, and on a quorate side (M16: no PAN without quorum). */
  live(): string | null {
    const p = this.known();
    return p && this.deps.quorate() && this.deps.isAlive(p.id) ? p.id : null;
  }

  /** The anchors the heartbeat counts alive: the quorum set. */
  aliveAnchors(): string[] {
    return anchorsOf(this.deps.db())
      .filter((a) => this.deps.isAlive(a.id))
      .map((a) => a.id);
  }

  /** Quorum or connectivity changed: anchors re-run the arbitration rules. */
  onView(): void {
    if (!this.actor) return;
    const db = this.deps.db();
    const anchors = anchorsOf(db);
    this.actor.send({
      type: 'VIEW',
      quorate: this.deps.quorate(),
      aliveAnchors: this.aliveAnchors(),
      votes: Object.fromEntries(anchors.map((a) => [a.id, a.votes])),
      totalVotes: totalVotes(db),
    });
  }

  heardInPulse(pan: PanRef): void {
    if (this.actor) return this.actor.send({ type: 'HEARD_PAN', id: pan.id, term: pan.term });
    if (!this.heard || pan.term > this.heard.term) {
      this.heard = pan;
      this.pan$.next(pan);
    }
  }

  handle(env: Envelope): void {
    if (!this.actor) return;
    const term = (env.body as Body<'pan.claim'>).term;
    switch (env.kind) {
      case 'pan.claim':
        return this.actor.send({ type: 'CLAIM', from: env.from, term });
      case 'pan.vote':
        return this.actor.send({ type: 'VOTE', from: env.from, term, granted: (env.body as Body<'pan.vote'>).granted });
      case 'pan.elected':
        return this.actor.send({ type: 'ELECTED', from: env.from, term });
    }
  }
}
