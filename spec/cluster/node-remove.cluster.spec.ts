/**
 * `mangrove node remove` against real node processes over ZeroMQ (M2): four
 * nodes, three of them anchors. Refusals change nothing (the node stays
 * listed, alive, running); a removal with --force deletes a running node,
 * which learns it, says why and exits by itself instead of joining again,
 * and the others stop listing it; started again, it joins as a new member.
 * Every wait is a bounded loop; every process is stopped by pid
 * (ProcessCluster).
 */
import { expect } from 'chai';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { mangrove } from '../helpers/run-cli.js';
import { until } from '../helpers/until.js';

const PERIOD = 200;
/** The exit status of a removed node (runtime/node/start.ts, EXIT_REMOVED). */
const EXIT_REMOVED = 3;

describe('mangrove node remove, across real processes', function () {
  this.timeout(90_000);
  let cluster: ProcessCluster;
  let ids: string[];

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 4, anchors: 3, periodMs: PERIOD });
    const took = await cluster.waitFor(() => cluster.converged(), 30_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || `node-0 log:\n${cluster.log(0).slice(-3000)}`}`);
    ids = (await cluster.statuses()).map((s) => s!.self);
  });

  after(async () => {
    await cluster?.stop();
  });

  const at = (i: number) => ['--connect', cluster.endpoints[i]];

  it('refuses a live node without --force, saying to stop it first, and changes nothing', async () => {
    const r = await mangrove(['node', 'remove', ids[3], ...at(0)]);
    expect(r.stderr).to.match(/^error E_BUSY: node \S+ \(tcp:\/\/127\.0\.0\.1:\d+\) is alive: stop it first.*or pass --force/);
    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal('');
    // The database moves on by itself (the PAN names directory replicas), so what must not change is node 3's place in it.
    const s = await cluster.statuses();
    for (const i of [0, 1, 2, 3]) expect(s[i]?.nodes.find((n) => n.id === ids[3])?.alive, `node ${i} lists node 3 alive`).to.equal(true);
    expect(cluster.isRunning(3)).to.equal(true);
  });

  it('says E_NOT_FOUND for an id no node has, E_NOT_ANCHOR through a non-anchor, and refuses the anchor it is connected to', async () => {
    const unknown = await mangrove(['node', 'remove', 'ffffffffffff-ffffffffffff', ...at(0)]);
    expect(unknown.stderr).to.match(/^error E_NOT_FOUND: no node of the node database \(version \d+ at tcp:\S+\) has the id ffffffffffff-ffffffffffff; `mangrove status` lists them\n$/);
    expect(unknown.code).to.equal(1);
    const member = await mangrove(['node', 'remove', ids[3], ...at(3)]);
    expect(member.stderr).to.match(/^error E_NOT_ANCHOR: tcp:\S+ is not an anchor, and only anchors change the node database: try --connect tcp:\/\/127\.0\.0\.1:\d+ \(anchor \S+\)\n$/);
    expect(member.code).to.equal(1);
    const itself = await mangrove(['node', 'remove', ids[0].slice(0, 8), ...at(0), '--force']);
    expect(itself.stderr).to.match(/^error E_BAD_ARGUMENT: \S+ is the anchor at tcp:\S+, which would run its own removal: connect through another anchor/);
    expect(itself.code).to.equal(2);
    expect(cluster.died()).to.deep.equal([]);
  });

  it('with --force removes a running node, which exits by itself saying why; the others stop listing it', async () => {
    const before = (await cluster.status(1)).version;
    // A unique prefix is enough, as for `trace show --node`.
    const r = await mangrove(['node', 'remove', ids[3].slice(0, 10), ...at(1), '--force', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { removed: string; version: number };
    expect(out.removed).to.equal(ids[3]);
    expect(out.version).to.be.greaterThan(before);

    await until('the removed node to exit', () => !cluster.isRunning(3), { timeoutMs: 40 * PERIOD });
    const [gone] = cluster.died();
    expect(gone, 'it exited on its own, with EXIT_REMOVED').to.match(new RegExp(`^node 3 exited \\(${EXIT_REMOVED}\\)`));
    // Said on stderr and in the log, naming the version it learned it from (the removal's, or a later one).
    const said = /this node was removed from the cluster \(node database version (\d+)\); it stops\n/.exec(cluster.log(3));
    expect(said, `node 3's output:\n${cluster.log(3).slice(-2000)}`).to.not.equal(null);
    expect(Number(said![1])).to.be.at.least(out.version);

    await until(
      'every other node to hold the new version without it',
      async () => {
        const s = await cluster.statuses([0, 1, 2]);
        return [0, 1, 2].every((i) => s[i] !== undefined && s[i].version >= out.version && !s[i].nodes.some((n) => n.id === ids[3]));
      },
      { timeoutMs: 40 * PERIOD },
    );
    const again = await mangrove(['node', 'remove', ids[3], ...at(0)]);
    expect(again.stderr).to.match(/^error E_NOT_FOUND: /);
  });

  it('started again, a removed node joins as a new member (a new incarnation was never removed)', async () => {
    cluster.spawn(3);
    const took = await cluster.waitFor(() => cluster.converged([0, 1, 2, 3]), 40 * PERIOD);
    expect(took, `node 3 rejoined; its log:\n${cluster.log(3).slice(-2000)}`).to.be.at.least(0);
    expect((await cluster.status(3)).self).to.equal(ids[3]);
    expect((await cluster.status(0)).nodes.find((n) => n.id === ids[3])?.pid).to.equal(cluster.pid(3));
  });
});
