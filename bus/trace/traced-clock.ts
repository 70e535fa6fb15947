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
 *
 * While the node handles an input its clock stands still at the input's
 * recorded time, as it does in replay and in the simulator: a decision the
 * node makes by reading the clock (a fetch due once a period, a retry not
 * before some time) then reads what the replay will read, not a wall clock
 * that ticked over a millisecond meanwhile. `inputs(sink)` is the sink to
 * give the transport so its receipts set the time; timers set it as they
 * fire. Timers still run on the inner clock's time.
 */
import type { Clock } from '../clock.js';
import type { TraceSink } from '../transport/transport.js';

export class TracedClock implements Clock {
  private created = 0;
  /** The recorded time of the input being handled (the last one), once there is one and `inputs` is wired. */
  private inputTime: number | undefined;
  private standsStill = false;
  /** Timer records the sink refused (its own errors are its to report). */
  failures = 0;

  constructor(
    private readonly inner: Clock,
    private readonly node: string,
    private readonly sink: TraceSink,
  ) {}

  now(): number {
    return this.inputTime ?? this.inner.now();
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = this.created++;
    return this.inner.setTimeout(() => {
      const t = this.inner.now();
      if (this.standsStill) this.inputTime = t;
      try {
        this.sink.note?.({ t, node: this.node, dir: 'timer', timer });
      } catch {
        // A trace that cannot be written must not stop the node's timers.
        this.failures++;
      }
      fn();
    }, ms);
  }

  /** `sink` for the node's transport: what it records passes on, and each receipt sets the clock's time. */
  inputs(sink: TraceSink): TraceSink {
    this.standsStill = true;
    return {
      record: (rec) => {
        if (rec.dir === 'recv' && rec.node === this.node) this.inputTime = rec.t;
        sink.record(rec);
      },
      note: sink.note && ((mark) => sink.note?.(mark)),
    };
  }

  clearTimeout(handle: unknown): void {
    this.inner.clearTimeout(handle);
  }
}
