/**
 * Replay conformance (SPEC.md M27): each node in a trace is rebuilt from its
 * start record (settings, random seed, stored state) and fed, in recorded
 * order, the inputs the trace shows it took: the envelopes it accepted and
 * the timers it fired. After every input, what the node's machines send now
 * must be what the trace shows the node sent after that input: the same
 * kinds, to the same nodes, with the same bodies. The one tolerance is for
 * durations (`…Ms` fields, e.g. a quorum state's remaining lifetime), which
 * the node computed from its clock at some instant between an input and its
 * last send; they may differ by the spread of those instants the trace
 * records (none in a simulated trace, whose clock does not move while a
 * node works).
 *
 * Replies to clients are made when a promise settles, after the input that
 * settled it and before the next one, so they are matched as a set (by
 * recipient and request) rather than in order; the body of a reply to a
 * status request is the node's process view and is not compared.
 *
 * A node's first divergence ends its incarnation's replay: after it, the
 * replayed state is not the recorded one and every later difference would
 * repeat the first. The last input of an incarnation may show fewer sends
 * than the replay makes: a killed node's trace loses its unwritten tail.
 */
import { silentLog } from '../../../actors/log.js';
import { MangroveNode } from '../../../actors/node.js';
import { MemoryNodeStore } from '../../storage/memory-node-store.js';
import { MemoryPageStore } from '../../storage/memory-pages.js';
import { MemoryTxnLogStore } from '../../storage/memory-txn-log.js';
import type { Envelope } from '../../../bus/envelope.js';
import type { NodeDbSnapshot } from '../../../bus/messages/index.js';
import { formatTime, isWallClock } from '../../../bus/trace/trace.js';
import type { TraceEntry, TraceRecord, TraceStart } from '../../../bus/transport/transport.js';
import { incarnationOf, readStart, type NodeStart } from '../../trace/node-trace.js';
import { SeededRandom } from '../../world/random.js';
import type { Violation } from '../rule.js';
import { ReplayClock, ReplayTransport } from './world.js';

export interface ReplayStats {
  /** Nodes replayed (with at least one start record). */
  nodes: number;
  incarnations: number;
  /** Envelopes fed and timers fired. */
  inputs: number;
  /** Recorded sends matched against the replay's. */
  sends: number;
  /** Nodes whose records have no start record to rebuild them from. */
  unreplayable: string[];
}

export interface ReplayResult {
  stats: ReplayStats;
  violations: Violation[];
}

type Input = TraceStart | Exclude<TraceEntry, TraceStart>;

/** Replays every node in `entries` (any mix of nodes; each node's entries in recorded order). */
export async function replayTrace(entries: Iterable<TraceEntry>): Promise<ReplayResult> {
  const byNode = new Map<string, TraceEntry[]>();
  // Start records may share a database by naming the incarnation whose start record holds it (node-trace.ts).
  const dbs = new Map<string, NodeDbSnapshot>();
  for (const e of entries) {
    if (e.dir === 'start' && e.start.db !== undefined) {
      const epoch = (e.start.settings as { epoch?: unknown } | undefined)?.epoch;
      if (typeof epoch === 'number') dbs.set(incarnationOf(e.node, epoch), e.start.db as NodeDbSnapshot);
    }
    let list = byNode.get(e.node);
    if (!list) byNode.set(e.node, (list = []));
    list.push(e);
  }
  const result: ReplayResult = { stats: { nodes: 0, incarnations: 0, inputs: 0, sends: 0, unreplayable: [] }, violations: [] };
  for (const [node, list] of byNode) {
    const starts = list.flatMap((e, i) => (e.dir === 'start' ? [i] : []));
    if (starts.length === 0) {
      result.stats.unreplayable.push(node);
      continue;
    }
    result.stats.nodes++;
    for (let k = 0; k < starts.length; k++) {
      const slice = list.slice(starts[k], starts[k + 1] ?? list.length);
      const v = await replayIncarnation(slice, result.stats, (incarnation) => dbs.get(incarnation));
      if (v) result.violations.push(v);
    }
  }
  result.violations.sort((a, b) => a.t - b.t);
  return result;
}

/** Replays one incarnation (a start record and what follows it); returns its first divergence. */
async function replayIncarnation(
  entries: readonly TraceEntry[],
  stats: ReplayStats,
  sharedDb: (incarnation: string) => NodeDbSnapshot | undefined,
): Promise<Violation | undefined> {
  const start = entries[0] as TraceStart;
  let startInfo;
  try {
    startInfo = readStart(start, sharedDb);
  } catch (err) {
    return violation('replay.start', start, (err as Error).message, [start]);
  }
  stats.incarnations++;
  const replayed = rebuildNode(start, startInfo);
  const toleranceMs = durationTolerance(entries);
  const replies = new ReplyLedger();
  try {
    replayed.node.start();
    const divergence = feedInputs(entries, replayed, replies, stats, toleranceMs);
    if (divergence) return divergence;
    // Replies wait on promises: let them settle before the last count.
    await new Promise<void>((resolve) => setImmediate(resolve));
    replies.sortOut(replayed.transport.take());
    return replies.check(replayed.id, toleranceMs);
  } finally {
    await replayed.node.stop();
    await replayed.transport.close();
  }
}

/** A node rebuilt from its start record, in a world replay drives. */
interface ReplayedNode {
  /** The node's permanent id, from its start record. */
  id: string;
  node: MangroveNode;
  clock: ReplayClock;
  transport: ReplayTransport;
}

function rebuildNode(start: TraceStart, { settings, seed, db, acceptor, rebuildRound }: NodeStart): ReplayedNode {
  const store = new MemoryNodeStore();
  if (db) store.saveNodeDb(db);
  if (acceptor) store.saveAcceptor(acceptor);
  if (rebuildRound !== undefined) store.saveRebuildRound(rebuildRound);
  const clock = new ReplayClock(start.t);
  const transport = new ReplayTransport(settings.id, clock);
  // The engine's stores start empty: page traffic is left to the linearizability checker (M27).
  const pages = new MemoryPageStore();
  const txnLog = new MemoryTxnLogStore();
  // The engine's timers were not traced (its own clock, as in every world): here they never fire.
  const engineClock = new ReplayClock(start.t);
  const node = new MangroveNode({ settings, transport, clock, engineClock, random: new SeededRandom(seed), store, pages, txnLog, log: silentLog });
  return { id: settings.id, node, clock, transport };
}

/**
 * Feeds the started node the inputs after its start record, in order; before
 * each input, and at the end, what the node sent since the last one must be
 * what the trace shows. Returns the first divergence.
 */
function feedInputs(entries: readonly TraceEntry[], replayed: ReplayedNode, replies: ReplyLedger, stats: ReplayStats, toleranceMs: number): Violation | undefined {
  const { clock, transport } = replayed;
  let input: Input = entries[0] as TraceStart;
  let expected: TraceRecord[] = [];
  let made = replayedSends(transport);
  const settle = (last: boolean): Violation | undefined => {
    const divergence = compareSends(input, replies.sortOut(made), expected, toleranceMs, last);
    stats.sends += expected.length;
    return divergence;
  };
  for (let i = 1; i < entries.length; i++) {
    const entry = entries[i];
    // The memory engine is outside replay: its timers are not traced, and its
    // histories are checked by the linearizability checker instead.
    if ((entry.dir === 'send' || entry.dir === 'recv') && isEngine(entry.env)) {
      if (entry.dir === 'recv') replies.engineRequest(entry.env);
      continue;
    }
    // What the engine tells the node's other elements, through the loop: made by its work, outside
    // replay; their receipts are inputs like any other.
    if (entry.dir === 'send' && isFromEngine(entry.env)) continue;
    if (entry.dir === 'send') {
      if (isReply(entry.env)) replies.traced(entry);
      else expected.push(entry);
      continue;
    }
    const divergence = settle(false);
    if (divergence) return divergence;
    input = entry as Input;
    expected = [];
    stats.inputs++;
    clock.set(entry.t);
    if (entry.dir === 'recv') {
      replies.request(entry.env);
      transport.feed(entry.env);
    } else if (entry.dir === 'timer' && !clock.fire(entry.timer)) {
      return violation('replay.timer', entry, `the trace fires timer ${entry.timer}, which the replayed node does not have pending`, [entry]);
    }
    made = replayedSends(transport);
  }
  return settle(true);
}

/**
 * Replies to clients, matched by recipient and request number, in order
 * (a request delivered twice is answered twice). A reply the
 * trace shows but the replay never made is a divergence; one the replay made
 * that the trace lacks is not (a killed node's trace loses its tail).
 */
class ReplyLedger {
  /** Per request, in the order made: a duplicated request is answered twice. */
  private readonly made = new Map<string, Envelope[]>();
  private readonly recorded: TraceRecord[] = [];
  private readonly statusRequests = new Set<string>();
  /** Requests whose replies replay leaves unchecked: the memory engine's, and `client.machines`. */
  private readonly engine = new Set<string>();

  request(env: Envelope): void {
    if (env.kind === 'client.status') this.statusRequests.add(key(env.from, env.seq));
    // Answered from the host's machine watch, which a replayed node has none of (it answers E_UNSUPPORTED): not the protocols' to check.
    if (env.kind === 'client.machines') this.engine.add(key(env.from, env.seq));
  }

  /** A request to the memory engine: its reply is not the membership's to check. */
  engineRequest(env: Envelope): void {
    this.engine.add(key(env.from, env.seq));
  }

  traced(rec: TraceRecord): void {
    if (!this.engine.has(key(rec.env.to, rec.env.re ?? -1))) this.recorded.push(rec);
  }

  /** Keeps the replies among `sends`; returns the rest. */
  sortOut(sends: readonly Envelope[]): Envelope[] {
    const rest: Envelope[] = [];
    for (const env of sends) {
      if (!isReply(env)) {
        rest.push(env);
        continue;
      }
      const k = key(env.to, env.re ?? -1);
      const list = this.made.get(k);
      if (list) list.push(env);
      else this.made.set(k, [env]);
    }
    return rest;
  }

  check(node: string, toleranceMs: number): Violation | undefined {
    for (const rec of this.recorded) {
      const k = key(rec.env.to, rec.env.re ?? -1);
      const mine = this.made.get(k)?.shift();
      if (!mine) return violation('replay.reply', rec, `the node sent ${describe(rec.env)}, which the replayed ${node} never sends`, [rec]);
      const diff = mine.kind !== rec.env.kind ? `kind ${mine.kind}` : this.statusRequests.has(k) ? undefined : difference(rec.env.body, mine.body, toleranceMs, 'body');
      if (diff !== undefined) {
        return violation('replay.reply', rec, `the node sent ${describe(rec.env)}; the replay sends ${describe(mine)} (${diff})`, [rec]);
      }
    }
    return undefined;
  }
}

function compareSends(input: Input, made: readonly Envelope[], expected: readonly TraceRecord[], toleranceMs: number, last: boolean): Violation | undefined {
  const after = `after ${describeInput(input)}`;
  const records: TraceEntry[] = [input, ...expected];
  for (let i = 0; i < expected.length; i++) {
    const want = expected[i].env;
    const got = made[i];
    if (!got) {
      return violation('replay.sends', input, `${after} the node sent ${describe(want)}, but its replay sends ${made.length === 0 ? 'nothing' : `only ${made.length}: ${made.map(describe).join(', ')}`}`, records);
    }
    const diff = got.kind !== want.kind ? `kind ${got.kind} instead` : got.to !== want.to ? `to ${got.to || '*'} instead` : difference(want.body, got.body, toleranceMs, 'body');
    if (diff !== undefined) {
      return violation('replay.sends', input, `${after} send ${i + 1}: the node sent ${describe(want)}, the replay ${describe(got)}: ${diff}`, records);
    }
  }
  if (!last && made.length > expected.length) {
    return violation('replay.sends', input, `${after} the replay also sends ${made.slice(expected.length).map(describe).join(', ')}, which the node did not`, records);
  }
  return undefined;
}

/**
 * Durations are read from the node's clock somewhere between an input and
 * the sends it caused. Two such reads (when a state was taken, when its
 * remaining life was sent) can each be off by the longest such span the
 * trace shows; a wall clock also rounds to whole ms.
 */
function durationTolerance(entries: readonly TraceEntry[]): number {
  let inputAt: number | undefined;
  let span = 0;
  for (const e of entries) {
    if (e.dir === 'send') {
      if (inputAt !== undefined) span = Math.max(span, e.t - inputAt);
    } else inputAt = e.t;
  }
  return 2 * span + (isWallClock(entries[0].t) ? 1 : 0);
}

/** Where two bodies first differ, or undefined; `…Ms` numbers may differ by `toleranceMs`. */
export function difference(want: unknown, got: unknown, toleranceMs: number, path: string): string | undefined {
  if (want === got) return undefined;
  if (typeof want === 'number' && typeof got === 'number') {
    if (/Ms$/.test(path) && Math.abs(want - got) <= toleranceMs) return undefined;
    return `${path} is ${got}, not ${want}`;
  }
  if (want instanceof Uint8Array || got instanceof Uint8Array) {
    if (want instanceof Uint8Array && got instanceof Uint8Array && Buffer.from(want).equals(Buffer.from(got))) return undefined;
    return `${path} differs`;
  }
  if (Array.isArray(want) || Array.isArray(got)) {
    if (!Array.isArray(want) || !Array.isArray(got)) return `${path} differs in type`;
    if (want.length !== got.length) return `${path} has ${got.length} items, not ${want.length}`;
    for (let i = 0; i < want.length; i++) {
      const d = difference(want[i], got[i], toleranceMs, `${path}[${i}]`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  if (typeof want === 'object' && want !== null && typeof got === 'object' && got !== null) {
    const w = want as Record<string, unknown>;
    const g = got as Record<string, unknown>;
    const keys = new Set([...Object.keys(w), ...Object.keys(g)].filter((k) => w[k] !== undefined || g[k] !== undefined));
    for (const k of keys) {
      const d = difference(w[k], g[k], toleranceMs, `${path}.${k}`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  return `${path} is ${JSON.stringify(got) ?? String(got)}, not ${JSON.stringify(want) ?? String(want)}`;
}

/** The memory engine's messages (M7-M13): `page.` between nodes, `client.page` from programs. */
function isEngine(env: Envelope): boolean {
  return env.kind.startsWith('page.') || env.kind === 'client.page';
}

/** What the replayed node sent since the last call, but for the engine's own traffic, which replay leaves out. */
function replayedSends(transport: ReplayTransport): Envelope[] {
  return transport.take().filter((env) => !isEngine(env) && !isFromEngine(env));
}

/** What the engine tells the node's other elements, looped to the node itself: it finished repopulating (`rec.done`), it asks for a node-database update (`ndb.propose`). */
function isFromEngine(env: Envelope): boolean {
  return env.kind === 'rec.done' || env.kind === 'ndb.propose';
}

function isReply(env: Envelope): boolean {
  return env.kind.startsWith('reply.');
}

function key(to: string, re: number): string {
  return `${to}\u0000${re}`;
}

function describe(env: Envelope): string {
  return `${env.kind} to ${env.to === '' ? '*' : env.to}`;
}

function describeInput(input: Input): string {
  if (input.dir === 'start') return 'its start';
  if (input.dir === 'timer') return `timer ${input.timer} at ${formatTime(input.t)}`;
  return `${input.env.kind} from ${input.env.from} (#${input.env.seq}) at ${formatTime(input.t)}`;
}

function violation(rule: string, at: TraceEntry, detail: string, records: TraceEntry[]): Violation {
  return { rule, node: at.node, t: at.t, detail, records };
}
