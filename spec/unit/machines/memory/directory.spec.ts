/**
 * The global disk directory (SPEC M8; machines/memory/directory.ts) over an
 * in-memory page map: random runs checked against a sorted-array model,
 * page sizes, reopening, refusals, a crash at every k-th write, and corrupt
 * pages. Every random run is seeded and names its seed when it fails.
 */
import { expect } from 'chai';
import { Encoder } from 'cbor-x';
import { isMangroveError } from '../../../../bus/errors.js';
import { addressKey, formatAddress, MAX_ADDRESS, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { Directory, type DirectoryEntry, type DirectoryPages } from '../../../../machines/memory/directory.js';
import { BODY_BYTES_MAX, decodeDirectoryPage, HEADER_BYTES, sealDirectoryPage } from '../../../../machines/memory/directory-page.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { errorOf } from '../../../helpers/error-of.js';

const P = BigInt(PAGE_BYTES);
const ROOT = 0n;
const SEEDS = [5_909_540, 1, 2, 3];

/** Thrown by the page map to simulate a crash; not a MangroveError. */
class Crash extends Error {}

/** DirectoryPages over a Map, counting writes and able to crash at chosen ones. */
class MemoryPages implements DirectoryPages {
  readonly map = new Map<bigint, Uint8Array>();
  writes = 0;
  reads = 0;
  oversized: string[] = [];
  /** Crash at write numbers that are multiples of this (0: never). */
  crashEvery = 0;
  /** Whether a crashing write lands before the crash. */
  landsBeforeCrash = false;
  private next = 0x10_0000n;

  read(addr: bigint): Uint8Array | undefined {
    this.reads += 1;
    return this.map.get(addr)?.slice();
  }
  write(addr: bigint, data: Uint8Array): void {
    this.writes += 1;
    if (data.byteLength > PAGE_BYTES || ((data[1] << 8) | data[2]) > BODY_BYTES_MAX) this.oversized.push(formatAddress(addr));
    const crash = this.crashEvery > 0 && this.writes % this.crashEvery === 0;
    if (crash && !this.landsBeforeCrash) throw new Crash(`crash before write ${this.writes}`);
    this.map.set(addr, data.slice());
    if (crash) throw new Crash(`crash after write ${this.writes}`);
  }
  allocate(): bigint {
    this.next += P;
    return this.next;
  }
  release(addr: bigint): void {
    this.map.delete(addr);
  }
}

/** The reference: a sorted array of entries. */
class Model {
  entries: DirectoryEntry[] = [];
  meta = { highWater: 0n, superRoot: null as bigint | null };

  conflict(e: DirectoryEntry): DirectoryEntry | undefined {
    return this.entries.find((o) => o.start < end(e) && e.start < end(o));
  }
  insert(e: DirectoryEntry): void {
    const at = this.entries.findIndex((o) => o.start > e.start);
    this.entries.splice(at < 0 ? this.entries.length : at, 0, e);
  }
  remove(start: bigint): DirectoryEntry | undefined {
    const at = this.entries.findIndex((o) => o.start === start);
    return at < 0 ? undefined : this.entries.splice(at, 1)[0];
  }
  lookup(addr: bigint): DirectoryEntry | undefined {
    return this.entries.find((o) => o.start <= addr && addr < end(o));
  }
  from(addr: bigint): DirectoryEntry[] {
    return this.entries.filter((o) => end(o) > addr);
  }
  clone(): Model {
    const m = new Model();
    m.entries = this.entries.slice();
    m.meta = { ...this.meta };
    return m;
  }
  text(): string {
    return `${this.entries.map(show).join('\n')}\nmeta ${this.meta.highWater} ${this.meta.superRoot}`;
  }
}

function end(e: DirectoryEntry): bigint {
  return e.start + BigInt(e.pages) * P;
}

function show(e: DirectoryEntry): string {
  return `${formatAddress(e.start)}+${e.pages} ${e.state} ${e.copies} ${e.volatile} ${e.cacheInRam} [${e.holders.join(',')}]`;
}

function textOf(dir: Directory): string {
  const m = dir.meta();
  return `${[...dir.entries()].map(show).join('\n')}\nmeta ${m.highWater} ${m.superRoot}`;
}

const ID_CHARS = [...'abcdefghijklmnopqrstuvwxyz0123456789-é€𝄞'];

function randomId(rng: SeededRandom, heavy: boolean): string {
  const want = heavy ? 48 + rng.int(17) : 1 + rng.int(rng.int(4) === 0 ? 64 : 12);
  let id = '';
  while (id.length < want) {
    const c = ID_CHARS[rng.int(ID_CHARS.length)];
    if (id.length + c.length <= want) id += c;
  }
  return id;
}

/** Mostly small ranges in a dense low area (so inserts collide), some in other arenas and at the top of the space. */
function randomEntry(rng: SeededRandom, heavy = false): DirectoryEntry {
  const where = rng.int(10);
  const slot = BigInt(rng.int(1 << 13));
  const start = where < 8 ? slot * P : where === 8 ? (BigInt(1 + rng.int(3)) << 64n) | (slot * P) : MAX_ADDRESS + 1n - (slot + 1n) * P;
  const room = Number((MAX_ADDRESS + 1n - start) / P);
  const pages = Math.min(room, 1 + rng.int(rng.int(8) === 0 ? 64 : 4));
  if (!heavy && rng.int(3) === 0) return { start, pages, state: 'reserved', copies: 0, volatile: false, holders: [], cacheInRam: rng.int(2) === 0 };
  const holders = new Set<string>();
  const n = heavy ? 8 : 1 + rng.int(8);
  while (holders.size < n) holders.add(randomId(rng, heavy));
  return { start, pages, state: 'materialized', copies: 1 + rng.int(8), volatile: rng.int(4) === 0, holders: [...holders], cacheInRam: rng.int(2) === 0 };
}

/** Inserts random entries, in the directory and the model alike, until the tree is `depth` deep. */
function growTo(dir: Directory, model: Model, rng: SeededRandom, depth: number, heavy = false): void {
  while (dir.shape().depth < depth) {
    const e = randomEntry(rng, heavy);
    if (model.conflict(e)) continue;
    dir.insert(e);
    model.insert(e);
  }
}

/** A directory on pages of its own, with the model beside it, grown `depth` deep (growTo). */
function grownTree(rng: SeededRandom, depth: number, heavy = false): { pages: MemoryPages; dir: Directory; model: Model } {
  const pages = new MemoryPages();
  const dir = Directory.open(pages, ROOT);
  const model = new Model();
  growTo(dir, model, rng, depth, heavy);
  return { pages, dir, model };
}

/** Runs `body` with a generator for `seed`, naming the seed in any failure. */
function seeded(seed: number, body: (rng: SeededRandom) => void): void {
  try {
    body(new SeededRandom(seed));
  } catch (e) {
    if (e instanceof Error) e.message = `seed ${seed}: ${e.message}`;
    throw e;
  }
}

/** Addresses around the model's entries' edges, and some anywhere. */
function probe(rng: SeededRandom, model: Model): bigint {
  if (model.entries.length === 0 || rng.int(5) === 0) return BigInt(rng.int(1 << 13)) * P + BigInt(rng.int(PAGE_BYTES));
  const e = model.entries[rng.int(model.entries.length)];
  const choices = [e.start, e.start - 1n, end(e) - 1n, end(e), e.start + BigInt(rng.int(e.pages * PAGE_BYTES))];
  const a = choices[rng.int(choices.length)];
  return a < 0n ? 0n : a > MAX_ADDRESS ? MAX_ADDRESS : a;
}

interface RunOptions {
  ops: number;
  /** Chance that an op is an insert, for each half of the run. */
  insertShare: [number, number];
  heavy?: boolean;
  /** Check everything every this many ops. */
  checkEvery: number;
}

/** One random op against both; returns a label for failure messages. */
function step(rng: SeededRandom, dir: Directory, model: Model, pages: MemoryPages, share: number, heavy: boolean): string {
  const roll = rng.next();
  if (roll < share) {
    const e = randomEntry(rng, heavy);
    const clash = model.conflict(e);
    const writes = pages.writes;
    if (clash) {
      const got = errorOf(() => dir.insert(e));
      expect(got, `insert ${show(e)}`).to.match(/^E_EXISTS: /);
      expect(got).to.include(formatAddress(e.start)).and.include(formatAddress(clash.start));
      expect(pages.writes, 'a refused insert writes nothing').to.equal(writes);
      return `refused insert ${show(e)}`;
    }
    // The model first: if the directory's write crashes, the model holds the state after.
    model.insert(e);
    dir.insert(e);
    return `insert ${show(e)}`;
  }
  if (roll < share + 0.02) {
    const meta = { highWater: BigInt(rng.int(1 << 30)) * P, superRoot: rng.int(2) === 0 ? null : BigInt(rng.int(1 << 20)) * P };
    model.meta = meta;
    dir.setMeta(meta);
    return `setMeta ${meta.highWater} ${meta.superRoot}`;
  }
  const start = model.entries.length > 0 && rng.int(5) > 0 ? model.entries[rng.int(model.entries.length)].start : BigInt(rng.int(1 << 13)) * P;
  const want = model.remove(start);
  const got = dir.remove(start);
  expect(got && show(got), `remove ${formatAddress(start)}`).to.equal(want && show(want));
  return `remove ${formatAddress(start)}`;
}

function checkAll(dir: Directory, model: Model, pages: MemoryPages, rng: SeededRandom, label: string): void {
  expect(textOf(dir), label).to.equal(model.text());
  expect(dir.count(), label).to.equal(model.entries.length);
  expect(pages.oversized, label).to.deep.equal([]);
  for (let i = 0; i < 20; i++) {
    const a = probe(rng, model);
    expect(dir.lookup(a) && show(dir.lookup(a)!), `${label}: lookup ${formatAddress(a)}`).to.equal(model.lookup(a) && show(model.lookup(a)!));
  }
  const from = probe(rng, model);
  const got = [...dir.entries(from)].slice(0, 5).map(show);
  expect(got, `${label}: entries from ${formatAddress(from)}`).to.deep.equal(model.from(from).slice(0, 5).map(show));
}

/** A random run; returns the deepest the tree got. */
function randomRun(seed: number, opts: RunOptions): number {
  let deepest = 0;
  seeded(seed, (rng) => {
    const pages = new MemoryPages();
    const dir = Directory.open(pages, ROOT);
    const model = new Model();
    for (let i = 0; i < opts.ops; i++) {
      const share = opts.insertShare[i < opts.ops / 2 ? 0 : 1];
      const label = `op ${i}: ${step(rng, dir, model, pages, share, opts.heavy ?? false)}`;
      for (let j = 0; j < 3; j++) {
        const a = probe(rng, model);
        expect(dir.lookup(a) && show(dir.lookup(a)!), `${label}; lookup ${formatAddress(a)}`).to.equal(model.lookup(a) && show(model.lookup(a)!));
      }
      deepest = Math.max(deepest, dir.shape().depth);
      if (i % opts.checkEvery === opts.checkEvery - 1 || i === opts.ops - 1) {
        checkAll(dir, model, pages, rng, label);
        // Every page the tree holds is in the map, and nothing else: released pages are gone.
        expect(dir.shape().pages, label).to.equal(pages.map.size);
      }
    }
    const again = Directory.open(pages, ROOT);
    expect(textOf(again), 'reopened').to.equal(model.text());
    expect(again.count()).to.equal(dir.count());
    expect(again.shape()).to.deep.equal(dir.shape());
  });
  return deepest;
}

describe('machines/memory/directory', () => {
  it('opens an empty directory, writing only its root page', () => {
    const pages = new MemoryPages();
    const dir = Directory.open(pages, ROOT);
    expect(pages.writes).to.equal(1);
    expect([...pages.map.keys()]).to.deep.equal([ROOT]);
    expect(dir.count()).to.equal(0);
    expect(dir.shape()).to.deep.equal({ depth: 1, pages: 1 });
    expect(dir.meta()).to.deep.equal({ highWater: 0n, superRoot: null });
    expect(dir.lookup(0n)).to.equal(undefined);
    expect([...dir.entries()]).to.deep.equal([]);
    Directory.open(pages, ROOT);
    expect(pages.writes, 'a second open writes nothing').to.equal(1);
    // A freshly materialized (zero-filled) root page counts as none.
    pages.map.set(0x2000n, new Uint8Array(PAGE_BYTES));
    expect(Directory.open(pages, 0x2000n).count()).to.equal(0);
    expect(errorOf(() => Directory.open(pages, 0x2001n))).to.match(/^E_BAD_ADDRESS: /);
  });

  it('matches a sorted-array model over random inserts, removes, lookups and meta changes', () => {
    for (const seed of SEEDS.slice(0, 2)) randomRun(seed, { ops: 2500, insertShare: [0.75, 0.3], checkEvery: 250 });
  });

  it('matches the model through depth 3 with large entries (8 holders of long ids)', () => {
    for (const seed of SEEDS.slice(2)) {
      const deepest = randomRun(seed, { ops: 1800, insertShare: [0.9, 0.2], heavy: true, checkEvery: 300 });
      expect(deepest, `seed ${seed}`).to.be.at.least(3);
    }
  });

  it('grows to depth 3 and shrinks back to one page, keeping every page within 4096 bytes', () => {
    seeded(SEEDS[0], (rng) => {
      const { pages, dir, model } = grownTree(rng, 3, true);
      checkAll(dir, model, pages, rng, `depth 3 at ${model.entries.length} entries`);
      expect(textOf(Directory.open(pages, ROOT))).to.equal(model.text());
      const order = model.entries.map((e) => e.start);
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      order.forEach((start, i) => {
        expect(dir.remove(start)?.start).to.equal(start);
        model.remove(start);
        if (i % 100 === 0) checkAll(dir, model, pages, rng, `after ${i + 1} removes`);
      });
      expect(dir.shape()).to.deep.equal({ depth: 1, pages: 1 });
      expect([...pages.map.keys()], 'every page but the root released').to.deep.equal([ROOT]);
      // Removed in address order, the entries left soon fit in the root again.
      growTo(dir, model, rng, 3, true);
      for (const e of model.entries.slice(0, -1)) dir.remove(e.start);
      expect(dir.shape(), 'one entry left').to.deep.equal({ depth: 1, pages: 1 });
      expect(pages.map.size).to.equal(1);
      expect(pages.oversized).to.deep.equal([]);
    });
  });

  it('holds worst-case entries: 64-character ids of 3-byte characters, 8 holders, 2^32 pages', () => {
    const pages = new MemoryPages();
    const dir = Directory.open(pages, ROOT);
    const span = 2 ** 32;
    const entries: DirectoryEntry[] = [];
    for (let i = 0; i < 60; i++) {
      const holders = Array.from({ length: 8 }, (_, h) => `${'€'.repeat(62)}${String.fromCharCode(65 + h)}${String.fromCharCode(65 + (i % 26))}`);
      const start = MAX_ADDRESS + 1n - BigInt(i + 1) * BigInt(span) * P;
      entries.unshift({ start, pages: span, state: 'materialized', copies: 8, volatile: false, holders, cacheInRam: true });
      dir.insert(entries[0]);
    }
    expect(pages.oversized).to.deep.equal([]);
    expect(dir.shape().depth).to.be.greaterThan(1);
    expect([...Directory.open(pages, ROOT).entries()].map(show)).to.deep.equal(entries.map(show));
    expect(dir.lookup(MAX_ADDRESS)?.start).to.equal(entries[entries.length - 1].start);
  });

  it('keeps the meta record across reopening and root splits, and refuses a bad one', () => {
    const pages = new MemoryPages();
    const dir = Directory.open(pages, ROOT);
    dir.setMeta({ highWater: 0x5000n, superRoot: 0x1000n });
    const rng = new SeededRandom(SEEDS[0]);
    const model = new Model();
    growTo(dir, model, rng, 2, true);
    expect(Directory.open(pages, ROOT).meta()).to.deep.equal({ highWater: 0x5000n, superRoot: 0x1000n });
    dir.setMeta({ highWater: 1n << 100n, superRoot: null });
    expect(Directory.open(pages, ROOT).meta()).to.deep.equal({ highWater: 1n << 100n, superRoot: null });
    const writes = pages.writes;
    expect(errorOf(() => dir.setMeta({ highWater: -1n, superRoot: null }))).to.match(/^E_BAD_ADDRESS: /);
    expect(errorOf(() => dir.setMeta({ highWater: 0n, superRoot: 0x1001n }))).to.match(/^E_BAD_ADDRESS: /);
    expect(pages.writes).to.equal(writes);
  });

  it('refuses an overlapping range with E_EXISTS naming both, and changes nothing', () => {
    const pages = new MemoryPages();
    const dir = Directory.open(pages, ROOT);
    const base = { state: 'reserved' as const, copies: 0, volatile: false, holders: [], cacheInRam: false };
    dir.insert({ ...base, start: 0x10000n, pages: 4 });
    dir.insert({ ...base, start: 0x20000n, pages: 1 });
    const before = textOf(dir);
    const writes = pages.writes;
    for (const [start, n] of [[0x10000n, 1], [0xf000n, 2], [0x13000n, 9], [0x8000n, 100], [0x11000n, 1], [0x1f000n, 2]] as const) {
      const got = errorOf(() => dir.insert({ ...base, start, pages: n }));
      expect(got).to.match(/^E_EXISTS: /);
      expect(got).to.include(formatAddress(start));
      expect(got).to.satisfy((m: string) => m.includes(formatAddress(0x10000n)) || m.includes(formatAddress(0x20000n)));
    }
    expect(pages.writes).to.equal(writes);
    expect(textOf(dir)).to.equal(before);
    // Touching is not overlapping.
    dir.insert({ ...base, start: 0xf000n, pages: 1 });
    dir.insert({ ...base, start: 0x14000n, pages: 12 });
    expect(dir.count()).to.equal(4);
  });

  it('refuses malformed entries and changes nothing', () => {
    const pages = new MemoryPages();
    const dir = Directory.open(pages, ROOT);
    const ok: DirectoryEntry = { start: 0x3000n, pages: 2, state: 'materialized', copies: 2, volatile: false, holders: ['n1', 'n2'], cacheInRam: false };
    const bad: [Partial<Record<keyof DirectoryEntry, unknown>>, string][] = [
      [{ start: 0x3001n }, 'E_BAD_ADDRESS'],
      [{ start: -0x1000n }, 'E_BAD_ADDRESS'],
      [{ start: MAX_ADDRESS + 1n }, 'E_BAD_ADDRESS'],
      [{ start: 4096 }, 'E_BAD_ADDRESS'],
      [{ start: MAX_ADDRESS + 1n - P }, 'E_BAD_ADDRESS'],
      [{ pages: 0 }, 'E_BAD_ARGUMENT'],
      [{ pages: -1 }, 'E_BAD_ARGUMENT'],
      [{ pages: 1.5 }, 'E_BAD_ARGUMENT'],
      [{ pages: 2 ** 32 + 1 }, 'E_BAD_ARGUMENT'],
      [{ pages: Number.NaN }, 'E_BAD_ARGUMENT'],
      [{ pages: '2' }, 'E_BAD_ARGUMENT'],
      [{ state: 'free' }, 'E_BAD_ARGUMENT'],
      [{ copies: 9 }, 'E_BAD_ARGUMENT'],
      [{ copies: -1 }, 'E_BAD_ARGUMENT'],
      [{ copies: 1.5 }, 'E_BAD_ARGUMENT'],
      [{ volatile: 'no' }, 'E_BAD_ARGUMENT'],
      [{ cacheInRam: undefined }, 'E_BAD_ARGUMENT'],
      [{ holders: [] }, 'E_BAD_ARGUMENT'],
      [{ holders: 'n1' }, 'E_BAD_ARGUMENT'],
      [{ holders: Array.from({ length: 9 }, (_, i) => `n${i}`) }, 'E_BAD_ARGUMENT'],
      [{ holders: ['n1', 'n1'] }, 'E_BAD_ARGUMENT'],
      [{ holders: [''] }, 'E_BAD_ARGUMENT'],
      [{ holders: ['x'.repeat(65)] }, 'E_BAD_ARGUMENT'],
      [{ holders: [7] }, 'E_BAD_ARGUMENT'],
      [{ holders: ['a\ud800b'] }, 'E_BAD_ARGUMENT'],
      [{ state: 'reserved' }, 'E_BAD_ARGUMENT'],
      [{ state: 'reserved', holders: [], copies: 1 }, 'E_BAD_ARGUMENT'],
    ];
    for (const [change, code] of bad) {
      const e = { ...ok, ...change } as DirectoryEntry;
      expect(errorOf(() => dir.insert(e)), JSON.stringify(change, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))).to.match(new RegExp(`^${code}: `));
    }
    expect(errorOf(() => dir.insert(null as unknown as DirectoryEntry))).to.match(/^E_BAD_ARGUMENT: /);
    expect(pages.writes).to.equal(1);
    expect(dir.count()).to.equal(0);
    dir.insert({ ...ok, holders: ['x'.repeat(64), '𝄞'.repeat(32)] });
    dir.insert({ ...ok, start: MAX_ADDRESS + 1n - 2n ** 32n * P, pages: 2 ** 32 });
    expect(dir.count()).to.equal(2);
    expect(errorOf(() => dir.lookup(-1n))).to.match(/^E_BAD_ADDRESS: /);
    expect(errorOf(() => dir.remove(0x3001n))).to.match(/^E_BAD_ADDRESS: /);
  });

  it('hands out copies: changing a returned or inserted entry changes nothing stored', () => {
    const dir = Directory.open(new MemoryPages(), ROOT);
    const e: DirectoryEntry = { start: 0x3000n, pages: 1, state: 'materialized', copies: 1, volatile: false, holders: ['n1'], cacheInRam: false };
    dir.insert(e);
    e.holders.push('n2');
    dir.lookup(0x3000n)!.holders.push('n3');
    [...dir.entries()][0].holders.push('n4');
    expect(dir.lookup(0x3000n)!.holders).to.deep.equal(['n1']);
  });

  it('iterates from the range containing `from`, and keeps going while entries change', () => {
    seeded(SEEDS[1], (rng) => {
      const pages = new MemoryPages();
      const dir = Directory.open(pages, ROOT);
      const model = new Model();
      while (model.entries.length < 600) {
        const e = randomEntry(rng);
        if (model.conflict(e)) continue;
        dir.insert(e);
        model.insert(e);
      }
      expect(dir.shape().depth).to.be.greaterThan(1);
      const mid = model.entries[300];
      expect(dir.entries(mid.start + 5n).next().value?.start).to.equal(mid.start);
      expect(dir.entries(end(mid)).next().value?.start).to.equal(model.entries[301].start);
      // At each entry, remove the next one and add one in the gap after it:
      // the iterator skips the removed entry and yields the added one.
      const seen: bigint[] = [];
      const want: bigint[] = [];
      const all = model.entries.map((e) => e.start);
      let i = 0;
      for (const e of dir.entries()) {
        seen.push(e.start);
        if (e.start !== all[i]) continue;
        want.push(all[i]);
        if (i + 1 < all.length) dir.remove(all[i + 1]);
        const gap = model.entries[i + 2]?.start ?? MAX_ADDRESS + 1n;
        if (gap - end(model.entries[i]) > P) {
          dir.insert({ ...model.entries[i], start: end(model.entries[i]), pages: 1 });
          want.push(end(model.entries[i]));
        }
        i += 2;
      }
      expect(seen).to.deep.equal(want);
      // Removing every entry as it is yielded still visits each once.
      const left = [...dir.entries()].map((e) => e.start);
      const removed: bigint[] = [];
      for (const e of dir.entries()) {
        removed.push(e.start);
        dir.remove(e.start);
      }
      expect(removed).to.deep.equal(left);
      expect(dir.count()).to.equal(0);
    });
  });

  it('looks up with at most two root-to-leaf paths of reads when cold, and none when warm', () => {
    seeded(SEEDS[2], (rng) => {
      const { pages, dir, model } = grownTree(rng, 3, true);
      const depth = dir.shape().depth;
      for (let i = 0; i < 50; i++) {
        const cold = Directory.open(pages, ROOT);
        const a = probe(rng, model);
        const reads = pages.reads;
        expect(cold.lookup(a)?.start).to.equal(model.lookup(a)?.start);
        expect(pages.reads - reads, formatAddress(a)).to.be.at.most(2 * depth);
      }
      const reads = pages.reads;
      for (let i = 0; i < 200; i++) dir.lookup(probe(rng, model));
      expect(pages.reads).to.equal(reads);
    });
  });

  /**
   * A random run in which every k-th write crashes (it throws, after landing
   * or not): the pages, reopened, must hold the state from before the op or
   * after it, and the object that saw the crash must agree with them.
   */
  function crashRun(seed: number, k: number, heavy: boolean, share: (i: number, model: Model) => number | undefined): { crashes: number; deepest: number } {
    let crashes = 0;
    let deepest = 0;
    seeded(seed, (rng) => {
      const pages = new MemoryPages();
      let dir = Directory.open(pages, ROOT);
      let model = new Model();
      pages.crashEvery = k;
      for (let i = 0; ; i++) {
        const s = share(i, model);
        if (s === undefined) break;
        const before = model.clone();
        let label = `k ${k}, op ${i}`;
        try {
          label += `: ${step(rng, dir, model, pages, s, heavy)}`;
        } catch (e) {
          if (!(e instanceof Crash)) throw e;
          crashes += 1;
          pages.landsBeforeCrash = rng.int(2) === 0;
          pages.crashEvery = 0;
          const now = textOf(Directory.open(pages, ROOT));
          const after = model.text();
          expect(now === before.text() || now === after, `${label} after ${e.message}: reopened to neither state`).to.equal(true);
          expect(textOf(dir), `${label}: the crashed object agrees with the pages`).to.equal(now);
          model = now === after ? model : before;
          if (rng.int(2) === 0) dir = Directory.open(pages, ROOT);
          pages.crashEvery = k;
        }
        // Not every op: after a crash, shape() walks the whole tree again.
        if (i % 25 === 0) deepest = Math.max(deepest, dir.shape().depth);
      }
      pages.crashEvery = 0;
      checkAll(dir, model, pages, rng, `k ${k}, end`);
      expect(pages.map.size, 'crashes leak at most unreferenced pages').to.be.at.least(dir.shape().pages);
    });
    return { crashes, deepest };
  }

  it('reopens to the state before or after the change when a crash hits every k-th write', () => {
    for (const [k, heavy] of [[4, false], [5, true], [7, false]] as const) {
      const { crashes } = crashRun(SEEDS[0] + k, k, heavy, (i) => (i < 400 ? (i < 280 ? 0.8 : 0.25) : undefined));
      expect(crashes, `k ${k}`).to.be.greaterThan(20);
    }
  });

  it('survives a crash at every 29th write while growing to depth 3 and shrinking back to one page', () => {
    let grown = false;
    const { crashes, deepest } = crashRun(SEEDS[1], 29, true, (_i, model) => {
      grown ||= model.entries.length >= 700;
      if (!grown) return 0.95;
      return model.entries.length > 0 ? 0 : undefined;
    });
    expect(deepest).to.equal(3);
    expect(crashes).to.be.greaterThan(40);
  });

  it('commits a change whose release throws, and says so', () => {
    const { pages, dir, model } = grownTree(new SeededRandom(SEEDS[3]), 2);
    const release = pages.release.bind(pages);
    pages.release = () => {
      throw new Crash('release failed');
    };
    // Emptying the leaves one by one soon unlinks one, which releases it.
    let thrown = 0;
    for (const e of model.entries.slice()) {
      try {
        dir.remove(e.start);
      } catch (err) {
        if (!(err instanceof Crash)) throw err;
        thrown += 1;
      }
      model.remove(e.start);
      if (thrown > 0) break;
    }
    pages.release = release;
    expect(thrown).to.equal(1);
    expect(textOf(dir)).to.equal(model.text());
    expect(textOf(Directory.open(pages, ROOT))).to.equal(model.text());
  });

  describe('corrupt pages', () => {
    const cbor = new Encoder({ useRecords: false, tagUint8Array: false });
    let pages: MemoryPages;
    let model: Model;
    /** A non-root leaf, and an entry it holds. */
    let leaf: bigint;
    let inLeaf: DirectoryEntry;

    beforeEach(() => {
      ({ pages, model } = grownTree(new SeededRandom(SEEDS[0]), 3, true));
      for (const [addr, data] of pages.map) {
        const page = decodeDirectoryPage(addr, data);
        // Not the first leaf, so an entry at 0x0 lies outside its range.
        if (addr !== ROOT && page.kind === 'leaf' && page.entries.length >= 2 && page.entries[0].start !== model.entries[0].start) {
          leaf = addr;
          inLeaf = page.entries[1];
          break;
        }
      }
    });

    /** Where in the page the last holder id of `inLeaf` starts. */
    const holderByte = (data: Uint8Array): number => {
      const id = new TextEncoder().encode(inLeaf.holders[inLeaf.holders.length - 1]);
      for (let i = HEADER_BYTES; i < PAGE_BYTES; i++) if (id.every((b, j) => data[i + j] === b)) return i + 1;
      throw new Error('holder not found');
    };
    const bodyOf = (data: Uint8Array): Uint8Array => data.slice(HEADER_BYTES, HEADER_BYTES + ((data[1] << 8) | data[2]));
    const storageError = (fn: () => unknown, addr: bigint): void => {
      expect(errorOf(fn)).to.match(/^E_STORAGE: /).and.include(formatAddress(addr));
    };

    it('names the page when its bytes are damaged, cut short, missing or misplaced', () => {
      const original = pages.map.get(leaf)!;
      const damage: [string, (d: Uint8Array) => Uint8Array | undefined][] = [
        ['a flipped bit in a holder id (still well-formed CBOR)', (d) => (d[holderByte(d)] ^= 0x01, d)],
        ['a flipped bit in the CBOR structure', (d) => (d[HEADER_BYTES + 1] ^= 0x10, d)],
        ['a wrong format byte', (d) => (d[0] = 0x00, d)],
        ['a length past the page', (d) => (d[1] = 0xff, d)],
        ['a non-zero tail', (d) => (d[PAGE_BYTES - 1] = 1, d)],
        ['a short page', (d) => d.slice(0, 100)],
        ['no page', () => undefined],
        ['another page’s bytes', () => pages.map.get([...pages.map.keys()].find((a) => a !== leaf && a !== ROOT)!)!.slice()],
      ];
      for (const [what, change] of damage) {
        const data = change(original.slice());
        if (data === undefined) pages.map.delete(leaf);
        else pages.map.set(leaf, data);
        const dir = Directory.open(pages, ROOT);
        try {
          storageError(() => dir.lookup(inLeaf.start), leaf);
          storageError(() => dir.count(), leaf);
        } catch (e) {
          if (e instanceof Error) e.message = `${what}: ${e.message}`;
          throw e;
        }
      }
      pages.map.set(leaf, original);
      expect(textOf(Directory.open(pages, ROOT))).to.equal(model.text());
      const root = pages.map.get(ROOT)!;
      pages.map.set(ROOT, Object.assign(root.slice(), { [HEADER_BYTES + 3]: root[HEADER_BYTES + 3] ^ 1 }));
      storageError(() => Directory.open(pages, ROOT), ROOT);
    });

    it('names the page when a well-sealed body says something impossible', () => {
      const [own, level, items] = cbor.decode(bodyOf(pages.map.get(leaf)!)) as [Uint8Array, number, unknown[][]];
      const key = addressKey;
      const meta = [key(0n), null];
      const entry = (i: number): unknown[] => items[i].slice();
      const bodies: [string, unknown][] = [
        ['not an array', { own, level, items }],
        ['its own address wrong', [key(leaf + P), level, items, null]],
        ['a level the parent does not expect', [own, 1, [[key(0n), key(0x2000n)]], null]],
        ['a level past the limit', [own, 99, items, null]],
        ['entries out of order', [own, 0, [entry(1), entry(0), ...items.slice(2)], null]],
        ['an entry with bad flags', [own, 0, [entry(0), Object.assign(entry(1), { 2: 8 }), ...items.slice(2)], null]],
        ['an entry with a number for holders', [own, 0, [entry(0), Object.assign(entry(1), { 4: 3 }), ...items.slice(2)], null]],
        ['an entry with an 8-byte start', [own, 0, [entry(0), Object.assign(entry(1), { 0: new Uint8Array(8) }), ...items.slice(2)], null]],
        ['entries outside the range its parent gives it', [own, 0, [[key(0n), 1, 0, 0, []], ...items], null]],
        ['no entries', [own, 0, [], null]],
        ['a meta record below the root', [own, 0, items, meta]],
        ['a CBOR map for an entry', [own, 0, [entry(0), { a: 1 }], null]],
      ];
      for (const [what, body] of bodies) {
        pages.map.set(leaf, sealDirectoryPage(cbor.encode(body)));
        const dir = Directory.open(pages, ROOT);
        try {
          storageError(() => dir.lookup(inLeaf.start), leaf);
        } catch (e) {
          if (e instanceof Error) e.message = `${what}: ${e.message}`;
          throw e;
        }
      }
      const inner: [string, unknown][] = [
        ['keys that do not rise', [key(ROOT), 2, [[key(0n), key(0x2000n)], [key(0n), key(0x3000n)]], meta]],
        ['a child that is itself', [key(ROOT), 2, [[key(0n), key(ROOT)]], meta]],
        ['no children', [key(ROOT), 2, [], meta]],
        ['no meta record', [key(ROOT), 0, [], null]],
        ['an unaligned super-root', [key(ROOT), 0, [], [key(0n), key(5n)]]],
      ];
      for (const [what, body] of inner) {
        pages.map.set(ROOT, sealDirectoryPage(cbor.encode(body)));
        expect(errorOf(() => Directory.open(pages, ROOT)), what).to.match(/^E_STORAGE: /).and.include(formatAddress(ROOT));
      }
    });

    it('never fails with anything but E_STORAGE, whatever a sealed body holds', () => {
      seeded(SEEDS[1], (rng) => {
        const body = bodyOf(pages.map.get(leaf)!);
        const intact = new Map(pages.map);
        for (let i = 0; i < 150; i++) {
          pages.map.clear();
          for (const [addr, data] of intact) pages.map.set(addr, data);
          const mutated = body.slice(0, rng.int(8) === 0 ? rng.int(body.byteLength) : body.byteLength);
          for (let j = 1 + rng.int(4); j > 0; j--) mutated[rng.int(mutated.byteLength)] = rng.int(256);
          pages.map.set(leaf, sealDirectoryPage(mutated));
          const dir = Directory.open(pages, ROOT);
          for (const fn of [() => dir.lookup(inLeaf.start), () => [...dir.entries(inLeaf.start)].slice(0, 3), () => dir.insert({ ...inLeaf, start: inLeaf.start + 1000n * P })]) {
            try {
              fn();
            } catch (e) {
              expect(isMangroveError(e) && e.code, `mutation ${i}: ${String(e)}`).to.equal('E_STORAGE');
            }
          }
        }
      });
    });
  });
});
