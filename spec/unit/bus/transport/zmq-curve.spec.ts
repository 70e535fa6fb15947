/**
 * The ZeroMQ transport and client with CURVE on, on real sockets on
 * 127.0.0.1: the compliance suite, then what only CURVE does (zap.ts). A
 * refused link is shown refused by the count of the handshake that failed
 * (its connection is gone, so nothing it queued can still arrive) and by a
 * sentinel from an authorized peer that does arrive.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { encode } from '../../../../bus/codec.js';
import { generateKeyPair, type CurveKeyPair, type CurveOptions } from '../../../../bus/transport/curve.js';
import type { Inbound } from '../../../../bus/transport/transport.js';
import { zapHandlerOpen, type CurveRefusal } from '../../../../bus/transport/zap.js';
import { ZmqClient } from '../../../../bus/transport/zmq-client.js';
import { ZmqTransport } from '../../../../bus/transport/zmq.js';
import { WallClock } from '../../../../runtime/world/clock.js';
import { freePort } from '../../../helpers/ports.js';
import { until } from '../../../helpers/until.js';
import { envelope, transportCompliance } from './transport-compliance.js';
import { rejectionOf } from '../../../helpers/error-of.js';

async function soon(done: () => boolean, what: string): Promise<void> {
  await until(what, done, { timeoutMs: 5000, pollMs: 2 });
}

const localEndpoint = async (): Promise<string> => `tcp://127.0.0.1:${await freePort()}`;

/** CURVE settings that let in the keys of `names` (key → name) and dial the endpoints of `servers` (endpoint → key). */
function curveOf(keys: CurveKeyPair, names: Map<string, string>, servers: Map<string, string>): CurveOptions {
  return { keys, authorize: (k) => names.get(k) ?? null, serverKeyOf: (e) => servers.get(e) ?? null };
}

function refused(t: ZmqTransport, reason: CurveRefusal): number {
  return t.stats().curve?.refusedByReason[reason] ?? 0;
}

transportCompliance('ZmqTransport with CURVE', async (hooks) => {
  const clock = new WallClock();
  const [ka, kb, kDead] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const [aEndpoint, bEndpoint, deadEndpoint] = [await localEndpoint(), await localEndpoint(), await localEndpoint()];
  const names = new Map([
    [ka.publicKey, 'node-a'],
    [kb.publicKey, 'node-b'],
  ]);
  const servers = new Map([
    [aEndpoint, ka.publicKey],
    [bEndpoint, kb.publicKey],
    [deadEndpoint, kDead.publicKey],
  ]);
  const a = await ZmqTransport.open({ self: 'node-a', endpoint: aEndpoint, clock, curve: curveOf(ka, names, servers), ...hooks });
  const b = await ZmqTransport.open({ self: 'node-b', endpoint: bEndpoint, clock, curve: curveOf(kb, names, servers), ...hooks });
  return {
    a,
    b,
    aEndpoint,
    bEndpoint,
    deadEndpoint,
    clock,
    until: soon,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
});

describe('ZmqTransport with CURVE on the wire', () => {
  const nodeKeys = generateKeyPair();
  const clientKeys = generateKeyPair();
  const strangerKeys = generateKeyPair();
  let names: Map<string, string>;
  let servers: Map<string, string>;
  let node: ZmqTransport;
  let others: ZmqTransport[];
  let clients: ZmqClient[];
  let raws: zmq.Dealer[];
  let atNode: Inbound[];
  let errors: string[];

  /** Answers client.status with reply.ok, as a node would. */
  function serve(t: ZmqTransport): void {
    t.inbound.subscribe(({ env, route }) => {
      if (env.kind === 'client.status') t.reply(route, envelope(t.self, env.from, 1, 'reply.ok', { re: env.seq, body: { result: { by: t.self } } }));
    });
  }

  async function client(keys: CurveKeyPair, serverKey = nodeKeys.publicKey, endpoint = node.endpoint, timeoutMs = 3000): Promise<ZmqClient> {
    const c = await ZmqClient.connect(endpoint, { timeoutMs, curve: { keys, serverKey } });
    clients.push(c);
    return c;
  }

  async function transport(self: string, keys: CurveKeyPair, onError?: (source: string, detail: string) => void): Promise<ZmqTransport> {
    const endpoint = await localEndpoint();
    servers.set(endpoint, keys.publicKey);
    const t = await ZmqTransport.open({ self, endpoint, clock: new WallClock(), curve: curveOf(keys, names, servers), onError });
    others.push(t);
    return t;
  }

  /** A DEALER that is not a Mangrove link: no CURVE at all, or CURVE with whatever keys it is given. */
  function rawDealer(opts: Partial<zmq.SocketOptions<zmq.Dealer>> = {}): zmq.Dealer {
    const d = new zmq.Dealer({ linger: 0, ...opts });
    raws.push(d);
    d.connect(node.endpoint);
    return d;
  }

  /** Shows the node still serves, and that the only client.status it ever accepted is this sentinel's. */
  async function sentinel(): Promise<void> {
    const c = await client(clientKeys);
    expect(await c.request('client.status', {})).to.deep.equal({ result: { by: node.self } });
    expect(atNode.map((m) => m.env.from)).to.deep.equal([c.clientId]);
  }

  beforeEach(async () => {
    names = new Map([
      [nodeKeys.publicKey, 'node-n'],
      [clientKeys.publicKey, 'client-ok'],
    ]);
    servers = new Map();
    others = [];
    clients = [];
    raws = [];
    atNode = [];
    errors = [];
    node = await transport('node-n', nodeKeys, (source, detail) => errors.push(`${source}: ${detail}`));
    node.inbound.subscribe((m) => atNode.push(m));
    serve(node);
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const d of raws) d.close();
    await Promise.all(others.map((t) => t.close()));
  });

  it('says in its stats that CURVE is on; a plain transport beside it has no such field, and serves plain clients', async () => {
    expect(node.stats().curve).to.deep.equal({ refusedByReason: { no_key: 0, unknown_key: 0, bad_handshake: 0 } });
    const plain = await ZmqTransport.open({ self: 'node-p', endpoint: await localEndpoint(), clock: new WallClock() });
    try {
      serve(plain);
      const c = await ZmqClient.connect(plain.endpoint, { timeoutMs: 3000 });
      clients.push(c);
      expect(await c.request('client.status', {})).to.deep.equal({ result: { by: 'node-p' } });
      expect(plain.stats()).not.to.have.property('curve');
    } finally {
      await plain.close();
    }
  });

  it('serves a client that knows its key and whose key it knows', async () => {
    await sentinel();
  });

  it('lets nothing in from a DEALER without CURVE, counted as no_key', async () => {
    const d = rawDealer();
    await d.send(encode(envelope('plain', '', 1, 'client.status')));
    await soon(() => refused(node, 'no_key') >= 1, 'the plain handshake to be refused');
    await sentinel();
    // Refused at the handshake: no frame of it reached the gate; the refusals count among the rejections, by reason.
    const stats = node.stats();
    expect(stats.rejected).to.equal(refused(node, 'no_key'));
    expect(stats.rejectedByReason.no_key).to.equal(refused(node, 'no_key'));
  });

  it('lets nothing in from a key it does not know, counted as unknown_key, and tells the client at once', async () => {
    const c = await client(strangerKeys, nodeKeys.publicKey, node.endpoint, 60_000);
    const answer = await rejectionOf(c.request('client.status', {}));
    expect(answer).to.equal(`E_UNREACHABLE: ${node.endpoint} refused this client's CURVE key: is the client's public key authorized on that node?`);
    expect(refused(node, 'unknown_key')).to.equal(1);
    expect(await rejectionOf(c.request('client.status', {})), 'later requests fail at once too').to.equal(answer);
    // Refused before its first request: the link is gone, or going, by then,
    // and that is told as a refusal all the same, not as a full queue.
    const late = await client(strangerKeys, nodeKeys.publicKey, node.endpoint, 60_000);
    await soon(() => refused(node, 'unknown_key') === 2, 'the second stranger to be refused');
    expect(await rejectionOf(late.request('client.status', {}))).to.equal(answer);
    await sentinel();
  });

  it('lets nothing in from a DEALER with the wrong server key, counted as bad_handshake', async () => {
    const d = rawDealer({ curvePublicKey: clientKeys.publicKey, curveSecretKey: clientKeys.secretKey, curveServerKey: strangerKeys.publicKey });
    await d.send(encode(envelope('client-ok', '', 1, 'client.status')));
    await soon(() => refused(node, 'bad_handshake') >= 1, 'the handshake with the wrong server key to fail');
    await sentinel();
    const c = await client(clientKeys, strangerKeys.publicKey, node.endpoint, 300);
    expect(await rejectionOf(c.request('client.status', {}))).to.match(/no answer from .* within 300 ms: is the node running\? \(the CURVE handshake failed/);
  });

  it('counts a send to an endpoint whose server key it does not know as unsent, naming the endpoint', async () => {
    const unknown = await localEndpoint();
    node.setPeer('node-u', unknown);
    expect(() => node.send(envelope(node.self, 'node-u', 1))).not.to.throw();
    expect(node.stats()).to.include({ sent: 0, unsent: 1 });
    expect(errors).to.deep.equal([`unsent: hb.claim to "node-u": no CURVE server key is known for ${unknown}: cannot connect to it encrypted`]);
    servers.set(unknown, 'not a key');
    node.send(envelope(node.self, 'node-u', 2));
    expect(errors[1]).to.match(/^unsent: hb\.claim to "node-u": the CURVE server key of tcp:.* must be a CURVE key/);
  });

  it('exchanges envelopes both ways between two CURVE nodes, and redials once a refusing peer learns its key', async () => {
    const peerKeys = generateKeyPair();
    const peerErrors: string[] = [];
    const peer = await transport('node-q', peerKeys, (source, detail) => peerErrors.push(`${source}: ${detail}`));
    const atPeer: Inbound[] = [];
    peer.inbound.subscribe((m) => atPeer.push(m));
    node.setPeer(peer.self, peer.endpoint);
    peer.setPeer(node.self, node.endpoint);

    // The node does not know the peer's key yet: the peer's link is refused.
    peer.send(envelope(peer.self, node.self, 1));
    await soon(() => refused(node, 'unknown_key') === 1, 'the node to refuse the peer');
    await soon(() => peerErrors.some((e) => e === `link: ${node.endpoint} refused this node's CURVE key`), 'the peer to hear of it');

    names.set(peerKeys.publicKey, 'node-q');
    peer.send(envelope(peer.self, node.self, 2));
    await soon(() => atNode.length === 1, 'the redialled envelope to arrive');
    expect(atNode[0].env).to.include({ from: 'node-q', seq: 2 });
    node.send(envelope(node.self, peer.self, 3));
    await soon(() => atPeer.length === 1, 'the answer the other way');
    expect(atPeer[0].env).to.include({ from: 'node-n', seq: 3 });
  });

  it('reports once when a peer fails the handshake because its server key is wrong', async () => {
    const peerKeys = generateKeyPair();
    names.set(peerKeys.publicKey, 'node-q');
    const peer = await transport('node-q', peerKeys);
    node.setPeer(peer.self, peer.endpoint);
    servers.set(peer.endpoint, strangerKeys.publicKey);
    node.send(envelope(node.self, peer.self, 1));
    const told = (): string[] => errors.filter((e) => e.startsWith(`link: the CURVE handshake with ${peer.endpoint} failed`));
    await soon(() => told().length > 0, 'the node to report the failed handshake');
    // libzmq redials every 100 ms or so: a few more failures, still one report.
    const seen = refused(peer, 'bad_handshake');
    await soon(() => refused(peer, 'bad_handshake') >= seen + 2, 'the peer to refuse two more handshakes');
    expect(told()).to.have.length(1);
    expect(told()[0]).to.contain("is the server key this node has for it that node's, and does it use CURVE?");
    expect(peer.stats().received).to.equal(0);
  });

  it('authorizes each transport of one process by its own rule (one ZAP domain each)', async () => {
    const otherKeys = generateKeyPair();
    const otherClientKeys = generateKeyPair();
    const other = await ZmqTransport.open({
      self: 'node-o',
      endpoint: await localEndpoint(),
      clock: new WallClock(),
      curve: { keys: otherKeys, authorize: (k) => (k === otherClientKeys.publicKey ? 'client-other' : null), serverKeyOf: () => null },
    });
    others.push(other);
    serve(other);
    const toNode = await client(otherClientKeys, nodeKeys.publicKey, node.endpoint, 60_000);
    const toOther = await client(clientKeys, otherKeys.publicKey, other.endpoint, 60_000);
    expect(await rejectionOf(toNode.request('client.status', {}))).to.match(/refused this client's CURVE key/);
    expect(await rejectionOf(toOther.request('client.status', {}))).to.match(/refused this client's CURVE key/);
    const rightNode = await client(clientKeys, nodeKeys.publicKey, node.endpoint);
    const rightOther = await client(otherClientKeys, otherKeys.publicKey, other.endpoint);
    expect(await rightNode.request('client.status', {})).to.deep.equal({ result: { by: 'node-n' } });
    expect(await rightOther.request('client.status', {})).to.deep.equal({ result: { by: 'node-o' } });
    expect(refused(node, 'unknown_key')).to.equal(1);
    expect(refused(other, 'unknown_key')).to.equal(1);
  });

  it('refuses bad keys in its options naming the field, and leaves no ZAP handler behind', async () => {
    const bad = { ...nodeKeys, secretKey: nodeKeys.secretKey.slice(0, 39) };
    const open = ZmqTransport.open({ self: 'node-b', endpoint: await localEndpoint(), clock: new WallClock(), curve: curveOf(bad, names, servers) });
    expect(await rejectionOf(open)).to.match(/^E_BAD_CONFIG: curve\.keys\.secretKey must be a CURVE key/);
    const taken = ZmqTransport.open({ self: 'node-c', endpoint: node.endpoint, clock: new WallClock(), curve: curveOf(nodeKeys, names, servers) });
    expect(await rejectionOf(taken)).to.match(/^E_BAD_CONFIG: cannot listen on/);
    const client = ZmqClient.connect(node.endpoint, { timeoutMs: 100, curve: { keys: clientKeys, serverKey: 'x' } });
    expect(await rejectionOf(client)).to.match(/^E_BAD_CONFIG: curve\.serverKey must be a CURVE key/);
    for (const t of others) await t.close();
    others = [];
    expect(zapHandlerOpen(), 'the handler closes with the last CURVE transport').to.equal(false);
  });
});
