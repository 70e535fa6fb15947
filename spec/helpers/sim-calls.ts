/**
 * A program's call in the simulator, as the client library makes it: a call
 * refused because the cluster is rebuilding (E_RECOVERING), or because the
 * node has no quorum for a moment, is made again after a pause, until it
 * answers or `maxMs` of simulated time have passed (then its last refusal).
 */
import type { MangroveError } from '../../bus/errors.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';

/** Refusals the call is made again for: a pause of the cluster's, not an answer. */
const PASSING: ReadonlySet<string> = new Set(['E_RECOVERING', 'E_NO_QUORUM', 'E_TIMEOUT', 'E_UNREACHABLE']);

export async function eventually<T>(c: SimCluster, call: () => Promise<T>, maxMs = 30_000, pauseMs = 100): Promise<T> {
  const start = c.clock.now();
  for (;;) {
    try {
      return await c.settle(call(), maxMs);
    } catch (err) {
      const code = (err as MangroveError).code;
      if (!PASSING.has(code) || c.clock.now() - start > maxMs) throw err;
      await c.runAsync(pauseMs);
    }
  }
}
