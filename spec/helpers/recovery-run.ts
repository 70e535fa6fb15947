/**
 * A traced cluster run that exercises the rebuild and page coherence
 * (spec/conformance/rules-recovery.spec.ts): clients read, write and flush
 * shared pages through the memory engine while one node crashes (long
 * enough that the primary anchor hands its arena over, one generation up)
 * and comes back, so rebuild rounds run, some restarted for higher ones.
 */
import type { ClientPageOp } from '../../bus/messages/page.js';
import { addressKey, parseAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';
import { SeededRandom } from '../../runtime/world/random.js';
import { tracedSim, type TracedRun } from './traced-sim.js';

const PERIOD_MS = 100;
const PAGES = 4;
/** Longer than the failover grace (quorum timeout, 8 periods, plus 2 periods): the crashed node's arena moves. */
const DOWN_MS = 2500;
/** A restarted node serves once a round includes it; its own ask repeats only after the coordinator's silence (~11 s here). */
const REJOIN_MS_MAX = 30_000;
/** Calls a rebuild refuses (E_RECOVERING) are tried again this often, up to CALL_TRIES times. */
const CALL_RETRY_MS = 100;
const CALL_TRIES = 40;
/** Longest a concurrent client waits on one call (the engine's timeout is 3 s). */
const CALL_WAIT_MS = 4000;

export interface RecoveryRunOptions {
  seed: number;
  nodes?: number;
  /** The node that crashes and restarts (not the first anchor, unless chosen). */
  crashed?: number;
  /** Clients on every node at once, rather than one call at a time. */
  concurrent?: boolean;
}

export interface RecoveryRun extends TracedRun {
  crashed: number;
  crashAt: number;
  restartAt: number;
}

/** One engine call on node i, tried again while the cluster rebuilds; undefined if it never succeeds. */
async function call(c: SimCluster, i: number, op: ClientPageOp): Promise<unknown> {
  for (let k = 0; k < CALL_TRIES; k++) {
    const engine = c.node(i)?.engine;
    if (!engine) return undefined;
    try {
      return await c.settle(engine.call(op));
    } catch {
      await c.runAsync(CALL_RETRY_MS);
    }
  }
  return undefined;
}

export async function recoveryRun(opts: RecoveryRunOptions): Promise<RecoveryRun> {
  const { seed, nodes = 5, crashed = nodes - 1, concurrent = false } = opts;
  const random = new SeededRandom(seed).derive('clients');
  const faults = { drop: 0.03, duplicate: 0.02, delayMs: [1, 25] as [number, number], reorder: concurrent };
  return tracedSim({ seed, nodes, periodMs: PERIOD_MS, engine: { retryMs: 40, timeoutMs: 3000 }, faults }, async (c) => {
    c.run(30 * PERIOD_MS);
    const { address } = (await call(c, 1, { op: 'reserve', pages: PAGES })) as { address: string };
    const addr = addressKey(parseAddress(address));
    await call(c, 1, { op: 'alloc', addr, pages: PAGES, copies: 2 });
    let fill = 0;
    const write = (): ClientPageOp => ({ op: 'write', addr, data: new Uint8Array(PAGES * PAGE_BYTES).fill(++fill) });
    const read: ClientPageOp = { op: 'read', addr, pages: PAGES };
    const flush: ClientPageOp = { op: 'flush', addr, pages: PAGES };
    /** One call at a time: a write on one node, a read on the next; then a flush. */
    const inTurn = async (live: readonly number[]) => {
      for (let k = 0; k < 2 * live.length; k++) {
        await call(c, live[k % live.length], write());
        await call(c, live[(k + 1) % live.length], read);
      }
      await call(c, live[0], flush);
    };
    const sleep = (ms: number) => new Promise<void>((resume) => c.clock.setTimeout(resume, ms));
    /** Every node's client at once, each call tried once, for `ms`. */
    const atOnce = async (ms: number) => {
      const until = c.clock.now() + ms;
      let running = nodes;
      const client = async (i: number) => {
        while (c.clock.now() < until) {
          const roll = random.next();
          const op = roll < 0.5 ? write() : roll < 0.9 ? read : flush;
          // A call its node's crash strands never settles: stop waiting for it.
          await Promise.race([c.node(i)?.engine.call(op).catch(() => undefined), sleep(CALL_WAIT_MS)]);
          await sleep(20 + random.int(50));
        }
        running--;
      };
      for (let i = 0; i < nodes; i++) void client(i);
      await c.runUntilAsync(() => running === 0, ms + CALL_WAIT_MS + PERIOD_MS, 'the clients to finish');
    };
    const all = Array.from({ length: nodes }, (_, i) => i);
    if (concurrent) await atOnce(2000);
    else await inTurn(all);
    const crashAt = c.clock.now();
    c.crash(crashed);
    if (concurrent) await atOnce(DOWN_MS);
    else {
      await c.runAsync(DOWN_MS);
      await inTurn(all.filter((i) => i !== crashed));
    }
    const restartAt = c.clock.now();
    c.start(crashed);
    await c.runUntilAsync(() => c.node(crashed)?.engine.recoveryState().serving === true, REJOIN_MS_MAX, 'the restarted node to serve', 50);
    if (concurrent) await atOnce(3000);
    else await inTurn(all);
    await c.runAsync(10 * PERIOD_MS);
    return { crashed, crashAt, restartAt };
  });
}
