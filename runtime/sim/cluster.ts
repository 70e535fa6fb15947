/**
 * A whole cluster of real node code on virtual time (DESIGN.md, the
 * simulation world): every node is a MangroveNode over the in-memory network,
 * driven by one SimClock, every random choice drawn from one seed. A run is a
 * pure function of its seed and the faults the caller schedules.
 */
import type { InspectionEvent } from 'xstate';
import { assert, present } from '../../bus/assert.js';
import { MangroveError } from '../../bus/errors.js';
import type { TraceSink } from '../../bus/transport/transport.js';
import { SimNetwork, simEndpoint, type SimTransport } from '../../bus/transport/sim-network.js';
import { MangroveNode, type NodeNews } from '../../actors/node.js';
import { silentLog, type Log } from '../../actors/log.js';
import type { NodeSettings } from '../../actors/settings.js';
import { MemoryNodeStore } from '../storage/memory-node-store.js';
import { MemoryPageStore } from '../storage/memory-pages.js';
import { MemoryTxnLogStore } from '../storage/memory-txn-log.js';
import type { EngineSettings } from '../../actors/engine/page-engine.js';
import type { NodeStatus } from '../../actors/status.js';
import { compareIds, makePermanentId } from '../../machines/membership/identity.js';
import { genesis, nextShortId } from '../../machines/membership/node-db.js';
import type { ArenaEntry, Identity, NodeDbSnapshot, NodeEntry } from '../../bus/messages/index.js';
import { SimClock } from '../world/clock.js';
import { traceNode } from '../trace/node-trace.js';
import { SeededRandom } from '../world/random.js';

export interface SimClusterOptions {
  seed: number;
  nodes: number;
  anchors?: number;
  groups?: number;
  periodMs?: number;
  quorumTimeoutMs?: number;
  /** Start with every node already in the node database (large runs skip joining). */
  preformed?: boolean;
  log?: (index: number) => Log;
  onNews?: (index: number, news: NodeNews) => void;
  inspect?: (index: number, e: InspectionEvent) => void;
  trace?: TraceSink;
  /** Memory-engine settings for every node (M7-M13). */
  engine?: Partial<EngineSettings>;
}

interface SimNode {
  settings: NodeSettings;
  store: MemoryNodeStore;
  /** The node's disk cache: like its store, it survives a crash. */
  pages: MemoryPageStore;
  txnLog: MemoryTxnLogStore;
  node?: MangroveNode;
  transport?: SimTransport;
  epochs: number;
}

export class SimCluster {
  readonly clock = new SimClock(1_700_000_000_000);
  readonly random: SeededRandom;
  readonly network: SimNetwork;
  private readonly members: SimNode[] = [];

  constructor(readonly options: SimClusterOptions) {
    this.random = new SeededRandom(options.seed);
    this.network = new SimNetwork({ clock: this.clock, random: this.random.derive('network') });
    const n = options.nodes;
    const anchors = Math.min(options.anchors ?? 3, n);
    const groups = Math.max(1, options.groups ?? 1);
    const periodMs = options.periodMs ?? 1000;
    const ids = this.makeIds(n);
    const seeds = ids.slice(0, anchors).map(simEndpoint);
    for (let i = 0; i < n; i++) {
      this.members.push({
        store: new MemoryNodeStore(),
        pages: new MemoryPageStore(),
        txnLog: new MemoryTxnLogStore(),
        epochs: 0,
        settings: {
          id: ids[i],
          epoch: 0,
          endpoint: simEndpoint(ids[i]),
          pid: 1000 + i,
          anchor: i < anchors,
          votes: i < anchors ? 1 : 0,
          group: Math.floor((i * groups) / n),
          seeds,
          periodMs,
          quorumTimeoutMs: options.quorumTimeoutMs ?? periodMs * 8,
          monitorPreference: [],
          panPreference: [],
          faultInjection: true,
          software: 'sim',
        },
      });
    }
    if (options.preformed) this.preform();
  }

  get size(): number {
    return this.members.length;
  }

  id(i: number): string {
    return this.members[i].settings.id;
  }

  indexOf(id: string): number {
    return this.members.findIndex((m) => m.settings.id === id);
  }

  node(i: number): MangroveNode | undefined {
    return this.members[i].node;
  }

  /** Envelopes node i's current incarnation has sent (0 while it is down). */
  sentBy(i: number): number {
    return this.members[i].transport?.stats().sent ?? 0;
  }

  /** Node i's disk cache (M9): it survives crashes, like a disk. */
  diskOf(i: number): MemoryPageStore {
    return this.members[i].pages;
  }

  isUp(i: number): boolean {
    return this.members[i].node !== undefined;
  }

  startAll(): void {
    for (let i = 0; i < this.members.length; i++) this.start(i);
  }

  /** Starts (or restarts after a crash) node i with a new epoch. */
  start(i: number): void {
    const m = this.members[i];
    if (m.node) return;
    m.settings = { ...m.settings, epoch: m.store.nextEpoch(), pid: 1000 + i + 100_000 * m.epochs++ };
    const transport = this.network.isAttached(m.settings.id) ? this.network.restart(m.settings.id) : this.network.attach(m.settings.id);
    const random = this.random.derive(`node-${i}-${m.epochs}`);
    const trace = this.options.trace;
    const traced = trace ? traceNode(trace, this.clock, m.settings, random.seed, m.store) : undefined;
    if (trace && traced) transport.setTrace(traced.inputs(trace));
    const node = new MangroveNode({
      settings: m.settings,
      transport,
      clock: traced ?? this.clock,
      random,
      store: m.store,
      pages: m.pages,
      txnLog: m.txnLog,
      engineClock: this.clock,
      // File times from the simulated clock (it starts at a fixed date): a run stays a function of its seed.
      wallMs: () => this.clock.now(),
      engine: this.options.engine,
      log: this.options.log?.(i) ?? silentLog,
      inspect: this.options.inspect ? (e) => this.options.inspect!(i, e) : undefined,
    });
    const onNews = this.options.onNews;
    if (onNews) node.news$.subscribe((n) => onNews(i, n));
    m.node = node;
    m.transport = transport;
    node.start();
  }

  /** kill -9: the process is gone, its store (the disk) stays. */
  crash(i: number): void {
    const m = this.members[i];
    if (!m.node) return;
    this.network.crash(m.settings.id);
    void m.node.stop();
    m.node = undefined;
    m.transport = undefined;
  }

  /** Partition by node indexes; unlisted nodes form one more side. */
  partition(sides: readonly (readonly number[])[]): void {
    const listed = new Set(sides.flat());
    const rest = this.members.map((_, i) => i).filter((i) => !listed.has(i));
    const all = rest.length > 0 ? [...sides, rest] : sides;
    this.network.partition(all.map((side) => side.map((i) => this.id(i))));
  }

  heal(): void {
    this.network.heal();
  }

  run(ms: number): void {
    this.clock.advance(ms);
  }

  /**
   * Advances in steps of `stepMs` until `done()` holds; returns the simulated
   * time that took. A condition that never holds within `maxMs` is a failed
   * wait, never a result: E_TIMEOUT, naming `what` (a function is asked only
   * then, so it can describe the state the run was left in).
   */
  runUntil(done: () => boolean, maxMs: number, what: Waited, stepMs = 50): number {
    const start = this.clock.now();
    while (this.clock.now() - start <= maxMs) {
      if (done()) return this.clock.now() - start;
      this.clock.advance(stepMs);
    }
    if (done()) return this.clock.now() - start;
    throw timedOut(what, maxMs);
  }

  /**
   * `run` for specs that await the nodes' promises (the memory engine's
   * applets): after every timer, the microtasks it started run to the end
   * before the next timer fires. Still a pure function of the seed.
   */
  async runAsync(ms: number): Promise<void> {
    await this.clock.runUntilAsync(this.clock.now() + ms);
  }

  /** `runUntil` for specs that await the nodes' promises; the time taken, or E_TIMEOUT naming `what`. */
  async runUntilAsync(done: () => boolean, maxMs: number, what: Waited, stepMs = 10): Promise<number> {
    const start = this.clock.now();
    while (this.clock.now() - start <= maxMs) {
      if (done()) return this.clock.now() - start;
      await this.clock.runUntilAsync(this.clock.now() + stepMs);
    }
    if (done()) return this.clock.now() - start;
    throw timedOut(what, maxMs);
  }

  /** Runs the simulation until `work` settles (or `maxMs` of simulated time pass: E_TIMEOUT). */
  async settle<T>(work: Promise<T>, maxMs = 60_000): Promise<T> {
    let state: { ok: true; value: T } | { ok: false; err: unknown } | undefined;
    work.then(
      (value) => (state = { ok: true, value }),
      (err: unknown) => (state = { ok: false, err }),
    );
    await this.runUntilAsync(() => state !== undefined, maxMs, 'the work to settle', 1);
    assert(state !== undefined, 'runUntilAsync returns only once the work has settled');
    if (!state.ok) throw state.err;
    return state.value;
  }

  status(i: number): NodeStatus | undefined {
    return this.members[i].node?.status();
  }

  statuses(): (NodeStatus | undefined)[] {
    return this.members.map((_, i) => this.status(i));
  }

  async stopAll(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) this.crash(i);
  }

  private makeIds(n: number): string[] {
    const r = this.random.derive('ids');
    const ids = new Set<string>();
    while (ids.size < n) ids.add(makePermanentId(r.bytes(6), this.clock.now() - r.int(1e9)));
    return [...ids];
  }

  /**
   * Gives every node the database it would have once all had joined, in
   * index order: each entry is the identity the node claims at its first
   * start, so no node finds its entry stale and asks to join (every join is
   * a version every node then fetches whole: quadratic in the nodes), and
   * each joiner has the next arena, as a join gives it. The arena table is
   * written out rather than left to be derived: derived, it is built anew,
   * as large as the cluster, at every look by every node.
   */
  private preform(): void {
    const anchors: Identity[] = this.members.filter((m) => m.settings.anchor).map((m) => firstIdentityOf(m.settings));
    const founded = genesis(anchors);
    const nodes: NodeEntry[] = [...founded.nodes];
    const arenas: ArenaEntry[] = [...present(founded.arenas, 'genesis writes the arena table')];
    let nextArena = present(founded.nextArena, 'genesis writes the next arena');
    for (const m of this.members) {
      if (m.settings.anchor) continue;
      const slot = nextShortId({ version: 0, nodes }, m.settings.group);
      if (!slot.ok) throw new RangeError(slot.reason);
      const id = m.settings.id;
      nodes.push({ ...firstIdentityOf(m.settings), shortId: slot.shortId });
      arenas.push({ arena: nextArena++, home: id, gen: 1, madeFor: id });
    }
    const db: NodeDbSnapshot = { version: 2, nodes: nodes.sort((a, b) => compareIds(a.id, b.id)), arenas, nextArena };
    for (const m of this.members) m.store.saveNodeDb(db);
  }
}

/** What a `runUntil` waited for: a phrase, or a function giving one when the wait fails. */
export type Waited = string | (() => string);

function timedOut(what: Waited, maxMs: number): MangroveError {
  const described = typeof what === 'string' ? what : what();
  return new MangroveError('E_TIMEOUT', `timed out after ${maxMs} simulated ms waiting for ${described}`);
}

/** The epoch a node's first start draws from its fresh store (NodeStore.nextEpoch). */
const FIRST_EPOCH = 1;

/** The entry a node will claim at its first start (start() numbers pids and epochs the same way). */
function firstIdentityOf(s: NodeSettings): Identity {
  return { id: s.id, endpoint: s.endpoint, anchor: s.anchor, votes: s.votes, group: s.group, pid: s.pid, epoch: FIRST_EPOCH };
}
