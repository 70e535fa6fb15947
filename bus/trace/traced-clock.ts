/**
 * A clock that tells a trace when each of its timers fires. A node's inputs
 * are the envelopes it accepts and the timers it fires; the transport traces
 * the first, this the second, so a trace holds every input in the order the
 * node took it and replay (runtime/conformance/replay/replay.ts) can feed them back.
 *
 * Timers are numbered in the order they are created, from 0 per clock. A
 * node's timers are created only while it handles an input, so the same
 * inputs make the same numbering: the `timer` of a record names the same
 * timer in the replay. Give this clock to the node only; a transport's own
 * timers would number timers the node never made.
 */
import type { Clock } from '../clock.js';
import type { TraceSink } from '../transport/transport.js';

export class TracedClock implements Clock {
  private created = 0;
  /** Timer records the sink refused (its own errors are its to report). */
  failures = 0;

  constructor(
    private readonly inner: Clock,
    private readonly node: string,
    private readonly sink: TraceSink,
  ) {}

  now(): number {
    return this.inner.now();
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = this.created++;
    return this.inner.setTimeout(() => {
      try {
        this.sink.note?.({ t: this.inner.now(), node: this.node, dir: 'timer', timer });
      } catch {
        // A trace that cannot be written must not stop the node's timers.
        this.failures++;
      }
      fn();
    }, ms);
  }

  clearTimeout(handle: unknown): void {
    this.inner.clearTimeout(handle);
  }
}
