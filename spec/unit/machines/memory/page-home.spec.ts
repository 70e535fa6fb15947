/**
 * The page home machine (M10): each step of the protocol on its own, then
 * seeded runs in which several nodes read and write one page over a network
 * that delays, drops and duplicates, with the holders' real copies checked
 * against the safety claims after every delivery.
 */
import { expect } from 'chai';
import { PAGE_REQUESTS_QUEUED_MAX, pageHomeMachine, type PageHomeEmitted, type PageHomeEvent } from '../../../../machines/memory/page-home.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { Running } from '../../../helpers/machine-harness.js';

const RETRY = 100;
const home = (owner: string | null = 'h', readers: string[] = [], version = 0) =>
  new Running(pageHomeMachine, { owner, readers, version, retryMs: RETRY });

describe('page home machine', () => {
  it('serves a read by the owner at once', () => {
    const r = home().send({ type: 'REQUEST', mode: 'read', from: 'h', req: 1 });
    expect(r.of('served')).to.deep.equal([{ type: 'served', request: { mode: 'read', from: 'h', req: 1 }, version: 0, round: 1 }]);
    expect(r.value).to.equal('idle');
  });

  it('has the owner send a read copy, and counts the reader once it confirms', () => {
    const r = home().send({ type: 'REQUEST', mode: 'read', from: 'a', req: 1 });
    expect(r.of('forward')).to.deep.equal([{ type: 'forward', to: 'h', requester: 'a', req: 1, round: 1, mode: 'read', version: 0 }]);
    expect(r.value).to.equal('forwarding');
    r.send({ type: 'CONFIRMED', from: 'a', req: 2 }); // a stale confirmation changes nothing
    expect(r.value).to.equal('forwarding');
    r.send({ type: 'CONFIRMED', from: 'a', req: 1 });
    expect(r.value).to.equal('idle');
    expect(r.snapshot.context).to.include({ owner: 'h', version: 0 });
    expect(r.snapshot.context.readers).to.deep.equal(['a']);
  });

  it('forgets a reader that dropped the copy it got, but not for a drop of an older copy', () => {
    const r = home().send({ type: 'REQUEST', mode: 'read', from: 'a', req: 1 }).send({ type: 'CONFIRMED', from: 'a', req: 1 });
    expect(r.snapshot.context.readSince).to.deep.equal({ a: 1 });
    r.send({ type: 'DROPPED', from: 'a', round: 0 }); // a late word about an older copy
    expect(r.snapshot.context.readers).to.deep.equal(['a']);
    r.send({ type: 'DROPPED', from: 'a', round: 1 });
    expect(r.snapshot.context.readers).to.deep.equal([]);
    // Its next read is forwarded to the owner again, not served as already held.
    r.send({ type: 'REQUEST', mode: 'read', from: 'a', req: 2 });
    expect(r.of('forward').at(-1)).to.deep.include({ to: 'h', requester: 'a', req: 2, round: 2 });
  });


  it('forgets a reader a rebuild registered once it drops its copy (held since round 0, as its holder numbers it)', () => {
    const r = home('h', ['a', 'b'], 3);
    expect(r.snapshot.context.readSince).to.deep.equal({ a: 0, b: 0 });
    r.send({ type: 'DROPPED', from: 'a', round: 0 });
    expect(r.snapshot.context.readers).to.deep.equal(['b']);
    // A write then waits for b alone.
    r.send({ type: 'REQUEST', mode: 'write', from: 'h', req: 1 });
    expect(r.of('invalidate').map((e) => e.to)).to.deep.equal(['b']);
  });
  it(`keeps at most ${PAGE_REQUESTS_QUEUED_MAX} requests waiting and refuses the next with E_BUSY, queueing nothing`, () => {
    // The owner is busy forwarding to a, so every later request waits.
    const r = home().send({ type: 'REQUEST', mode: 'read', from: 'a', req: 1 });
    for (let i = 0; i < PAGE_REQUESTS_QUEUED_MAX; i++) r.send({ type: 'REQUEST', mode: 'read', from: `n${i}`, req: 1 });
    expect(r.snapshot.context.queue).to.have.length(PAGE_REQUESTS_QUEUED_MAX);
    expect(r.of('refused')).to.deep.equal([]);
    r.send({ type: 'REQUEST', mode: 'write', from: 'late', req: 7 });
    expect(r.of('refused')).to.deep.equal([{ type: 'refused', request: { mode: 'write', from: 'late', req: 7 }, code: 'E_BUSY' }]);
    expect(r.snapshot.context.queue).to.have.length(PAGE_REQUESTS_QUEUED_MAX);
    expect(r.snapshot.context.queue.some((q) => q.from === 'late')).to.equal(false);
    // A repeat of a queued request is still recognised, not refused.
    r.send({ type: 'REQUEST', mode: 'read', from: 'n0', req: 1 });
    expect(r.of('refused')).to.have.length(1);
  });

  it('says served again when a confirmation of the last request served comes back (its served was lost)', () => {
    const r = home().send({ type: 'REQUEST', mode: 'read', from: 'a', req: 1 }).send({ type: 'CONFIRMED', from: 'a', req: 1 });
    expect(r.of('served')).to.have.length(1);
    r.send({ type: 'CONFIRMED', from: 'a', req: 1 });
    expect(r.of('served')).to.deep.equal([
      { type: 'served', request: { mode: 'read', from: 'a', req: 1 }, version: 0, round: 1 },
      { type: 'served', request: { mode: 'read', from: 'a', req: 1 }, version: 0, round: 1 },
    ]);
  });

  it('hands the page over first, then invalidates the readers, then grants the write at the next version; the old owner keeps its copy until the next write', () => {
    const r = home('h', ['a', 'b', 'c'], 4).send({ type: 'REQUEST', mode: 'write', from: 'b', req: 9 });
    expect(r.of('forward')).to.deep.equal([{ type: 'forward', to: 'h', requester: 'b', req: 9, round: 1, mode: 'write', version: 4 }]);
    expect(r.of('invalidate'), 'no copy goes before the requester has the page').to.deep.equal([]);
    r.send({ type: 'CONFIRMED', from: 'b', req: 9 });
    expect(r.value).to.equal('releasing');
    expect(r.of('invalidate').map((e) => e.to)).to.deep.equal(['a', 'c']);
    r.send({ type: 'INVALIDATED', from: 'c', round: 0 }); // a late acknowledgement of an older round counts for nothing
    r.send({ type: 'INVALIDATED', from: 'a', round: 1 });
    expect(r.snapshot.context.waiting).to.deep.equal(['c']);
    expect(r.of('served')).to.deep.equal([]);
    r.send({ type: 'INVALIDATED', from: 'c', round: 1 });
    expect(r.snapshot.context).to.deep.include({ owner: 'b', readers: [], kept: ['h'], version: 5, current: null });
    expect(r.of('served')).to.deep.equal([{ type: 'served', request: { mode: 'write', from: 'b', req: 9 }, version: 5, round: 1 }]);
    // The next write (a read in between changes nothing) drops the backup, then goes on with its own hand-over.
    r.send({ type: 'REQUEST', mode: 'write', from: 'c', req: 1 });
    r.send({ type: 'CONFIRMED', from: 'c', req: 1 });
    expect(r.of('invalidate').at(-1)).to.deep.equal({ type: 'invalidate', to: 'h', round: 2, version: 5 });
    r.send({ type: 'INVALIDATED', from: 'h', round: 2 });
    expect(r.snapshot.context).to.deep.include({ owner: 'c', readers: [], kept: ['b'], version: 6 });
  });

  it('leaves every copy in place while the owner it asks to hand over is dead (the rebuild finds the newest on a reader)', () => {
    const r = home('h', ['a'], 4).send({ type: 'REQUEST', mode: 'write', from: 'b', req: 1 });
    r.clock.advance(5 * RETRY);
    expect(r.of('forward')).to.have.length(6);
    expect(r.of('invalidate')).to.deep.equal([]);
    r.send({ type: 'HOLDER_FAILED', id: 'h' });
    expect(r.of('refused')).to.deep.equal([{ type: 'refused', request: { mode: 'write', from: 'b', req: 1 }, code: 'E_PAGE_LOST' }]);
    expect(r.snapshot.context.readers, 'the reader keeps its copy').to.deep.equal(['a']);
  });

  it('gives the page back to the old owner when the new one dies before the write is granted; readers not yet invalidated stay counted', () => {
    const r = home('h', ['a', 'c'], 2).send({ type: 'REQUEST', mode: 'write', from: 'b', req: 1 });
    r.send({ type: 'CONFIRMED', from: 'b', req: 1 });
    r.send({ type: 'INVALIDATED', from: 'a', round: 1 });
    r.send({ type: 'HOLDER_FAILED', id: 'b' });
    expect(r.value).to.equal('idle');
    expect(r.snapshot.context).to.deep.include({ owner: 'h', readers: ['c'], version: 2, current: null });
    expect(r.of('served')).to.deep.equal([]);
  });

  it('lets the owner write once its readers are gone, with nothing to hand over', () => {
    const r = home('h', ['a']).send({ type: 'REQUEST', mode: 'write', from: 'h', req: 1 });
    r.send({ type: 'INVALIDATED', from: 'a', round: 1 });
    expect(r.of('forward')).to.deep.equal([]);
    expect(r.snapshot.context).to.deep.include({ owner: 'h', readers: [], version: 1 });
  });

  it('serves one request at a time, in arrival order, and a repeated request once', () => {
    const r = home();
    r.send({ type: 'REQUEST', mode: 'write', from: 'a', req: 1 });
    r.send({ type: 'REQUEST', mode: 'read', from: 'b', req: 1 });
    r.send({ type: 'REQUEST', mode: 'write', from: 'a', req: 1 });
    expect(r.snapshot.context.queue).to.deep.equal([{ mode: 'read', from: 'b', req: 1 }]);
    r.send({ type: 'CONFIRMED', from: 'a', req: 1 });
    r.send({ type: 'INVALIDATED', from: 'h', round: 1 });
    // Now b's read goes to the new owner, a.
    expect(r.of('forward').at(-1)).to.deep.equal({ type: 'forward', to: 'a', requester: 'b', req: 1, round: 2, mode: 'read', version: 1 });
  });

  it('repeats what is unanswered every retry period', () => {
    const r = home('h', ['a']).send({ type: 'REQUEST', mode: 'write', from: 'b', req: 1 });
    expect(r.of('forward')).to.have.length(1);
    r.clock.advance(RETRY);
    expect(r.of('forward')).to.have.length(2);
    r.send({ type: 'CONFIRMED', from: 'b', req: 1 });
    expect(r.of('invalidate')).to.have.length(1);
    r.clock.advance(RETRY);
    expect(r.of('invalidate')).to.have.length(2);
  });

  it('leaves a page whose new owner died after the grant without an owner until the rebuild, which weighs the old owner\'s backup', () => {
    const r = home().send({ type: 'REQUEST', mode: 'write', from: 'a', req: 1 });
    r.send({ type: 'CONFIRMED', from: 'a', req: 1 });
    expect(r.of('served')).to.have.length(1);
    r.send({ type: 'HOLDER_FAILED', id: 'a' });
    expect(r.value).to.equal('idle');
    expect(r.snapshot.context).to.deep.include({ owner: null, kept: ['h'], version: 1, current: null });
  });

  it('stops waiting for a failed reader, and refuses while a failed owner leaves the page without one', () => {
    const r = home('h', ['a']).send({ type: 'REQUEST', mode: 'write', from: 'b', req: 1 });
    r.send({ type: 'HOLDER_FAILED', id: 'a' });
    expect(r.value).to.equal('forwarding');
    r.send({ type: 'HOLDER_FAILED', id: 'h' });
    expect(r.of('refused')).to.deep.equal([{ type: 'refused', request: { mode: 'write', from: 'b', req: 1 }, code: 'E_PAGE_LOST' }]);
    r.send({ type: 'REQUEST', mode: 'read', from: 'c', req: 1 });
    expect(r.of('refused')).to.have.length(2);
    // Recovery names the holder of the freshest disk copy; versions never go back.
    r.send({ type: 'SET_OWNER', owner: 'k', version: 0 });
    r.send({ type: 'REQUEST', mode: 'read', from: 'c', req: 2 });
    expect(r.of('forward').at(-1)).to.include({ to: 'k', requester: 'c' });
  });

  describe('seeded runs over a lossy network', () => {
    for (let seed = 1; seed <= 60; seed++) {
      it(`seed ${seed}: at most one writer, no copy beside it, versions only rise, every request served`, () => run(seed));
    }
  });
});

interface Copy {
  version: number;
  writable: boolean;
  /** Kept by an old owner after a hand-over until invalidated: for retransmission, never read. */
  backup?: boolean;
  /** The home's round the copy came in. */
  round: number;
}

/**
 * Nodes h (the home and first owner), a, b, c each hold at most one copy of
 * the page. The home machine's emitted events become messages; holders
 * answer them as the page actor will. Messages are delayed, dropped and
 * duplicated; the home retries.
 */
function run(seed: number): void {
  const rnd = new SeededRandom(seed);
  const nodes = ['h', 'a', 'b', 'c'];
  const copies = new Map<string, Copy>([['h', { version: 0, writable: true, round: 0 }]]);
  const r = home('h');
  const inflight: { at: number; deliver: () => void }[] = [];
  const post = (deliver: () => void): void => {
    if (rnd.next() < 0.15) return; // dropped
    const copiesOf = rnd.next() < 0.1 ? 2 : 1; // duplicated
    for (let i = 0; i < copiesOf; i++) inflight.push({ at: r.clock.now() + 1 + rnd.int(60), deliver });
  };
  const toHome = (e: PageHomeEvent): void => post(() => r.send(e));
  const pending = new Map<string, { mode: 'read' | 'write'; req: number; got?: boolean }>();
  let reqs = 0;
  let served = 0;
  let lastVersion = 0;

  const check = (): void => {
    const ctx = r.snapshot.context;
    const readable = [...copies].filter(([, c]) => !c.backup);
    const writers = readable.filter(([, c]) => c.writable);
    expect(writers.length, `seed ${seed}: writers`).to.be.at.most(1);
    if (writers.length === 1) expect(readable.length, `seed ${seed}: copies beside the writer ${writers[0][0]}: ${JSON.stringify([...copies])} home ${JSON.stringify(r.snapshot.context)} last ${JSON.stringify(r.emitted.slice(-6))}`).to.equal(1);
    expect(copies.size, `seed ${seed}: the page exists somewhere`).to.be.at.least(1);
    expect(ctx.version, `seed ${seed}: version`).to.be.at.least(lastVersion);
    lastVersion = ctx.version;
    for (const [, c] of copies) expect(c.version, `seed ${seed}: a copy newer than the home's version`).to.be.at.most(ctx.version + 1);
  };

  let handled = 0;
  const react = (): void => {
    for (; handled < r.emitted.length; handled++) {
      const e = r.emitted[handled] as PageHomeEmitted;
      if (e.type === 'invalidate') {
        post(() => {
          const c = copies.get(e.to);
          if (c && c.round >= e.round) return; // an old invalidation: this copy came later
          copies.delete(e.to);
          toHome({ type: 'INVALIDATED', from: e.to, round: e.round });
        });
      } else if (e.type === 'forward') {
        post(() => {
          const src = copies.get(e.to);
          if (!src) return;
          const version = src.version;
          if (e.mode === 'read') {
            src.writable = false;
            post(() => {
              const p = pending.get(e.requester);
              if (p?.req !== e.req) return; // a late duplicate: not what the requester waits for
              if (!copies.has(e.requester)) copies.set(e.requester, { version, writable: false, round: e.round });
              p.got = true;
              toHome({ type: 'CONFIRMED', from: e.requester, req: p.req });
            });
          } else {
            src.writable = false;
            src.backup = true;
            post(() => {
              const p = pending.get(e.requester);
              if (p?.req !== e.req) return;
              copies.set(e.requester, { version, writable: false, round: e.round });
              p.got = true;
              toHome({ type: 'CONFIRMED', from: e.requester, req: p.req });
            });
          }
        });
      } else if (e.type === 'served') {
        const p = pending.get(e.request.from);
        if (p && p.req === e.request.req) {
          pending.delete(e.request.from);
          served++;
          // A granted write: the requester's copy becomes the writable one, at the new version.
          const mine = copies.get(e.request.from);
          if (e.request.mode === 'write' && mine) copies.set(e.request.from, { ...mine, version: e.version, writable: true, backup: false });
        }
      }
    }
  };

  /** A requester that holds what it asked for repeats its confirmation (the first may be lost), else its request. */
  const retry = (): void => {
    for (const [from, p] of pending) {
      const holds = p.got === true && copies.has(from);
      toHome(holds ? { type: 'CONFIRMED', from, req: p.req } : { type: 'REQUEST', mode: p.mode, from, req: p.req });
    }
  };

  /** Delivers the earliest message in flight (or lets the retry timers run), then checks. */
  const deliverNext = (): void => {
    inflight.sort((x, y) => x.at - y.at);
    const next = inflight.shift();
    if (next) {
      r.clock.runUntil(next.at);
      next.deliver();
    } else r.clock.advance(RETRY);
    react();
    check();
  };

  for (let step = 0; step < 400; step++) {
    if (rnd.next() < 0.2) {
      const from = nodes[rnd.int(nodes.length)];
      if (!pending.has(from)) {
        const p = { mode: rnd.next() < 0.5 ? ('read' as const) : ('write' as const), req: ++reqs };
        pending.set(from, p);
        toHome({ type: 'REQUEST', mode: p.mode, from, req: p.req });
      }
    }
    // Requesters repeat what they have not been answered (their own retry).
    if (step % 25 === 0) retry();
    deliverNext();
  }
  // Drain: no new requests; everything asked is eventually served.
  for (let i = 0; i < 5000 && pending.size > 0; i++) {
    if (i % 25 === 0) retry();
    deliverNext();
  }
  expect(pending.size, `seed ${seed}: requests never served ${JSON.stringify([...pending])}; home ${JSON.stringify(r.value)} ${JSON.stringify(r.snapshot.context)}; copies ${JSON.stringify([...copies])}`).to.equal(0);
  expect(served, `seed ${seed}`).to.be.greaterThan(5);
}
