/**
 * The per-link proof on real sockets on 127.0.0.1 (link-hello.ts dialing,
 * link-auth.ts receiving, inside ZmqTransport and ZmqClient): a client's
 * requests arrive with its role, a node's envelopes with none, and a link
 * that holds a listed key but never proves it gets nothing through. Absence
 * is shown by a sentinel on a proving link that does arrive.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { encode } from '../../../../bus/codec.js';
import { generateKeyPair, type CurveKeyPair, type CurveOptions } from '../../../../bus/transport/curve.js';
import type { KeyHolder } from '../../../../bus/transport/key-holder.js';
import type { Inbound } from '../../../../bus/transport/transport.js';
import { ZmqClient } from '../../../../bus/transport/zmq-client.js';
import { ZmqTransport } from '../../../../bus/transport/zmq.js';
import { WallClock } from '../../../../runtime/world/clock.js';
import { freePort } from '../../../helpers/ports.js';
import { until } from '../../../helpers/until.js';
import { envelope } from './transport-compliance.js';

describe('ZmqTransport with CURVE and link proofs on the wire', () => {
  const nodeKeys = generateKeyPair();
  const peerKeys = generateKeyPair();
  const readerKeys = generateKeyPair();
  let node: ZmqTransport;
  let peer: ZmqTransport;
  let atNode: Inbound[];
  const closers: (() => unknown)[] = [];

  const holders = new Map<string, KeyHolder>([
    [nodeKeys.publicKey, { kind: 'node' }],
    [peerKeys.publicKey, { kind: 'node' }],
    [readerKeys.publicKey, { kind: 'client', name: 'reader', role: 'read-only' }],
  ]);
  const servers = new Map<string, string>();

  function curveOf(keys: CurveKeyPair): CurveOptions {
    return {
      keys,
      authorize: (k) => (holders.has(k) ? 'listed' : null),
      serverKeyOf: (e) => servers.get(e) ?? null,
      holderOf: (k) => holders.get(k) ?? null,
    };
  }

  async function open(self: string, keys: CurveKeyPair): Promise<ZmqTransport> {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    servers.set(endpoint, keys.publicKey);
    const t = await ZmqTransport.open({ self, endpoint, clock: new WallClock(), curve: curveOf(keys) });
    closers.push(() => t.close());
    return t;
  }

  beforeEach(async () => {
    atNode = [];
    node = await open('node-n', nodeKeys);
    peer = await open('node-p', peerKeys);
    node.setPeer(peer.self, peer.endpoint);
    peer.setPeer(node.self, node.endpoint);
    node.inbound.subscribe((m) => atNode.push(m));
  });

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  it("gives a client's requests the role of its key, and a node's envelopes none", async () => {
    const client = await ZmqClient.connect(node.endpoint, { timeoutMs: 3000, curve: { keys: readerKeys, serverKey: nodeKeys.publicKey } });
    closers.push(() => client.close());
    void client.request('client.status', {}).catch(() => undefined);
    peer.send(envelope(peer.self, node.self, 1));
    await until('both to arrive', () => atNode.length === 2, { timeoutMs: 5000, pollMs: 5 });
    const byKind = new Map(atNode.map((m) => [m.env.kind, m]));
    expect(byKind.get('client.status')?.role).to.equal('read-only');
    expect(byKind.get('hb.claim')).to.not.have.property('role');
    expect(node.stats().rejectedByReason).to.include({ unauthenticated: 0, bad_proof: 0 });
  });

  it('lets nothing through from a link that holds a listed key but never proves it (unauthenticated)', async () => {
    // libzmq's own DEALER, with the peer's key and no hello: past ZAP, stopped at the gate.
    const raw = new zmq.Dealer({ linger: 0, curvePublicKey: peerKeys.publicKey, curveSecretKey: peerKeys.secretKey, curveServerKey: nodeKeys.publicKey });
    closers.push(() => raw.close());
    raw.connect(node.endpoint);
    await raw.send(encode(envelope(peer.self, node.self, 1)));
    await until('the unproven envelope to be counted', () => node.stats().rejectedByReason.unauthenticated === 1, { timeoutMs: 5000, pollMs: 5 });
    peer.send(envelope(peer.self, node.self, 2));
    await until('the sentinel', () => atNode.length === 1, { timeoutMs: 5000, pollMs: 5 });
    expect(atNode.map((m) => m.env.seq)).to.deep.equal([2]);
  });
});
