/**
 * `npm run bench -- cache-memory`: what a cached page costs a node beyond
 * its 4 KiB (issue 11: under 256 bytes at 100,000 cached pages), and what a
 * cache hit costs in time.
 *
 * Each figure comes from its own child process (`--expose-gc`), so one
 * scenario's garbage or JIT state cannot blur another's. A scenario fills
 * 100,000 pages, collects garbage, and reports the growth of V8's heap plus
 * its external memory (page buffers live there) per page, minus the page's
 * 4,096 bytes; RSS growth is reported beside it because malloc's own
 * bookkeeping for each buffer shows only there. The scenarios add one layer
 * each, so their differences name the parts:
 *  - buffers: one `new Uint8Array(4096)` per page, each with its own ArrayBuffer
 *    (what page-holder.ts allocates today);
 *  - slab: views into one shared ArrayBuffer, the cheaper alternative;
 *  - cache, cacheOverSlab: a RamCache holding those pages;
 *  - holder: a PageHolder taking 100,000 reader copies through the coherence
 *    protocol (request, data, served) over its RamCache, each address a fresh
 *    bigint per message as a decoder makes them: the whole per-page state of a
 *    node that caches pages it does not own.
 * Hits: ns per `get` (a touch) and per `peek`, on random walks over all 100,000
 * pages and over 1,000 of them. Full: µs per reader copy coming into a holder
 * whose cache is full (20,000 pages), each making room.
 * Last line: {"bench":"cache-memory","figures":{...},"ratios":{...}}.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { CoherenceBody } from '../bus/messages/page.js';
import { PAGE_BYTES } from '../machines/memory/address.js';
import { RamCache } from '../actors/pages/ram-cache.js';
import { PageHolder } from '../actors/pages/page-holder.js';
import { MemoryPageStore } from '../runtime/storage/memory-pages.js';
import { SimClock } from '../runtime/world/clock.js';

const PAGES = 100_000;
const BOUND_BYTES = 256;
const HITS = 5_000_000;
/** The full cache's size in pages, and the arrivals timed once it has turned over. */
const FULL_PAGES = 20_000;
const FULL_ARRIVALS = 20_000;
/** Above 64 bits, as arena addresses are: a two-digit bigint, like the ones a node keeps. */
const BASE = 1n << 64n;
const P = BigInt(PAGE_BYTES);
const addrOf = (i: number): bigint => BASE + BigInt(i) * P;

type Scenario = 'buffers' | 'slab' | 'cache' | 'cacheOverSlab' | 'holder' | 'hits' | 'full';
type Growth = { heapPerPage: number; rssPerPage: number };

const gc = (globalThis as { gc?: () => void }).gc;

function used(): { heap: number; rss: number } {
  for (let i = 0; i < 4; i++) gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed + m.external, rss: m.rss };
}

/** Each page written to, as a cached page is: untouched zero pages would cost no RSS. */
function written(pages: Uint8Array[]): Uint8Array[] {
  for (const p of pages) p.fill(1);
  return pages;
}

function separateBuffers(): Uint8Array[] {
  return written(Array.from({ length: PAGES }, () => new Uint8Array(PAGE_BYTES)));
}

function slabViews(): Uint8Array[] {
  const slab = new ArrayBuffer(PAGES * PAGE_BYTES);
  return written(Array.from({ length: PAGES }, (_, i) => new Uint8Array(slab, i * PAGE_BYTES, PAGE_BYTES)));
}

function filledCache(pages: Uint8Array[]): RamCache {
  const cache = new RamCache(PAGES * PAGE_BYTES);
  pages.forEach((data, i) => cache.put(addrOf(i), { data, version: 1 }));
  return cache;
}

/** A holder whose RAM cache takes `budgetPages`, and a function that brings it reader copies of pages `from` .. `to` - 1 as the protocol does. */
function readerHolder(budgetPages: number): { h: PageHolder; take(from: number, to: number): Promise<void> } {
  const clock = new SimClock(0);
  let req = 0;
  const h = new PageHolder({
    self: 'me',
    epoch: 1,
    clock,
    cache: new RamCache(budgetPages * PAGE_BYTES),
    retryMs: 100,
    homeOf: () => 'home',
    isAlive: () => true,
    send: (_to, kind, body) => {
      if (kind === 'page.request') req = (body as unknown as CoherenceBody<'page.request'>).req;
    },
    store: new MemoryPageStore(),
    pageOut: () => Promise.resolve(),
  });
  const wire = new Uint8Array(PAGE_BYTES);
  const take = async (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const read = h.acquire(addrOf(i), 'read');
      const key = new Uint8Array(16);
      h.onData({ addr: key, rr: 0, req, round: 1, mode: 'read', data: wire, version: 1, dirty: false }, addrOf(i));
      h.onServed({ addr: key, rr: 0, req, round: 1, version: 1, holders: ['node-a', 'node-b'], volatile: false, gen: 1 }, addrOf(i));
      await read;
      // The simulated clock lets go of a cleared timer only as it moves, as a wall clock does at once.
      clock.advance(0);
    }
  };
  return { h, take };
}

/** A reader's copies as the protocol brings them: acquire sends the request, the home's data and grant come back. */
async function filledHolder(): Promise<PageHolder> {
  const { h, take } = readerHolder(PAGES);
  await take(0, PAGES);
  return h;
}

/**
 * µs per reader copy coming into a full cache of FULL_PAGES pages, through
 * the protocol as in `holder`: each makes room, dropping the least recently
 * used copy (and telling its home).
 */
async function fullHolder(): Promise<Record<string, number>> {
  const { take } = readerHolder(FULL_PAGES);
  await take(0, FULL_PAGES);
  await take(FULL_PAGES, 2 * FULL_PAGES);
  const t0 = process.hrtime.bigint();
  await take(2 * FULL_PAGES, 2 * FULL_PAGES + FULL_ARRIVALS);
  return { fullArrivalUs: Number(process.hrtime.bigint() - t0) / 1000 / FULL_ARRIVALS };
}

async function growth(fill: () => unknown): Promise<Growth> {
  const before = used();
  const kept = await fill();
  const after = used();
  // Read after the measurement, so what was filled is alive through it.
  if (kept === undefined) throw new Error('nothing filled');
  return { heapPerPage: (after.heap - before.heap) / PAGES - PAGE_BYTES, rssPerPage: (after.rss - before.rss) / PAGES - PAGE_BYTES };
}

/**
 * Short walks, many of them: a walk stays in the CPU's caches as a freshly
 * decoded address would, while the pages it hits are spread over `pages`.
 * Each address is its own bigint, as a decoder makes them, not the cache's key.
 */
function randomWalks(pages: number): bigint[][] {
  let x = 12345;
  return Array.from({ length: 100 }, () =>
    Array.from({ length: 10_000 }, () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return addrOf(x % pages);
    }),
  );
}

/**
 * ns per call of `op` over the walks, taken in turn: a pass never replays
 * the order the last one left (a cache kept in recency order would then be
 * laid out for it, and hit warm memory it would not see in use).
 */
function nsPer(op: (addr: bigint) => unknown, walks: bigint[][]): number {
  let sink = 0;
  const pass = (walk: bigint[]) => {
    for (const a of walk) if (op(a) !== undefined) sink++;
  };
  walks.forEach(pass);
  let calls = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; calls < HITS; r++) {
    const walk = walks[r % walks.length];
    pass(walk);
    calls += walk.length;
  }
  const ns = Number(process.hrtime.bigint() - t0) / calls;
  if (sink === 0) throw new Error('no hit');
  return ns;
}

/**
 * ns per `get` and `peek` hit, `peek` first (it moves nothing): over all
 * 100,000 pages, where a lookup mostly waits on memory, and over 1,000 of
 * them, where what the code itself costs shows.
 */
function hits(): Record<string, number> {
  const cache = filledCache(separateBuffers());
  const all = randomWalks(PAGES);
  const hot = randomWalks(1_000);
  return {
    peekNs: nsPer((a) => cache.peek(a), all),
    getNs: nsPer((a) => cache.get(a), all),
    peekHotNs: nsPer((a) => cache.peek(a), hot),
    getHotNs: nsPer((a) => cache.get(a), hot),
  };
}

async function measure(scenario: Scenario): Promise<Record<string, number>> {
  if (!gc) throw new Error('run with --expose-gc');
  switch (scenario) {
    case 'buffers':
      return growth(separateBuffers);
    case 'slab':
      return growth(slabViews);
    case 'cache':
      return growth(() => filledCache(separateBuffers()));
    case 'cacheOverSlab':
      return growth(() => filledCache(slabViews()));
    case 'holder':
      return growth(filledHolder);
    case 'hits':
      return hits();
    case 'full':
      return fullHolder();
  }
}

function inChild(scenario: Scenario): Record<string, number> {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, ['--expose-gc', '--max-old-space-size=4096', '--import', 'tsx', self, scenario], { encoding: 'utf8' });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !last) throw new Error(`scenario ${scenario} failed: ${r.stderr.slice(-500)}`);
  return JSON.parse(last) as Record<string, number>;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;

function main(): void {
  const figures: Record<string, number> = { pages: PAGES };
  for (const s of ['buffers', 'slab', 'cache', 'cacheOverSlab', 'holder'] as const) {
    const g = inChild(s);
    figures[`${s}HeapBytesPerPage`] = round1(g.heapPerPage);
    figures[`${s}RssBytesPerPage`] = round1(g.rssPerPage);
    console.error(`${s.padEnd(14)} beyond each 4 KiB page: ${round1(g.heapPerPage)} B heap+external, ${round1(g.rssPerPage)} B RSS`);
  }
  const h = inChild('hits');
  for (const k of ['getNs', 'peekNs', 'getHotNs', 'peekHotNs']) figures[k] = round1(h[k]);
  console.error(`hit, ${PAGES} pages cached, walking all of them: get ${figures.getNs} ns, peek ${figures.peekNs} ns`);
  console.error(`hit, ${PAGES} pages cached, walking 1,000 of them: get ${figures.getHotNs} ns, peek ${figures.peekHotNs} ns`);
  figures.fullArrivalUs = round2(inChild('full').fullArrivalUs);
  console.error(`a reader copy coming into a full cache of ${FULL_PAGES} pages (dropping the oldest): ${figures.fullArrivalUs} µs`);
  // Against the bound (256 B a page): below 1 means within it.
  const ratios = {
    cacheVsBound: round2(figures.cacheHeapBytesPerPage / BOUND_BYTES),
    holderVsBound: round2(figures.holderHeapBytesPerPage / BOUND_BYTES),
  };
  console.log(JSON.stringify({ bench: 'cache-memory', figures, ratios }));
}

const scenario = process.argv[2] as Scenario | undefined;
if (scenario === undefined) main();
else console.log(JSON.stringify(await measure(scenario)));
