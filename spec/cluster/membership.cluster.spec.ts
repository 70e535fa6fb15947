/**
 * Real node processes over ZeroMQ on 127.0.0.1 (M3, M5, M16, M23): kill -9 of
 * a member and of the monitor, SIGSTOP past the deadline, a 3|2 partition
 * through the fault filter, restarts with a new epoch. Every test stops what
 * it starts, by pid.
 */
import { expect } from 'chai';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { mangrove } from '../helpers/run-cli.js';

const PERIOD = 200;

describe('membership across real processes', function () {
  this.timeout(90_000);
  let cluster: ProcessCluster;

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 5, anchors: 3, periodMs: PERIOD });
    const took = await cluster.waitFor(() => cluster.converged(), 30_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || `node-0 log:\n${cluster.log(0).slice(-3000)}`}`);
  });

  after(async () => {
    await cluster?.stop();
  });

  // Whatever a test did (or failed half-way through), the next starts from five healthy nodes.
  afterEach(async () => {
    if (cluster) await healed();
  });

  async function healed(): Promise<void> {
    for (let i = 0; i < 5; i++) if (!cluster.isRunning(i)) cluster.spawn(i);
    for (let i = 0; i < 5; i++) await cluster.request(i, 'client.fault', { heal: true }).catch(() => undefined);
    const took = await cluster.waitFor(() => cluster.converged([0, 1, 2, 3, 4]), 30_000);
    expect(took, 'cluster converged again').to.be.at.least(0);
  }

  /** ms from now until every survivor counts `id` failed, polling every 20 ms. */
  async function timeToFailed(id: string, survivors: number[], maxMs: number): Promise<number> {
    return cluster.waitFor(async () => {
      const s = await cluster.statuses(survivors);
      return survivors.every((i) => s[i]?.nodes.find((n) => n.id === id)?.alive === false);
    }, maxMs, 20);
  }

  it('forms: five nodes alive in every view, quorum, one monitor, one PAN', async () => {
    const s = await cluster.statuses();
    expect(new Set(s.map((x) => x!.monitor)).size).to.equal(1);
    expect(new Set(s.map((x) => x!.pan)).size).to.equal(1);
    for (const x of s) {
      expect(x!.nodes.filter((n) => n.alive)).to.have.length(5);
      expect(x!.codec.native, 'native CBOR decoder').to.equal(true);
      // Each node's entry names the process that runs it.
      for (let j = 0; j < 5; j++) expect(x!.nodes.find((n) => n.id === s[j]!.self)?.pid, `${x!.self}'s entry for node ${j}`).to.equal(cluster.pid(j));
    }
  });

  it('kill -9 of a member is shown failed by every survivor within 4 heartbeat periods', async () => {
    const s = await cluster.statuses();
    const victim = [1, 2, 3, 4].find((i) => s[i]!.self !== s[0]!.monitor)!;
    const id = s[victim]!.self;
    const survivors = [0, 1, 2, 3, 4].filter((i) => i !== victim);
    const killedAt = Date.now();
    await cluster.kill(victim);
    const took = await timeToFailed(id, survivors, 10 * PERIOD);
    const sinceKill = took < 0 ? -1 : Date.now() - killedAt;
    expect(took, 'detected at all').to.be.at.least(0);
    expect(sinceKill, `ms from kill to every survivor showing it failed (period ${PERIOD} ms)`).to.be.at.most(4 * PERIOD);
  });

  it('kill -9 of the monitor yields one new monitor that every survivor names', async () => {
    const before = (await cluster.status(0)).monitor!;
    const victim = (await cluster.statuses()).findIndex((s) => s!.self === before);
    await cluster.kill(victim);
    const survivors = [0, 1, 2, 3, 4].filter((i) => i !== victim);
    const took = await cluster.waitFor(async () => {
      const s = await cluster.statuses(survivors);
      const named = new Set(survivors.map((i) => s[i]?.monitor));
      return named.size === 1 && !named.has(before) && !named.has(undefined) && !named.has(null);
    }, 20 * PERIOD);
    expect(took, 'one new monitor').to.be.at.least(0);
    expect(await timeToFailed(before, survivors, 10 * PERIOD)).to.be.at.least(0);
  });

  it('a node paused by SIGSTOP past the deadline is counted out, and back in after SIGCONT', async () => {
    const victim = 4;
    const id = (await cluster.status(victim)).self;
    cluster.signal(victim, 'SIGSTOP');
    try {
      expect(await timeToFailed(id, [0, 1, 2, 3], 10 * PERIOD), 'counted out while stopped').to.be.at.least(0);
    } finally {
      cluster.signal(victim, 'SIGCONT');
    }
    const back = await cluster.waitFor(() => cluster.converged([0, 1, 2, 3, 4]), 30_000);
    expect(back, 'counted in again').to.be.at.least(0);
    expect((await cluster.status(victim)).self).to.equal(id);
  });

  it('a 3|2 partition leaves quorum only on the majority side; healing restores one view of 5', async () => {
    const s = await cluster.statuses();
    const ids = s.map((x) => x!.self);
    // Nodes 0-2 are the anchors: {0, 3, 4} holds one anchor vote of three, {1, 2} two.
    const minority = [0, 3, 4];
    const majority = [1, 2];
    // Through the CLI, as an operator would: `mangrove fault --connect E --drop ID,ID`.
    const cut = async (i: number, peers: number[]) => {
      const r = await mangrove(['fault', '--connect', cluster.endpoints[i], '--drop', peers.map((j) => ids[j]).join(','), '--json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout).dropped).to.have.members(peers.map((j) => ids[j]));
    };
    for (const i of minority) await cut(i, majority);
    for (const i of majority) await cut(i, minority);
    const timeout = PERIOD * 8;
    const lost = await cluster.waitFor(async () => {
      const now = await cluster.statuses();
      return minority.every((i) => now[i]?.quorum === false);
    }, timeout + 4 * PERIOD);
    expect(lost, 'minority loses quorum within the quorum timeout').to.be.within(0, timeout + 4 * PERIOD);
    const now = await cluster.statuses();
    for (const i of majority) expect(now[i]!.quorum, `node ${i} keeps quorum`).to.equal(true);
    for (const i of minority) expect(now[i]!.pan, `node ${i} names no PAN`).to.equal(null);
    for (let i = 0; i < 5; i++) expect((await mangrove(['fault', '--connect', cluster.endpoints[i], '--heal'])).code).to.equal(0);
    await healed();
    for (const x of await cluster.statuses()) {
      expect(x!.quorum).to.equal(true);
      expect(x!.nodes.filter((n) => n.alive)).to.have.length(5);
    }
  });

  it('a node restarted by hand rejoins with a new epoch and a current entry', async () => {
    const before = await cluster.status(3);
    await cluster.kill(3);
    cluster.spawn(3);
    const took = await cluster.waitFor(async () => (await cluster.status(3, 500).catch(() => undefined))?.phase === 'joined', 20_000);
    expect(took).to.be.at.least(0);
    const after = await cluster.status(3);
    expect(after.self).to.equal(before.self);
    expect(after.epoch).to.be.greaterThan(before.epoch);
    await healed();
    const seen = (await cluster.status(0)).nodes.find((n) => n.id === before.self)!;
    expect(seen.pid).to.equal(cluster.pid(3));
  });
});
