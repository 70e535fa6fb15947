/**
 * What a mount counts (SPEC.md M28): operations, errors, bytes and failovers
 * since it started, and the latency of the operations of each report period,
 * which the session sends to its node (`status`, /metrics).
 */

/** Latencies kept per report period at most (a uniform sample beyond it). */
const LATENCY_SAMPLES_MAX = 4096;

export class MountStats {
  ops = 0;
  errors = 0;
  bytesRead = 0;
  bytesWritten = 0;
  failovers = 0;
  private latencies: number[] = [];
  private seen = 0;

  /** One operation done in `ms`, failed or not. */
  done(ms: number, failed: boolean): void {
    this.ops++;
    if (failed) this.errors++;
    this.seen++;
    if (this.latencies.length < LATENCY_SAMPLES_MAX) this.latencies.push(ms);
    else {
      // Reservoir sampling: every operation of the period is as likely to be kept.
      const at = Math.floor(Math.random() * this.seen);
      if (at < LATENCY_SAMPLES_MAX) this.latencies[at] = ms;
    }
  }

  /** The counts, and the latency percentiles of the period since the last report (then a new period starts). */
  report(): { ops: number; errors: number; bytesRead: number; bytesWritten: number; failovers: number; latencyMsP50: number; latencyMsP99: number } {
    const sorted = this.latencies.sort((a, b) => a - b);
    const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
    const out = { ops: this.ops, errors: this.errors, bytesRead: this.bytesRead, bytesWritten: this.bytesWritten, failovers: this.failovers, latencyMsP50: at(0.5), latencyMsP99: at(0.99) };
    this.latencies = [];
    this.seen = 0;
    return out;
  }
}
