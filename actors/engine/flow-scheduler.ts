/**
 * The flow scheduler (SPEC.md M13; patent FIG. 10): every engine request,
 * from a local client or from another node, is an op-code dispatched to an
 * applet, a small async program composing the elements' APIs (directory,
 * caches, copysets, remote operations, policy).
 *
 * - Applets run concurrently, except that requests with the same key (for
 *   page requests, the page address) run one at a time in arrival order, so
 *   an applet never sees its page change under it half-way.
 * - An applet may dispatch further requests through its context. A nested
 *   request for a key its caller already holds runs at once (the caller is
 *   waiting on it), so recursion never deadlocks on its own key. A nested
 *   request for another key waits its turn like any other: applets that
 *   hold one page and need another take them in address order, or two of
 *   them could wait on each other.
 * - `replace` swaps an op-code's applet at run time: requests dispatched
 *   from then on run the new one; those already running finish on the old.
 * - Queues are bounded: past `queuedMax` waiting requests for one key, a
 *   dispatch fails at once with `E_BUSY` rather than queue without limit.
 * - Every request is timed from dispatch to settle, its wait in the queue
 *   included, into its op-code's latency histogram (op-latency.ts;
 *   `latencies()`): two reads of the injected clock and a few increments.
 *   The times are only reported, never acted on, so a simulation stays
 *   deterministic whatever clock it runs on. A program's reads and writes
 *   answered on the fast path (fast-path.ts) never reach the scheduler and
 *   are not timed; their nested steps (`page.*`) are timed as their own ops.
 */
import { MangroveError } from '../../bus/errors.js';
import { OpLatency, type LatencySnapshot } from './op-latency.js';

/** What an applet is given besides its input. */
export interface AppletContext {
  /** Where the request came from: `local`, or the id of the node that sent it. */
  readonly origin: string;
  /** Dispatches a nested request, holding this request's key. */
  dispatch<O = unknown>(op: string, input: unknown): Promise<O>;
}

export type Applet<I = unknown, O = unknown> = (input: I, ctx: AppletContext) => Promise<O>;

export interface OpCode<I = unknown, O = unknown> {
  applet: Applet<I, O>;
  /** Requests with equal keys run one at a time; no key: no ordering. */
  key?: (input: I) => string | undefined;
}

export interface OpStats {
  dispatched: number;
  running: number;
  failed: number;
  /** Times the applet was replaced. */
  replaced: number;
}

export const schedulerLimits = {
  /** Requests waiting for one key before dispatch refuses more. */
  queuedMax: 10_000,
} as const;

interface Held {
  keys: ReadonlySet<string>;
}

export class FlowScheduler {
  private readonly ops = new Map<string, OpCode>();
  private readonly stats = new Map<string, OpStats>();
  private readonly latency = new Map<string, OpLatency>();
  /** Per key, the tail of its chain of requests and how many wait on it. */
  private readonly lanes = new Map<string, { tail: Promise<void>; length: number }>();

  /** `now`: a monotonic clock in ms, read only to time requests. */
  constructor(private readonly now: () => number = () => performance.now()) {}

  register<I, O>(op: string, code: OpCode<I, O>): void {
    if (this.ops.has(op)) throw new MangroveError('E_BAD_ARGUMENT', `op-code ${op} is already registered; replace() swaps its applet`);
    this.ops.set(op, code as OpCode);
    this.stats.set(op, { dispatched: 0, running: 0, failed: 0, replaced: 0 });
    this.latency.set(op, new OpLatency());
  }

  /** Swaps the applet of `op` for requests dispatched from now on; returns the old one. */
  replace<I, O>(op: string, applet: Applet<I, O>): Applet<I, O> {
    const code = this.codeOf(op);
    const old = code.applet as Applet<I, O>;
    this.ops.set(op, { ...code, applet: applet as Applet });
    this.stats.get(op)!.replaced++;
    return old;
  }

  opCodes(): string[] {
    return [...this.ops.keys()];
  }

  statsOf(op: string): OpStats {
    this.codeOf(op);
    return { ...this.stats.get(op)! };
  }

  /** Per op-code with at least one settled request, how long its requests took (copies). */
  latencies(): Record<string, LatencySnapshot> {
    const out: Record<string, LatencySnapshot> = {};
    for (const [op, l] of this.latency) if (l.count > 0) out[op] = l.snapshot();
    return out;
  }

  /** Whether no request with `key` is running or waiting: one dispatched now would start at once. */
  idle(key: string): boolean {
    return !this.lanes.has(key);
  }

  /** Runs `op` on `input`; resolves with the applet's result. */
  dispatch<O = unknown>(op: string, input: unknown, origin = 'local'): Promise<O> {
    return this.run<O>(op, input, origin, { keys: new Set() });
  }

  private run<O>(op: string, input: unknown, origin: string, held: Held): Promise<O> {
    let code: OpCode;
    try {
      code = this.codeOf(op);
    } catch (err) {
      return Promise.reject(err);
    }
    // The applet is chosen at dispatch: a later replace() does not reach a queued request.
    const applet = code.applet;
    const key = code.key?.(input);
    const stats = this.stats.get(op)!;
    const latency = this.latency.get(op)!;
    const startedMs = this.now();
    stats.dispatched++;
    const keys = key === undefined ? held.keys : new Set([...held.keys, key]);
    const ctx: AppletContext = {
      origin,
      dispatch: <R>(nested: string, nestedInput: unknown) => this.run<R>(nested, nestedInput, origin, { keys }),
    };
    const go = async (): Promise<O> => {
      stats.running++;
      try {
        const out = (await applet(input, ctx)) as O;
        latency.record(this.now() - startedMs, false);
        return out;
      } catch (err) {
        stats.failed++;
        latency.record(this.now() - startedMs, true);
        throw err;
      } finally {
        stats.running--;
      }
    };
    if (key === undefined || held.keys.has(key)) return go();
    return this.inLane(key, go, () => latency.record(this.now() - startedMs, true));
  }

  /** Runs `task` after every earlier task of `key` has settled; `refused` is called when the lane is full. */
  private inLane<O>(key: string, task: () => Promise<O>, refused: () => void): Promise<O> {
    const lane = this.lanes.get(key) ?? { tail: Promise.resolve(), length: 0 };
    if (lane.length >= schedulerLimits.queuedMax) {
      refused();
      return Promise.reject(new MangroveError('E_BUSY', `${lane.length} requests already wait for ${key}; try again later`));
    }
    lane.length++;
    this.lanes.set(key, lane);
    const result = lane.tail.then(task);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    lane.tail = settled;
    void settled.then(() => {
      lane.length--;
      if (lane.length === 0 && this.lanes.get(key) === lane) this.lanes.delete(key);
    });
    return result;
  }

  private codeOf(op: string): OpCode {
    const code = this.ops.get(op);
    if (!code) throw new MangroveError('E_NOT_FOUND', `no applet handles op-code ${JSON.stringify(op)}; the op-codes are: ${[...this.ops.keys()].join(', ') || 'none'}`);
    return code;
  }
}
