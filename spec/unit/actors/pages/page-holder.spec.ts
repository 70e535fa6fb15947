/**
 * The page holder (actors/pages/page-holder.ts), one node's side of the
 * coherence protocol, driven message by message with a recording `send`:
 * the cases the seeded simulations found and the page-home model does not
 * reach, as the holder keeps state of its own (pending requests, copies).
 */
import { expect } from 'chai';
import { MangroveError } from '../../../../bus/errors.js';
import { addressKey, PAGE_BYTES } from '../../../../machines/memory/address.js';
import type { AccessMode } from '../../../../machines/memory/page-home.js';
import { PageHolder } from '../../../../actors/pages/page-holder.js';
import { RamCache } from '../../../../actors/pages/ram-cache.js';
import { MemoryPageStore } from '../../../../runtime/storage/memory-pages.js';
import { SimClock } from '../../../../runtime/world/clock.js';

const ADDR = 0x1_0000_0000_0000_1000n;
const KEY = addressKey(ADDR);
const HOME = 'h';
const RETRY_MS = 100;

interface Sent {
  to: string;
  kind: string;
  body: Record<string, unknown>;
}

function holder(budgetPages = 64): { h: PageHolder; sent: Sent[]; clock: SimClock; cache: RamCache } {
  const clock = new SimClock(0);
  const sent: Sent[] = [];
  const cache = new RamCache(budgetPages * PAGE_BYTES);
  const h = new PageHolder({
    self: 'me',
    epoch: 1,
    clock,
    cache,
    retryMs: RETRY_MS,
    homeOf: () => HOME,
    isAlive: () => true,
    send: (to, kind, body) => sent.push({ to, kind, body: body as unknown as Record<string, unknown> }),
    store: new MemoryPageStore(),
    pageOut: () => Promise.resolve(),
  });
  return { h, sent, clock, cache };
}

const requestsOf = (sent: Sent[]) => sent.filter((s) => s.kind === 'page.request').map((s) => s.body.req as number);
const data = (req: number, mode: AccessMode, round: number, fill: number) => ({ addr: KEY, rr: 0, req, round, mode, data: new Uint8Array(PAGE_BYTES).fill(fill), version: 4, dirty: true });
const served = (req: number, round: number) => ({ addr: KEY, rr: 0, req, round, version: 5, holders: ['a', 'b'], volatile: false, gen: 1 });

/** This node asks to write, gets the page (dirty, filled with `fill`) at `round` and is granted it: it owns the page (the grant's turn over). */
async function owned(t: { h: PageHolder; sent: Sent[]; clock: SimClock }, round: number, fill: number): Promise<void> {
  const write = t.h.acquire(ADDR, 'write');
  const w = requestsOf(t.sent).at(-1)!;
  t.h.onData(data(w, 'write', round, fill), ADDR);
  t.h.onServed(served(w, round), ADDR);
  await write;
  t.clock.advance(0);
}

/** The `i`th page after ADDR. */
const pageAt = (i: number) => ADDR + BigInt(i * PAGE_BYTES);

/** This node asks to read `addr` and gets a reader's copy (clean, filled with `fill`) at `round`, with the facts `served` gives. */
async function read(t: { h: PageHolder; sent: Sent[]; clock: SimClock }, addr: bigint, round: number, fill: number): Promise<void> {
  const key = addressKey(addr);
  const reading = t.h.acquire(addr, 'read');
  const r = requestsOf(t.sent).at(-1)!;
  t.h.onData({ ...data(r, 'read', round, fill), addr: key, dirty: false }, addr);
  t.h.onServed({ ...served(r, round), addr: key }, addr);
  await reading;
  t.clock.advance(0);
}

describe('page holder', () => {
  it('takes in the data and grant of a request that ended refused but that the home took up after all (a repeat was on its way)', async () => {
    const { h, sent, clock } = holder();
    const first = h.acquire(ADDR, 'write').catch((err: MangroveError) => err.code);
    clock.advance(RETRY_MS); // the request goes out twice
    const [req] = requestsOf(sent);
    expect(requestsOf(sent)).to.deep.equal([req, req]);
    h.onRefused({ addr: KEY, rr: 0, req, code: 'E_RECOVERING', message: 'the home was rebuilding' }, ADDR);
    expect(await first).to.equal('E_RECOVERING');

    // The caller asks again; meanwhile the home took up the repeat and its old owner forwards the page for it.
    const second = h.acquire(ADDR, 'write');
    const next = requestsOf(sent).at(-1)!;
    expect(next).to.be.greaterThan(req);
    sent.length = 0;
    h.onData(data(req, 'write', 3, 7), ADDR);
    expect(sent, 'the late data is confirmed, so the home can finish it').to.deep.equal([{ to: HOME, kind: 'page.confirmed', body: { addr: KEY, req } }]);
    expect(h.modeOf(ADDR)).to.equal('incoming');
    h.onData(data(req, 'write', 3, 7), ADDR); // a repeat of the forward: confirmed again, nothing else
    expect(sent.filter((s) => s.kind === 'page.confirmed')).to.have.length(2);
    h.onServed(served(req, 3), ADDR);
    expect(h.modeOf(ADDR), 'the late grant makes this node the owner').to.equal('write');
    // The new request is then served at once by the home (the requester owns the page).
    h.onServed(served(next, 4), ADDR);
    await second;
    expect(h.writable(ADDR)?.data[0]).to.equal(7);
  });

  it('takes in an older request of its own the home serves now (it ended here first), but no data of a round it has seen past', async () => {
    const { h, sent, clock } = holder();
    // A read that timed out here while its repeats were on their way; then two more, refused.
    for (let k = 0; k < 3; k++) {
      void h.acquire(ADDR, 'read').catch(() => undefined);
      const req = requestsOf(sent).at(-1)!;
      h.onRefused({ addr: KEY, rr: 0, req, code: 'E_RECOVERING', message: 'rebuilding' }, ADDR);
    }
    const [first] = requestsOf(sent);
    const read = h.acquire(ADDR, 'read');
    // The home took up the first one's repeat: its data is taken in and confirmed.
    sent.length = 0;
    h.onData(data(first, 'read', 5, 3), ADDR);
    expect(sent).to.deep.equal([{ to: HOME, kind: 'page.confirmed', body: { addr: KEY, req: first } }]);
    await read;
    expect(h.readable(ADDR)?.data[0]).to.equal(3);
    // An invalidation of round 6, then a late duplicate of round-5 data: dropped, unconfirmed.
    h.onInvalidate({ addr: KEY, rr: 0, round: 6, version: 4 }, ADDR, HOME);
    sent.length = 0;
    h.onData(data(first, 'read', 5, 3), ADDR);
    expect(sent).to.deep.equal([]);
    expect(h.modeOf(ADDR)).to.equal(undefined);
    // Data naming a request of another incarnation is not this node's to take.
    h.onData(data(first - 2 ** 32, 'read', 9, 3), ADDR);
    expect(h.modeOf(ADDR)).to.equal(undefined);
    clock.advance(0);
  });

  it('answers no late duplicate of a forward its copy has outlived: a read copy of a later round stays readable', async () => {
    const t = holder();
    const { h, sent } = t;
    // This node owned the page and handed it on for a write at round 35 (its copy kept, unread)...
    await owned(t, 34, 5);
    const forward = { addr: KEY, rr: 0, requester: 'other', req: 77, round: 35, mode: 'write' as const, version: 6 };
    h.onForward(forward, ADDR);
    expect(h.modeOf(ADDR)).to.equal('kept');
    // ...then read the new owner's version at round 36.
    const read = h.acquire(ADDR, 'read');
    const r = requestsOf(sent).at(-1)!;
    h.onData(data(r, 'read', 36, 8), ADDR);
    h.onServed(served(r, 36), ADDR);
    await read;
    sent.length = 0;
    h.onForward(forward, ADDR); // the round-35 forward again, late
    expect(sent, 'nothing handed on').to.deep.equal([]);
    expect(h.readable(ADDR)?.data[0], 'still readable').to.equal(8);
  });

  it('reads a backup a rebuild named owner only once the round resumes (a newer copy registered after may demote it)', async () => {
    const t = holder();
    const { h, sent } = t;
    await owned(t, 1, 5);
    h.onForward({ addr: KEY, rr: 0, requester: 'other', req: 77, round: 2, mode: 'write', version: 6 }, ADDR);
    h.quiesce(new MangroveError('E_RECOVERING', 'rebuilding'), false);
    const facts = { holders: ['a', 'b'], volatile: false, gen: 1 };
    h.settle(ADDR, { as: 'owner', dirty: true, facts });
    expect(h.readable(ADDR), 'named owner, but the round has not resumed').to.equal(undefined);
    h.resumed();
    expect(h.readable(ADDR)?.data[0]).to.equal(5);
    // A copy readable before the round stays readable through it.
    h.quiesce(new MangroveError('E_RECOVERING', 'rebuilding'), false);
    h.settle(ADDR, { as: 'reader', dirty: false, facts });
    expect(h.readable(ADDR)?.data[0]).to.equal(5);
  });

  it('lets a reader\'s copy of an unflushed version leave RAM only once a flush made that version durable', async () => {
    const { h, sent } = holder();
    const read = h.acquire(ADDR, 'read');
    const [r] = requestsOf(sent);
    h.onData(data(r, 'read', 1, 9), ADDR); // from an owner whose copy is dirty
    h.onServed(served(r, 1), ADDR);
    await read;
    expect(h.unflushedReader(ADDR)).to.equal(4);
    expect(h.release(ADDR), 'the version may be nowhere durable').to.equal(false);
    h.flushed(ADDR, 3);
    expect(h.release(ADDR), 'a flush of an older version is no help').to.equal(false);
    h.flushed(ADDR, 4);
    expect(h.unflushedReader(ADDR)).to.equal(undefined);
    expect(h.release(ADDR)).to.equal(true);
    expect(h.modeOf(ADDR)).to.equal(undefined);
  });

  it('makes a version it owns unflushed and shared with readers durable before each request to write it again', async () => {
    const t = holder();
    const { h, sent, cache } = t;
    await owned(t, 1, 5); // dirty, as the data came
    h.onForward({ addr: KEY, rr: 0, requester: 'reader', req: 8, round: 2, mode: 'read', version: 5 }, ADDR);
    expect(h.modeOf(ADDR), 'shared: read-only').to.equal('read');
    const flushes: number[] = [];
    sent.length = 0;
    const again = h.acquire(ADDR, 'write', async () => {
      flushes.push(requestsOf(sent).length);
      cache.markClean(ADDR, 4);
    });
    await Promise.resolve();
    expect(flushes, 'flushed once, before any request went out').to.deep.equal([0]);
    const [next] = requestsOf(sent);
    h.onServed(served(next, 3), ADDR);
    await again;
    expect(h.modeOf(ADDR)).to.equal('write');
  });

  it('never asks in a tight loop: a home that answers at once while the copy stays unusable is asked a retry period apart', async () => {
    const { h, sent, clock } = holder();
    // A write's data came in, then its request ended refused: the copy waits, unusable, for a late grant.
    void h.acquire(ADDR, 'write').catch(() => undefined);
    const [w] = requestsOf(sent);
    h.onData(data(w, 'write', 2, 5), ADDR);
    h.onRefused({ addr: KEY, rr: 0, req: w, code: 'E_RECOVERING', message: 'rebuilding' }, ADDR);
    expect(h.modeOf(ADDR)).to.equal('incoming');
    // The home (this node) counts it the owner and serves each read at once.
    let answered = 0;
    const read = h.acquire(ADDR, 'read').catch(() => undefined);
    for (let turn = 0; turn < 50; turn++) {
      const open = requestsOf(sent).filter((r) => r > w);
      for (const r of open.slice(answered)) h.onServed(served(r, 2), ADDR);
      answered = open.length;
      await Promise.resolve();
    }
    expect(answered, 'a few asks, then a pause').to.be.at.most(3);
    expect(clock.pending(), 'waiting a retry period').to.be.greaterThan(0);
    // The late grant of the write arrives: the copy is the owner's, and the read goes on.
    h.onServed(served(w, 2), ADDR);
    clock.advance(RETRY_MS);
    await read;
    expect(h.readable(ADDR)?.data[0]).to.equal(5);
  });

  it('uses a write grant before a forward that came with it moves the page on', async () => {
    const { h, sent, clock } = holder();
    const write = h.acquire(ADDR, 'write');
    const [w] = requestsOf(sent);
    h.onData(data(w, 'write', 1, 5), ADDR);
    h.onServed(served(w, 1), ADDR);
    // The home (this node) takes the next request up at once: a read for another node.
    h.onForward({ addr: KEY, rr: 0, requester: 'other', req: 9, round: 2, mode: 'read', version: 5 }, ADDR);
    expect(sent.filter((x) => x.kind === 'page.data'), 'not handed on in the grant\'s turn').to.deep.equal([]);
    await write;
    const page = h.writable(ADDR);
    expect(page, 'still writable when its caller resumes').to.not.equal(undefined);
    page!.data[0] = 6;
    h.wrote(ADDR);
    clock.advance(0);
    const handed = sent.filter((x) => x.kind === 'page.data');
    expect(handed.map((x) => (x.body.data as Uint8Array)[0]), 'the forward, next turn, carries the write').to.deep.equal([6]);
  });

  it('keeps a copy no home ruled on in a rebuild, but reads it no more (shelved)', async () => {
    const { h, sent } = holder();
    const read = h.acquire(ADDR, 'read');
    const [req] = requestsOf(sent);
    h.onData(data(req, 'read', 1, 9), ADDR);
    await read;
    expect(h.readable(ADDR)?.data[0]).to.equal(9);
    h.quiesce(new MangroveError('E_RECOVERING', 'rebuilding'), false);
    h.shelve(ADDR);
    expect(h.readable(ADDR)).to.equal(undefined);
    expect(h.copies().map((c) => c.addr), 'it registers in the next round').to.deep.equal([ADDR]);
  });

  it('keeps what it knows of a page part by part: facts outlive the copy, a dropped copy\'s round is said again, copies register in the order they came in', async () => {
    const t = holder();
    const { h, sent } = t;
    const [a, b] = [pageAt(0), pageAt(1)];
    await read(t, a, 1, 3);
    await read(t, b, 1, 4);
    expect(h.copies().map((c) => c.addr)).to.deep.equal([a, b]);
    h.onInvalidate({ addr: addressKey(a), rr: 0, round: 2, version: 4 }, a, HOME);
    expect(h.modeOf(a)).to.equal(undefined);
    expect(h.factsOf(a), 'the facts outlive the copy').to.deep.equal({ holders: ['a', 'b'], volatile: false, gen: 1 });
    expect(h.copies().map((c) => c.addr)).to.deep.equal([b]);
    await read(t, a, 3, 5);
    expect(h.copies().map((c) => c.addr), 'the copy that came in last registers last').to.deep.equal([b, a]);
    expect(h.counts()).to.deep.equal({ read: 2, write: 0, kept: 0, incoming: 0 });

    // B's copy is dropped; the home, which did not hear of it, serves a read of B without data.
    expect(h.release(b)).to.equal(true);
    sent.length = 0;
    const again = h.acquire(b, 'read');
    const [r] = requestsOf(sent);
    h.onServed({ ...served(r, 2), addr: addressKey(b) }, b);
    expect(sent.filter((x) => x.kind === 'page.dropped'), 'said again, with the dropped copy\'s round').to.deep.equal([{ to: HOME, kind: 'page.dropped', body: { addr: addressKey(b), round: 1 } }]);
    expect(h.factsOf(b), 'no copy: the facts go with it').to.equal(undefined);
    await new Promise((resolve) => setImmediate(resolve)); // the caller's turn: it asks again
    const r2 = requestsOf(sent).at(-1)!;
    expect(r2, 'then asked again').to.be.greaterThan(r);
    h.onData({ ...data(r2, 'read', 3, 6), addr: addressKey(b), dirty: false }, b);
    h.onServed({ ...served(r2, 3), addr: addressKey(b) }, b);
    await again;
    expect(h.readable(b)?.data[0]).to.equal(6);
    expect(h.copies().map((c) => c.addr)).to.deep.equal([a, b]);

    // A rebuild forgets facts and rounds, and with a reset every copy.
    h.quiesce(new MangroveError('E_RECOVERING', 'rebuilding'), false);
    expect([h.factsOf(a), h.factsOf(b)]).to.deep.equal([undefined, undefined]);
    expect(h.copies().map((c) => c.addr)).to.deep.equal([a, b]);
    h.quiesce(new MangroveError('E_RECOVERING', 'rebuilding'), true);
    expect(h.copies()).to.deep.equal([]);
    expect([h.modeOf(a), h.modeOf(b)]).to.deep.equal([undefined, undefined]);
  });

  it('shares one frozen copy of the facts among the pages they are true of, never a list it was handed', async () => {
    const t = holder();
    const { h } = t;
    const [a, b, c] = [pageAt(0), pageAt(1), pageAt(2)];
    await read(t, a, 1, 3);
    await read(t, b, 1, 4);
    const facts = h.factsOf(a)!;
    expect(h.factsOf(b), 'one object for both pages').to.equal(facts);
    expect(Object.isFrozen(facts) && Object.isFrozen(facts.holders), 'read only').to.equal(true);
    const list = ['c', 'd'];
    h.setHolders(b, list);
    list.push('e');
    expect(h.factsOf(b)).to.deep.equal({ holders: ['c', 'd'], volatile: false, gen: 1 });
    expect(h.factsOf(a), 'the other page keeps its facts').to.equal(facts);
    h.installOwn(c, new Uint8Array(PAGE_BYTES), 0, { holders: ['c', 'd'], volatile: false, gen: 2 });
    expect(h.factsOf(c)!.holders, 'the same list under another generation').to.equal(h.factsOf(b)!.holders);
  });

  it('makes room by dropping the least recently used reader copy, and only that one', async () => {
    const t = holder(3);
    const { h, sent } = t;
    for (const i of [0, 1, 2]) await read(t, pageAt(i), 1, i);
    expect(h.readable(pageAt(0))?.data[0]).to.equal(0); // used: page 1 is now the least recently used
    sent.length = 0;
    await read(t, pageAt(3), 1, 3);
    expect(sent.filter((x) => x.kind === 'page.dropped')).to.deep.equal([{ to: HOME, kind: 'page.dropped', body: { addr: addressKey(pageAt(1)), round: 1 } }]);
    expect(h.copies().map((x) => x.addr)).to.deep.equal([pageAt(0), pageAt(2), pageAt(3)]);
    expect(t.cache.addresses()).to.deep.equal([pageAt(2), pageAt(0), pageAt(3)]);
    expect(h.released).to.equal(1);
  });
});
