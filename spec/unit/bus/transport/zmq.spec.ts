import { expect } from 'chai';
import * as zmq from 'zeromq';
import { decodeFrame, encode, encodeValue } from '../../../../bus/codec.js';
import { ENVELOPE_VERSION, limits, REJECT_REASONS, type RejectReason } from '../../../../bus/envelope.js';
import { isMangroveError } from '../../../../bus/errors.js';
import type { Inbound } from '../../../../bus/transport/transport.js';
import { ZmqClient } from '../../../../bus/transport/zmq-client.js';
import { ZmqTransport, zmqLimits } from '../../../../bus/transport/zmq.js';
import { WallClock } from '../../../../runtime/world/clock.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { freePort } from '../../../helpers/ports.js';
import { until } from '../../../helpers/until.js';
import { envelope, transportCompliance } from './transport-compliance.js';

/** Polls `done` on real time, often (a socket answers in a millisecond or two); fails naming `what` after 5 s. */
async function soon(done: () => boolean, what: string): Promise<void> {
  await until(what, done, { timeoutMs: 5000, pollMs: 2 });
}

/** `p`, or a failure naming `what` after `timeoutMs`. */
async function within<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function expectRejection(p: Promise<unknown>, code: string, messagePart: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!isMangroveError(err)) throw err;
    expect(err.code).to.equal(code);
    expect(err.message).to.contain(messagePart);
    return;
  }
  expect.fail(`expected ${code}, but the promise resolved`);
}

const localEndpoint = async (): Promise<string> => `tcp://127.0.0.1:${await freePort()}`;

transportCompliance('ZmqTransport', async (hooks) => {
  const clock = new WallClock();
  const a = await ZmqTransport.open({ self: 'node-a', endpoint: await localEndpoint(), clock, ...hooks });
  const b = await ZmqTransport.open({ self: 'node-b', endpoint: await localEndpoint(), clock, ...hooks });
  return {
    a,
    b,
    aEndpoint: a.endpoint,
    bEndpoint: b.endpoint,
    deadEndpoint: await localEndpoint(),
    clock,
    until: soon,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
});

describe('ZmqTransport on the wire', () => {
  let node: ZmqTransport;
  let clients: ZmqClient[];
  let rejects: string[];
  let raw: zmq.Dealer | undefined;

  /** Answers client.status with reply.ok and the count of requests seen. */
  function serve(): void {
    let served = 0;
    node.inbound.subscribe(({ env, route }: Inbound) => {
      if (env.kind !== 'client.status') return;
      node.reply(route, { v: ENVELOPE_VERSION, kind: 'reply.ok', from: node.self, to: env.from, epoch: 1, seq: ++served, re: env.seq, body: { result: { served } } });
    });
  }

  async function client(timeoutMs = 3000): Promise<ZmqClient> {
    const c = await ZmqClient.connect(node.endpoint, { timeoutMs });
    clients.push(c);
    return c;
  }

  beforeEach(async () => {
    rejects = [];
    clients = [];
    raw = undefined;
    node = await ZmqTransport.open({
      self: 'node-z',
      endpoint: await localEndpoint(),
      clock: new WallClock(),
      onReject: (reason) => rejects.push(reason),
    });
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    raw?.close();
    await node.close();
  });

  it('refuses to open on a port that is taken, saying so', async () => {
    await expectRejection(
      ZmqTransport.open({ self: 'node-y', endpoint: node.endpoint, clock: new WallClock() }),
      'E_BAD_CONFIG',
      node.endpoint,
    );
  });

  it('counts garbage on the ROUTER by reason and still serves a good request', async () => {
    serve();
    const c = await client();
    const random = new SeededRandom(99);
    const good = encode(envelope('client-x', '', 1, 'client.status'));
    const garbage: Uint8Array[][] = [];
    for (let i = 0; i < 20; i++) garbage.push([random.bytes(1 + random.int(200))]);
    garbage.push([new Uint8Array(0)]);
    garbage.push([good, good]);
    garbage.push([good, good, good]);
    garbage.push([good.subarray(0, good.length - 3)]);
    garbage.push([encode(envelope('client-x', '', 2, 'client.status', { kind: 'client.nonsense' }))]);
    garbage.push([encodeValue({ ...envelope('client-x', '', 3), v: ENVELOPE_VERSION + 1 })]);
    garbage.push([encode(envelope('client-x', '', 4, 'hb.claim', { body: { level: 99, domain: 0 } }))]);
    garbage.push([new Uint8Array(limits.frameBytesMax + 1)]);
    for (const frames of garbage) await c.sendRaw(frames);
    await soon(() => node.stats().rejected === garbage.length, `${garbage.length} rejections`);

    const expected: Record<RejectReason, number> = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
    Object.assign(expected, { malformed: 22, multipart: 2, unknown_kind: 1, bad_version: 1, bad_body: 1, oversize: 1 });
    expect(node.stats().rejectedByReason).to.deep.equal(expected);
    expect(rejects.length).to.equal(garbage.length);
    expect(node.stats().received).to.equal(0);

    const answer = await c.request('client.status', {});
    expect(answer).to.deep.equal({ result: { served: 1 } });
  });

  it('sends the requests of one turn as one message, and answers each (the replies of a turn as one message too)', async () => {
    serve();
    const c = await client();
    const answers = await Promise.all(Array.from({ length: 8 }, () => c.request('client.status', {})));
    expect(answers.map((a) => (a as { result: { served: number } }).result.served).sort((x, y) => x - y)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(node.stats().wire, 'eight replies, one message').to.deep.equal({ messages: 1, frames: 8 });
    // A bare DEALER's frame of eight envelopes: eight answers, in one frame.
    const probe = new zmq.Dealer({ linger: 0 });
    probe.connect(node.endpoint);
    raw = probe;
    await probe.send(Buffer.concat(Array.from({ length: 8 }, (_, i) => encode(envelope('client-raw', '', i + 1, 'client.status')))));
    const reply = await within(probe.receive(), 3000, 'the batched replies');
    expect(reply.length, 'one frame').to.equal(1);
    const answered: number[] = [];
    decodeFrame(reply[0], (r) => r.ok && answered.push(r.env.re!));
    expect(answered).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(node.stats().rejected).to.equal(0);
  });

  it('lets ZeroMQ cut a peer that sends more than wireBytesMax, and keeps serving others', async () => {
    serve();
    raw = new zmq.Dealer({ linger: 0 });
    const cut = new Promise<void>((resolve) => raw!.events.on('disconnect', () => resolve()));
    raw.connect(node.endpoint);
    await raw.send(new Uint8Array(zmqLimits.wireBytesMax + 1));
    await within(cut, 5000, 'ZeroMQ to cut the connection');
    const c = await client();
    expect(await c.request('client.status', {})).to.deep.equal({ result: { served: 1 } });
    expect(node.stats().rejected).to.equal(0);
  });

  it('gives a client the node error as a MangroveError', async () => {
    node.inbound.subscribe(({ env, route }) =>
      node.reply(route, {
        v: ENVELOPE_VERSION,
        kind: 'reply.err',
        from: node.self,
        to: env.from,
        epoch: 1,
        seq: 1,
        re: env.seq,
        body: { code: 'E_NO_QUORUM', message: 'no quorum: start more anchors' },
      }),
    );
    const c = await client();
    await expectRejection(c.request('client.status', {}), 'E_NO_QUORUM', 'start more anchors');
  });

  it('times a client out with a sentence naming the endpoint', async () => {
    const dead = await localEndpoint();
    const c = await ZmqClient.connect(dead, { timeoutMs: 100 });
    clients.push(c);
    await expectRejection(c.request('client.status', {}), 'E_UNREACHABLE', `no answer from ${dead} within 100 ms: is the node running?`);
  });

  it('ends waiting requests when the client closes', async () => {
    const c = await client();
    const pending = c.request('client.status', {});
    await soon(() => node.stats().received === 1, 'the request to arrive');
    await c.close();
    await expectRejection(pending, 'E_CLOSED', 'closed');
  });

  it('counts a reply to a client that went away as unsent', async () => {
    const routes: unknown[] = [];
    node.inbound.subscribe(({ route }) => routes.push(route));
    const c = await client();
    void c.request('client.status', {}).catch(() => undefined);
    await soon(() => routes.length === 1, 'the request to arrive');
    await c.close();
    const answer = envelope(node.self, 'gone', 1, 'reply.ok', { re: 1 });
    // The ROUTER learns of the disconnect asynchronously; reply until it has.
    let replies = 0;
    await soon(() => {
      node.reply(routes[0], answer);
      replies++;
      return node.stats().unsent > 0;
    }, 'the ROUTER to refuse the reply');
    const s = node.stats();
    expect(s.sent + s.unsent).to.equal(replies);
    // A refused reply moves from sent to unsent, so the counts stay consistent.
    expect(s.sentByKind['reply.ok'] ?? 0).to.equal(s.sent);
  });
});
