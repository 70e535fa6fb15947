/**
 * What a bench that starts processes must stop whatever happens: each is
 * stopped on the way out (`stopAll`), killed on exit as a last resort, and
 * SIGINT or SIGTERM stops them all and ends the bench (no further part
 * starts once `stopping` is set).
 */

export interface Stoppable {
  stop: () => Promise<void>;
  kill: () => void;
}

export class Cleanup {
  readonly running = new Set<Stoppable>();
  /** Set by SIGINT or SIGTERM. */
  stopping = false;

  constructor(say: (line: string) => void) {
    process.on('exit', () => {
      for (const r of this.running) r.kill();
    });
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.once(sig, () => {
        this.stopping = true;
        say(`${sig}, stopping what it started`);
        void this.stopAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
      });
    }
  }

  /** Stops every process still running, the last started first. */
  async stopAll(): Promise<void> {
    for (const r of [...this.running].reverse()) {
      await r.stop().catch(() => undefined);
      this.running.delete(r);
    }
  }
}
