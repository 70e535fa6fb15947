/**
 * Linearizability of recorded histories: Wing & Gong's search with Lowe's
 * just-in-time linearization and a memo of visited configurations, the
 * algorithm of Porcupine and of Knossos' `linear` checker.
 *
 * A history is a list of operations, each an interval [call, ret] with the
 * input it was given and the output it observed. It is linearizable when
 * every operation can be given one point inside its interval so that
 * applying the operations in point order to a sequential model produces the
 * observed outputs.
 *
 * Precedence is strict: a precedes b iff a.ret < b.call. An operation that
 * returns at the very time another is called is concurrent with it, and
 * either order is allowed. Recorded clocks (simulated ms) are coarse: two
 * events in one tick may have happened in either order, and a checker must
 * not report a violation the history does not prove.
 *
 * An operation that never returned (crash, timeout: `ret` undefined) may
 * have taken effect at any time after its call, or never. It gets no return
 * event, so nothing forces it into the order: the search is done as soon as
 * every returned operation is placed. A recorder should drop operations that
 * definitely failed (a refusal that changed nothing) and record the ones
 * whose fate is unknown as never returned.
 *
 * The search, for one partition:
 *  - Sort the call and return events by time (calls before returns at equal
 *    times, which is the strict precedence above) into a linked list.
 *  - Walk the list. At a call, apply that operation to the current model
 *    state with its observed output. If the model allows it and the pair
 *    (set of placed operations, new state) is new, place it: push it on the
 *    undo stack, unlink its call and return events and start again from the
 *    head. Otherwise go on to the next event.
 *  - At a return, the operation it ends has not been placed, yet everything
 *    after this point in the list happened later: undo the last placement
 *    (relink its events, restore the state) and try whatever follows its
 *    call. If the undo stack is empty, no linearization exists.
 * Two paths that placed the same set of operations and reached equal states
 * have the same future, so the memo (a bitset of placed operations and the
 * model's key for the state) prunes the second one. Every loop iteration is
 * a step; a partition that needs more than `maxSteps` is left undecided
 * rather than allowed to run for hours.
 *
 * Pruning beyond Porcupine, each argued where it is done (and the whole
 * checked against trying every order, in the spec):
 *  - A read-only operation is placed as soon as it fits and never tried
 *    later instead (PartitionSearch.backtrack).
 *  - Operations that never returned are tried only when the returned ones
 *    are stuck, and a configuration is covered by one with the same
 *    returned operations placed, the same state and fewer of the others
 *    (PlacedSet).
 *  - The model may narrow windows from what the whole partition shows
 *    (Model.narrow): a write whose unique value was read took effect before
 *    that read returned.
 *  - With `sequentialClients`, a client's operation precedes its next one
 *    even at equal times. Coarse clocks make the search wide: with equal
 *    times for a return and the next call, a client's back-to-back
 *    operations all overlap.
 * A step takes about 0.4 µs for the page register. Measured: 10,000
 * operations over 50 pages and 8 clients, about 10,000 steps and 30 ms
 * (125 ms with 4 KiB values, mostly keying them); 200 heavily overlapping
 * operations on one page, 3 to 15 ms to accept or refute. The hard case is
 * back-to-back operations at equal times: 160 such on one page took 0.2 s
 * to accept and 1 s to refute, 7 and 70 ms with `sequentialClients`.
 *
 * Locality (Herlihy & Wing): a history is linearizable iff its projection
 * on every object is. A model that partitions operations by object (the
 * page register partitions by page) has each partition checked on its own,
 * which is what makes long histories over many pages cheap.
 */
import { MangroveError } from '../../../bus/errors.js';

import type { EffectWindow, Model, Operation } from './history.js';

export type { EffectWindow, Model, Operation };

export interface LinOptions {
  /** Steps allowed per partition before it is left undecided. */
  maxSteps?: number;
  /**
   * Each client issues an operation only after its previous one returned,
   * and `ops` lists a client's operations in the order it issued them. A
   * client's operation then precedes its next even when a coarse clock
   * gives them equal times, which prunes a search that equal times make
   * wide. Off by default: a client that pipelines must not set it. Only
   * the order within a partition is used, which never reports a violation
   * falsely but misses one that only a client's order across pages shows
   * (equal times hide that a page's write returned before its read began).
   */
  sequentialClients?: boolean;
}

/** The default step budget per partition: a few tenths of a second for a page register. */
export const LIN_STEPS_MAX = 1_000_000;
/** Placed operations an explanation lists before eliding the earlier ones. */
export const EXPLAIN_PREFIX_MAX = 12;
/** Open operations an explanation lists. */
export const EXPLAIN_OPEN_MAX = 12;

export type LinResult<I, O> =
  | { ok: true; partitions: number; steps: number }
  | {
      ok: false;
      /** The first partition found not linearizable. */
      partition: string;
      steps: number;
      /** Several lines: the operation no order could place, the longest linearizable prefix found, the state after it and the operations open at that point. */
      explanation: string;
      /** The operation that could not be placed after `prefix`. */
      op: Operation<I, O>;
      /** The longest linearizable order of this partition's operations found. */
      prefix: Operation<I, O>[];
      /** The partition's operations (less read-only ones that never returned, which fit anywhere). */
      ops: Operation<I, O>[];
    }
  | {
      ok: 'unknown';
      reason: 'E_TIMEOUT';
      /** Partitions that ran out of steps; every other partition is linearizable. */
      partitions: string[];
      steps: number;
      explanation: string;
    };

/** Checks `ops` against `model`, partition by partition. Throws E_BAD_ARGUMENT for an operation with a bad interval. */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  opts: LinOptions = {},
): LinResult<I, O> {
  const maxSteps = opts.maxSteps ?? LIN_STEPS_MAX;
  if (!(Number.isInteger(maxSteps) && maxSteps > 0)) throw new MangroveError('E_BAD_ARGUMENT', `maxSteps must be a positive integer, not ${maxSteps}`);
  ops.forEach(validate);
  const partitions = partitionOps(model, ops);
  const undecided: string[] = [];
  let steps = 0;
  for (const [key, part] of partitions) {
    const outcome = new PartitionSearch(model, narrow(model, part), maxSteps, opts.sequentialClients ?? false).run();
    steps += outcome.steps;
    if (outcome.kind === 'timeout') undecided.push(key);
    if (outcome.kind !== 'fail') continue;
    const { stuck } = outcome;
    return {
      ok: false,
      partition: key,
      steps,
      explanation: explain(model, key, part.length, stuck, outcome.steps),
      op: stuck.ops[stuck.blocked],
      prefix: stuck.prefix.map((i) => stuck.ops[i]),
      ops: part,
    };
  }
  if (undecided.length > 0) {
    const names = undecided.map((k) => JSON.stringify(k)).join(', ');
    return {
      ok: 'unknown',
      reason: 'E_TIMEOUT',
      partitions: undecided,
      steps,
      explanation: `partition ${names} not decided within ${maxSteps} steps each; every other partition is linearizable`,
    };
  }
  return { ok: true, partitions: partitions.size, steps };
}

function validate<I, O>(op: Operation<I, O>, index: number): void {
  const bad = (why: string): MangroveError => new MangroveError('E_BAD_ARGUMENT', `operation ${index} (client ${op.client}): ${why}`);
  if (!Number.isFinite(op.call)) throw bad(`call must be a finite time, not ${op.call}`);
  if (op.ret === undefined) return;
  if (!Number.isFinite(op.ret)) throw bad(`ret must be a finite time or undefined, not ${op.ret}`);
  if (op.ret < op.call) throw bad(`returned at ${op.ret}, before its call at ${op.call}`);
}

/** Operations by partition key, in order of first appearance. A read-only operation that never returned fits anywhere and changes nothing, so it is left out. */
function partitionOps<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[]): Map<string, Operation<I, O>[]> {
  const out = new Map<string, Operation<I, O>[]>();
  for (const op of ops) {
    if (op.ret === undefined && model.readOnly?.(op.input)) continue;
    const key = model.partition?.(op.input) ?? '';
    const part = out.get(key);
    if (part) part.push(op);
    else out.set(key, [op]);
  }
  return out;
}

/** A partition ready to search: the operations kept and the window of each. */
interface Narrowed<I, O> {
  ops: Operation<I, O>[];
  windows: EffectWindow[];
}

function narrow<S, I, O>(model: Model<S, I, O>, part: readonly Operation<I, O>[]): Narrowed<I, O> {
  const narrowed = model.narrow?.(part);
  const out: Narrowed<I, O> = { ops: [], windows: [] };
  for (const op of part) {
    const w = narrowed?.get(op) ?? { from: op.call, by: op.ret };
    if (w === 'never') continue;
    out.ops.push(op);
    // An empty window (by < from) stays empty: its return event comes before its call, so no order places it.
    const by = w.by === undefined ? op.ret : op.ret === undefined ? w.by : Math.min(w.by, op.ret);
    out.windows.push({ from: Math.max(w.from, op.call), by });
  }
  return out;
}

/**
 * For each operation, the last earlier operation of its client that
 * returned (it returned before this one was called), or -1. One that never
 * returned orders nothing: the client gave up on it, and it may still land.
 */
function previousReturned<I, O>(ops: readonly Operation<I, O>[]): Int32Array {
  const last = new Map<string, number>();
  return Int32Array.from(ops, (op, i) => {
    const before = last.get(op.client) ?? -1;
    if (op.ret !== undefined) last.set(op.client, i);
    return before;
  });
}

// ---------------------------------------------------------------------------
// The event list

interface Event {
  /** Index of the operation in its partition; -1 for the list head. */
  readonly op: number;
  readonly t: number;
  readonly isCall: boolean;
  /** On a call, its return event; null on a return and on the call of an optional operation (never returned, not bounded). */
  readonly match: Event | null;
  prev: Event | null;
  next: Event | null;
}

/** The head of a list of call and return events in time order, the times of the operations' windows. */
function buildEvents(windows: readonly EffectWindow[]): Event {
  const events: Event[] = [];
  windows.forEach(({ from, by }, i) => {
    const ret: Event | null = by === undefined ? null : { op: i, t: by, isCall: false, match: null, prev: null, next: null };
    events.push({ op: i, t: from, isCall: true, match: ret, prev: null, next: null });
    if (ret) events.push(ret);
  });
  // Calls before returns at equal times: strict precedence (a.ret < b.call).
  events.sort((a, b) => a.t - b.t || Number(b.isCall) - Number(a.isCall) || a.op - b.op);
  const head: Event = { op: -1, t: -Infinity, isCall: false, match: null, prev: null, next: null };
  let last = head;
  for (const e of events) {
    e.prev = last;
    last.next = e;
    last = e;
  }
  return head;
}

function unlink(e: Event): void {
  if (e.prev) e.prev.next = e.next;
  if (e.next) e.next.prev = e.prev;
}

/** Undoes unlink; only valid in the reverse order of the unlinks (dancing links). */
function relink(e: Event): void {
  if (e.prev) e.prev.next = e;
  if (e.next) e.next.prev = e;
}

/** Takes a placed operation's events out of the list. */
function lift(call: Event): void {
  unlink(call);
  if (call.match) unlink(call.match);
}

function unlift(call: Event): void {
  if (call.match) relink(call.match);
  relink(call);
}

// ---------------------------------------------------------------------------
// The memo: which (set of placed operations, state) pairs were reached

/** Random 32-bit words, one per operation, that XOR into a set's hash (Zobrist hashing). */
function zobristTable(n: number): Uint32Array {
  const out = new Uint32Array(n);
  let s = 0x2545f491;
  for (let i = 0; i < n; i++) {
    s = (s + 0x9e3779b9) >>> 0;
    let z = Math.imul(s ^ (s >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    out[i] = (z ^ (z >>> 16)) >>> 0;
  }
  return out;
}

/** A copy of a PlacedSet's bits. */
interface Snapshot {
  required: Uint32Array;
  optional: Uint32Array;
}

/**
 * The placed operations as two bitsets: the required ones (they returned,
 * or the model bounded them), hashed incrementally, and the optional ones
 * (they never returned), compared by inclusion. From equal states a set
 * with fewer optional operations can do all that one with more can, by
 * never placing them: a configuration is covered by a seen one with the
 * same required set and a subset of the optional ones (plain equality when
 * there are none).
 */
class PlacedSet {
  private readonly slot: Int32Array;
  private readonly zobrist: Uint32Array;
  private readonly required: Uint32Array;
  private readonly optional: Uint32Array;
  hash = 0;

  constructor(isRequired: readonly boolean[]) {
    let r = 0;
    let p = 0;
    this.slot = Int32Array.from(isRequired, (yes) => (yes ? r++ : -1 - p++));
    this.zobrist = zobristTable(r);
    this.required = new Uint32Array(Math.ceil(r / 32));
    this.optional = new Uint32Array(Math.ceil(p / 32));
  }

  /** Only for an operation not in the set. */
  add(op: number): void {
    this.toggle(op);
  }

  /** Only for an operation in the set. */
  remove(op: number): void {
    this.toggle(op);
  }

  private toggle(op: number): void {
    const s = this.slot[op];
    if (s >= 0) {
      this.required[s >>> 5] ^= 1 << (s & 31);
      this.hash ^= this.zobrist[s];
    } else {
      this.optional[(-1 - s) >>> 5] ^= 1 << ((-1 - s) & 31);
    }
  }

  has(op: number): boolean {
    const s = this.slot[op];
    return s >= 0 ? (this.required[s >>> 5] & (1 << (s & 31))) !== 0 : (this.optional[(-1 - s) >>> 5] & (1 << ((-1 - s) & 31))) !== 0;
  }

  snapshot(): Snapshot {
    return { required: this.required.slice(), optional: this.optional.slice() };
  }

  /** Whether `seen` has the same required operations and no optional one this set lacks. */
  isCoveredBy(seen: Snapshot): boolean {
    for (let w = 0; w < this.required.length; w++) if (seen.required[w] !== this.required[w]) return false;
    for (let w = 0; w < this.optional.length; w++) if ((seen.optional[w] & ~this.optional[w]) !== 0) return false;
    return true;
  }
}

/** Configurations reached so far: state key → required-set hash → sets seen. */
class Memo {
  private readonly seen = new Map<string, Map<number, Snapshot[]>>();

  /** Records the configuration and returns true, or returns false if a seen one covers it. */
  visit(stateKey: string, placed: PlacedSet): boolean {
    let byHash = this.seen.get(stateKey);
    if (!byHash) this.seen.set(stateKey, (byHash = new Map()));
    const hash = placed.hash & 0x3fffffff;
    const sets = byHash.get(hash);
    if (sets?.some((s) => placed.isCoveredBy(s))) return false;
    if (sets) sets.push(placed.snapshot());
    else byHash.set(hash, [placed.snapshot()]);
    return true;
  }
}

// ---------------------------------------------------------------------------
// The search

/**
 * Which calls the walk tries. Operations that returned come first; one that
 * never returned is tried only when the others are stuck at a return, since
 * most of them either never took effect or are needed by a later read.
 */
type Pass = 'required' | 'optional';

interface Frame<S> {
  call: Event;
  /** The pass the operation was placed in, where the walk resumes if it is taken back. */
  pass: Pass;
  /** The state before the operation was placed. */
  before: S;
  /** What the model allowed; `index` is the one in use. */
  successors: readonly S[];
  index: number;
}

/** Where the search got furthest: a linearizable prefix and the return it could not get past. */
interface Stuck<S, I, O> {
  /** The operations searched; the numbers below index them. */
  ops: readonly Operation<I, O>[];
  prefix: number[];
  state: S;
  /** The unplaced operation whose return ended the prefix. */
  blocked: number;
  /** When it returned (or, never having returned, had to have taken effect by). */
  at: number;
  /** Operations called but not placed by then, `blocked` first. */
  open: number[];
}

type Outcome<S, I, O> = { kind: 'ok'; steps: number } | { kind: 'timeout'; steps: number } | { kind: 'fail'; steps: number; stuck: Stuck<S, I, O> };

class PartitionSearch<S, I, O> {
  private readonly ops: readonly Operation<I, O>[];
  private readonly head: Event;
  private readonly readOnly: boolean[];
  /** The operation each must come after besides those its window implies (sequentialClients), or -1. */
  private readonly after: Int32Array;
  /** Optional operations: no return event, as they never returned and the model did not bound them. */
  private readonly optional: number;
  private readonly placed: PlacedSet;
  private readonly memo = new Memo();
  private readonly stack: Frame<S>[] = [];
  private state: S;
  /** Required operations not placed yet; the search is done at zero. */
  private unplaced: number;
  private entry: Event | null;
  private pass: Pass = 'required';
  private steps = 0;
  private stuck: Stuck<S, I, O> | undefined;

  constructor(
    private readonly model: Model<S, I, O>,
    narrowed: Narrowed<I, O>,
    private readonly maxSteps: number,
    sequentialClients: boolean,
  ) {
    this.ops = narrowed.ops;
    this.head = buildEvents(narrowed.windows);
    this.entry = this.head.next;
    this.readOnly = this.ops.map((op) => model.readOnly?.(op.input) ?? false);
    this.after = sequentialClients ? previousReturned(this.ops) : new Int32Array(this.ops.length).fill(-1);
    const bounded = narrowed.windows.map((w) => w.by !== undefined);
    this.optional = bounded.filter((b) => !b).length;
    this.placed = new PlacedSet(bounded);
    this.state = model.init();
    this.unplaced = this.ops.length - this.optional;
  }

  run(): Outcome<S, I, O> {
    while (this.unplaced > 0) {
      if (this.steps >= this.maxSteps) return { kind: 'timeout', steps: this.steps };
      this.steps++;
      const e = this.entry;
      // An unplaced required operation keeps its return event after every call the walk can reach.
      if (e === null) throw new MangroveError('E_INTERNAL', 'linearizability search ran off the event list');
      const progressed = e.isCall ? this.visitCall(e) : this.visitReturn(e);
      if (progressed) continue;
      // The first backtrack is at a return, which notes where it stuck: only a configuration the search has left can cover a read-only placement.
      if (this.stuck === undefined) throw new MangroveError('E_INTERNAL', 'linearizability search failed without getting stuck');
      return { kind: 'fail', steps: this.steps, stuck: this.stuck };
    }
    return { kind: 'ok', steps: this.steps };
  }

  /** False when the search is exhausted. */
  private visitCall(call: Event): boolean {
    const after = this.after[call.op];
    if ((call.match !== null) !== (this.pass === 'required') || (after >= 0 && !this.placed.has(after))) {
      this.entry = call.next;
      return true;
    }
    const op = this.ops[call.op];
    const successors = this.model.step(this.state, op.input, op.ret === undefined ? undefined : op.output);
    if (this.place(call, successors, 0)) return true;
    // A read-only operation that fits but leads somewhere already refuted: so does every alternative here.
    if (successors.length > 0 && this.readOnly[call.op]) return this.backtrack();
    this.entry = call.next;
    return true;
  }

  /** An unplaced operation had to be placed by here: nothing after this point can come before it. */
  private visitReturn(ret: Event): boolean {
    if (this.pass === 'required' && this.optional > 0) {
      this.pass = 'optional';
      this.entry = this.head.next;
      return true;
    }
    this.noteStuck(ret);
    return this.backtrack();
  }

  /** Places `call` with the first of `successors` from `from` on that leads somewhere new; false if none does. */
  private place(call: Event, successors: readonly S[], from: number): boolean {
    this.placed.add(call.op);
    for (let k = from; k < successors.length; k++) {
      if (!this.memo.visit(this.model.key(successors[k]), this.placed)) continue;
      this.stack.push({ call, pass: this.pass, before: this.state, successors, index: k });
      this.state = successors[k];
      lift(call);
      if (call.match) this.unplaced--;
      this.entry = this.head.next;
      this.pass = 'required';
      return true;
    }
    this.placed.remove(call.op);
    return false;
  }

  /**
   * Takes back placements until one has an alternative left, and moves the
   * walk there; false when none has. A read-only operation was placed as
   * soon as it fit, which never loses a linearization (moving it earlier
   * changes no state and breaks no precedence), so when its placement fails
   * the state before it fails too, and the search takes back the one before.
   */
  private backtrack(): boolean {
    for (let frame = this.stack.pop(); frame !== undefined; frame = this.stack.pop()) {
      const { call } = frame;
      unlift(call);
      this.placed.remove(call.op);
      this.state = frame.before;
      if (call.match) this.unplaced++;
      if (this.readOnly[call.op]) continue;
      this.pass = frame.pass;
      if (!this.place(call, frame.successors, frame.index + 1)) this.entry = call.next;
      return true;
    }
    return false;
  }

  private noteStuck(ret: Event): void {
    if (this.stuck && this.stuck.prefix.length >= this.stack.length) return;
    const open = [ret.op];
    for (let e = this.head.next; e !== null && e !== ret; e = e.next) if (e.isCall && e.op !== ret.op) open.push(e.op);
    this.stuck = { ops: this.ops, prefix: this.stack.map((f) => f.call.op), state: this.state, blocked: ret.op, at: ret.t, open };
  }
}

// ---------------------------------------------------------------------------
// Explanations

function describeOp<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  const output = op.ret === undefined ? undefined : op.output;
  const ret = op.ret === undefined ? 'never returned' : `${op.ret}`;
  return `${op.client} ${model.describe(op.input, output)} [${op.call}, ${ret}]`;
}

function explain<S, I, O>(model: Model<S, I, O>, key: string, total: number, stuck: Stuck<S, I, O>, steps: number): string {
  const describeState = (s: S): string => (model.describeState ? model.describeState(s) : model.key(s));
  const { ops } = stuck;
  const blocked = ops[stuck.blocked];
  const lines = [
    `partition ${JSON.stringify(key)} is not linearizable (${total} operations, ${steps} steps)`,
    `no order places ${describeOp(model, blocked)}`,
    `longest linearizable prefix found: ${stuck.prefix.length} operation(s)`,
  ];
  const skipped = Math.max(0, stuck.prefix.length - EXPLAIN_PREFIX_MAX);
  if (skipped > 0) lines.push(`  … ${skipped} earlier`);
  stuck.prefix.slice(skipped).forEach((i, n) => lines.push(`  ${skipped + n + 1}. ${describeOp(model, ops[i])}`));
  lines.push(`state after it: ${describeState(stuck.state)}`);
  lines.push(`operations called but not placed by ${stuck.at}:`);
  for (const i of stuck.open.slice(0, EXPLAIN_OPEN_MAX)) {
    const op = ops[i];
    const output = op.ret === undefined ? undefined : op.output;
    const allowed = model.step(stuck.state, op.input, output).length > 0;
    lines.push(`  ${describeOp(model, op)}: ${allowed ? 'allowed here, but no order of the rest fits' : 'not allowed in this state'}`);
  }
  if (stuck.open.length > EXPLAIN_OPEN_MAX) lines.push(`  … ${stuck.open.length - EXPLAIN_OPEN_MAX} more`);
  return lines.join('\n');
}
