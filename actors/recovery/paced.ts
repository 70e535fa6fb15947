/**
 * A background loop, paced (M15): one step every `intervalMs`, the next
 * scheduled only when the last has ended, so a slow step never overlaps the
 * next and a busy node never runs them back to back. A step that should
 * not run now (a rebuild, no quorum) is skipped, and found again later.
 */
import type { Clock } from '../../bus/clock.js';

export class Paced {
  private timer: unknown;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly step: () => Promise<void>,
  ) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      void this.step().finally(() => this.schedule());
    }, this.intervalMs);
  }
}
