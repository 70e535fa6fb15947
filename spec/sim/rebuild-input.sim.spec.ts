/**
 * Bad input to the RAM directory rebuild (M14; actors/recovery/rebuild.ts):
 * recovery messages from a node not in the node database, from an older
 * incarnation than the database names, a coordinator's message from a
 * non-anchor or for another node's round, a reply to a node that
 * coordinates nothing, a `rec.done` from another node: each is dropped and
 * counted, and a round running meanwhile still finishes.
 */
import { expect } from 'chai';
import { ENVELOPE_VERSION } from '../../bus/envelope.js';
import { simEndpoint } from '../../bus/transport/sim-network.js';
import type { Kind } from '../../bus/messages/index.js';
import { SimCluster } from '../../runtime/sim/cluster.js';
import { convergence } from '../helpers/sim-checks.js';

const PERIOD = 100;

describe('bad input to the rebuild (M14) in the simulator', function () {
  this.timeout(60_000);

  it('drops and counts forged, stale and misdirected rebuild messages, and a round running meanwhile finishes', async () => {
    const c = new SimCluster({ seed: 401, nodes: 5, anchors: 3, periodMs: PERIOD, engine: { retryMs: 40, timeoutMs: 5000 } });
    c.startAll();
    c.runUntil(() => convergence(c).length === 0, 30_000, 'the cluster to form');
    await c.runUntilAsync(() => [0, 1, 2, 3, 4].every((i) => c.node(i)!.engine.recoveryState().serving), 30_000, 'every node to serve');
    const target = 2;
    const nonAnchor = 4;
    const before = c.status(target)!.recovery.dropped;
    const staleBefore = c.status(target)!.rejectedByReason.stale_epoch;

    // A restart of node 3 calls for a round; the forgeries arrive while it runs.
    c.crash(3);
    c.start(3);
    const round = { n: 999_999, by: c.id(nonAnchor) };
    const rogue = c.network.attach('rogue-node');
    rogue.setPeer(c.id(target), simEndpoint(c.id(target)));
    let seq = 0;
    const forge = (from: string, epoch: number, kind: Kind, body: unknown) =>
      rogue.send({ v: ENVELOPE_VERSION, kind, from, to: c.id(target), epoch, seq: ++seq, body } as never);
    // Not in the node database.
    forge('rogue-node', 1, 'rec.quiesce', { round: { n: 999_999, by: 'rogue-node' }, reset: true, after: 0, participants: [], dbVersion: 0 });
    // A non-anchor posing as coordinator, and a message for another node's round.
    const na = c.node(nonAnchor)!.outbox;
    na.send(c.id(target), 'rec.quiesce', { round, reset: true, after: 0, participants: [c.id(target)], dbVersion: 0 });
    na.send(c.id(target), 'rec.resume', { round: { n: 999_998, by: c.id(0) } });
    // A reply to a node that coordinates nothing (target is an anchor, but node 3's rec.done is not its own).
    na.send(c.id(target), 'rec.done', { round });
    // From an older incarnation than the database names: node 3's previous epoch.
    await c.runUntilAsync(() => (c.node(target)!.database().nodes.find((n) => n.id === c.id(3))?.epoch ?? 0) >= 2, 30_000, 'node 3\'s new epoch in the target\'s database');
    forge(c.id(3), 1, 'rec.request', { failed: [c.id(0)] });
    await c.runAsync(300);

    await c.runUntilAsync(() => [0, 1, 2, 3, 4].every((i) => c.node(i)!.engine.recoveryState().serving), 30_000, 'the round to finish despite the forgeries');
    const after = c.status(target)!.recovery.dropped;
    expect(after.unknown_node - before.unknown_node, 'from a node not in the database').to.be.at.least(1);
    expect(after.not_coordinator - before.not_coordinator, 'coordinator messages not from their round\'s anchor').to.be.at.least(2);
    expect(after.not_local - before.not_local, 'rec.done from another node').to.equal(1);
    // The transport's gate drops an older incarnation's envelope once it has heard a newer one; the
    // rebuild drops one the database names a newer incarnation of. Either way it is counted.
    const stale = after.stale_epoch - before.stale_epoch + (c.status(target)!.rejectedByReason.stale_epoch - staleBefore);
    expect(stale, 'from an older incarnation').to.be.at.least(1);
    // Nobody followed the forged rounds: every node finished the same, real round.
    const completed = new Set([0, 1, 2, 3, 4].map((i) => c.node(i)!.engine.recoveryState().completed));
    expect(completed.size, 'one round finished everywhere').to.equal(1);
    expect([...completed][0]).to.not.equal(999_999);
    await c.stopAll();
  });
});
