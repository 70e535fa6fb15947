/**
 * Bad input on a real node's port (DESIGN.md, Messages): random bytes, empty
 * and multi-part frames, truncated CBOR, unknown kinds, bodies of the wrong
 * shape, oversize frames and envelopes from a stale epoch. Each is dropped
 * and counted by reason; the node stays up and the cluster stays whole.
 */
import { expect } from 'chai';
import { encode, encodeValue } from '../../bus/codec.js';
import { ENVELOPE_VERSION, limits, type Envelope } from '../../bus/envelope.js';
import { ZmqClient } from '../../bus/transport/zmq-client.js';
import { SeededRandom } from '../../runtime/world/random.js';
import { ProcessCluster } from '../helpers/process-cluster.js';

describe('bad input to a real node', function () {
  this.timeout(60_000);
  let cluster: ProcessCluster;
  let raw: ZmqClient;

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 3, anchors: 3, periodMs: 100 });
    expect(await cluster.waitFor(() => cluster.converged(), 30_000), 'cluster formed').to.be.at.least(0);
    raw = await ZmqClient.connect(cluster.endpoints[0], { timeoutMs: 1000 });
  });

  after(async () => {
    await raw?.close();
    await cluster?.stop();
  });

  it('drops and counts every kind of garbage, and the node and the cluster carry on', async () => {
    const before = await cluster.status(0);
    const peer = (await cluster.status(1)).self;
    const envelope = (kind: string, body: unknown, over: object = {}): Envelope =>
      ({ v: ENVELOPE_VERSION, kind, from: 'spec-client', to: '', epoch: 1, seq: 1, body, ...over });
    const r = new SeededRandom(4242);
    const sent = { malformed: 0, multipart: 0, unknown_kind: 0, bad_body: 0, oversize: 0, stale_epoch: 0, bad_version: 0 };

    for (let i = 0; i < 200; i++) {
      // A leading 0xff byte is a CBOR "break" outside any container: never a valid item.
      const junk = r.bytes(1 + r.int(300));
      junk[0] = 0xff;
      await raw.sendRaw([junk]);
      sent.malformed++;
    }
    await raw.sendRaw([new Uint8Array(0)]);
    sent.malformed++;
    const good = encode(envelope('client.status', {}));
    await raw.sendRaw([good.subarray(0, good.length - 3)]);
    sent.malformed++;
    await raw.sendRaw([good, good]);
    await raw.sendRaw([good, new Uint8Array(3), good]);
    sent.multipart += 2;
    await raw.sendRaw([encode(envelope('hb.teleport', {}))]);
    sent.unknown_kind++;
    await raw.sendRaw([encode(envelope('hb.member_pulse', { level: 'zero' }))]);
    sent.bad_body++;
    await raw.sendRaw([encodeValue({ ...envelope('client.status', {}), v: 99 })]);
    sent.bad_version++;
    await raw.sendRaw([new Uint8Array(limits.frameBytesMax + 100)]);
    sent.oversize++;
    // A pulse from a peer's earlier incarnation: the node has seen a later epoch from it.
    await raw.sendRaw([encode(envelope('hb.claim', { level: 0, domain: 0 }, { from: peer, epoch: 0 }))]);
    sent.stale_epoch++;

    const total = Object.values(sent).reduce((a, b) => a + b, 0);
    const counted = await cluster.waitFor(async () => (await cluster.status(0)).rejected - before.rejected >= total, 5000);
    expect(counted, 'every bad frame counted').to.be.at.least(0);
    const after = await cluster.status(0);
    for (const [reason, n] of Object.entries(sent)) {
      const got = after.rejectedByReason[reason as keyof typeof after.rejectedByReason] - before.rejectedByReason[reason as keyof typeof before.rejectedByReason];
      expect(got, `rejected as ${reason}`).to.equal(n);
    }
    expect(after.rejected - before.rejected).to.equal(total);
    expect(cluster.isRunning(0), 'node 0 still running').to.equal(true);
    expect(after.epoch, 'same incarnation: the node did not restart').to.equal(before.epoch);
    expect(await cluster.waitFor(() => cluster.converged(), 10_000), 'cluster intact').to.be.at.least(0);
  });

  it('answers a well-formed request on the same link after the garbage', async () => {
    const reply = (await raw.request('client.status', {})) as { result: { self: string } };
    expect(reply.result.self).to.equal((await cluster.status(0)).self);
  });
});
