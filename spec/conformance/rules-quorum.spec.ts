/**
 * The quorum rule (M5, M27): clean simulated runs through partitions claim
 * quorum only with a majority of votes behind them; a side cut off from the
 * majority that goes on claiming is caught.
 */
import { expect } from 'chai';
import { isEnvelopeRecord, type TraceRecord } from '../../bus/transport/transport.js';
import { checkEntries } from '../../runtime/conformance/check.js';
import { tracedSim, type TracedRun } from '../helpers/traced-sim.js';

const PERIOD = 100;

type Run = TracedRun & { partitionAt: number; healAt: number };

/** Anchors 0, 1, 2; nodes 0, 3, 4 are cut off from the other two anchors for 40 periods. */
async function simulate(seed: number, nodes: number, groups = 1): Promise<Run> {
  return tracedSim({ seed, nodes, groups, periodMs: PERIOD, faults: { drop: 0.03, duplicate: 0.02, delayMs: [1, 30] } }, (c) => {
    c.run(4000);
    const partitionAt = c.clock.now();
    c.partition([[0, 3, 4]]);
    c.run(40 * PERIOD);
    const healAt = c.clock.now();
    c.heal();
    c.run(3000);
    return { partitionAt, healAt };
  });
}

interface Pulse {
  quorum?: { has: boolean; ttlMs: number };
}

describe('conformance: quorum rule', function () {
  this.timeout(60_000);

  for (const [seed, nodes, groups] of [
    [21, 6, 1],
    [22, 9, 2],
    [23, 12, 3],
  ] as const) {
    it(`a partitioned run claims quorum only with a majority behind it (seed ${seed}, ${groups} group(s))`, async () => {
      const { entries } = await simulate(seed, nodes, groups);
      const r = await checkEntries([entries], { protocols: ['quorum'] });
      expect(r.skipped, `seed ${seed}`).to.deep.equal([]);
      expect(r.rules).to.deep.equal(['quorum.majority-reached']);
      expect(r.violations.map((v) => v.detail), `seed ${seed}`).to.deep.equal([]);
      // The majority side went on claiming: the rule had claims to judge.
      const claims = entries.filter((e) => isEnvelopeRecord(e) && e.dir === 'send' && (e.env.body as Pulse).quorum?.has === true);
      expect(claims.length, `seed ${seed}`).to.be.greaterThan(50);
    });
  }

  it('catches the minority side claiming quorum long after it was cut off', async () => {
    const { entries, cluster, partitionAt, healAt } = await simulate(24, 6);
    const minority = new Set([0, 3, 4].map((i) => cluster.id(i)));
    const quorumTimeoutMs = 8 * PERIOD;
    // Claims made 20 periods into the partition, past any inherited view and quorum timeout.
    const at = entries.findIndex(
      (e) => isEnvelopeRecord(e) && e.dir === 'send' && minority.has(e.node) && e.t > partitionAt + 20 * PERIOD && e.t < healAt && (e.env.body as Pulse).quorum !== undefined,
    );
    expect(at, 'a minority send carrying quorum state').to.be.greaterThan(0);
    const rec = entries[at] as TraceRecord;
    expect((rec.env.body as Pulse).quorum!.has, 'the minority had given quorum up').to.equal(false);
    const planted = entries.map((e, i) =>
      i === at ? { ...rec, env: { ...rec.env, body: { ...(rec.env.body as object), quorum: { has: true, ttlMs: quorumTimeoutMs } } } } : e,
    );
    const r = await checkEntries([planted], { protocols: ['quorum'] });
    expect(r.violations.map((v) => [v.rule, v.node, v.t])).to.deep.equal([['quorum.majority-reached', rec.node, rec.t]]);
    expect(r.violations[0].detail).to.match(/only 1 of 3 votes/);
  });

  it('is skipped, saying why, on traces without start records', async () => {
    const { entries } = await simulate(25, 5);
    const r = await checkEntries([entries.filter(isEnvelopeRecord)], { protocols: ['quorum'] });
    expect(r.rules).to.deep.equal([]);
    expect(r.skipped).to.deep.equal([{ rule: 'quorum.majority-reached', reason: 'the traces have no start records, so the anchors and their votes are unknown' }]);
  });
});
