/**
 * The RAM directory rebuild on one node (SPEC.md M14, M6; docs/recovery.md
 * "The RAM directory rebuild"): the rebuild participant (every node) and
 * coordinator (anchors) machines, and the node-state machine the participant
 * drives, wired to the bus, the memory engine and the node's store.
 *
 * What calls for a rebuild (`notice`), as this node sees the membership
 * (`evaluate`, run on every change of the heartbeat's view and of the node
 * database):
 * - a node in service is counted failed, or deleted;
 * - a node comes back with a new epoch (a restart: its RAM, and with it the
 *   homes' page-home machines and its copies, is gone);
 * - a node counted failed is counted alive again (it was cut off; what it
 *   holds may be stale and must be dropped, see `after` below);
 * - an arena moves to a new home (the copies of its pages must register
 *   with the new home);
 * - this node finds itself behind: a pulse names a round it did not finish.
 * A node first seen (it joined) calls for nothing: it holds nothing yet.
 *
 * The coordinator is the live anchor with the lowest id (M14); others ask it
 * (`rec.request`), and an anchor asked that knows a lower live anchor passes
 * the request down (ids fall at every step, so it ends). A round's
 * participants are the nodes the coordinator counts alive.
 *
 * Who drops every copy: a node whose last finished round is older than the
 * newest the coordinator knows of (`after` in the quiesce: the
 * coordinator's own last round, or a newer one heard in a pulse). It missed
 * a round, so the cluster rebuilt without its copies and may have granted
 * writes since; a restarted node has finished none. Everyone else keeps its
 * copies and registers them (the newest version wins, repopulation.ts), as
 * does a node that registered its copies in the newest round and missed
 * only its resume.
 *
 * Every node starts without serving. A new node (its first incarnation)
 * opens at its first level-0 pulse if that pulse names no round (the cluster
 * never rebuilt, so nothing predates it); otherwise, and always after a
 * restart, it serves once a round has included it. A serving node that hears
 * of a round it did not finish missed it (it was cut off) and asks to be
 * brought back.
 *
 * Everything this node's machines tell each other (the coordinator and its
 * own participant) and what the engine tells them it finished (`rec.done`)
 * goes through the transport's loop, so a trace records it as an input and
 * a replay of the node feeds it in its place (M27).
 *
 * Bad input is dropped and counted, never stalls a round: a `rec.` message
 * from a node not in the node database, from an older incarnation than the
 * database names, a coordinator's message from a non-anchor or naming
 * another coordinator's round, or a reply to a node that coordinates
 * nothing.
 */
import { Subject } from 'rxjs';
import { present } from '../../bus/assert.js';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Clock } from '../../bus/clock.js';
import type { Envelope } from '../../bus/envelope.js';
import type { Body, NodeDbSnapshot } from '../../bus/messages/index.js';
import { anchorsOf, arenasOf, findNode } from '../../machines/membership/node-db.js';
import { networkState, nodeStateMachine, nodeStateOf, type NodeStateName } from '../../machines/recovery/node-state.js';
import { coordinatorStatus, rebuildCoordinatorMachine, type RebuildCoordinatorEmitted, type RebuildPhaseReport } from '../../machines/recovery/rebuild-coordinator.js';
import { rebuildParticipantMachine, type RebuildParticipantEmitted } from '../../machines/recovery/rebuild-participant.js';
import { coordinatorFor, isHigherRound, roundLabel, type RebuildRound } from '../../machines/recovery/rebuild-round.js';
import type { Log } from '../log.js';
import type { RoundScope } from './repopulation.js';
import type { Outbox } from '../outbox.js';
import type { NodeStore } from '../storage/node-store.js';

/** Short ids span 2^18 (three levels of 64, M1): one round number in every 2^18 belongs to each coordinator. */
export const ROUND_RANKS = 2 ** 18;

/** Quiesces of rounds not (yet) accepted kept for their scope: a few, as rounds are rare. */
const SCOPES_KEPT = 8;

/** What the rebuild asks of the memory engine (actors/engine/page-engine.ts). */
export interface RebuildEngine {
  recoveryState(): { round: number; completed: number; serving: boolean };
  open(): void;
  suspect(): void;
  hold(): void;
  drain(round: number, reset: boolean, scope: RoundScope): void;
  repopulate(round: number, dbVersion: number): Promise<void>;
  resume(round: number): void;
}

export interface RebuildDeps {
  self: string;
  epoch: number;
  anchor: boolean;
  periodMs: number;
  /** A node's read lease (node.ts READ_LEASE_PERIODS): a round leaving a failed node out waits it out. */
  leaseMs: number;
  /** How long one repopulation call may take (the engine's timeout): a phase gets a little more. */
  callTimeoutMs: number;
  clock: Clock;
  outbox: Outbox;
  store: NodeStore;
  log: Log;
  inspect?: (e: InspectionEvent) => void;
  engine: RebuildEngine;
  db(): NodeDbSnapshot;
  /** A rebuild message named a newer node database than this node's: fetch it (from `from`, who has it or knows of it). */
  noteDbVersion(version: number, from: string): void;
  isAlive(id: string): boolean;
  quorate(): boolean;
}

/** Why a `rec.` message was dropped: the keys of `dropped` in status. */
export type RebuildDropReason = 'unknown_node' | 'stale_epoch' | 'not_coordinator' | 'not_anchor' | 'not_local';

/** A phase change of a round this node coordinates, for logs and status. */
export interface RebuildPhaseNews {
  round: RebuildRound;
  phase: RebuildPhaseReport;
  waiting: string[];
}

/** What this node knows of the rebuild, for `status`. */
export interface RebuildStatus {
  state: NodeStateName;
  /** The network's state (M6) from the node states this node knows of. */
  network: NodeStateName;
  /** The round this node follows, and the last it finished. */
  round: string | null;
  completed: number;
  /** Set while this node coordinates a round. */
  coordinating: { round: string; phase: string; waiting: string[] } | null;
  /** Node states as this node knows them (its own; every participant's while it coordinates). */
  states: Record<string, NodeStateName>;
  dropped: Record<RebuildDropReason, number>;
}

/**
 * Heartbeat views (one a period: a monitor pulse heard, or this monitor's
 * own deadline) a node must have been counted alive in to be in service:
 * only then is its failure or return news. Before this node has a view
 * every node counts alive by default, and a monitor counts failed whom it
 * has not heard yet (at formation, or as a node joins), so a node's first
 * periods flicker; that says nothing. A real failure is declared only after
 * three periods of silence, so a node in service when it falls silent is in
 * service when it is declared failed. Views are counted, not timed: they
 * are inputs a replay feeds, where a clock read is not (M27).
 */
const IN_SERVICE_VIEWS = 3;

interface Seen {
  epoch: number | undefined;
  alive: boolean;
  /** The view count when it was last counted alive afresh. */
  aliveSince: number;
  inService: boolean;
  /** A new incarnation (a restart) not yet counted alive: that it is, is news too (it serves only once a round includes it). */
  restarted: boolean;
}

type ReplyKind = 'rec.quiesced' | 'rec.repopulated' | 'rec.resumed';
type CoordinatorKind = 'rec.quiesce' | 'rec.repopulate' | 'rec.resume';

export class RebuildActor {
  readonly phase$ = new Subject<RebuildPhaseNews>();
  private readonly participant: Actor<typeof rebuildParticipantMachine>;
  private readonly coordinator?: Actor<typeof rebuildCoordinatorMachine>;
  private readonly nodeState: Actor<typeof nodeStateMachine>;
  private readonly seen = new Map<string, Seen>();
  private arenaHomes = new Map<number, string>();
  /** The newest round a pulse has named. */
  private heard = 0;
  /**
   * The last round this node registered its copies in (`rec.done`): a node
   * that did but missed only the round's resume (its coordinator died) has
   * its copies in the round's directory and keeps them.
   */
  private repopulated = 0;
  /** What the quiesces of the rounds this node accepted named: their participants and node database version. */
  private readonly scopes = new Map<string, RoundScope>();
  private network: NodeStateName = 'normal';
  /** Nodes counted failed lately, and when this node learned it: a round leaving them out waits out their read lease. */
  private readonly failedAt = new Map<string, number>();
  private leaseWait = false;
  /** This (restarted) node has asked for a round to include it. */
  private askedForSelf = false;
  private heardStates: ReadonlyMap<string, NodeStateName> = new Map();
  /** Heartbeat views since the start (see IN_SERVICE_VIEWS). */
  private views = 0;
  private readonly dropped: Record<RebuildDropReason, number> = { unknown_node: 0, stale_epoch: 0, not_coordinator: 0, not_anchor: 0, not_local: 0 };
  private started = false;

  constructor(private readonly deps: RebuildDeps) {
    const { clock, inspect, periodMs, callTimeoutMs } = deps;
    const phaseTimeoutMs = callTimeoutMs + 4 * periodMs;
    this.nodeState = createActor(nodeStateMachine, { clock, inspect, input: {} });
    this.participant = createActor(rebuildParticipantMachine, {
      clock,
      inspect,
      // A coordinator is silent towards a participant that replied until its phase ends (rebuild-participant.ts).
      input: { self: deps.self, coordinatorSilenceMs: phaseTimeoutMs + 4 * periodMs },
    });
    this.participant.on('*', (e) => this.onParticipant(e as RebuildParticipantEmitted));
    if (deps.anchor) {
      this.coordinator = createActor(rebuildCoordinatorMachine, {
        clock,
        inspect,
        input: { self: deps.self, retryMs: periodMs, phaseTimeoutMs, ranks: ROUND_RANKS },
      });
      this.coordinator.on('*', (e) => this.onCoordinator(e as RebuildCoordinatorEmitted));
    }
  }

  start(): void {
    this.nodeState.start();
    this.participant.start();
    if (this.coordinator) {
      this.coordinator.start();
      // Rounds already used, before a restart too, are never used again.
      this.coordinator.send({ type: 'HIGHER_ROUND', round: { n: this.deps.store.loadRebuildRound(), by: this.deps.self } });
    }
    this.started = true;
  }

  stop(): void {
    this.started = false;
    this.coordinator?.stop();
    this.participant.stop();
    this.nodeState.stop();
    this.phase$.complete();
  }

  /** The node's state (M6). */
  state(): NodeStateName {
    return nodeStateOf(this.nodeState.getSnapshot());
  }

  /** A heartbeat view came (a monitor pulse, or this monitor's own deadline): one more period of evidence. */
  viewed(): void {
    this.views++;
    // A node alone in the cluster is its own monitor and hears no member's pulse: its own round is all the cluster has finished.
    const db = this.deps.db();
    if (db.nodes.length === 1 && db.nodes[0].id === this.deps.self) this.roundHeard(this.deps.engine.recoveryState().completed);
  }

  /** The membership or the node database changed: does it call for a rebuild? */
  evaluate(): void {
    if (!this.started) return;
    const db = this.deps.db();
    if (!findNode(db, this.deps.self)) return;
    const noticed = [...this.membershipNews(db), ...this.arenaNews(db), ...this.ownNews(db)];
    if (noticed.length > 0) this.notice(noticed);
  }

  /** A level-0 pulse named the newest round its sender finished (0: none). */
  roundHeard(rr: number): void {
    if (!this.started) return;
    const engine = this.deps.engine.recoveryState();
    const news = rr > this.heard;
    this.heard = Math.max(this.heard, rr);
    if (this.state() !== 'normal') return;
    if (!engine.serving && rr === 0 && engine.completed === 0 && this.deps.epoch === 1 && !this.askedForSelf) {
      this.deps.engine.open();
      this.deps.log.info({}, 'serving: the cluster has never rebuilt');
      return;
    }
    if (!news || rr <= engine.completed) return;
    this.deps.log.warn({ round: rr, completed: engine.completed }, 'this node did not take part in a rebuild round; it asks to be brought in');
    this.notice([this.deps.self]);
  }

  /**
   * This node was out of touch with its group past its read lease, or its
   * monitor counts it out: the cluster may have rebuilt without it. Its
   * copies are suspect until a round includes it, and it asks for one.
   */
  outOfTouch(): void {
    if (!this.started) return;
    this.deps.engine.suspect();
    this.notice([this.deps.self]);
  }

  /** Quorum changed: a coordinator without quorum ends its round (M17). */
  quorumChanged(has: boolean): void {
    if (!has) this.coordinator?.send({ type: 'QUORUM_LOST' });
  }

  handle(env: Envelope): void {
    if (!this.started || !this.accepts(env)) return;
    switch (env.kind) {
      case 'rec.request':
        return this.onRequest(env.from, (env.body as Body<'rec.request'>).failed);
      case 'rec.quiesce':
      case 'rec.repopulate':
      case 'rec.resume':
        return this.fromCoordinator(env as Envelope<CoordinatorKind, Body<CoordinatorKind>>);
      case 'rec.quiesced':
      case 'rec.repopulated':
      case 'rec.resumed':
        return this.reply(env as Envelope<ReplyKind, Body<ReplyKind>>);
      case 'rec.outranked':
        return this.coordinator?.send({ type: 'HIGHER_ROUND', round: (env.body as Body<'rec.outranked'>).round });
      case 'rec.done':
        if (env.from !== this.deps.self) {
          this.dropped.not_local++;
          return;
        }
        this.repopulated = Math.max(this.repopulated, (env.body as Body<'rec.done'>).round.n);
        return this.participant.send({ type: 'REPOPULATE_DONE', round: (env.body as Body<'rec.done'>).round });
    }
  }

  /** What level-0 pulses told of the states of this node's group (those not normal). */
  statesHeard(states: ReadonlyMap<string, NodeStateName>): void {
    this.heardStates = states;
  }

  status(): RebuildStatus {
    const p = this.participant.getSnapshot().context;
    const coordinating = this.coordinator ? coordinatorStatus(this.coordinator.getSnapshot()) : undefined;
    const running = coordinating && coordinating.phase !== 'idle' && coordinating.round;
    const states: Record<string, NodeStateName> = { ...this.groupStates(), ...(running ? coordinating.states : {}), [this.deps.self]: this.state() };
    this.network = networkState(this.network, Object.values(states));
    return {
      state: this.state(),
      network: this.network,
      round: p.accepted ? roundLabel(p.accepted) : null,
      completed: this.deps.engine.recoveryState().completed,
      coordinating: running ? { round: roundLabel(running), phase: coordinating.phase, waiting: coordinating.waiting } : null,
      states,
      dropped: { ...this.dropped },
    };
  }

  /** The states of this node's group as pulses last told them: a live member not named is normal. */
  private groupStates(): Record<string, NodeStateName> {
    const db = this.deps.db();
    const group = findNode(db, this.deps.self)?.group;
    const out: Record<string, NodeStateName> = {};
    for (const n of db.nodes) {
      const heard = this.heardStates.get(n.id);
      if (heard !== undefined) out[n.id] = heard;
      else if (n.group === group && this.deps.isAlive(n.id)) out[n.id] = 'normal';
    }
    return out;
  }

  // ---- What calls for a rebuild ----

  private membershipNews(db: NodeDbSnapshot): string[] {
    const noticed: string[] = [];
    const inDb = new Set<string>();
    const now = this.views;
    const settled = (s: Seen): boolean => s.inService || (s.alive && now - Math.max(s.aliveSince, 1) >= IN_SERVICE_VIEWS);
    for (const n of db.nodes) {
      if (n.id === this.deps.self) continue;
      inDb.add(n.id);
      const alive = this.deps.isAlive(n.id);
      const prev = this.seen.get(n.id);
      const restarted = prev !== undefined && prev.epoch !== undefined && n.epoch !== undefined && n.epoch !== prev.epoch;
      if (prev === undefined || restarted) {
        // A restarted node serves nothing until a round includes it: always news, and again once it is counted alive.
        if (restarted) noticed.push(n.id);
        this.seen.set(n.id, { epoch: n.epoch, alive, aliveSince: now, inService: false, restarted: restarted && !alive });
        continue;
      }
      const inService = settled(prev);
      if ((inService && prev.alive !== alive) || (prev.restarted && alive)) noticed.push(n.id);
      if (inService && prev.alive && !alive) this.failedAt.set(n.id, this.deps.clock.now());
      // Changed in place: a node looks at every other node at every view, and a new object each time is garbage by the million in a large simulation.
      prev.epoch = n.epoch ?? prev.epoch;
      prev.aliveSince = alive && prev.alive ? prev.aliveSince : now;
      prev.alive = alive;
      prev.inService = inService;
      prev.restarted = prev.restarted && !alive;
    }
    if (this.seen.size === inDb.size) return noticed;
    for (const [id, s] of [...this.seen]) {
      if (inDb.has(id)) continue;
      this.seen.delete(id);
      if (settled(s)) {
        noticed.push(id);
        this.failedAt.set(id, this.deps.clock.now());
      }
    }
    return noticed;
  }

  /** A restarted node, once the database names its new incarnation, asks for the round that lets it serve. */
  private ownNews(db: NodeDbSnapshot): string[] {
    if (this.deps.epoch === 1 || this.askedForSelf || this.deps.engine.recoveryState().serving) return [];
    if (findNode(db, this.deps.self)?.epoch !== this.deps.epoch) return [];
    this.askedForSelf = true;
    return [this.deps.self];
  }

  /** Arenas whose home changed since the last look: their pages' copies must register with the new home. */
  private arenaNews(db: NodeDbSnapshot): string[] {
    const homes = new Map(arenasOf(db).map((a) => [a.arena, a.home]));
    const moved = [...homes].filter(([arena, home]) => {
      const before = this.arenaHomes.get(arena);
      return before !== undefined && before !== home;
    });
    this.arenaHomes = homes;
    return moved.map(([, home]) => home);
  }

  private notice(failed: string[]): void {
    this.deps.log.warn({ nodes: failed }, 'a rebuild is needed');
    this.participant.send({ type: 'FAILURE_NOTICED', failed });
  }

  // ---- The participant's decisions, carried out ----

  private onParticipant(e: RebuildParticipantEmitted): void {
    switch (e.type) {
      case 'node_state':
        this.nodeState.send(e.event);
        if (this.state() === 'notified') this.deps.engine.hold();
        return;
      case 'drain': {
        const round = this.participant.getSnapshot().context.accepted;
        if (!round) return;
        this.deps.engine.drain(round.n, e.reset, this.scopeOf(round));
        this.participant.send({ type: 'DRAINED' });
        return;
      }
      case 'repopulate':
        this.deps.engine.repopulate(e.round.n, this.scopes.get(roundLabel(e.round))?.dbVersion ?? 0).then(
          () => this.deps.outbox.loop('rec.done', { round: e.round }),
          // The coordinator's phase runs out and restarts the round.
          (err: unknown) => this.deps.log.warn({ round: roundLabel(e.round), err: String(err) }, 'repopulation failed'),
        );
        return;
      case 'resume':
        this.deps.engine.resume(e.round.n);
        this.deps.log.info({ round: roundLabel(e.round) }, 'rebuild finished; operations resume');
        return;
      case 'reply':
        if (e.kind === 'quiesced') return this.sendTo(e.to, 'rec.quiesced', { round: e.round, dbVersion: this.deps.db().version });
        return this.sendTo(e.to, `rec.${e.kind}`, { round: e.round });
      case 'ask':
        return this.ask(e.failed);
    }
  }

  /** Asks the coordinator this node believes in; one that the ask names failed is passed over. */
  private ask(failed: string[]): void {
    const target = coordinatorFor(this.liveAnchors().filter((a) => !failed.includes(a) || a === this.deps.self));
    if (target === undefined) return;
    if (target === this.deps.self) this.startRound();
    else this.deps.outbox.send(target, 'rec.request', { failed });
  }

  private onRequest(from: string, failed: string[]): void {
    if (!this.coordinator) {
      this.dropped.not_anchor++;
      return;
    }
    const target = coordinatorFor(this.liveAnchors());
    if (target === this.deps.self) return this.startRound();
    // A lower live anchor coordinates; ids fall at every hand-on, so this ends.
    if (target !== undefined && target !== from) this.deps.outbox.send(target, 'rec.request', { failed });
  }

  /**
   * A round that leaves out a node just counted failed starts only once that
   * node's read lease has surely run out (`leaseMs` after this anchor learned
   * of the failure, which came after the node's monitor last counted it in):
   * a node merely cut off, or whose pulses were lost, must stop reading its
   * copies before the round lets anyone else write them. A restart or a
   * return leaves nobody out and starts at once.
   */
  private startRound(): void {
    if (!this.coordinator || !this.deps.quorate()) return;
    const now = this.deps.clock.now();
    for (const [id, at] of [...this.failedAt]) if (now - at >= this.deps.leaseMs) this.failedAt.delete(id);
    const wait = Math.max(0, ...[...this.failedAt.values()].map((at) => at + this.deps.leaseMs - now));
    if (wait > 0) {
      if (!this.leaseWait) {
        this.leaseWait = true;
        this.deps.clock.setTimeout(() => {
          this.leaseWait = false;
          if (this.started) this.startRound();
        }, wait);
      }
      return;
    }
    const db = this.deps.db();
    const participants = db.nodes.filter((n) => n.id === this.deps.self || this.deps.isAlive(n.id)).map((n) => n.id);
    this.coordinator.send({ type: 'START', participants, reset: [], rank: this.rank(), dbVersion: db.version });
  }

  // ---- The coordinator's decisions, carried out ----

  private onCoordinator(e: RebuildCoordinatorEmitted): void {
    switch (e.type) {
      case 'phase':
        // Persisted before any quiesce of the round goes out: a restarted coordinator never reuses it.
        if (e.phase === 'quiescing') this.deps.store.saveRebuildRound(e.round.n);
        this.deps.log.info({ round: roundLabel(e.round), phase: e.phase, waiting: e.waiting }, 'rebuild round');
        this.phase$.next({ round: e.round, phase: e.phase, waiting: e.waiting });
        return;
      case 'quiesce':
        return this.sendTo(e.to, 'rec.quiesce', { round: e.round, reset: e.reset, after: this.newestFinished(), participants: e.participants, dbVersion: e.dbVersion });
      case 'repopulate':
        return this.sendTo(e.to, 'rec.repopulate', { round: e.round, dbVersion: e.dbVersion });
      case 'resume':
        return this.sendTo(e.to, 'rec.resume', { round: e.round });
    }
  }

  /** The newest round this node knows finished: its own last, or one a pulse named. */
  private newestFinished(): number {
    return Math.max(this.deps.engine.recoveryState().completed, this.heard);
  }

  // ---- Inbound ----

  /** Drops and counts what no honest node in the database would send. */
  private accepts(env: Envelope): boolean {
    const sender = findNode(this.deps.db(), env.from);
    if (!sender) {
      this.dropped.unknown_node++;
      return false;
    }
    if (sender.epoch !== undefined && env.epoch < sender.epoch) {
      this.dropped.stale_epoch++;
      return false;
    }
    const fromCoordinator = env.kind === 'rec.quiesce' || env.kind === 'rec.repopulate' || env.kind === 'rec.resume';
    if (fromCoordinator && (!sender.anchor || (env.body as Body<CoordinatorKind>).round.by !== env.from)) {
      this.dropped.not_coordinator++;
      return false;
    }
    return true;
  }

  private fromCoordinator(env: Envelope<CoordinatorKind, Body<CoordinatorKind>>): void {
    const { round } = env.body;
    const accepted = this.participant.getSnapshot().context.accepted;
    if (accepted && isHigherRound(accepted, round)) {
      this.deps.outbox.send(env.from, 'rec.outranked', { round: accepted });
      return;
    }
    this.coordinator?.send({ type: 'HIGHER_ROUND', round });
    const from = env.from;
    switch (env.kind) {
      case 'rec.quiesce': {
        const b = env.body as Body<'rec.quiesce'>;
        const missed = Math.max(this.deps.engine.recoveryState().completed, this.repopulated) < b.after;
        this.scopes.set(roundLabel(round), { participants: b.participants, dbVersion: b.dbVersion });
        this.deps.noteDbVersion(b.dbVersion, from);
        if (this.scopes.size > SCOPES_KEPT) this.scopes.delete(present(this.scopes.keys().next().value, 'a map over its size has a first key'));
        this.participant.send({ type: 'QUIESCE', from, round, reset: b.reset || missed });
        return this.followRound();
      }
      case 'rec.repopulate': {
        // The round rules by the newest node database a participant has: this node catches up before it registers.
        const scope = this.scopes.get(roundLabel(round));
        const { dbVersion } = env.body as Body<'rec.repopulate'>;
        if (scope) this.scopes.set(roundLabel(round), { ...scope, dbVersion: Math.max(scope.dbVersion, dbVersion) });
        this.deps.noteDbVersion(dbVersion, from);
        return this.participant.send({ type: 'REPOPULATE', from, round });
      }
      case 'rec.resume':
        return this.participant.send({ type: 'RESUME', from, round });
    }
  }

  /**
   * A quiescent node that accepts a later round drains nothing more (nothing
   * ran since it drained), but its engine builds the later round's
   * directory from now on.
   */
  private followRound(): void {
    const accepted = this.participant.getSnapshot().context.accepted;
    const engine = this.deps.engine.recoveryState();
    if (accepted && accepted.n !== engine.round && this.state() === 'quiescent') this.deps.engine.drain(accepted.n, false, this.scopeOf(accepted));
  }

  private reply(env: Envelope<ReplyKind, Body<ReplyKind>>): void {
    if (!this.coordinator) {
      this.dropped.not_anchor++;
      return;
    }
    const { round } = env.body;
    if (env.kind === 'rec.quiesced') {
      const { dbVersion } = env.body as Body<'rec.quiesced'>;
      // The round rules by the newest database a participant has: the coordinator, behind, fetches it from that participant.
      this.deps.noteDbVersion(dbVersion, env.from);
      return this.coordinator.send({ type: 'QUIESCED', from: env.from, round, dbVersion });
    }
    this.coordinator.send({ type: env.kind === 'rec.repopulated' ? 'REPOPULATED' : 'RESUMED', from: env.from, round });
  }

  /** A `rec.` message; to this node itself through the transport's loop, so a trace records it. */
  private sendTo<K extends 'rec.quiesce' | 'rec.repopulate' | 'rec.resume' | ReplyKind>(to: string, kind: K, body: Body<K>): void {
    if (to === this.deps.self) this.deps.outbox.loop(kind, body);
    else this.deps.outbox.send(to, kind, body);
  }

  /** The scope of a round this node accepted, from its quiesce; older rounds' go. */
  private scopeOf(round: RebuildRound): RoundScope {
    const scope = present(this.scopes.get(roundLabel(round)), 'a round is accepted from its quiesce');
    for (const label of [...this.scopes.keys()]) if (label !== roundLabel(round)) this.scopes.delete(label);
    this.scopes.set(roundLabel(round), scope);
    return scope;
  }

  private liveAnchors(): string[] {
    return anchorsOf(this.deps.db())
      .filter((a) => a.id === this.deps.self || this.deps.isAlive(a.id))
      .map((a) => a.id);
  }

  private rank(): number {
    return (findNode(this.deps.db(), this.deps.self)?.shortId ?? 0) % ROUND_RANKS;
  }
}
