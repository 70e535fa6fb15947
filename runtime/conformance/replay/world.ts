/**
 * The world a replayed node runs in: a clock that stands still between the
 * recorded inputs and fires a timer only when the trace says it fired, and a
 * transport that delivers recorded envelopes and keeps what the node sends.
 * Both are driven by replay.ts, one input at a time.
 */
import type { Clock } from '../../../bus/clock.js';
import type { Envelope } from '../../../bus/envelope.js';
import { BaseTransport, type WriteResult } from '../../../bus/transport/transport-base.js';

/**
 * Time is set by the replay to each input's recorded time. Timers are
 * numbered in creation order, as TracedClock numbers them in the recorded
 * run, and fire only when asked by number.
 */
export class ReplayClock implements Clock {
  private created = 0;
  private readonly live = new Map<number, () => void>();

  constructor(private time: number) {}

  now(): number {
    return this.time;
  }

  /** Recorded times may step back (a wall clock adjusted); replay follows them. */
  set(t: number): void {
    this.time = t;
  }

  setTimeout(fn: () => void, _ms: number): unknown {
    const id = this.created++;
    this.live.set(id, fn);
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.live.delete(handle as number);
  }

  /** Fires timer `id`; false when the node has no such timer pending. */
  fire(id: number): boolean {
    const fn = this.live.get(id);
    if (!fn) return false;
    this.live.delete(id);
    fn();
    return true;
  }
}

/** A client's reply route in a replay: replies are kept like any send. */
const REPLAY_ROUTE = Object.freeze({ replay: true });

/**
 * Every send is taken (the recorded run traced a send before its link was
 * tried, so what a peer's queue did never shows). The address book and the
 * fault filter are the shared base's, so a send the recorded node could not
 * address is not made here either.
 */
export class ReplayTransport extends BaseTransport {
  readonly sent: Envelope[] = [];

  constructor(self: string, clock: ReplayClock) {
    super({ self, clock });
    this.setTrace({ record: (r) => r.dir === 'send' && this.sent.push(r.env) });
  }

  /** Hands a recorded inbound envelope to the node. */
  feed(env: Envelope): void {
    this.deliver(env, REPLAY_ROUTE);
  }

  /** The sends made since the last call. */
  take(): Envelope[] {
    return this.sent.splice(0);
  }

  protected write(): WriteResult {
    return null;
  }

  /** The trace holds the receipt of what the node looped to itself: it is fed as an input, in its place (and this clock's timers are the node's alone). */
  protected override bringBack(): void {}

  async close(): Promise<void> {
    this.markClosed();
  }
}
