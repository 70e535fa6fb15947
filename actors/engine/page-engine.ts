/**
 * The memory engine of one node (SPEC.md M7-M13; docs/engine.md): a
 * program's calls and other nodes' requests become op-codes dispatched by
 * the flow scheduler to applets that compose the elements: the space and its
 * directory (page-space.ts), the homes (page-homes.ts), this node's copies
 * (page-holder.ts), the RAM cache, the disk cache (the page store, written
 * through group-commit.ts), core holders (core-holders.ts), the transaction
 * log (txn-log.ts) and calls to other engines (peer-calls.ts). Requests for
 * one page run one at a time in arrival order; different pages proceed
 * concurrently.
 *
 * Op-codes: `client.<op>` for a program's calls (bus/messages/page.ts
 * `clientPageOp`; applets/local.ts), `peer.<op>` for other engines'
 * (`peerCall`; applets/home.ts), and `page.read1`, `page.write1`,
 * `page.flush1`, `page.access1`, `page.release1` for one page, keyed by it.
 * `scheduler.replace(op, applet)` swaps any of them at run time.
 *
 * Coherence messages (`page.request`, `page.forward`…) are not op-codes:
 * they drive the page-home machines and the holder's copies directly, so a
 * page's protocol never waits behind a request queued for the same page.
 */
import type { Envelope } from '../../bus/envelope.js';
import { assert } from '../../bus/assert.js';
import { MangroveError, isMangroveError } from '../../bus/errors.js';
import type { Body } from '../../bus/messages/index.js';
import type { ClientPageOp, CoherenceBody, CoherenceKind, PeerCall, ReadResult, SpaceReport, WriteResult } from '../../bus/messages/page.js';
import { fastCall } from './fast-path.js';
import type { ReplyRoute } from '../../bus/transport/transport.js';
import { addressFromKey, formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import { activate, homeFacts, registerHomeApplets, takeUp } from './applets/home.js';
import { registerRecoveryApplets } from './applets/recovery.js';
import { Repopulation, type RoundScope } from '../recovery/repopulation.js';
import { pageOut, registerLocalApplets } from './applets/local.js';
import type { CoreHolderDeps } from '../pages/core-holders.js';
import { DirectoryReplicas } from '../pages/directory-replicas.js';
import { registerDirectoryApplets } from './applets/directory.js';
import { ReReplication, type ReplicationReport } from '../recovery/rereplication.js';
import { DiskGc } from '../recovery/disk-gc.js';
import type { EngineParts, PageEngineDeps } from './engine-parts.js';
import { FlowScheduler } from './flow-scheduler.js';
import { GroupCommit } from '../pages/group-commit.js';
import { PageHolder, type PageChange } from '../pages/page-holder.js';
import type { Observable } from 'rxjs';
import { PageHomes } from '../pages/page-homes.js';
import { PageLocks } from '../pages/page-locks.js';
import { ClientLeases } from './client-leases.js';
import { incarnationOf } from './applets/home.js';
import { arenaOf, PageSpace } from '../pages/page-space.js';
import { arenaEntryOf, arenasOf, reservingArena } from '../../machines/membership/node-db.js';
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import { PeerCalls } from './peer-calls.js';
import { RamCache } from '../pages/ram-cache.js';
import { SpacePolicy } from '../pages/space-policy.js';

export { engineDefaults, type EngineSettings, type PageEngineDeps } from './engine-parts.js';

/** Ranges one re-replication step restores (M15): the pace of the background scan, with `scanIntervalMs`. */
const RANGES_PER_SCAN_STEP = 8;
/** Pages of this node's disk one step of the collection looks at (M15). */
const GC_PAGES_PER_STEP = 256;

/** How long a node's space report guides placement before it is asked for again (M12). */
const SPACE_REPORT_TTL_MS = 5000;
/** How often the node looks for clients whose lock lease ran out (client-leases.ts). */
const LEASE_SWEEP_MS = 500;

/**
 * Peer calls a node answers while it rebuilds (M14): repopulation's own,
 * reads of its disk and space, and a directory replica's (a home must not
 * wait a round out to catch a replica up).
 */
const SERVED_IN_RECOVERY: ReadonlySet<PeerCall['op']> = new Set(['register', 'demote', 'fetch', 'space', 'dir_store', 'dir_check']);

function noQuorum(what: string): MangroveError {
  return new MangroveError('E_NO_QUORUM', `${what} needs quorum and this node has none (too few anchors reachable); reads of pages held go on`);
}

function recovering(): MangroveError {
  return new MangroveError('E_RECOVERING', 'the cluster is rebuilding after a node failure or restart; try again in a moment');
}

export class PageEngine {
  readonly scheduler = new FlowScheduler();
  readonly cache: RamCache;
  readonly holder: PageHolder;
  private readonly homes: PageHomes;
  private readonly locks: PageLocks;
  private readonly leases: ClientLeases;
  private readonly addressSpace: PageSpace;
  private readonly calls: PeerCalls;
  private readonly commits: GroupCommit;
  private readonly replicas: DirectoryReplicas;
  private readonly rereplication: ReReplication;
  private readonly gc: DiskGc;
  private readonly parts: EngineParts;
  /** Arenas handed to this node whose directory did not check out here: refused until it does (M15). */
  private readonly unverified = new Set<number>();
  private readonly stats = { staleRound: 0, reReplicatedPages: 0, fastCalls: 0 };
  private closed = false;
  /** The rebuild round (M14) this node's RAM directory was built in; coherence messages of another are dropped. */
  private round = 0;
  /** The last rebuild round this node finished (resumed from). */
  private completed = 0;
  private resets = 0;
  /** See `suspect`. */
  private suspected = false;
  private lastResetAt: number | null = null;
  /**
   * False from a notice or a quiesce until the rebuild resumes operations,
   * and from the start until the node opens or a rebuild includes it:
   * remote requests get E_RECOVERING (M6).
   */
  private serving = false;
  private repopulation?: Repopulation;

  constructor(private readonly deps: PageEngineDeps) {
    const { self, epoch, clock, settings } = deps;
    this.cache = new RamCache(settings.ramBytes);
    this.addressSpace = new PageSpace(deps.store);
    this.commits = new GroupCommit(deps.store);
    const policy = new SpacePolicy(clock, SPACE_REPORT_TTL_MS);
    const core: CoreHolderDeps = {
      self,
      db: deps.db,
      isAlive: deps.isAlive,
      store: deps.store,
      call: (to, req) => this.calls.call(to, req),
      genOf: (a) => arenaEntryOf(deps.db(), Number(arenaOf(a)))?.gen ?? 0,
      rank: (c) => policy.rank(c),
    };
    this.holder = new PageHolder({
      self,
      epoch,
      clock,
      cache: this.cache,
      store: deps.store,
      retryMs: settings.retryMs,
      pageOut: (a) => pageOut(this.parts, a),
      homeOf: (a) => this.homeOf(a),
      isAlive: deps.isAlive,
      send: (to, kind, body) => this.send(to, kind, body),
    });
    this.homes = new PageHomes({
      self,
      clock,
      retryMs: settings.retryMs,
      inspect: deps.inspect,
      factsOf: (a) => homeFacts(this.parts, a),
      takeUp: (a, facts) => takeUp(this.parts, a, facts),
      activate: (a, facts) => activate(this.parts, a, facts),
      quorate: deps.quorate,
      log: deps.log,
      send: (to, kind, body) => this.send(to, kind, body),
    });
    this.locks = new PageLocks({ clock, inspect: deps.inspect });
    this.leases = new ClientLeases({
      clock,
      intervalMs: LEASE_SWEEP_MS,
      serving: () => this.serving,
      release: (home, client) => this.calls.call(home, { op: 'release_client', client }),
      log: deps.log,
    });
    this.calls = new PeerCalls({
      self,
      epoch,
      clock,
      retryMs: settings.retryMs,
      timeoutMs: settings.timeoutMs,
      send: (to, body) => deps.outbox.send(to, 'page.call', body),
      answer: (to, body) => deps.outbox.send(to, 'page.answer', body),
      run: (from, req) => this.runPeer(from, req),
    });
    this.replicas = new DirectoryReplicas({
      self,
      core,
      space: this.addressSpace,
      copies: settings.copies,
      db: deps.db,
      isAlive: deps.isAlive,
      call: (to, req) => this.calls.call(to, req),
      pan: deps.pan,
      log: deps.log,
    });
    this.parts = {
      deps,
      scheduler: this.scheduler,
      cache: this.cache,
      holder: this.holder,
      homes: this.homes,
      locks: this.locks,
      leases: this.leases,
      space: this.addressSpace,
      calls: this.calls,
      commits: this.commits,
      core,
      policy,
      stats: this.stats,
      homeOf: (a) => this.homeOf(a),
      ownArena: () => this.ownArena(),
      needQuorum: (what) => this.needQuorum(what),
      within: (work, what, ms) => this.within(work, what, ms),
      syncDirectory: () => this.replicas.sync(() => this.addressSpace.takeWritten()),
      directoryCaughtUp: (arena) => this.replicas.catchUp(Number(arena)),
      arenaRefusal: (arena) => this.arenaRefusal(arena),
      repopulation: () => this.repopulation,
    };
    registerLocalApplets(this.parts, () => this.space());
    registerHomeApplets(this.parts, () => this.space());
    registerRecoveryApplets(this.parts);
    registerDirectoryApplets(this.parts);
    this.rereplication = new ReReplication({
      engine: this.parts,
      replicas: this.replicas,
      clock,
      intervalMs: settings.scanIntervalMs,
      rangesPerStep: RANGES_PER_SCAN_STEP,
      serving: () => this.serving,
    });
    this.rereplication.start();
    this.gc = new DiskGc({ engine: this.parts, clock, intervalMs: settings.gcIntervalMs, pagesPerStep: GC_PAGES_PER_STEP, serving: () => this.serving });
    this.gc.start();
    this.leases.start();
  }

  /** Calls the fast path answered (fast-path.ts), since the node started. */
  get fastCalls(): number {
    return this.stats.fastCalls;
  }

  /** Changes to this node's copies, for local waiters (M10; the file system's locks build on it). */
  get changes$(): Observable<PageChange> {
    return this.holder.changes$;
  }

  /** A `page.` message from another node (or this one). */
  handle(env: Envelope): void {
    if (this.closed) return;
    switch (env.kind) {
      case 'page.call':
        return this.calls.onCall(env.from, env.body as Body<'page.call'>);
      case 'page.answer':
        return this.calls.onAnswer(env.body as Body<'page.answer'>);
    }
    const body = env.body as { addr: Uint8Array; rr: number };
    // Nothing from another rebuild round is acted on, and nothing at all while rebuilding (M14).
    if (!this.serving || body.rr !== this.round) {
      this.stats.staleRound++;
      // A request is answered, so its node stops waiting and retries once both are in the same round.
      if (env.kind === 'page.request') this.refuseOutOfRound(env.from, env.body as Body<'page.request'>);
      return;
    }
    const addr = addressFromKey(body.addr);
    switch (env.kind as CoherenceKind) {
      case 'page.request':
        return this.homes.onRequest(env.body as Body<'page.request'>, addr, env.from);
      case 'page.invalidated':
        return this.homes.onInvalidated(env.body as Body<'page.invalidated'>, addr, env.from);
      case 'page.confirmed':
        return this.homes.onConfirmed(env.body as Body<'page.confirmed'>, addr, env.from);
      case 'page.dropped':
        return this.homes.onDropped(env.body as Body<'page.dropped'>, addr, env.from);
      case 'page.invalidate':
        return this.holder.onInvalidate(env.body as Body<'page.invalidate'>, addr, env.from);
      case 'page.forward':
        return this.holder.onForward(env.body as Body<'page.forward'>, addr);
      case 'page.data':
        return this.holder.onData(env.body as Body<'page.data'>, addr);
      case 'page.served':
        return this.holder.onServed(env.body as Body<'page.served'>, addr);
      case 'page.refused':
        return this.holder.onRefused(env.body as Body<'page.refused'>, addr);
    }
  }

  /** A request this node cannot take now: refused in the requester's own round (it carries no state, so any round may refuse). */
  private refuseOutOfRound(from: string, b: Body<'page.request'>): void {
    const message = `the page's home is rebuilding after a failure or restart, or the requester is not in its rebuild round; try again in a moment`;
    const refusal: Body<'page.refused'> = { addr: b.addr, rr: b.rr, req: b.req, code: 'E_RECOVERING', message };
    if (from !== this.deps.self) this.deps.outbox.send(from, 'page.refused', refusal);
  }

  /** A program's call (`client.page`), answered on its route. */
  onClient(env: Envelope, route: ReplyRoute): void {
    const op = env.body as ClientPageOp;
    // Answered in this turn: a read's data is the cached page itself, encoded before anything can change it.
    const fast = this.fast(op, env.from);
    if (fast !== undefined) return this.deps.outbox.reply(route, env, 'reply.ok', { result: fast });
    this.call(op, env.from).then(
      (result) => this.deps.outbox.reply(route, env, 'reply.ok', { result }),
      (err: unknown) => {
        const e = isMangroveError(err) ? err : new MangroveError('E_INTERNAL', String(err));
        if (e.code === 'E_INTERNAL') this.deps.log.error({ err: String(err), op: op.op }, 'engine call failed');
        this.deps.outbox.reply(route, env, 'reply.err', { code: e.code, message: e.message });
      },
    );
  }

  /**
   * Runs a program's call on this node; `client` names the caller (locks are
   * per client). While this node does not serve (a rebuild, M14), only reads
   * of pages it holds go on (M17: reads of held pages are served); anything
   * else gets E_RECOVERING, which the client library retries, or
   * E_NO_QUORUM where the node has no quorum either.
   */
  call(op: ClientPageOp, client = 'local'): Promise<unknown> {
    const fast = this.fast(op, client);
    // The caller reads the answer on a later turn: a page's data is copied out of the cache.
    if (fast !== undefined) return Promise.resolve('data' in fast && fast.versions.length === 1 ? { ...fast, data: fast.data.slice() } : fast);
    if (this.closed) return Promise.reject(new MangroveError('E_CLOSED', 'the node is stopping'));
    this.leases.heard(client);
    if (op.op === 'renew') return Promise.resolve({ held: this.leases.holds(client) });
    if (!this.serving && !(op.op === 'read' && this.holdsReadable(op.addr, op.pages))) {
      return Promise.reject(this.deps.quorate() ? recovering() : noQuorum(`${op.op} while the cluster rebuilds`));
    }
    return this.scheduler.dispatch(`client.${op.op}`, op, client);
  }

  /**
   * A read or write done at once (fast-path.ts), or undefined for the full
   * path. Only while the node serves: in a rebuild every call takes the full
   * path, which knows what may go on.
   */
  private fast(op: ClientPageOp, client: string): ReadResult | WriteResult | undefined {
    if (!this.deps.settings.fastPath || this.closed || !this.serving) return undefined;
    const result = fastCall(this.parts, op);
    if (result === undefined) return undefined;
    this.leases.heard(client);
    this.stats.fastCalls++;
    return result;
  }

  // ---- The rebuild (M14), as the recovery actor drives it ----

  /**
   * Where this node stands in the rebuild: the round its RAM directory is
   * (being) built in, the last round it finished, whether it serves, and how
   * often (last when) it dropped every copy it held because it had missed a
   * round: to the durability rule that is a crash of this node (its
   * unflushed writes may be lost), and a history recorder marks it so.
   */
  recoveryState(): { round: number; completed: number; serving: boolean; staleMessages: number; resets: number; lastResetAt: number | null } {
    const { round, completed, serving, resets, lastResetAt } = this;
    return { round, completed, serving, staleMessages: this.stats.staleRound, resets, lastResetAt };
  }

  /**
   * A new node in a cluster that has never rebuilt (round 0 everywhere):
   * nothing anywhere predates it, so it serves as it is.
   */
  open(): void {
    assert(this.completed === 0 && !this.repopulation, 'only a node that never rebuilt opens at round 0');
    this.serving = true;
  }

  /**
   * This node was out of touch (or counted out): the cluster may have rebuilt
   * without it and granted writes since, so none of its copies is read until
   * a round includes it again.
   */
  suspect(): void {
    this.suspected = true;
    this.serving = false;
  }

  /** A failure is noticed: remote requests wait (E_RECOVERING) until a rebuild resumes operations. */
  hold(): void {
    this.serving = false;
  }

  /**
   * Quiesce for recovery: requests in flight fail (E_RECOVERING), every
   * page-home machine goes with what this node knew of copysets; with
   * `reset`, every copy too. The next messages are of round `round`, whose
   * `scope` (participants, node database version) repopulation keeps to.
   */
  drain(round: number, reset: boolean, scope: RoundScope): void {
    this.serving = false;
    // Calls in flight end now too: one to a node that died would otherwise hold its caller until the call times out.
    this.calls.failAll(recovering());
    if (reset) {
      this.resets++;
      this.lastResetAt = this.deps.clock.now();
    }
    this.holder.quiesce(recovering(), reset);
    this.homes.dropDirectory();
    this.round = round;
    this.repopulation = new Repopulation(round, this.parts, scope);
  }

  /** Start repopulating: registers every copy here with its page's home; resolves once every home has answered. */
  async repopulate(round: number, dbVersion: number): Promise<void> {
    const repopulation = this.repopulation;
    if (!repopulation || repopulation.round !== round) throw new MangroveError('E_STALE', `repopulation of round ${round} was not prepared here (this node is at round ${this.round})`);
    await repopulation.registerCopies(this.deps.settings.timeoutMs, dbVersion);
  }

  /**
   * Resume operations: the homes' machines rebuilt from the registrations;
   * locks taken through a node that failed, restarted or left go (their
   * waiting lockers get them); requests are served again.
   */
  resume(round: number): void {
    const repopulation = this.repopulation;
    if (repopulation && repopulation.round === round) for (const [addr, page] of repopulation.rebuilt()) this.homes.install(addr, page);
    this.holder.resumed();
    this.releaseLocksOfGoneNodes();
    this.repopulation = undefined;
    this.round = round;
    this.completed = round;
    this.suspected = false;
    this.serving = true;
  }

  private holdsReadable(addr: Uint8Array, pages: number): boolean {
    if (this.suspected || !this.deps.standing()) return false;
    const first = addressFromKey(addr);
    for (let i = 0; i < pages; i++) if (!this.holder.readable(first + BigInt(i * PAGE_BYTES))) return false;
    return true;
  }

  private runPeer(from: string, req: PeerCall): Promise<unknown> {
    if (!this.serving && !SERVED_IN_RECOVERY.has(req.op)) return Promise.reject(recovering());
    return this.scheduler.dispatch(`peer.${req.op}`, req, from);
  }

  /** Page counts, cache use and free space for `status` (M24). */
  space(): SpaceReport {
    const s = this.cache.stats();
    const pagesMax = this.deps.store.capacity();
    const pages = this.deps.store.count();
    return {
      node: this.deps.self,
      ram: { budgetBytes: this.deps.settings.ramBytes, usedBytes: s.bytes, pages: s.pages, dirtyPages: s.dirty },
      disk: { pages, pagesMax, freePages: Math.max(0, pagesMax - pages) },
      homePages: this.addressSpace.materializedPages(),
    };
  }

  /** What re-replication has left to do, and has done (M15). */
  replication(): ReplicationReport {
    return { ...this.rereplication.status(), collectedCopies: this.gc.dropped };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rereplication.stop();
    this.gc.stop();
    this.leases.stop();
    this.calls.close();
    this.holder.close();
    this.homes.stop();
    this.locks.stop();
    this.holder.changes$.complete();
  }

  /** The responsible node (the home) of `addr`: its arena's, in the node database's arena table (M8). */
  homeOf(addr: bigint): string {
    const arena = arenaOf(addr);
    const entry = arena <= BigInt(Number.MAX_SAFE_INTEGER) ? arenaEntryOf(this.deps.db(), Number(arena)) : undefined;
    if (entry) return entry.home;
    if (arena === 0n) throw new MangroveError('E_RECOVERING', 'the node database names no anchor yet; wait for the cluster to form');
    throw new MangroveError('E_NOT_RESERVED', `${formatAddress(addr)} is in arena ${arena}, which no node of the cluster serves; reserve pages first (page reserve)`);
  }

  private ownArena(): bigint {
    const entry = reservingArena(this.deps.db(), this.deps.self);
    if (!entry) throw new MangroveError('E_RECOVERING', 'this node serves no arena yet (it has not joined the cluster, or its arena is being handed over); try again shortly');
    return BigInt(entry.arena);
  }

  /** A coherence message, stamped with this node's rebuild round; to this node itself, delivered on the next microtask like any other arrival. */
  private send<K extends CoherenceKind>(to: string, kind: K, body: CoherenceBody<K>): void {
    const stamped = { ...body, rr: this.round } as Body<K>;
    if (to !== this.deps.self) return this.deps.outbox.send(to, kind, stamped);
    const env = this.deps.outbox.envelope(to, kind, stamped);
    queueMicrotask(() => this.handle(env));
  }

  /**
   * The arena table changed (M8, M16): a directory decoded for an arena whose
   * home changed is dropped (its pages on disk are what counts), and an arena
   * handed to this node is read whole from this node's disk, where it holds
   * a replica, before it is served.
   */
  arenasChanged(before: NodeDbSnapshot, after: NodeDbSnapshot): void {
    const { self } = this.deps;
    for (const entry of arenasOf(after)) {
      const was = arenaEntryOf(before, entry.arena);
      if (was !== undefined && was.home === entry.home && was.gen === entry.gen) continue;
      const arena = BigInt(entry.arena);
      this.addressSpace.forget(arena);
      this.replicas.forget(entry.arena);
      this.unverified.delete(entry.arena);
      if (entry.home !== self || was === undefined) continue;
      try {
        const held = this.addressSpace.check(arena);
        this.deps.log.info({ arena: entry.arena, gen: entry.gen, was: was.home, directory: held }, 'serving an arena handed over to this node');
      } catch (err) {
        this.unverified.add(entry.arena);
        this.deps.log.error({ arena: entry.arena, err: String(err) }, 'an arena handed over to this node has a damaged directory here; it is not served');
      }
    }
  }

  private releaseLocksOfGoneNodes(): void {
    const { self, isAlive, db } = this.deps;
    const live = new Set(db().nodes.filter((n) => n.id === self || isAlive(n.id)).map((n) => incarnationOf(this.parts, n.id)));
    for (const via of this.locks.vias()) {
      if (live.has(via)) continue;
      this.deps.log.warn({ via }, 'locks taken through a node that failed or restarted are released');
      this.locks.releaseVia(via);
    }
  }

  /**
   * Why requests for `arena` are refused here, if they are: its directory
   * did not check out, or a replica lacks a change of it (directory-replicas.ts:
   * the home acts on nothing there until the replica has it; catching up starts now).
   */
  private arenaRefusal(arena: bigint): MangroveError | undefined {
    if (this.unverified.has(Number(arena))) {
      return new MangroveError('E_UNREACHABLE', `arena ${arena} was handed to this node, but its directory here did not check out; it is served again once repaired`);
    }
    if (!this.replicas.behindOn(Number(arena))) return undefined;
    this.replicas.catchUp(Number(arena)).catch((err: unknown) => this.deps.log.warn({ arena: Number(arena), err: String(err) }, 'a directory replica is not caught up yet; tried again'));
    return new MangroveError('E_RECOVERING', `arena ${arena}'s directory has a change a replica has not taken yet; it is served again once the replica has it (in a moment)`);
  }

  private needQuorum(what: string): void {
    if (!this.deps.quorate()) throw noQuorum(what);
  }

  private within<T>(work: Promise<T>, what: string, ms = this.deps.settings.timeoutMs): Promise<T> {
    const { clock } = this.deps;
    return new Promise<T>((resolve, reject) => {
      const timer = clock.setTimeout(() => reject(new MangroveError('E_TIMEOUT', `${what} took more than ${ms} ms; the page's home or owner may be unreachable`)), ms);
      work.then(
        (v) => {
          clock.clearTimeout(timer);
          resolve(v);
        },
        (err) => {
          clock.clearTimeout(timer);
          reject(err);
        },
      );
    });
  }
}
