/**
 * A node answers `client.machines` (M26) from the source its host gives it
 * (actors/node.ts): here a real MangroveNode on the simulated network, its
 * machines watched by a real MachineWatch as a node process watches them,
 * asked by a client attached to the same network. A node given no source
 * says so with a stable code.
 */
import { expect } from 'chai';
import { MangroveNode } from '../../../actors/node.js';
import { silentLog } from '../../../actors/log.js';
import type { NodeSettings } from '../../../actors/settings.js';
import type { MachinesSnapshot } from '../../../actors/status.js';
import { ENVELOPE_VERSION, type Envelope } from '../../../bus/envelope.js';
import { SimNetwork, simEndpoint, type SimTransport } from '../../../bus/transport/sim-network.js';
import { makePermanentId } from '../../../machines/membership/identity.js';
import { MachineWatch } from '../../../runtime/inspect/watch.js';
import { MemoryNodeStore } from '../../../runtime/storage/memory-node-store.js';
import { MemoryPageStore } from '../../../runtime/storage/memory-pages.js';
import { MemoryTxnLogStore } from '../../../runtime/storage/memory-txn-log.js';
import { SimClock } from '../../../runtime/world/clock.js';
import { SeededRandom } from '../../../runtime/world/random.js';

const ID = makePermanentId(new Uint8Array([1, 2, 3, 4, 5, 6]), 1_600_000_000_000);
const PERIOD = 100;

interface World {
  clock: SimClock;
  node: MangroveNode;
  client: SimTransport;
  replies: Envelope[];
}

function world(withWatch: boolean): World & { watch?: MachineWatch } {
  const clock = new SimClock(1_700_000_000_000);
  const network = new SimNetwork({ clock, random: new SeededRandom(5) });
  const transport = network.attach(ID);
  const client = network.attach('client-1');
  const watch = withWatch ? new MachineWatch({ node: ID, now: () => clock.now() }) : undefined;
  const settings: NodeSettings = {
    id: ID, epoch: 1, endpoint: simEndpoint(ID), pid: 4242, anchor: true, votes: 1, group: 0, seeds: [simEndpoint(ID)],
    periodMs: PERIOD, quorumTimeoutMs: PERIOD * 8, monitorPreference: [], panPreference: [], faultInjection: false, software: 'spec',
  };
  const node = new MangroveNode({
    settings, transport, clock, random: new SeededRandom(7), store: new MemoryNodeStore(), pages: new MemoryPageStore(), txnLog: new MemoryTxnLogStore(),
    log: silentLog, inspect: watch?.inspect, machines: watch ? (after) => watch.snapshot(after) : undefined,
  });
  const replies: Envelope[] = [];
  client.inbound.subscribe(({ env }) => replies.push(env));
  node.start();
  return { clock, node, client, replies, watch };
}

let seq = 0;
/** Sends `client.machines` with `body` and runs the network until its answer comes; returns that answer. */
function ask(w: World, body: object): Envelope {
  const mine = ++seq;
  w.client.sendToEndpoint(simEndpoint(ID), { v: ENVELOPE_VERSION, kind: 'client.machines', from: 'client-1', to: '', epoch: 1, seq: mine, body });
  for (let i = 0; i < 100 && !w.replies.some((r) => r.re === mine); i++) w.clock.advance(5);
  const reply = w.replies.find((r) => r.re === mine);
  if (!reply) throw new Error(`no answer to client.machines ${JSON.stringify(body)}`);
  return reply;
}

describe('actors/node: client.machines', () => {
  it("answers its running actors and the transitions numbered after `after`, the newest id to resume from", async () => {
    const w = world(true);
    try {
      w.clock.advance(PERIOD * 20);
      const asked = w.clock.now();
      const first = ask(w, {});
      expect(first.kind).to.equal('reply.ok');
      const snap = (first.body as { result: MachinesSnapshot }).result;
      expect(snap.node).to.equal(ID);
      // The node's clock when it answered: after the ask, before the answer arrived.
      expect(snap.t).to.be.within(asked + 1, w.clock.now() - 1);
      // A node alone with its one anchor vote: its quorum machine runs, and says so.
      const quorum = snap.actors.filter((a) => a.machine === 'quorum');
      expect(quorum, JSON.stringify(snap.actors)).to.have.length(1);
      expect(quorum[0]!.state).to.match(/quorate/);
      expect(snap.actors.some((a) => a.machine.startsWith('heartbeat-'))).to.equal(true);
      expect(snap.records.length).to.be.above(0);
      expect(snap.records.map((r) => r.id)).to.deep.equal(snap.records.map((_, i) => i + 1));
      expect(snap.last).to.equal(snap.records.length);
      expect(snap.missed).to.equal(0);
      expect(snap.records[0]).to.include({ node: ID, from: null, event: 'xstate.init' });

      // Nothing new yet: no record, the same newest id.
      const again = (ask(w, { after: snap.last }).body as { result: MachinesSnapshot }).result;
      expect(again.records).to.deep.equal([]);
      expect(again.last).to.equal(snap.last);

      // Asked after an older id: only the ones after it, oldest first.
      const tail = (ask(w, { after: snap.last - 2 }).body as { result: MachinesSnapshot }).result;
      expect(tail.records.map((r) => r.id)).to.deep.equal([snap.last - 1, snap.last]);
    } finally {
      await w.node.stop();
    }
  });

  it('answers E_UNSUPPORTED when its host keeps no watch of its machines', async () => {
    const w = world(false);
    try {
      const reply = ask(w, { after: 3 });
      expect(reply.kind).to.equal('reply.err');
      expect(reply.body).to.deep.include({ code: 'E_UNSUPPORTED' });
      expect((reply.body as { message: string }).message).to.match(/httpPort/);
    } finally {
      await w.node.stop();
    }
  });

  it('drops a malformed request at the codec: nothing answers it, the node carries on', async () => {
    const w = world(true);
    try {
      const before = w.node.status().rejectedByReason.bad_body;
      w.client.sendToEndpoint(simEndpoint(ID), { v: ENVELOPE_VERSION, kind: 'client.machines', from: 'client-1', to: '', epoch: 1, seq: 900, body: { after: -1 } });
      w.clock.advance(PERIOD);
      expect(w.node.status().rejectedByReason.bad_body).to.equal(before + 1);
      expect(w.replies.some((r) => r.re === 900)).to.equal(false);
      // The sentinel: a good request after it is answered.
      expect(ask(w, { after: 0 }).kind).to.equal('reply.ok');
    } finally {
      await w.node.stop();
    }
  });
});
