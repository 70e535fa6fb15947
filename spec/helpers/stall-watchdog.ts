/**
 * A simulation that stops advancing: node code caught in an endless chain
 * of microtasks (a node sending to itself without end, say) never yields to
 * a timer, so neither the simulated clock nor mocha's timeout ever fires;
 * the process grows until it runs out of memory, naming no seed. A worker
 * thread watches a beat the simulation gives every simulated period; when
 * none has come for `stallMs` of wall time, it prints the seed and kills
 * the process. It asserts no speed: a simulated step takes microseconds,
 * and the bound is tens of seconds.
 */
import { Worker } from 'node:worker_threads';

const WATCHER = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const shared = new Int32Array(workerData.buffer);
let last = -1;
let since = Date.now();
setInterval(() => {
  const beats = Atomics.load(shared, 0);
  if (beats !== last) {
    last = beats;
    since = Date.now();
    return;
  }
  if (Atomics.load(shared, 2) === 0 || Date.now() - since < workerData.stallMs) return;
  const seed = Atomics.load(shared, 1);
  writeSync(2, '\\nseed ' + seed + ': the simulation stopped advancing for ' + workerData.stallMs / 1000 + ' s of wall time (node code in an endless chain of microtasks: a livelock)\\n    replay with MANGROVE_SEED=' + seed + '\\n');
  process.kill(process.pid, 'SIGKILL');
}, 1000);
`;

export class StallWatchdog {
  /** [beats, seed, armed] */
  private readonly shared = new Int32Array(new SharedArrayBuffer(12));
  private readonly worker: Worker;

  constructor(stallMs = 30_000) {
    this.worker = new Worker(WATCHER, { eval: true, workerData: { buffer: this.shared.buffer, stallMs } });
    this.worker.unref();
  }

  /** Watches the run of `seed` from now on. */
  arm(seed: number): void {
    Atomics.store(this.shared, 1, seed);
    this.beat();
    Atomics.store(this.shared, 2, 1);
  }

  /** The simulation advanced. */
  beat(): void {
    Atomics.add(this.shared, 0, 1);
  }

  disarm(): void {
    Atomics.store(this.shared, 2, 0);
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
