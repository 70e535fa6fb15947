/**
 * The two clocks (DESIGN.md, three worlds). `WallClock` is the process's own
 * time; `SimClock` is virtual time that moves only when the simulator or a
 * spec advances it, firing due timers in (time, creation order), so a run is
 * a pure function of its seed. Both satisfy XState's clock option.
 */
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

interface Timer {
  at: number;
  order: number;
  fn: () => void;
}

export class SimClock implements Clock {
  private time: number;
  private order = 0;
  private heap: Timer[] = [];
  private live = new Map<number, Timer>();

  constructor(startMs = 0) {
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const t: Timer = { at: this.time + Math.max(0, ms), order: this.order++, fn };
    this.live.set(t.order, t);
    this.push(t);
    return t.order;
  }

  clearTimeout(handle: unknown): void {
    this.live.delete(handle as number);
  }

  /** Timers not yet fired or cleared. */
  pending(): number {
    return this.live.size;
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
    if (!top || top.at > target) return false;
    this.pop();
    this.live.delete(top.order);
    this.time = Math.max(this.time, top.at);
    top.fn();
    return true;
  }

  private dropCleared(): void {
    while (this.heap.length > 0 && !this.live.has(this.heap[0].order)) this.pop();
  }

  private less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.order < b.order);
  }

  private push(t: Timer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l], h[m])) m = l;
      if (r < h.length && this.less(h[r], h[m])) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
}
