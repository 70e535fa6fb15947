/**
 * The fast path (actors/engine/fast-path.ts) is the full path with the waits
 * taken out: the same seeded run of calls, one at a time from clients on
 * every node, gives the same history (every answer, version and page value)
 * with the fast path on and off, and the fast path did answer some of them.
 * Concurrent calls under faults are checked linearizable with the fast path
 * on, as in every engine simulation (spec/sim/engine.sim.spec.ts).
 */
import { expect } from 'chai';
import { MangroveError } from '../../bus/errors.js';
import type { FlushResult, ReadResult, WriteResult } from '../../bus/messages/page.js';
import { addressKey, formatAddress } from '../../machines/memory/address.js';
import { SeededRandom } from '../../runtime/world/random.js';
import { forSeedsAsync } from '../helpers/sim-checks.js';
import { formedCluster, pageOf, sharedPages } from '../helpers/page-workload.js';

const SEEDS = [3, 17, 101];
const CALLS = 150;

interface Outcome {
  history: string[];
  fastCalls: number;
}

/** One call at a time, each from a random node: what each returned, in order. */
async function run(seed: number, fastPath: boolean): Promise<Outcome> {
  const r = new SeededRandom(seed);
  const c = await formedCluster(seed, 3 + r.int(3), { fastPath });
  // Two pages homed on node 0, two on node 1; pages 0-1 and 2-3 are contiguous.
  const pages = await sharedPages(c, 2);
  const history: string[] = [];
  let token = 0;
  for (let n = 0; n < CALLS; n++) {
    const node = r.int(c.size);
    const at = r.int(pages.length);
    const page = pages[at];
    const roll = r.next();
    const engine = c.node(node)!.engine;
    const what = `n${node} ${formatAddress(page)}`;
    try {
      if (roll < 0.4) {
        const got = (await c.settle(engine.call({ op: 'read', addr: addressKey(page), pages: 1 }))) as ReadResult;
        history.push(`${what} read v${got.versions[0]} token ${new DataView(got.data.buffer, got.data.byteOffset).getFloat64(0)}`);
      } else if (roll < 0.8) {
        const value = ++token;
        const got = (await c.settle(engine.call({ op: 'write', addr: addressKey(page), data: pageOf(value) }))) as WriteResult;
        history.push(`${what} write ${value} -> v${got.versions[0]}`);
      } else if (roll < 0.9) {
        // Two pages at once: the fast path takes a range only when it holds every page of it.
        const first = pages[at - (at % 2)];
        const got = (await c.settle(engine.call({ op: 'read', addr: addressKey(first), pages: 2 }))) as ReadResult;
        history.push(`n${node} ${formatAddress(first)} read 2 v${got.versions.join(',')} bytes ${got.data.byteLength}`);
      } else {
        const got = (await c.settle(engine.call({ op: 'flush', addr: addressKey(page), pages: 1 }))) as FlushResult;
        history.push(`${what} flush to ${[...got.holders[0]].sort().join(',')}`);
      }
    } catch (err) {
      history.push(`${what} refused ${err instanceof MangroveError ? err.code : String(err)}`);
    }
  }
  const fastCalls = [...Array(c.size).keys()].reduce((sum, i) => sum + c.node(i)!.engine.fastCalls, 0);
  await c.stopAll();
  return { history, fastCalls };
}

describe('the engine\'s fast path', function () {
  this.timeout(300_000);

  it(`gives the same history as the full path (seeds ${SEEDS.join(', ')}, ${CALLS} calls each)`, async () => {
    await forSeedsAsync(SEEDS, async (seed) => {
      const on = await run(seed, true);
      const off = await run(seed, false);
      expect(off.fastCalls, 'the full path alone when the fast path is off').to.equal(0);
      expect(on.fastCalls, 'calls the fast path answered').to.be.above(CALLS / 10);
      expect(on.history).to.deep.equal(off.history);
      expect(on.history.filter((h) => h.includes('refused')), 'calls refused').to.deep.equal([]);
    });
  });
});
