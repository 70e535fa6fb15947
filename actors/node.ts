/**
 * One Mangrove node: its elements wired to the bus. The same class runs in a
 * node process over ZeroMQ, many times over in the simulator, and in specs;
 * only the transport, clock, randomness and store it is given differ.
 */
import { Subject, type Subscription } from 'rxjs';
import type { InspectionEvent } from 'xstate';
import type { Clock, Random } from '../bus/clock.js';
import type { Envelope } from '../bus/envelope.js';
import { MangroveError } from '../bus/errors.js';
import type { Body, NdbOp, NodeDbSnapshot } from '../bus/messages/index.js';
import type { ErrorCode } from '../bus/errors.js';
import type { Inbound, ReplyRoute, Transport } from '../bus/transport/transport.js';
import type { ClientRole } from '../bus/transport/key-holder.js';
import { nativeDecoder } from '../bus/codec.js';
import { arenasOf, findNode, keysOf } from '../machines/membership/node-db.js';
import { HeartbeatActor, type HeartbeatNews } from './membership/heartbeat.js';
import type { Log } from './log.js';
import { NodeDbActor } from './membership/node-db.js';
import { Outbox } from './outbox.js';
import { PanActor } from './membership/pan.js';
import { QuorumActor } from './membership/quorum.js';
import type { NodeSettings } from './settings.js';
import type { MachinesSource, NodeStatus, NodeView } from './status.js';
import type { NodeStore } from './storage/node-store.js';
import { engineDefaults, PageEngine, type EngineSettings } from './engine/page-engine.js';
import type { PageStore } from './storage/page-store.js';
import { TxnLog } from './pages/txn-log.js';
import type { TxnLogStore } from './storage/txn-log-store.js';
import { RebuildActor, type RebuildPhaseNews } from './recovery/rebuild.js';
import { FailoverActor } from './recovery/failover.js';
import { FileSystem } from './fs/file-system.js';
import { allowed, operationOf } from './access.js';

export interface NodeDeps {
  settings: NodeSettings;
  transport: Transport;
  clock: Clock;
  random: Random;
  store: NodeStore;
  log: Log;
  inspect?: (e: InspectionEvent) => void;
  /** What `client.machines` answers (M26): the host's watch of what `inspect` reports, where it keeps one. */
  machines?: MachinesSource;
  /** The disk cache of the memory engine (M9): LMDB in a node process, the memory twin in the simulator. */
  pages: PageStore;
  /** The transaction log's store (M7), LMDB or its memory twin likewise. */
  txnLog: TxnLogStore;
  engine?: Partial<EngineSettings>;
  /** The engine's clock, when it must differ from the node's: a traced node's engine runs on the
   * untraced clock, so its timers stay out of the membership protocols' replay (M27). */
  engineClock?: Clock;
  /** Wall-clock time in ms, for file times (M20): Date.now in a node process, derived from the simulated clock in the simulator. */
  wallMs?: () => number;
}

/** What a node tells its host process: logs, metrics, the simulator's checks. */
export type NodeNews =
  | HeartbeatNews
  | { type: 'quorum'; has: boolean }
  | { type: 'pan'; id: string | null; term: number | null }
  | { type: 'db'; version: number; nodes: number }
  /** The node database dropped this node (`mangrove node remove`): it must stop, not join again. */
  | { type: 'removed'; version: number }
  | ({ type: 'rebuild' } & RebuildPhaseNews);

/**
 * A node reads the copies it holds only while its group counted it in within
 * this many heartbeat periods (its read lease). A monitor counts a member
 * failed only when the member missed three of its deadlines, two periods at
 * least after the member was cut off (and so after it last heard its
 * monitor); a rebuild that leaves it out then waits out the lease again
 * (rebuild.ts) before it starts, and only once it has resumed every other
 * node can another node write the member's pages. So a member cut off stops
 * reading its copies well before that, and a member out of touch for less
 * than two leases cannot have been left out of a finished rebuild: only a
 * longer gap (a pause, most often) makes it doubt its copies.
 */
const READ_LEASE_PERIODS = 2;

/** How a failed node-database update is reported to a client. */
const UPDATE_ERRORS: Record<string, ErrorCode> = {
  E_NO_QUORUM: 'E_NO_QUORUM',
  E_NOT_ANCHOR: 'E_NOT_ANCHOR',
  E_UNKNOWN_NODE: 'E_NOT_FOUND',
  E_EXISTS: 'E_BAD_ARGUMENT',
  E_SHORT_ID_TAKEN: 'E_BAD_ARGUMENT',
  E_BAD_SHORT_ID: 'E_BAD_ARGUMENT',
  E_REJECTED: 'E_BAD_ARGUMENT',
  E_GROUP_FULL: 'E_FULL',
  E_DB_FULL: 'E_FULL',
  E_TIMEOUT: 'E_TIMEOUT',
};

export class MangroveNode {
  readonly news$ = new Subject<NodeNews>();
  readonly outbox: Outbox;
  /** The memory engine (M7-M13). */
  readonly engine: PageEngine;
  /** The file system (M18-M22), on the engine. */
  readonly fs: FileSystem;
  private readonly nodeDb: NodeDbActor;
  private readonly heartbeat: HeartbeatActor;
  private readonly quorum: QuorumActor;
  private readonly pan: PanActor;
  private readonly rebuild: RebuildActor;
  /** On anchors: hands the arenas of a home down past its grace to a replica (M16). */
  private readonly failover?: FailoverActor;
  /** Node-database updates the engine asked for, by ticket, until they are run. */
  private readonly proposals = new Map<number, { resolve(version: number): void; reject(err: unknown): void }>();
  private proposalSeq = 0;
  /** Client requests refused for their role (access.ts). */
  private forbidden = 0;
  /** The node database as the engine last saw it, for what changed in the arena table. */
  private engineDb: NodeDbSnapshot;  private readonly subs: Subscription[] = [];
  private running = false;

  constructor(private readonly deps: NodeDeps) {
    const { settings: s, clock, inspect } = deps;
    this.outbox = new Outbox(deps.transport, s.id, s.epoch);
    const isAlive = (id: string): boolean => {
      const n = findNode(this.nodeDb.db, id);
      return n !== undefined && this.heartbeat.isAlive(n);
    };
    this.nodeDb = new NodeDbActor({
      settings: s,
      outbox: this.outbox,
      clock,
      random: deps.random,
      store: deps.store,
      log: deps.log,
      inspect,
      quorumView: () => ({ quorate: this.quorum.has, aliveAnchors: this.pan.aliveAnchors() }),
    });
    this.quorum = new QuorumActor({ anchor: s.anchor, quorumTimeoutMs: s.quorumTimeoutMs, clock, inspect, isAlive, db: () => this.nodeDb.db });
    this.pan = new PanActor({
      self: s.id,
      anchor: s.anchor,
      preference: s.panPreference,
      periodMs: s.periodMs,
      clock,
      outbox: this.outbox,
      inspect,
      isAlive,
      db: () => this.nodeDb.db,
      quorate: () => this.quorum.has,
    });
    this.heartbeat = new HeartbeatActor({
      self: s.id,
      anchor: s.anchor,
      outbox: this.outbox,
      clock,
      periodMs: s.periodMs,
      quorumTimeoutMs: s.quorumTimeoutMs,
      preference: s.monitorPreference,
      leaseMs: READ_LEASE_PERIODS * s.periodMs,
      inspect,
      extras: () => ({ dbVersion: this.nodeDb.db.version, quorum: this.quorum.toSend(), pan: this.pan.known(), rr: this.engine.recoveryState().completed, ns: this.rebuild.state() }),
    });
    const engineSettings = { ...engineDefaults, ...deps.engine };
    this.engine = new PageEngine({
      self: s.id,
      epoch: s.epoch,
      outbox: this.outbox,
      clock: deps.engineClock ?? clock,
      store: deps.pages,
      txnLog: new TxnLog(deps.txnLog),
      log: deps.log,
      settings: engineSettings,
      db: () => this.nodeDb.db,
      isAlive,
      quorate: () => this.quorum.has,
      standing: () => this.heartbeat.standing(),
      pan: () => this.pan.live(),
      isPan: () => this.pan.primaryTerm() !== null,
      updateNodeDb: s.anchor ? (change) => this.proposeFromEngine(change) : undefined,
      inspect,
    });
    this.engineDb = this.nodeDb.db;
    this.fs = new FileSystem({
      self: s.id,
      epoch: s.epoch,
      clock: deps.engineClock ?? clock,
      log: deps.log,
      engine: this.engine,
      scheduler: this.engine.scheduler,
      changes$: this.engine.changes$,
      outbox: this.outbox,
      copies: engineSettings.copies,
      wallMs: deps.wallMs ?? (() => Date.now()),
      isLive: (id, epoch) => findNode(this.nodeDb.db, id)?.epoch === epoch && isAlive(id),
      shortId: () => findNode(this.nodeDb.db, s.id)?.shortId ?? 0,
      resets: () => this.engine.recoveryState().resets,
      inspect,
    });
    if (s.anchor) {
      this.failover = new FailoverActor({
        self: s.id,
        periodMs: s.periodMs,
        quorumTimeoutMs: s.quorumTimeoutMs,
        clock,
        log: deps.log,
        inspect,
        update: (change, done) => this.nodeDb.updateThen(change, done),
      });
    }
    this.rebuild = new RebuildActor({
      self: s.id,
      epoch: s.epoch,
      anchor: s.anchor,
      periodMs: s.periodMs,
      callTimeoutMs: engineSettings.timeoutMs,
      leaseMs: READ_LEASE_PERIODS * s.periodMs,
      clock,
      outbox: this.outbox,
      store: deps.store,
      log: deps.log,
      inspect,
      engine: this.engine,
      db: () => this.nodeDb.db,
      noteDbVersion: (version, from) => this.nodeDb.noteVersion(version, from),
      isAlive,
      quorate: () => this.quorum.has,
    });
  }

  get settings(): NodeSettings {
    return this.deps.settings;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const { log } = this.deps;
    // Started first: the subjects below hand their current values to their subscribers at once.
    this.rebuild.start();
    this.failover?.start();
    this.subs.push(
      this.deps.transport.inbound.subscribe((m) => this.dispatch(m)),
      this.heartbeat.news$.subscribe((n) => this.onHeartbeat(n)),
      this.quorum.quorum$.subscribe((has) => {
        this.pan.onView();
        this.rebuild.quorumChanged(has);
        this.viewFailover();
        this.news$.next({ type: 'quorum', has });
      }),
      this.rebuild.phase$.subscribe((p) => this.news$.next({ type: 'rebuild', ...p })),
      this.pan.pan$.subscribe((p) => {
        this.viewFailover();
        this.news$.next({ type: 'pan', id: p?.id ?? null, term: p?.term ?? null });
      }),
      // Removed from the cluster (M2): said once, here; the host process stops the node.
      this.nodeDb.removed$.subscribe((version) => {
        log.error({ version }, `this node was removed from the cluster (node database version ${version}); it stops`);
        this.news$.next({ type: 'removed', version });
      }),
      this.nodeDb.db$.subscribe((db) => {
        this.heartbeat.setDb(db);
        this.pan.onView();
        this.engine.arenasChanged(this.engineDb, db);
        this.engineDb = db;
        this.rebuild.evaluate();
        this.viewFailover();
        this.news$.next({ type: 'db', version: db.version, nodes: db.nodes.length });
      }),
    );
    this.quorum.start();
    this.pan.start();
    this.nodeDb.start();
    log.info({ id: this.deps.settings.id, epoch: this.deps.settings.epoch, endpoint: this.deps.settings.endpoint }, 'node started');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const s of this.subs.splice(0)) s.unsubscribe();
    this.fs.close();
    this.engine.close();
    this.heartbeat.stop();
    this.nodeDb.stop();
    this.pan.stop();
    this.quorum.stop();
    this.rebuild.stop();
    this.failover?.stop();
    for (const waiter of this.proposals.values()) waiter.reject(new MangroveError('E_CLOSED', 'the node is stopping'));
    this.proposals.clear();
    this.news$.complete();
  }

  private onHeartbeat(n: HeartbeatNews): void {
    this.quorum.onHeartbeat(n);
    switch (n.type) {
      case 'pan_heard':
        this.pan.heardInPulse(n.pan);
        break;
      case 'db_version':
        this.nodeDb.noteVersion(n.version, n.from);
        break;
      case 'view':
        this.pan.onView();
        this.rebuild.evaluate();
        this.viewFailover();
        this.fs.membershipChanged();
        break;
      case 'connectivity':
        this.rebuild.viewed();
        break;
      case 'round_heard':
        // The rebuild's own plumbing: not news for the node's watchers.
        return this.rebuild.roundHeard(n.rr);
      case 'states_heard':
        return this.rebuild.statesHeard(n.states);
      case 'member_failed':
        this.deps.log.warn({ level: n.level, slot: n.slot, node: n.id }, 'member failed');
        break;
      case 'member_alive':
        this.deps.log.info({ level: n.level, slot: n.slot, node: n.id }, 'member alive');
        break;
      case 'monitor':
        this.deps.log.info({ level: n.level, monitor: n.id }, 'heartbeat monitor');
        break;
      case 'lapsed':
        // Out of touch long enough for the cluster to have rebuilt without it (see READ_LEASE_PERIODS).
        if (n.gapMs < 2 * READ_LEASE_PERIODS * this.deps.settings.periodMs) break;
        this.deps.log.warn({ gapMs: n.gapMs }, 'this node lost touch with its group long enough to have been left out of a rebuild; it reads no copy it holds until a rebuild includes it');
        this.rebuild.outOfTouch();
        break;
      case 'excluded':
        if (n.level === 0) this.rebuild.outOfTouch();
        this.deps.log.warn({ level: n.level }, 'the monitor counts this node out');
        break;
    }
    this.news$.next(n);
  }

  private dispatch({ env, route, role }: Inbound): void {
    try {
      const ns = env.kind.slice(0, env.kind.indexOf('.'));
      if (ns === 'client' && role !== undefined && !allowed(role, env)) this.forbid(env, route, role);
      else if (ns === 'hb') this.heartbeat.handle(env);
      else if (env.kind === 'ndb.propose') this.onProposal(env);
      else if (ns === 'ndb') this.nodeDb.handle(env, route);
      else if (ns === 'pan') this.pan.handle(env);
      else if (ns === 'rec') this.rebuild.handle(env);
      else if (ns === 'page') this.engine.handle(env);
      else if (env.kind === 'client.page') this.engine.onClient(env, route);
      else if (env.kind === 'client.fs') this.fs.onClient(env, route);
      else if (ns === 'client') this.onClient(env, route);
    } catch (e) {
      // One bad message must not stop the node: log it and carry on.
      this.deps.log.error({ err: String(e), kind: env.kind, from: env.from }, 'message handling failed');
    }
  }

  /** A request the client's role does not allow (access.ts): refused, counted, never run. */
  private forbid(env: Envelope, route: ReplyRoute, role: ClientRole): void {
    this.forbidden++;
    const op = operationOf(env);
    const may = role === 'read-only' ? 'a read-write or admin key may' : 'only an admin key may change the node database or the fault filter';
    this.deps.log.debug({ kind: env.kind, from: env.from, role }, 'request forbidden for its role');
    this.outbox.reply(route, env, 'reply.err', { code: 'E_FORBIDDEN', message: `a ${role} client may not ${op} (${may})` });
  }

  private onClient(env: Envelope, route: ReplyRoute): void {
    const ok = (result: unknown) => this.outbox.reply(route, env, 'reply.ok', { result });
    const err = (e: MangroveError) => this.outbox.reply(route, env, 'reply.err', { code: e.code, message: e.message });
    switch (env.kind) {
      case 'client.status':
        return ok(this.status());
      case 'client.machines': {
        const machines = this.deps.machines;
        if (!machines) return err(new MangroveError('E_UNSUPPORTED', 'this node does not watch its protocol machines (a node watches them only when its config gives it an "httpPort")'));
        return ok(machines((env.body as Body<'client.machines'>).after));
      }
      case 'client.fault': {
        if (!this.deps.settings.faultInjection) {
          return err(new MangroveError('E_FAULTS_DISABLED', 'fault injection is off in this node\'s config ("faultInjection": true turns it on)'));
        }
        const b = env.body as Body<'client.fault'>;
        if (b.heal) this.deps.transport.setDropped([]);
        else if (b.drop) this.deps.transport.setDropped(b.drop);
        else return err(new MangroveError('E_BAD_ARGUMENT', 'say which peers to drop, or heal'));
        this.deps.log.warn({ dropped: this.deps.transport.dropped() }, 'fault filter set');
        return ok({ dropped: this.deps.transport.dropped() });
      }
      case 'client.ndb_update': {
        const b = env.body as Body<'client.ndb_update'>;
        this.updateNodeDatabase(b.change).then((version) => ok({ version }), err);
        return;
      }
    }
  }

  /**
   * A node-database update the engine asks for (the PAN naming directory
   * replicas): looped through the transport, so the request is a recorded
   * input (`ndb.propose`), then run like any other update.
   */
  private proposeFromEngine(change: NdbOp): Promise<number> {
    const ticket = ++this.proposalSeq;
    return new Promise<number>((resolve, reject) => {
      this.proposals.set(ticket, { resolve, reject });
      this.outbox.loop('ndb.propose', { change, ticket });
    });
  }

  private onProposal(env: Envelope): void {
    if (env.from !== this.deps.settings.id) return;
    const { change, ticket } = env.body as Body<'ndb.propose'>;
    const waiter = this.proposals.get(ticket);
    this.proposals.delete(ticket);
    // A replay feeds the recorded proposal with nobody waiting: the update runs all the same.
    this.updateNodeDatabase(change).then(
      (version) => waiter?.resolve(version),
      (err: unknown) => waiter?.reject(err),
    );
  }

  /** What the PAN's failover sees (M16): the database, who is alive, whether this anchor is the PAN with quorum. */
  private viewFailover(): void {
    if (!this.failover || !this.running) return;
    const db = this.nodeDb.db;
    const alive = db.nodes.filter((n) => this.heartbeat.isAlive(n)).map((n) => n.id);
    this.failover.view({ db, alive, isPan: this.pan.primaryTerm() !== null, quorate: this.quorum.has });
  }

  /** Adds, changes or removes a node (M2), coordinated from this anchor; resolves with the new version. */
  async updateNodeDatabase(change: NdbOp): Promise<number> {
    if (!this.deps.settings.anchor) throw new MangroveError('E_NOT_ANCHOR', 'node database updates go to an anchor node');
    const r = await this.nodeDb.update(change);
    if (r.ok) return r.version;
    throw new MangroveError(UPDATE_ERRORS[r.code] ?? 'E_BUSY', `the node database update failed (${r.code}): ${r.reason}`);
  }

  /** Whether the heartbeat counts node `id` alive (cheap: for simulations that ask often). */
  countsAlive(id: string): boolean {
    const n = findNode(this.nodeDb.db, id);
    return n !== undefined && this.heartbeat.isAlive(n);
  }

  /** Quorate, and every node in the database counted alive. */
  hasFullView(): boolean {
    return this.quorum.has && this.nodeDb.db.nodes.every((n) => this.heartbeat.isAlive(n));
  }

  /** This node's copy of the node database (M2). */
  database(): NodeDbSnapshot {
    return this.nodeDb.db;
  }

  status(): NodeStatus {
    const s = this.deps.settings;
    const db = this.nodeDb.db;
    const stats = this.deps.transport.stats();
    const monitors = this.heartbeat.monitors();
    const recovery = this.rebuild.status();
    const state = recovery.state;
    const nodes: NodeView[] = db.nodes.map((n) => ({
      id: n.id,
      shortId: n.shortId,
      endpoint: n.endpoint,
      pid: n.pid ?? null,
      anchor: n.anchor,
      votes: n.votes,
      group: n.group,
      role: monitors.includes(n.id) ? 'monitor' : 'member',
      state: recovery.states[n.id] ?? null,
      alive: this.heartbeat.isAlive(n),
    }));
    return {
      self: s.id,
      epoch: s.epoch,
      version: db.version,
      quorum: this.quorum.has,
      monitor: this.heartbeat.monitorOf(0) ?? null,
      pan: this.pan.live(),
      panTerm: this.pan.primaryTerm(),
      state,
      phase: this.nodeDb.joined() ? 'joined' : 'forming',
      endpoint: s.endpoint,
      pid: s.pid,
      anchor: s.anchor,
      group: s.group,
      monitors,
      nodes,
      rejected: stats.rejected,
      rejectedByReason: stats.rejectedByReason,
      codec: { native: nativeDecoder() },
      faults: { enabled: s.faultInjection, dropped: [...this.deps.transport.dropped()] },
      messages: { sent: stats.sent, received: stats.received, unsent: stats.unsent, filtered: stats.filtered, ...(stats.wire ? { wireMessages: stats.wire.messages } : {}) },
      software: s.software,
      http: s.httpPort ?? null,
      pages: { ...this.engine.space(), copies: this.engine.holder.counts() },
      recovery,
      replication: this.engine.replication(),
      arenas: arenasOf(db).map((a) => ({ arena: a.arena, home: a.home, gen: a.gen })),
      fs: this.fs.status(),
      security: { secure: s.secure ?? false, forbidden: this.forbidden, memberKeys: keysOf(db).map((k) => ({ ...k })) },
    };
  }
}
