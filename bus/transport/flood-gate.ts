/**
 * A cap on what one inbound connection may send (a token bucket per link):
 * a process that floods a node's port gets its excess refused and counted
 * ('flood') before it is even decoded, while every other connection is
 * served as before. ZeroMQ's ROUTER already reads its connections in turn,
 * so a flood cannot starve the others of the socket; this keeps it from
 * starving them of the node's time. The cap counts wire messages (a turn's
 * envelopes to one peer travel as one), so it sits far above what any one
 * honest link sends.
 */
import type { Clock } from '../clock.js';

export interface FloodLimit {
  /** Wire messages a connection may send a second, on average. */
  perSecond: number;
  /**
   * How many it may send at once after a quiet while; default a tenth of a
   * second's worth. Not more: what is let through is served, and a second's
   * worth at once (thousands of status requests) stalled a node long enough
   * to be counted failed (spec/cluster/flood.cluster.spec.ts).
   */
  burst?: number;
}

/** Links whose buckets are kept; the least recently heard goes beyond. */
const LINKS_KEPT = 4096;

interface Bucket {
  tokens: number;
  at: number;
}

export class FloodGate {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;

  constructor(
    private readonly limit: FloodLimit,
    private readonly clock: Clock,
  ) {
    this.burst = limit.burst ?? Math.max(1, Math.ceil(limit.perSecond / 10));
  }

  /** Whether the link `key` may send one more wire message now (it is then counted). */
  admit(key: string): boolean {
    const now = this.clock.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.burst, at: now };
      if (this.buckets.size >= LINKS_KEPT) this.buckets.delete(this.buckets.keys().next().value!);
    } else {
      this.buckets.delete(key);
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.limit.perSecond) / 1000);
      b.at = now;
    }
    // Re-inserted: the Map keeps the links in the order they were last heard.
    this.buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
