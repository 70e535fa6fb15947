/**
 * SimCluster's waits on virtual time: a condition that holds returns the
 * simulated time it took; one that never holds fails, naming it, instead of
 * returning a value a caller could forget to check.
 */
import { expect } from 'chai';
import { SimCluster } from '../../runtime/sim/cluster.js';
import { errorOf } from '../helpers/error-of.js';

const PERIOD = 100;

describe('SimCluster.runUntil and runUntilAsync', () => {
  it('return the simulated time the condition took, in steps', async () => {
    const c = new SimCluster({ seed: 1, nodes: 1, periodMs: PERIOD });
    const start = c.clock.now();
    expect(c.runUntil(() => c.clock.now() - start >= 120, 1000, 'two steps and a bit')).to.equal(150);
    expect(c.runUntil(() => true, 1000, 'nothing')).to.equal(0);
    const resumed = c.clock.now();
    expect(await c.runUntilAsync(() => c.clock.now() - resumed >= 25, 1000, 'three steps')).to.equal(30);
  });

  it('fail with E_TIMEOUT naming what they waited for, described when they give up', async () => {
    const c = new SimCluster({ seed: 1, nodes: 3, periodMs: PERIOD });
    const start = c.clock.now();
    let asked = 0;
    const sync = errorOf(() => c.runUntil(() => false, 500, () => `the impossible (asked ${++asked} time)`));
    expect(sync).to.equal('E_TIMEOUT: timed out after 500 simulated ms waiting for the impossible (asked 1 time)');
    expect(c.clock.now() - start, 'the whole bound, and the step that passed it').to.equal(550);
    const async = await c.runUntilAsync(() => false, 200, 'the impossible, again').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(async).to.include({ code: 'E_TIMEOUT', message: 'timed out after 200 simulated ms waiting for the impossible, again' });
  });

  it('settle fails the same way for work that never ends', async () => {
    const c = new SimCluster({ seed: 1, nodes: 1, periodMs: PERIOD });
    const err = await c.settle(new Promise(() => undefined), 300).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.include({ code: 'E_TIMEOUT', message: 'timed out after 300 simulated ms waiting for the work to settle' });
  });
});
