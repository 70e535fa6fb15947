/**
 * The two clocks (DESIGN.md, three worlds). `WallClock` is the process's own
 * time; `SimClock` is virtual time that moves only when the simulator or a
 * spec advances it, firing due timers in (time, creation order), so a run is
 * a pure function of its seed. Both satisfy XState's clock option.
 */
import { assert } from '../../bus/assert.js';
import type { Clock } from '../../bus/clock.js';

export class WallClock implements Clock {
  now(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  }
  clearTimeout(handle: unknown): void {
    clearTimeout(handle as NodeJS.Timeout);
  }
}

/**
 * A pending timer, and its handle. Clearing one only marks it (`fn` gone):
 * it leaves the heap when it reaches the top, so a clear costs nothing and a
 * timer is one allocation, with no index beside the heap to keep in step.
 */
class SimTimer {
  constructor(
    readonly at: number,
    readonly order: number,
    public fn: (() => void) | null,
  ) {}
}

export class SimClock implements Clock {
  private time: number;
  private order = 0;
  /** A binary min-heap in (at, order): the earliest timer, created first among equals, on top. */
  private readonly heap: SimTimer[] = [];
  private live = 0;

  constructor(startMs = 0) {
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const t = new SimTimer(this.time + Math.max(0, ms), this.order++, fn);
    this.live++;
    this.push(t);
    return t;
  }

  /** Clearing a fired or cleared timer, or what is no handle of this clock, does nothing. */
  clearTimeout(handle: unknown): void {
    if (!(handle instanceof SimTimer) || handle.fn === null) return;
    handle.fn = null;
    this.live--;
  }

  /** Timers not yet fired or cleared. */
  pending(): number {
    return this.live;
  }

  /** Time of the next live timer, or undefined when none is pending. */
  nextAt(): number | undefined {
    this.dropCleared();
    return this.heap[0]?.at;
  }

  /** Runs every timer due up to `now + ms` (including ones they schedule), then sets the time. */
  advance(ms: number): void {
    this.runUntil(this.time + ms);
  }

  runUntil(target: number): void {
    while (this.fireNext(target));
    this.time = Math.max(this.time, target);
  }

  /**
   * `runUntil` for code that awaits: after each timer, every microtask and
   * immediate it started runs before the next timer fires, so promise
   * chains advance in simulated time as they would in real time.
   */
  async runUntilAsync(target: number): Promise<void> {
    do await new Promise((resolve) => setImmediate(resolve));
    while (this.fireNext(target));
    this.time = Math.max(this.time, target);
  }

  /** Fires the earliest timer due by `target`; false when there is none. */
  private fireNext(target: number): boolean {
    this.dropCleared();
    const top = this.heap[0];
    if (top === undefined || top.at > target) return false;
    const fn = top.fn;
    assert(fn !== null, 'cleared timers are dropped before the top one fires');
    this.pop();
    top.fn = null;
    this.live--;
    this.time = Math.max(this.time, top.at);
    fn();
    return true;
  }

  private dropCleared(): void {
    while (this.heap.length > 0 && this.heap[0].fn === null) this.pop();
  }

  /** Adds `t`, moving the larger parents down into the hole until its place is found. */
  private push(t: SimTimer): void {
    const h = this.heap;
    let i = h.length;
    h.push(t);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!earlier(t, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = t;
  }

  /** Removes the top, sinking the last timer from the root into its place. */
  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    const n = h.length;
    if (last === undefined || n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && earlier(h[r], h[l]) ? r : l;
      if (!earlier(h[m], last)) break;
      h[i] = h[m];
      i = m;
    }
    h[i] = last;
  }
}

function earlier(a: SimTimer, b: SimTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}
