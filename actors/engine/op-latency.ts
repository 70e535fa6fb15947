/**
 * How long one op-code's requests took (flow-scheduler.ts times them): a
 * histogram over fixed, log-spaced bucket bounds, so every node, /metrics
 * and the dashboard agree on them and two snapshots subtract bucket by
 * bucket. Recording is a few compares and three increments; memory is one
 * small array an op-code, whatever the traffic.
 */

/**
 * Upper bounds of the buckets, ms, inclusive (a request of exactly 1 ms is
 * in the `1` bucket). A last bucket, past `10000`, holds the rest (+Inf).
 */
export const LATENCY_BOUNDS_MS: readonly number[] = Object.freeze([0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]);

export interface LatencySnapshot {
  /** Requests settled. */
  n: number;
  /** Of them, settled with an error (a refusal included). */
  failed: number;
  sumMs: number;
  /** Requests per bucket (not cumulative), one more than `LATENCY_BOUNDS_MS`: the last is +Inf. */
  buckets: number[];
}

export class OpLatency {
  private n = 0;
  private failed = 0;
  private sumMs = 0;
  private readonly buckets: number[] = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);

  /** One settled request that took `ms` (a negative or NaN time, from a clock that stepped back, counts as 0). */
  record(ms: number, failed: boolean): void {
    const t = ms > 0 ? ms : 0;
    this.n++;
    if (failed) this.failed++;
    this.sumMs += t;
    this.buckets[bucketOf(t)]++;
  }

  get count(): number {
    return this.n;
  }

  /** A copy: later requests do not change it. */
  snapshot(): LatencySnapshot {
    return { n: this.n, failed: this.failed, sumMs: this.sumMs, buckets: [...this.buckets] };
  }
}

/** The index of the bucket `ms` falls in: the first bound at least `ms`, else the last (+Inf) bucket. */
export function bucketOf(ms: number): number {
  let i = 0;
  while (i < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[i]) i++;
  return i;
}

/** The requests a program makes of a node (its page and file-system calls), not the engine's own steps or other nodes' calls. */
export function isClientOp(op: string): boolean {
  return op.startsWith('client.') || op.startsWith('fs.');
}

/** The snapshots of the client ops only (`isClientOp`). */
export function clientLatencies(all: Record<string, LatencySnapshot>): Record<string, LatencySnapshot> {
  return Object.fromEntries(Object.entries(all).filter(([op]) => isClientOp(op)));
}
