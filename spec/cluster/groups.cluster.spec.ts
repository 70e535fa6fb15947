/**
 * The hierarchical heartbeat across real processes (M4): eight nodes in two
 * groups, each with its own monitor; a node killed in one group is counted
 * failed by every node of both groups.
 */
import { expect } from 'chai';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { until } from '../helpers/until.js';

const PERIOD = 200;

describe('grouped membership across real processes', function () {
  this.timeout(90_000);
  let cluster: ProcessCluster;

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 8, anchors: 3, groups: 2, periodMs: PERIOD });
    const took = await cluster.waitFor(() => cluster.converged(), 40_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || `node-0 log:\n${cluster.log(0).slice(-3000)}`}`);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('each group has its own monitor, and one upper monitor links them', async () => {
    // Polled: on a loaded machine a node may miss one status request.
    const all = async () => {
      const s = await cluster.statuses();
      return s.every((x) => x !== undefined) ? (s as NonNullable<(typeof s)[number]>[]) : undefined;
    };
    const s = await until('a status from every node', all, { timeoutMs: 10_000 });
    const byGroup = new Map<number, Set<string | null>>();
    for (const x of s) byGroup.set(x.group, (byGroup.get(x.group) ?? new Set()).add(x.monitor));
    expect([...byGroup.keys()].sort()).to.deep.equal([0, 1]);
    for (const monitors of byGroup.values()) expect(monitors.size).to.equal(1);
    // Every node names the same monitor last: the top of the hierarchy, one of the two group monitors.
    const tops = new Set(s.map((x) => x.monitors.at(-1)));
    expect(tops.size).to.equal(1);
    expect([...byGroup.get(0)!, ...byGroup.get(1)!]).to.include([...tops][0]);
    for (const x of s) expect(x.nodes.filter((n) => n.alive)).to.have.length(8);
  });

  it('a node killed in one group is counted failed in both', async () => {
    const s = await cluster.statuses();
    const victim = s.findIndex((x, i) => i >= 3 && x?.group === 1 && x.self !== x.monitor);
    expect(victim, 'a group-1 member to kill').to.be.at.least(0);
    const id = s[victim]!.self;
    await cluster.kill(victim);
    const survivors = [...Array(8).keys()].filter((i) => i !== victim);
    const took = await cluster.waitFor(async () => {
      const now = await cluster.statuses(survivors);
      return survivors.every((i) => now[i]?.nodes.find((n) => n.id === id)?.alive === false);
    }, 25 * PERIOD, 20);
    // The bound on detection is the simulator's to check; here: it crosses groups at all, on real processes.
    expect(took, 'every survivor, in both groups').to.be.at.least(0);
    cluster.spawn(victim);
    expect(await cluster.waitFor(() => cluster.converged(), 30_000), 'back in').to.be.at.least(0);
  });
});
