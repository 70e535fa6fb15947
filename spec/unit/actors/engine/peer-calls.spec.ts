/**
 * Calls between engines (actors/engine/peer-calls.ts): a call is resent until
 * answered, runs at most once on its target however often it arrives,
 * answers a repeat from the answer cache, times out with E_TIMEOUT, and a
 * call to this node itself runs without messages. Simulated clock.
 */
import { expect } from 'chai';
import { PeerCalls } from '../../../../actors/engine/peer-calls.js';
import { MangroveError } from '../../../../bus/errors.js';
import type { PeerCall } from '../../../../bus/messages/page.js';
import { SimClock } from '../../../../runtime/world/clock.js';

type CallBody = { call: number; req: PeerCall };
type AnswerBody = { call: number; ok: boolean; result?: unknown; code?: string; message?: string };

const req: PeerCall = { op: 'fetch', addr: new Uint8Array(16) };

/** Two engines, a and b, wired through queues the spec delivers (or loses) by hand. */
function pair(run: (from: string, r: PeerCall) => Promise<unknown>) {
  const clock = new SimClock(0);
  const toB: CallBody[] = [];
  const toA: AnswerBody[] = [];
  const a = new PeerCalls({ self: 'a', epoch: 3, clock, retryMs: 100, timeoutMs: 1000, send: (_to, body) => toB.push(body), answer: () => {}, run: () => Promise.reject(new Error('a runs nothing')) });
  const b = new PeerCalls({ self: 'b', epoch: 1, clock, retryMs: 100, timeoutMs: 1000, send: () => {}, answer: (_to, body) => toA.push(body), run });
  return { clock, a, b, toB, toA };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('actors/engine/peer-calls', () => {
  it('resends a call until it is answered, and settles with the answer', async () => {
    let runs = 0;
    const { clock, a, b, toB, toA } = pair(async () => ++runs);
    const result = a.call('b', req);
    expect(toB).to.have.length(1);
    clock.advance(250); // two retries: the first sends were lost
    expect(toB).to.have.length(3);
    expect(new Set(toB.map((x) => x.call)).size, 'one call number for every resend').to.equal(1);
    expect(Math.floor(toB[0].call / 2 ** 32), 'the caller\'s epoch in the high bits').to.equal(3);
    b.onCall('a', toB[2]);
    await tick();
    a.onAnswer(toA[0]);
    expect(await result).to.equal(1);
    clock.advance(1000);
    expect(toB, 'no resend after the answer').to.have.length(3);
  });

  it('runs a call at most once, answering repeats from its cache (also while it still runs)', async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { a, b, toB, toA } = pair(async () => {
      runs++;
      await gate;
      return 'done';
    });
    void a.call('b', req);
    b.onCall('a', toB[0]);
    b.onCall('a', toB[0]); // a duplicate while the first runs: no second run, no answer yet
    expect(runs).to.equal(1);
    expect(toA).to.have.length(0);
    release();
    await tick();
    b.onCall('a', toB[0]); // a retry after the answer was lost: the same answer again
    expect(runs).to.equal(1);
    expect(toA.map((x) => [x.ok, x.result])).to.deep.equal([
      [true, 'done'],
      [true, 'done'],
    ]);
  });

  it('answers a refusal with its code and rejects the caller with it', async () => {
    const { a, b, toB, toA } = pair(async () => {
      throw new MangroveError('E_LOCKED', 'held by c');
    });
    const result = a.call('b', req).catch((e: unknown) => e);
    b.onCall('a', toB[0]);
    await tick();
    a.onAnswer(toA[0]);
    const err = (await result) as MangroveError;
    expect([err.code, err.message]).to.deep.equal(['E_LOCKED', 'held by c']);
  });

  it('gives up with E_TIMEOUT, naming the node, and ignores an answer that comes later', async () => {
    const { clock, a, toB } = pair(async () => 0);
    const result = a.call('b', req).catch((e: unknown) => e);
    clock.advance(1000);
    const err = (await result) as MangroveError;
    expect(err.code).to.equal('E_TIMEOUT');
    expect(err.message).to.match(/node b did not answer fetch within 1000 ms/);
    a.onAnswer({ call: toB[0].call, ok: true, result: 1 });
    clock.advance(1000);
    expect(toB.length, 'no resend after giving up').to.equal(10);
  });

  it('runs a call to itself directly, and fails calls in flight when closed', async () => {
    const clock = new SimClock(0);
    const sent: unknown[] = [];
    const calls = new PeerCalls({ self: 'a', epoch: 1, clock, retryMs: 100, timeoutMs: 1000, send: (_t, b) => sent.push(b), answer: () => {}, run: async (from, r) => `${from}:${r.op}` });
    expect(await calls.call('a', req)).to.equal('a:fetch');
    expect(sent).to.deep.equal([]);
    const pending = calls.call('b', req).catch((e: unknown) => e);
    calls.close();
    expect(((await pending) as MangroveError).code).to.equal('E_CLOSED');
  });
});
