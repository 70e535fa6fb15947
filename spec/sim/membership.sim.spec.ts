/**
 * Whole clusters of real node code in the simulator (M3-M6, M16): failure
 * detection, monitor failover, partitions and quorum, node-database
 * agreement and PAN election, over many seeds with loss, delay, duplication,
 * reordering, crashes and partitions. A failing seed is printed for replay.
 */
import { expect } from 'chai';
import { encode } from '../../bus/codec.js';
import { SimCluster } from '../../runtime/sim/cluster.js';
import { SeededRandom } from '../../runtime/world/random.js';
import { checkOnePanPerTerm, checkQuorumSides, convergence, DbHistory, quorumLossBoundMs, forSeeds } from '../helpers/sim-checks.js';
import { tracedSim } from '../helpers/traced-sim.js';

const PERIOD = 100;
const seeds = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/** What is still wrong, for a wait for convergence that failed. */
const unconverged = (c: SimCluster, what: string) => () => `${what} (still: ${convergence(c).slice(0, 5).join('; ')})`;

function formed(c: SimCluster): SimCluster {
  c.startAll();
  c.runUntil(() => convergence(c).length === 0, 30_000, unconverged(c, 'the cluster to form'));
  return c;
}

/** Time until every live node other than `dead` counts `dead` failed. */
function detection(c: SimCluster, dead: number, maxMs: number): number {
  const id = c.id(dead);
  return c.runUntil(
    () =>
      [...Array(c.size).keys()].every((i) => i === dead || !c.isUp(i) || c.status(i)!.nodes.find((n) => n.id === id)?.alive === false),
    maxMs,
    `every survivor to count node ${dead} failed`,
    5,
  );
}

describe('membership in the simulator', function () {
  this.timeout(120_000);

  it('every survivor counts a crashed member failed within 4 heartbeat periods', () => {
    forSeeds(seeds(100, 12), (seed) => {
      const r = new SeededRandom(seed);
      const c = formed(new SimCluster({ seed, nodes: 5 + r.int(5), anchors: 3, periodMs: PERIOD }));
      c.run(r.int(PERIOD));
      const monitor = c.indexOf(c.status(0)!.monitor!);
      let victim = r.int(c.size);
      if (victim === monitor) victim = (victim + 1) % c.size;
      c.crash(victim);
      const took = detection(c, victim, 10 * PERIOD);
      // From the crash, not from its last pulse: that went out up to a period earlier.
      expect(took, 'detection time').to.be.within(2 * PERIOD, 4 * PERIOD);
    });
  });

  it('a crashed monitor is replaced by one new monitor that every survivor names', () => {
    forSeeds(seeds(200, 10), (seed) => {
      const r = new SeededRandom(seed);
      const c = formed(new SimCluster({ seed, nodes: 4 + r.int(6), anchors: 3, periodMs: PERIOD }));
      const monitor = c.indexOf(c.status(0)!.monitor!);
      c.crash(monitor);
      expect(detection(c, monitor, 10 * PERIOD), 'monitor failure detected').to.be.within(0, 6 * PERIOD);
      const took = c.runUntil(() => convergence(c).length === 0, 20 * PERIOD, unconverged(c, 'one view after the monitor crashed'));
      expect(convergence(c), `after ${took} ms`).to.deep.equal([]);
      const named = new Set([...Array(c.size).keys()].filter((i) => c.isUp(i)).map((i) => c.status(i)!.monitor));
      expect(named.size).to.equal(1);
      expect([...named][0]).to.not.equal(c.id(monitor));
    });
  });

  it('a 3|2 partition leaves quorum only on the majority side, and healing restores one view', () => {
    forSeeds(seeds(300, 6), (seed) => {
      const c = formed(new SimCluster({ seed, nodes: 5, anchors: 3, periodMs: PERIOD }));
      const timeout = c.options.quorumTimeoutMs ?? PERIOD * 8;
      // Nodes 0-2 are the anchors: the side with two of them holds the majority.
      const sides = seed % 2 === 0 ? [[0, 1, 3], [2, 4]] : [[0, 3, 4], [1, 2]];
      c.partition(sides);
      c.run(timeout + 4 * PERIOD);
      checkQuorumSides(c, sides);
      const majority = sides[0].length === 3 && sides[0].filter((i) => i < 3).length >= 2 ? sides[0] : sides[1];
      for (const i of majority) expect(c.status(i)!.quorum, `node ${i} on the majority side`).to.equal(true);
      c.heal();
      const took = c.runUntil(() => convergence(c).length === 0, 30 * PERIOD, unconverged(c, 'one view after healing'));
      expect(convergence(c), `after healing (${took} ms)`).to.deep.equal([]);
      for (let i = 0; i < 5; i++) expect(c.status(i)!.nodes.filter((n) => n.alive)).to.have.length(5);
    });
  });

  it('keeps its safety rules under loss, delay, duplication, reordering, crashes and partitions, then converges', () => {
    forSeeds(seeds(1000, 24), (seed) => {
      const r = new SeededRandom(seed);
      const n = 5 + r.int(8);
      const c = new SimCluster({ seed, nodes: n, anchors: 3, groups: 1 + r.int(3), periodMs: PERIOD });
      c.network.configure({ drop: r.next() * 0.08, duplicate: r.next() * 0.05, delayMs: [1, 1 + r.int(30)], reorder: r.next() < 0.5 });
      c.startAll();
      const history = new DbHistory();
      let sides: number[][] = [];
      let since = 0;
      for (let step = 0; step < 400; step++) {
        c.run(50);
        history.observe(c);
        checkOnePanPerTerm(c);
        if (sides.length && c.clock.now() - since > quorumLossBoundMs(c)) checkQuorumSides(c, sides);
        if (step % 20 !== 19) continue;
        const roll = r.int(10);
        if (roll < 2) c.crash(r.int(n));
        else if (roll < 4) c.start(r.int(n));
        else if (roll < 6 && sides.length === 0) {
          const cut = 1 + r.int(n - 1);
          const order = [...Array(n).keys()].sort(() => r.next() - 0.5);
          sides = [order.slice(0, cut), order.slice(cut)];
          since = c.clock.now();
          c.partition(sides);
        } else if (roll < 8) {
          sides = [];
          c.heal();
        }
      }
      // Liveness phase: heal everything and restart every node.
      c.heal();
      c.network.resetFaults();
      for (let i = 0; i < n; i++) c.start(i);
      const took = c.runUntil(() => convergence(c).length === 0, 60_000, unconverged(c, 'convergence in the liveness phase'), 100);
      history.observe(c);
      expect(convergence(c), `converged after ${took} ms`).to.deep.equal([]);
    });
  });

  it('with groups, a crash in one group is learned in every other group', () => {
    forSeeds(seeds(400, 6), (seed) => {
      const r = new SeededRandom(seed);
      const c = formed(new SimCluster({ seed, nodes: 12 + r.int(12), anchors: 3, groups: 3 + r.int(3), periodMs: PERIOD }));
      const victim = 3 + r.int(c.size - 3);
      c.crash(victim);
      // Up to 4 periods in the victim's group, then a period up and one down each level.
      expect(detection(c, victim, 20 * PERIOD), 'detection time').to.be.within(3 * PERIOD, 7 * PERIOD);
      c.runUntil(() => convergence(c).length === 0, 30 * PERIOD, unconverged(c, 'one view after the crash'));
    });
  });

  it('a node joining through any anchor is added everywhere; a removed node is gone from every copy', async () => {
    const c = formed(new SimCluster({ seed: 500, nodes: 6, anchors: 3, periodMs: PERIOD }));
    // Every non-anchor joined through some anchor; every anchor and node holds all six.
    for (let i = 0; i < 6; i++) expect(c.node(i)!.database().nodes.map((n) => n.id).sort()).to.deep.equal([...Array(6).keys()].map((j) => c.id(j)).sort());
    const gone = c.id(5);
    c.crash(5);
    let version = -1;
    void c.node(1)!.updateNodeDatabase({ op: 'delete', id: gone }).then((v) => (version = v));
    // The update resolves a promise: let its callback run between simulated steps.
    for (let step = 0; step < 40 && version < 0; step++) {
      c.run(PERIOD / 2);
      await new Promise((r) => setImmediate(r));
    }
    expect(version, 'the update committed').to.be.greaterThan(0);
    c.runUntil(() => [0, 1, 2, 3, 4].every((i) => c.node(i)!.database().version === version), 20 * PERIOD, `node-database version ${version} on every live node`);
    for (let i = 0; i < 5; i++) expect(c.node(i)!.database().nodes.map((n) => n.id)).to.not.include(gone);
    for (let i = 0; i < 5; i++) expect(c.status(i)!.nodes).to.have.length(5);
    // Without quorum the update is refused at once, and says why.
    c.crash(1);
    c.crash(2);
    c.run(20 * PERIOD);
    let refusal: unknown;
    await c.node(0)!.updateNodeDatabase({ op: 'delete', id: c.id(4) }).catch((e) => (refusal = e));
    expect(refusal).to.have.property('code', 'E_NO_QUORUM');
    expect(c.node(0)!.database().nodes.map((n) => n.id)).to.include(c.id(4));
  });

  it('a lone anchor holding every vote forms the cluster by itself (M2, M5, M16)', () => {
    forSeeds(seeds(600, 4), (seed) => {
      const c = new SimCluster({ seed, nodes: 1, anchors: 1, periodMs: PERIOD });
      c.startAll();
      const took = c.runUntil(() => convergence(c).length === 0, 20 * PERIOD, unconverged(c, 'a one-node cluster to form'));
      expect(took, 'formed within a few periods').to.be.at.most(10 * PERIOD);
      const s = c.status(0)!;
      expect(s).to.include({ quorum: true, phase: 'joined', pan: c.id(0), monitor: c.id(0) });
      expect(s.version).to.be.at.least(1);
      expect(s.nodes.map((n) => n.id)).to.deep.equal([c.id(0)]);
      // It stays formed, and a restart finds its own database and forms again.
      c.run(20 * PERIOD);
      expect(convergence(c)).to.deep.equal([]);
      c.crash(0);
      c.start(0);
      c.runUntil(() => convergence(c).length === 0, 20 * PERIOD, unconverged(c, 'the lone anchor to form again after a restart'));
      expect(c.status(0)!.version).to.be.at.least(s.version);
    });
  });

  it('a node started after a lone anchor has formed joins its cluster', () => {
    forSeeds(seeds(650, 4), (seed) => {
      const c = new SimCluster({ seed, nodes: 2, anchors: 1, periodMs: PERIOD });
      c.start(0);
      c.runUntil(
        () => { const s = c.status(0)!; return s.quorum && s.phase === 'joined' && s.pan === c.id(0); },
        20 * PERIOD,
        'the lone anchor to form',
      );
      const alone = c.status(0)!;
      expect(alone.version).to.be.at.least(1);
      expect(alone.nodes).to.have.length(1);
      c.run(5 * PERIOD);
      c.start(1);
      c.runUntil(() => convergence(c).length === 0, 30 * PERIOD, unconverged(c, 'the second node to join'));
      for (const i of [0, 1]) {
        const s = c.status(i)!;
        expect(s, `node ${i}`).to.include({ quorum: true, phase: 'joined', pan: c.id(0) });
        expect(s.version, `node ${i}`).to.be.greaterThan(alone.version);
        expect(s.nodes.map((n) => n.id).sort(), `node ${i}`).to.deep.equal([c.id(0), c.id(1)].sort());
      }
    });
  });

  it('is a pure function of its seed: the same seed gives the same trace, byte for byte', async () => {
    const run = async (seed: number): Promise<Buffer> => {
      const { records } = await tracedSim({ seed, nodes: 7, anchors: 3, groups: 2, periodMs: PERIOD, faults: { drop: 0.05, delayMs: [1, 20], reorder: true } }, (c) => {
        c.run(3000);
        c.crash(4);
        c.run(2000);
      });
      return Buffer.concat(records.map((rec) => Buffer.from(encode(rec.env))));
    };
    const a = await run(77);
    expect(a.length).to.be.greaterThan(10_000);
    expect((await run(77)).equals(a)).to.equal(true);
    expect((await run(78)).equals(a)).to.equal(false);
  });
});
