/**
 * Request latencies (actors/engine/op-latency.ts), as the flow scheduler
 * records them on a clock the spec moves by hand: from dispatch to settle,
 * the wait in a page's queue included, failures and refusals counted, each
 * in the bucket its time falls in; a snapshot is a copy.
 */
import { expect } from 'chai';
import { FlowScheduler, schedulerLimits } from '../../../../actors/engine/flow-scheduler.js';
import { bucketOf, clientLatencies, LATENCY_BOUNDS_MS, OpLatency, type LatencySnapshot } from '../../../../actors/engine/op-latency.js';
import type { MangroveError } from '../../../../bus/errors.js';

/** A promise the spec settles by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Per-bucket counts with `n` in the bucket whose upper bound is `boundMs` (Infinity: the last). */
function only(boundMs: number, n = 1): number[] {
  const b = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
  b[boundMs === Infinity ? LATENCY_BOUNDS_MS.length : LATENCY_BOUNDS_MS.indexOf(boundMs)] = n;
  return b;
}

interface Input {
  page: string;
  wait?: Promise<void>;
  fail?: boolean;
}

describe('op latency', () => {
  /** A scheduler on a clock at `clock.ms`; `page.write` waits on `wait`, then fails if asked to. */
  function timed() {
    const clock = { ms: 1000 };
    const s = new FlowScheduler(() => clock.ms);
    s.register<Input, string>('page.write', {
      key: (i) => i.page,
      applet: async ({ wait, fail }) => {
        await wait;
        if (fail) throw new Error('the applet failed');
        return 'ok';
      },
    });
    s.register<unknown, string>('client.stat', { applet: async () => 'stat' });
    return { clock, s };
  }

  it('puts a request that took 30 ms in the (25, 50] bucket, with its time in the sum', async () => {
    const { clock, s } = timed();
    const g = gate();
    const done = s.dispatch('page.write', { page: 'p', wait: g.promise });
    await tick();
    clock.ms += 30;
    g.open();
    await done;
    expect(s.latencies()).to.deep.equal({ 'page.write': { n: 1, failed: 0, sumMs: 30, buckets: only(50) } satisfies LatencySnapshot });
  });

  it('counts a failed request as failed, in the bucket of its time', async () => {
    const { clock, s } = timed();
    const g = gate();
    const done = s.dispatch('page.write', { page: 'p', wait: g.promise, fail: true });
    clock.ms += 4;
    g.open();
    await done.then(
      () => expect.fail('should fail'),
      (err: Error) => expect(err.message).to.equal('the applet failed'),
    );
    expect(s.latencies()['page.write']).to.deep.equal({ n: 1, failed: 1, sumMs: 4, buckets: only(5) });
  });

  it("counts the time a request waits behind its page's earlier requests", async () => {
    const { clock, s } = timed();
    const g = gate();
    const first = s.dispatch('page.write', { page: 'p', wait: g.promise });
    clock.ms += 5;
    // Its applet answers at once, but only after the first has settled.
    const second = s.dispatch('page.write', { page: 'p' });
    clock.ms += 15;
    g.open();
    await Promise.all([first, second]);
    // 20 ms and 15 ms: both in (10, 25]; without the wait the second would be in the first bucket.
    expect(s.latencies()['page.write']).to.deep.equal({ n: 2, failed: 0, sumMs: 35, buckets: only(25, 2) });
  });

  it('counts a refusal (a full queue) as a failed request', async () => {
    const { s } = timed();
    const g = gate();
    const queued = Array.from({ length: schedulerLimits.queuedMax }, () => s.dispatch('page.write', { page: 'p', wait: g.promise }));
    await s.dispatch('page.write', { page: 'p' }).then(
      () => expect.fail('should be refused'),
      (err: MangroveError) => expect(err.code).to.equal('E_BUSY'),
    );
    expect(s.latencies()['page.write']).to.deep.include({ n: 1, failed: 1 });
    g.open();
    await Promise.all(queued);
    expect(s.latencies()['page.write']).to.deep.include({ n: schedulerLimits.queuedMax + 1, failed: 1 });
  });

  it('lists only op-codes with a settled request, and gives copies', async () => {
    const { clock, s } = timed();
    expect(s.latencies()).to.deep.equal({});
    await s.dispatch('client.stat', {});
    const before = s.latencies();
    expect(Object.keys(before)).to.deep.equal(['client.stat']);
    before['client.stat']!.buckets[0] = 99;
    before['client.stat']!.n = 99;
    clock.ms += 3000;
    await s.dispatch('client.stat', {});
    const after = s.latencies()['client.stat']!;
    expect(after.n).to.equal(2);
    expect(after.buckets).to.deep.equal(only(0.1, 2));
    expect(before['client.stat']!.n).to.equal(99);
  });

  it('bounds are inclusive; past the last bound is +Inf; a clock that steps back counts as 0', () => {
    const l = new OpLatency();
    l.record(1, false);
    l.record(10_000.5, false);
    l.record(-3, true);
    const snap = l.snapshot();
    expect(snap.buckets[bucketOf(1)]).to.equal(1);
    expect(LATENCY_BOUNDS_MS[bucketOf(1)]).to.equal(1);
    expect(bucketOf(1.0001)).to.equal(LATENCY_BOUNDS_MS.indexOf(2.5));
    expect(bucketOf(10_000.5)).to.equal(LATENCY_BOUNDS_MS.length);
    expect(snap).to.deep.include({ n: 3, failed: 1, sumMs: 10_001.5 });
    expect(snap.buckets[0]).to.equal(1);
    expect(snap.buckets.at(-1)).to.equal(1);
    l.record(2, false);
    expect(snap.n, 'a snapshot does not follow later requests').to.equal(3);
  });

  it("keeps a program's requests (client.*, fs.*) and leaves out the engine's own and other nodes'", () => {
    const s: LatencySnapshot = { n: 1, failed: 0, sumMs: 1, buckets: only(1) };
    expect(Object.keys(clientLatencies({ 'client.read': s, 'fs.stat': s, 'peer.fetch': s, 'page.read1': s }))).to.deep.equal(['client.read', 'fs.stat']);
  });
});
