/**
 * A directory's name index (machines/fs/dir-index.ts; SPEC M19, M22): the
 * hash table, the sorted bucket lists linked through the entry pages, the
 * free-space list, and the verify-and-repair run on a directory found with a
 * transaction mark.
 *
 * The entries stream is a twin of the one a node holds (actors/fs DirPages):
 * pages live as their encoded bytes; each operation gets a session that
 * hands out copies, caches them, and writes back only the pages it was told
 * to `put`. So a change the index makes without a `put` is lost here as it
 * would be on a node, and every page written must encode (fit its 4 KiB).
 * Random runs are checked against a Map model and name their seed.
 */
import { expect } from 'chai';
import { isMangroveError } from '../../../../bus/errors.js';
import { PAGE_BYTES } from '../../../../machines/memory/address.js';
import {
  bucketHead,
  bucketOf,
  insert,
  list,
  lookup,
  rebuild,
  remove,
  rewrite,
  SLOT_SPAN,
  type EntryPages,
} from '../../../../machines/fs/dir-index.js';
import {
  decodeEntryPage,
  emptyEntryPage,
  encodeEntryPage,
  FREE_BYTES_MIN,
  freeBytes,
  slotFor,
  SLOTS_MAX,
  type DirEntry,
  type EntryPage,
  type EntryRef,
} from '../../../../machines/fs/entry-page.js';
import { BUCKET_BYTES, HASH_BUCKETS, newInode, type DirIndex, type FileType } from '../../../../machines/fs/inode.js';
import { compareNames } from '../../../../machines/fs/names.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { forSeedsAsync } from '../../../helpers/sim-checks.js';

const utf8 = new TextEncoder();
const STREAM_BASE = (5n << 64n) + 0x10000000000n;
const addrOf = (page: number) => STREAM_BASE + BigInt(page) * BigInt(PAGE_BYTES);
const inodeAddr = (ino: number) => (9n << 64n) + BigInt(ino) * BigInt(PAGE_BYTES);

/** What the model knows of a name: its inode and type. */
interface Named {
  ino: number;
  type: FileType;
}
type Model = Map<string, Named>;

function copyPage(p: EntryPage): EntryPage {
  return { ...p, slots: p.slots.map((e) => e && { ...e, next: e.next && { ...e.next } }) };
}

/** A directory's entries stream as its pages' bytes, and the decoded pages beside them (decode is checked equal in `check`). */
class EntriesStream {
  readonly bytes = new Map<number, Uint8Array>();
  readonly pages = new Map<number, EntryPage>();

  session(dir: DirIndex): Session {
    return new Session(this, dir);
  }

  /**
   * Writes page `at` (its own index unless a damage says otherwise), taking
   * `p` over: its writer lets go of it. Trailing free slots are not stored,
   * as on a node.
   */
  write(p: EntryPage, at = p.page): void {
    this.bytes.set(at, encodeEntryPage(p, addrOf(at)));
    while (p.slots.length > 0 && p.slots[p.slots.length - 1] === null) p.slots.pop();
    this.pages.set(at, p);
  }

  /** Damage a page behind the index's back, as a torn update or a bug would. */
  mutate(page: number, f: (p: EntryPage) => void): void {
    const p = copyPage(this.pages.get(page)!);
    f(p);
    this.write(p, page);
  }

  clone(): EntriesStream {
    const s = new EntriesStream();
    for (const [i, b] of this.bytes) {
      s.bytes.set(i, b);
      s.pages.set(i, decodeEntryPage(b, addrOf(i), i));
    }
    return s;
  }
}

/** One operation's view of the stream: DirPages' contract (reads cached, only `put` pages written). */
class Session implements EntryPages {
  readonly cache = new Map<number, EntryPage>();
  readonly puts = new Set<number>();
  readonly extended: number[] = [];
  /** Pages asked for, cached or not: how far a walk went. */
  gets = 0;

  constructor(
    private readonly stream: EntriesStream,
    private readonly dir: DirIndex,
  ) {}

  async get(page: number): Promise<EntryPage> {
    this.gets++;
    const known = this.cache.get(page);
    if (known) return known;
    if (!Number.isInteger(page) || page < 0 || page >= this.dir.pages) throw new Error(`get(${page}) outside the directory's ${this.dir.pages} pages`);
    const held = this.stream.pages.get(page);
    const p = held ? copyPage(held) : emptyEntryPage(page);
    this.cache.set(page, p);
    return p;
  }

  async extend(page: number): Promise<EntryPage> {
    if (page !== this.dir.pages) throw new Error(`extend(${page}) when the directory has ${this.dir.pages} pages`);
    const p = emptyEntryPage(page);
    this.cache.set(page, p);
    this.extended.push(page);
    return p;
  }

  put(p: EntryPage): void {
    if (this.cache.get(p.page) !== p) throw new Error(`put of page ${p.page}, which this session did not hand out`);
    this.puts.add(p.page);
  }

  /** Writes the pages put, and ends the session; every page must fit (encodeEntryPage throws E_INTERNAL if not). */
  commit(): void {
    for (const page of this.puts) this.stream.write(this.cache.get(page)!);
    this.cache.clear();
  }
}

function newDir(): DirIndex {
  return newInode({ fileset: 1, ino: 1, type: 'dir', mode: 0o755, uid: 0, gid: 0, parent: 1, parentAddr: inodeAddr(1), nowMs: 1_700_000_000_000 }).dir!;
}

function snapshot(dir: DirIndex): DirIndex {
  return { ...dir, buckets: dir.buckets.slice() };
}

function entryOf(name: string, n: Named): DirEntry {
  return {
    name,
    ino: n.ino,
    addr: inodeAddr(n.ino),
    type: n.type,
    mode: 0o644,
    uid: 1000,
    gid: 1000,
    nlink: n.type === 'dir' ? 2 : 1,
    size: n.ino * 3,
    atimeMs: 1_700_000_000_000 + n.ino,
    mtimeMs: 1_700_000_000_000,
    ctimeMs: 1_700_000_000_000,
    btimeMs: 1_700_000_000_000,
    sync: 1,
    next: null,
  };
}

/** The bucket head by the layout inode.ts gives: page + 1 (u32), slot (u16); page 0 for none. */
function setHead(dir: DirIndex, b: number, r: EntryRef | null): void {
  const v = new DataView(dir.buckets.buffer, dir.buckets.byteOffset, dir.buckets.byteLength);
  v.setUint32(b * BUCKET_BYTES, r ? r.page + 1 : 0);
  v.setUint16(b * BUCKET_BYTES + 4, r ? r.slot : 0);
}

const ALPHABET = [...'abcdefghijklmnopqrstuvwxyz0123456789._-', 'é', 'ü', '日', '本', '😀', 'A', 'Z', ' '];

/** A name of 1-40 bytes, now and then one of 200-255: every one a valid entry name. */
function randomName(rnd: SeededRandom): string {
  const target = rnd.next() < 0.05 ? 200 + rnd.int(56) : 1 + rnd.int(40);
  let name = '';
  for (;;) {
    const c = ALPHABET[rnd.int(ALPHABET.length)];
    if (utf8.encode(name + c).length > target) break;
    name += c;
  }
  return name === '' || name === '.' || name === '..' ? `n${rnd.int(1e9)}` : name;
}

/** The entry a ref names, read through a fresh session. */
async function entryAt(stream: EntriesStream, dir: DirIndex, r: EntryRef): Promise<DirEntry | null> {
  return (await stream.session(dir).get(r.page)).slots[r.slot] ?? null;
}

/** An assertion for hot loops: the message is built only on failure. */
function must(cond: boolean, why: () => string): void {
  if (!cond) expect.fail(why());
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isMangroveError(e)) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

/** The largest entry there is: a name of 255 bytes. */
const LONGEST = entryOf('W'.repeat(255), { ino: 1, type: 'file' });

/**
 * Everything the index promises, against the model: pages decode to what was
 * written and fit; counts; every bucket list sorted, in its bucket, loop-free,
 * covering the model; lookups for present and absent names; a paged listing;
 * a clean verify; the free-space list exactly the pages with room.
 */
async function check(dir: DirIndex, stream: EntriesStream, model: Model, absent: Iterable<string>, decodeAll = true): Promise<void> {
  // Pages: each decodes to what the index last wrote (the copies sessions hand out), names its own index, fits.
  expect([...stream.bytes.keys()].every((i) => i < dir.pages), 'no page written past the directory').to.equal(true);
  for (let i = 0; decodeAll && i < dir.pages; i++) {
    const bytes = stream.bytes.get(i);
    if (!bytes) continue;
    const p = decodeEntryPage(bytes, addrOf(i), i);
    expect(p, `page ${i} decodes to what was written`).to.deep.equal(stream.pages.get(i));
    expect(p.page, `page ${i}`).to.equal(i);
    expect(p.slots.length, `page ${i}`).to.be.at.most(SLOTS_MAX);
    expect(freeBytes(p), `page ${i}`).to.be.at.least(0);
  }
  // Counts.
  const types = [...model.values()];
  expect(dir.count, 'count').to.equal(model.size);
  expect(dir.subdirs, 'subdirs').to.equal(types.filter((n) => n.type === 'dir').length);
  // Every bucket's list: sorted by name bytes, every entry in its own bucket, no entry twice.
  const session = new Session(stream, dir);
  const seen = new Set<string>();
  let listed = 0;
  for (let b = 0; b < HASH_BUCKETS; b++) {
    let prev: Uint8Array | null = null;
    for (let r = bucketHead(dir, b); r !== null; ) {
      const key = `${r.page}/${r.slot}`;
      must(!seen.has(key), () => `bucket ${b} reaches ${key} twice`);
      seen.add(key);
      const e = (await session.get(r.page)).slots[r.slot];
      if (!e) expect.fail(`bucket ${b} points at ${key}, which holds no entry`);
      const name = utf8.encode(e.name);
      must(bucketOf(e.name) === b, () => `${JSON.stringify(e.name)} is listed in bucket ${b}, not its own`);
      must(!prev || compareNames(prev, name) < 0, () => `bucket ${b} is out of order at ${JSON.stringify(e.name)}`);
      must(model.get(e.name)?.ino === e.ino, () => `bucket ${b} holds ${JSON.stringify(e.name)} (ino ${e.ino}), the model ${model.get(e.name)?.ino}`);
      prev = name;
      listed++;
      r = e.next;
    }
  }
  expect(listed, 'entries on the bucket lists').to.equal(model.size);
  // Lookups, present and absent.
  for (const [name, n] of model) {
    const found = await lookup(dir, session, name);
    if (!found) expect.fail(`lookup(${JSON.stringify(name)}) found nothing`);
    must(found.entry.name === name && found.entry.ino === n.ino && found.entry.type === n.type, () => `lookup(${JSON.stringify(name)}) found ${JSON.stringify(found.entry)}`);
    must((await session.get(found.ref.page)).slots[found.ref.slot] === found.entry, () => `lookup(${JSON.stringify(name)}) gave a ref that does not hold it`);
  }
  for (const name of absent) {
    if (!model.has(name)) must((await lookup(dir, session, name)) === null, () => `lookup(${JSON.stringify(name)}) found a name removed or never added`);
  }
  // A listing in batches of 100, resumed from its cookie, is exactly the model's names.
  const names: string[] = [];
  let last = -1;
  for (let from: number | null = 0; from !== null; ) {
    expect(from, 'cookies advance').to.be.above(last);
    last = from;
    const batch = await list(dir, session, from, 100);
    expect(batch.entries.length).to.be.at.most(100);
    if (batch.next !== null) expect(batch.entries.length, 'a batch that is not the last is full').to.equal(100);
    names.push(...batch.entries.map((e) => e.name));
    from = batch.next;
  }
  expect(names.length, 'no entry listed twice').to.equal(new Set(names).size);
  expect(names.sort()).to.deep.equal([...model.keys()].sort());
  // The free-space list: exactly the pages with FREE_BYTES_MIN free, once each, flags agreeing.
  const onList = new Set<number>();
  for (let idx = dir.freeHead; idx !== -1; ) {
    expect(idx, 'the free list stays inside the directory').to.be.within(0, dir.pages - 1);
    expect(onList.has(idx), `the free list reaches page ${idx} twice`).to.equal(false);
    onList.add(idx);
    idx = (await session.get(idx)).nextFree;
  }
  for (let i = 0; i < dir.pages; i++) {
    const p = await session.get(i);
    const room = freeBytes(p) >= FREE_BYTES_MIN;
    expect(onList.has(i), `page ${i} with ${freeBytes(p)} bytes free is ${onList.has(i) ? '' : 'not '}on the free list`).to.equal(room);
    expect(p.onFree, `page ${i}'s onFree flag`).to.equal(room);
    if (!room) expect(p.nextFree, `page ${i} off the list`).to.equal(-1);
    // The list's promise: any entry, the longest too, fits any page on it.
    if (room) expect(slotFor(p, LONGEST), `page ${i} (${freeBytes(p)} bytes free) takes a 255-byte name`).to.not.equal(undefined);
  }
  // Verify finds nothing, changes nothing.
  const before = snapshot(dir);
  const verify = new Session(stream, dir);
  expect(await rebuild(dir, verify, false), 'verify').to.deep.equal([]);
  expect(verify.puts.size, 'verify writes nothing').to.equal(0);
  expect(dir).to.deep.equal(before);
}

/** A directory holding `model`, built by inserts through the index. */
async function build(rnd: SeededRandom, n: number): Promise<{ dir: DirIndex; stream: EntriesStream; model: Model }> {
  const dir = newDir();
  const stream = new EntriesStream();
  const model: Model = new Map();
  while (model.size < n) {
    const name = randomName(rnd);
    if (model.has(name)) continue;
    const named: Named = { ino: 100 + model.size, type: rnd.next() < 0.2 ? 'dir' : 'file' };
    const s = stream.session(dir);
    await insert(dir, s, entryOf(name, named));
    s.commit();
    model.set(name, named);
  }
  return { dir, stream, model };
}

/** Some bucket with at least `n` entries, and its entries in list order. */
async function bucketWith(dir: DirIndex, stream: EntriesStream, n: number): Promise<{ b: number; refs: EntryRef[]; entries: DirEntry[] }> {
  for (let b = 0; b < HASH_BUCKETS; b++) {
    const refs: EntryRef[] = [];
    const entries: DirEntry[] = [];
    for (let r = bucketHead(dir, b); r !== null; r = entries[entries.length - 1].next) {
      refs.push(r);
      entries.push((await entryAt(stream, dir, r))!);
    }
    if (refs.length >= n) return { b, refs, entries };
  }
  throw new Error(`no bucket holds ${n} entries`);
}

/** A name in bucket `b` that sorts after every name the generator makes (they start below U+10FFFF's F4 byte). */
function lastNameIn(b: number): string {
  for (let i = 0; ; i++) if (bucketOf(`\u{10FFFF}${i}`) === b) return `\u{10FFFF}${i}`;
}

async function repairAndRecheck(dir: DirIndex, stream: EntriesStream, model: Model, expected: RegExp[]): Promise<void> {
  const verify = stream.session(dir);
  const before = snapshot(dir);
  const found = await rebuild(dir, verify, false);
  for (const re of expected) expect(found.some((p) => re.test(p)), `verify reports ${re} among ${JSON.stringify(found)}`).to.equal(true);
  expect(verify.puts.size, 'verify alone writes nothing').to.equal(0);
  expect(dir, 'verify alone changes nothing').to.deep.equal(before);
  const repair = stream.session(dir);
  expect(await rebuild(dir, repair, true), 'repair reports what verify did').to.have.length(found.length);
  repair.commit();
  expect(await rebuild(dir, stream.session(dir), false), 'a second verify').to.deep.equal([]);
  await check(dir, stream, model, []);
}

describe('machines/fs/dir-index', () => {
  it('inserts, finds and removes a few names, counting subdirectories', async () => {
    const dir = newDir();
    const stream = new EntriesStream();
    const model: Model = new Map();
    const run = async <T>(f: (s: Session) => Promise<T>): Promise<T> => {
      const s = stream.session(dir);
      const out = await f(s);
      s.commit();
      return out;
    };
    const names: [string, FileType][] = [['b', 'file'], ['a', 'dir'], ['c', 'symlink'], ['日本', 'file'], ['ab', 'dir']];
    for (const [i, [name, type]] of names.entries()) {
      const ref = await run((s) => insert(dir, s, entryOf(name, { ino: 10 + i, type })));
      model.set(name, { ino: 10 + i, type });
      expect((await entryAt(stream, dir, ref))?.name).to.equal(name);
    }
    expect(dir.count).to.equal(5);
    expect(dir.subdirs).to.equal(2);
    expect(dir.pages).to.equal(1);
    await check(dir, stream, model, ['x', 'B', 'a ', 'abc']);
    const gone = await run((s) => remove(dir, s, 'a'));
    model.delete('a');
    expect(gone.name).to.equal('a');
    expect(gone.type).to.equal('dir');
    expect(dir.subdirs).to.equal(1);
    expect(await lookup(dir, stream.session(dir), 'a')).to.equal(null);
    await check(dir, stream, model, ['a']);
    // The name is free again.
    await run((s) => insert(dir, s, entryOf('a', { ino: 99, type: 'file' })));
    model.set('a', { ino: 99, type: 'file' });
    await check(dir, stream, model, []);
  });

  it('refuses a name taken E_EXISTS and a name missing E_NOT_FOUND, changing nothing', async () => {
    const { dir, stream, model } = await build(new SeededRandom(7), 40);
    const name = [...model.keys()][17];
    const before = snapshot(dir);
    const s = stream.session(dir);
    expect(await codeOf(insert(dir, s, entryOf(name, { ino: 5, type: 'file' })))).to.equal(`E_EXISTS: ${JSON.stringify(name)} exists already`);
    expect(await codeOf(remove(dir, s, 'not-there'))).to.equal('E_NOT_FOUND: no entry "not-there"');
    expect(s.puts.size).to.equal(0);
    expect(s.extended).to.deep.equal([]);
    expect(dir).to.deep.equal(before);
    await check(dir, stream, model, ['not-there']);
  });

  it('keeps a bucket with many names sorted bytewise, whatever order they came in', async () => {
    // Names of one bucket, ASCII and not, short and long, inserted in a shuffled order.
    const rnd = new SeededRandom(3);
    const b = bucketOf('seed');
    const inBucket = ['seed'];
    for (let i = 0; inBucket.length < 48; i++) {
      for (const name of [`k${i}`, `K${i}`, `é${i}`, `😀${i}`, `${i}`.padStart(200, 'z')]) if (bucketOf(name) === b) inBucket.push(name);
    }
    const dir = newDir();
    const stream = new EntriesStream();
    const model: Model = new Map();
    for (const name of [...inBucket].sort(() => rnd.next() - 0.5)) {
      const s = stream.session(dir);
      await insert(dir, s, entryOf(name, { ino: model.size + 2, type: 'file' }));
      s.commit();
      model.set(name, { ino: model.size + 2, type: 'file' });
    }
    const { entries } = await bucketWith(dir, stream, inBucket.length);
    const want = inBucket.map((n) => utf8.encode(n)).sort(compareNames).map((x) => new TextDecoder().decode(x));
    expect(entries.map((e) => e.name)).to.deep.equal(want);
    await check(dir, stream, model, []);
  });

  it('agrees with a model over 10,000 random inserts and removes, reusing pages (seeded)', async function () {
    this.timeout(60_000);
    await forSeedsAsync([0x5_909_540], randomRun);
  });

  it("rewrites an entry's attributes in place (M19): a full page takes the largest, name and link kept", async () => {
    const { dir, stream, model } = await build(new SeededRandom(11), 120);
    const full = [...stream.pages.values()].find((p) => !p.onFree)!;
    expect(full, 'a full page').to.not.equal(undefined);
    const s = stream.session(dir);
    for (const [slot, e] of full.slots.entries()) {
      if (!e) continue;
      await rewrite(s, { page: full.page, slot }, { ...e, size: Number.MAX_SAFE_INTEGER, sync: Number.MAX_SAFE_INTEGER, atimeMs: 8.64e15, mtimeMs: 8.64e15, ctimeMs: 8.64e15, btimeMs: 8.64e15, mode: 0o7777, uid: 2 ** 32 - 1, gid: 2 ** 32 - 1, nlink: 2 ** 32 - 1 });
    }
    s.commit();
    const back = stream.pages.get(full.page)!;
    expect(back.slots.map((e) => e && [e.name, e.next, e.size])).to.deep.equal(full.slots.map((e) => e && [e.name, e.next, Number.MAX_SAFE_INTEGER]));
    await check(dir, stream, model, []);
    const empty = full.slots.indexOf(null) >= 0 ? full.slots.indexOf(null) : full.slots.length;
    expect(await codeOf(rewrite(stream.session(dir), { page: full.page, slot: empty }, LONGEST))).to.match(/^E_CORRUPT: an entry reference .* holds no entry/);
  });

  it('lists from any cookie: a position is page * SLOT_SPAN + slot, and resuming skips nothing', async () => {
    const { dir, stream, model } = await build(new SeededRandom(5), 150);
    expect(SLOT_SPAN).to.equal(SLOTS_MAX);
    const all = await list(dir, stream.session(dir), 0, 10_000);
    expect(all.next).to.equal(null);
    expect(all.entries.map((e) => e.name).sort()).to.deep.equal([...model.keys()].sort());
    for (const max of [1, 7, 33]) {
      const names: string[] = [];
      for (let from: number | null = 0; from !== null; ) {
        const batch = await list(dir, stream.session(dir), from, max);
        names.push(...batch.entries.map((e) => e.name));
        from = batch.next;
      }
      expect(names, `batches of ${max}`).to.deep.equal(all.entries.map((e) => e.name));
    }
    // From the second page on: the entries of pages 1.. exactly.
    const fromPage1 = await list(dir, stream.session(dir), SLOT_SPAN, 10_000);
    const onPage0 = stream.pages.get(0)!.slots.filter((e) => e !== null).length;
    expect(fromPage1.entries.map((e) => e.name)).to.deep.equal(all.entries.slice(onPage0).map((e) => e.name));
    expect(await list(dir, stream.session(dir), dir.pages * SLOT_SPAN, 5)).to.deep.equal({ entries: [], next: null });
  });

  describe('verify and repair (M22)', () => {
    let base: { dir: DirIndex; stream: EntriesStream; model: Model };
    /** A fresh copy of one directory of some 400 entries for each damage. */
    const fresh = () => ({ dir: snapshot(base.dir), stream: base.stream.clone(), model: new Map(base.model) });

    before(async () => {
      const rnd = new SeededRandom(0xd1_7e);
      base = await build(rnd, 430);
      // Removals from every third page, so some have room and sit on the free-space list, and others are full.
      const victims = [...base.stream.pages.values()].filter((p) => p.page % 3 === 1).flatMap((p) => p.slots.slice(0, 4).map((e) => e!.name));
      for (const name of victims.slice(0, 40)) {
        const s = base.stream.session(base.dir);
        await remove(base.dir, s, name);
        s.commit();
        base.model.delete(name);
      }
      await check(base.dir, base.stream, base.model, []);
      expect(base.model.size).to.equal(430 - Math.min(40, victims.length)).and.to.be.below(430);
      expect(base.dir.pages).to.be.at.least(10);
      expect([...base.stream.pages.values()].filter((p) => p.onFree).length, 'pages with room').to.be.at.least(3);
      expect([...base.stream.pages.values()].filter((p) => !p.onFree).length, 'full pages').to.be.at.least(3);
    });

    it('finds a bucket head at the wrong entry (names vanish from lookup), and repairs it', async () => {
      const { dir, stream, model } = fresh();
      const { b, refs, entries } = await bucketWith(dir, stream, 2);
      setHead(dir, b, refs[1]);
      expect(await lookup(dir, stream.session(dir), entries[0].name), 'the damage shows').to.equal(null);
      await repairAndRecheck(dir, stream, model, [new RegExp(`^hash bucket ${b} started at the wrong entry$`)]);
    });

    it('finds bucket heads pointing at nothing (an empty slot, a page past the end, an empty bucket set): E_CORRUPT on lookup, repaired', async () => {
      const { dir, stream, model } = fresh();
      const one = await bucketWith(dir, stream, 1);
      const empty = [...Array(HASH_BUCKETS).keys()].find((b) => bucketHead(dir, b) === null);
      setHead(dir, one.b, { page: dir.pages + 3, slot: 0 });
      expect(await codeOf(lookup(dir, stream.session(dir), one.entries[0].name))).to.match(/^E_CORRUPT: a directory's name list points at page \d+ slot 0, which holds no entry/);
      if (empty === undefined) expect.fail('no empty bucket to damage');
      setHead(dir, empty, { page: 0, slot: SLOTS_MAX - 1 });
      await repairAndRecheck(dir, stream, model, [new RegExp(`^hash bucket ${one.b} started`), new RegExp(`^hash bucket ${empty} started`)]);
    });

    it('finds a broken next link (the rest of the list lost), and a link into another list, and repairs both', async () => {
      const { dir, stream, model } = fresh();
      const three = await bucketWith(dir, stream, 3);
      stream.mutate(three.refs[0].page, (p) => (p.slots[three.refs[0].slot]!.next = null));
      expect(await lookup(dir, stream.session(dir), three.entries[2].name), 'the damage shows').to.equal(null);
      // Another bucket's first entry linked into this bucket's list.
      const other = [...Array(HASH_BUCKETS).keys()].find((b) => b !== three.b && bucketHead(dir, b) !== null)!;
      const otherRef = bucketHead(dir, other)!;
      const otherEntry = (await entryAt(stream, dir, otherRef))!;
      stream.mutate(otherRef.page, (p) => (p.slots[otherRef.slot]!.next = three.refs[1]));
      await repairAndRecheck(dir, stream, model, [
        new RegExp(`^entry ${JSON.stringify(three.entries[0].name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} linked to the wrong next entry`),
        new RegExp(`^entry ${JSON.stringify(otherEntry.name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} linked to the wrong next entry`),
      ]);
    });

    it('finds every kind of broken free-space list, repairs it, and the index keeps working', async () => {
      type Damage = (dir: DirIndex, stream: EntriesStream) => void;
      const withRoom = (s: EntriesStream) => [...s.pages.values()].filter((p) => p.onFree).map((p) => p.page);
      const full = (s: EntriesStream) => [...s.pages.values()].filter((p) => !p.onFree).map((p) => p.page);
      const damages: [string, Damage][] = [
        ['emptied', (dir) => (dir.freeHead = -1)],
        ['head past the pages', (dir) => (dir.freeHead = dir.pages + 2)],
        ['a page with room dropped', (dir, s) => {
          const [a, b] = withRoom(s);
          if (dir.freeHead === a) dir.freeHead = s.pages.get(a)!.nextFree;
          else [...s.pages.values()].filter((p) => p.nextFree === a).forEach((p) => s.mutate(p.page, (q) => (q.nextFree = s.pages.get(a)!.nextFree)));
          s.mutate(a, (p) => ((p.onFree = false), (p.nextFree = -1)));
          expect(b, 'two pages with room').to.not.equal(undefined);
        }],
        ['a full page on it', (dir, s) => {
          const f = full(s)[0];
          s.mutate(f, (p) => ((p.onFree = true), (p.nextFree = dir.freeHead)));
          dir.freeHead = f;
        }],
        ['a loop', (dir, s) => {
          const last = withRoom(s).find((i) => s.pages.get(i)!.nextFree === -1)!;
          s.mutate(last, (p) => (p.nextFree = dir.freeHead));
        }],
        ['a flag wrong', (dir, s) => s.mutate(full(s)[0], (p) => (p.onFree = true))],
        ['a full page with a stray nextFree', (dir, s) => s.mutate(full(s)[0], (p) => (p.nextFree = 0))],
      ];
      for (const [what, damage] of damages) {
        const { dir, stream, model } = fresh();
        expect(withRoom(stream).length, 'pages with room').to.be.at.least(2);
        damage(dir, stream);
        try {
          await repairAndRecheck(dir, stream, model, [/^the free-space list does not match the pages with room$/]);
          // Working again: inserts that fill pages from the repaired list, removes that give pages back.
          const rnd = new SeededRandom(what.length);
          for (let i = 0; i < 60; i++) {
            const s = stream.session(dir);
            if (i % 3 === 2) {
              const name = [...model.keys()][rnd.int(model.size)];
              await remove(dir, s, name);
              model.delete(name);
            } else {
              const name = randomName(rnd);
              if (model.has(name)) continue;
              await insert(dir, s, entryOf(name, { ino: 5000 + i, type: 'file' }));
              model.set(name, { ino: 5000 + i, type: 'file' });
            }
            s.commit();
          }
          await check(dir, stream, model, []);
        } catch (e) {
          throw new Error(`free list ${what}: ${(e as Error).message}`);
        }
      }
    });

    it('finds a wrong count and a wrong subdirectory count, and repairs them', async () => {
      const { dir, stream, model } = fresh();
      const n = model.size;
      const dirs = [...model.values()].filter((x) => x.type === 'dir').length;
      expect(dirs).to.be.above(0);
      dir.count += 3;
      await repairAndRecheck(dir, stream, model, [new RegExp(`^the directory counted ${n + 3} entries \\(${dirs} directories\\); its pages hold ${n} \\(${dirs}\\)$`)]);
      const again = fresh();
      again.dir.subdirs = 0;
      await repairAndRecheck(again.dir, again.stream, again.model, [new RegExp(`^the directory counted ${n} entries \\(0 directories\\); its pages hold ${n} \\(${dirs}\\)$`)]);
    });

    it('finds all of them at once and repairs them in one pass', async () => {
      const { dir, stream, model } = fresh();
      const two = await bucketWith(dir, stream, 2);
      setHead(dir, two.b, two.refs[1]);
      const three = await bucketWith(dir, stream, 3);
      stream.mutate(three.refs[1].page, (p) => (p.slots[three.refs[1].slot]!.next = three.refs[0]));
      dir.freeHead = -1;
      dir.count = 0;
      await repairAndRecheck(dir, stream, model, [/^hash bucket \d+ started/, /linked to the wrong next entry/, /^the free-space list does not match/, /^the directory counted 0 entries/]);
    });

    it('cannot repair two entries of one name: E_CORRUPT, nothing written, nothing changed', async () => {
      const { dir, stream } = fresh();
      const victim = (await bucketWith(dir, stream, 1)).entries[0];
      const roomy = [...stream.pages.values()].find((p) => p.onFree)!;
      stream.mutate(roomy.page, (p) => (p.slots[slotFor(p, victim)!] = { ...victim, next: null }));
      for (const repair of [false, true]) {
        const s = stream.session(dir);
        const before = snapshot(dir);
        expect(await codeOf(rebuild(dir, s, repair)), `repair ${repair}`).to.equal(`E_CORRUPT: two entries are named ${JSON.stringify(victim.name)}`);
        expect(s.puts.size).to.equal(0);
        expect(dir).to.deep.equal(before);
      }
    });

    it('cannot repair a page that says it is another: E_CORRUPT', async () => {
      const { dir, stream } = fresh();
      stream.mutate(2, (p) => (p.page = 3));
      expect(await codeOf(rebuild(dir, stream.session(dir), true))).to.equal('E_CORRUPT: entry page 2 says it is page 3');
    });

    it('stops a walk around a loop in a bucket list with E_CORRUPT, not a hang, and repairs the loop', async function () {
      this.timeout(20_000);
      const { dir, stream, model } = fresh();
      const two = await bucketWith(dir, stream, 2);
      const lastRef = two.refs[two.refs.length - 1];
      stream.mutate(lastRef.page, (p) => (p.slots[lastRef.slot]!.next = two.refs[0]));
      const after = lastNameIn(two.b);
      const s = stream.session(dir);
      expect(await codeOf(lookup(dir, s, after))).to.match(/^E_CORRUPT: a directory's name list for .* loops/);
      // Caught within a lap or two of the loop, not after a million steps.
      expect(s.gets, 'pages read by the walk').to.be.at.most(2 * two.refs.length + 2);
      expect(await codeOf(insert(dir, s, entryOf(after, { ino: 3, type: 'file' })))).to.match(/^E_CORRUPT: .* loops/);
      expect(await codeOf(remove(dir, s, after))).to.match(/^E_CORRUPT: .* loops/);
      // Names inside the list are still found: the walk stops at them.
      expect((await lookup(dir, s, two.entries[1].name))?.entry.name).to.equal(two.entries[1].name);
      await repairAndRecheck(dir, stream, model, [/linked to the wrong next entry/]);
      expect(await lookup(dir, stream.session(dir), after)).to.equal(null);
    });

    it('stops an insert walking a free-space list that loops through full pages with E_CORRUPT', async () => {
      const { dir, stream } = fresh();
      const [a, b] = [...stream.pages.values()].filter((p) => !p.onFree && slotFor(p, LONGEST) === undefined).map((p) => p.page);
      expect(b, 'two pages too full for a 255-byte name').to.not.equal(undefined);
      stream.mutate(a, (p) => ((p.onFree = true), (p.nextFree = b)));
      stream.mutate(b, (p) => ((p.onFree = true), (p.nextFree = a)));
      dir.freeHead = a;
      expect(await codeOf(insert(dir, stream.session(dir), LONGEST))).to.equal("E_CORRUPT: a directory's free-space list loops");
    });

    it('refuses an insert whose free-space list points past the pages E_CORRUPT, rather than place the entry where nothing looks', async () => {
      for (const damage of ['head', 'link'] as const) {
        const { dir, stream } = fresh();
        const pages = dir.pages;
        if (damage === 'head') dir.freeHead = pages + 1;
        else {
          // Any page with room takes any entry: so a full page heads the list, linking past the end.
          const full = [...stream.pages.values()].find((p) => !p.onFree && slotFor(p, LONGEST) === undefined)!;
          stream.mutate(full.page, (p) => ((p.onFree = true), (p.nextFree = pages + 1)));
          dir.freeHead = full.page;
        }
        const s = stream.session(dir);
        const got = await codeOf(insert(dir, s, LONGEST));
        expect(got, damage).to.equal(`E_CORRUPT: a directory's free-space list points at page ${pages + 1}, past its ${pages} pages`);
        expect(s.extended, damage).to.deep.equal([]);
      }
    });
  });
});

/**
 * 10,000 operations in three phases (grow, shrink, grow again), checked
 * against the model every CHECK_EVERY operations (and every page decoded
 * every third check): the pages a directory needs stay bounded by what it
 * held at its peak, for removals leave room that inserts fill.
 */
async function randomRun(seed: number): Promise<void> {
  const rnd = new SeededRandom(seed);
  const dir = newDir();
  const stream = new EntriesStream();
  const model: Model = new Map();
  // The model's names as an array too, to pick one at random in O(1).
  const live: string[] = [];
  const removed: string[] = [];
  const pickLive = () => live[rnd.int(live.length)];
  const drop = (name: string) => {
    const i = live.indexOf(name);
    live[i] = live[live.length - 1];
    live.pop();
  };
  const phases = [
    { ops: 4000, insertP: 0.75 },
    { ops: 3000, insertP: 0.15 },
    { ops: 3000, insertP: 0.75 },
  ];
  let ino = 2;
  let op = 0;
  let peak = { live: 0, pages: 0 };
  let extensions = 0;
  for (const [phase, { ops, insertP }] of phases.entries()) {
    for (let i = 0; i < ops; i++, op++) {
      const s = stream.session(dir);
      const where = () => `op ${op} (phase ${phase}, ${model.size} names, ${dir.pages} pages)`;
      const doInsert = model.size === 0 || rnd.next() < insertP;
      if (doInsert) {
        // Now and then a name removed before, or one taken (E_EXISTS).
        const pick = rnd.next();
        const name = pick < 0.1 && removed.length > 0 ? removed[rnd.int(removed.length)] : pick < 0.15 && live.length > 0 ? pickLive() : randomName(rnd);
        const named: Named = { ino: ino++, type: rnd.next() < 0.15 ? 'dir' : 'file' };
        const e = entryOf(name, named);
        if (model.has(name)) {
          const got = await codeOf(insert(dir, s, e));
          must(got.startsWith('E_EXISTS: ') && s.puts.size === 0, () => `${where()}: insert of a name taken: ${got}, ${s.puts.size} pages put`);
          continue;
        }
        const ref = await insert(dir, s, e);
        s.commit();
        model.set(name, named);
        live.push(name);
        must(stream.pages.get(ref.page)?.slots[ref.slot]?.name === name, () => `${where()}: the entry is not where insert said`);
        if (s.extended.length > 0) {
          extensions++;
          // A new page only when no page on the free-space list could take the entry.
          for (let idx = dir.freeHead; idx !== -1; idx = stream.pages.get(idx)!.nextFree) {
            if (idx === s.extended[0]) continue;
            must(slotFor(stream.pages.get(idx)!, e) === undefined, () => `${where()}: a page was added while page ${idx} on the free list had room`);
          }
        }
      } else {
        const name = rnd.next() < 0.05 ? randomName(rnd) : pickLive();
        if (!model.has(name)) {
          const got = await codeOf(remove(dir, s, name));
          must(got.startsWith('E_NOT_FOUND: '), () => `${where()}: remove of a name missing: ${got}`);
          continue;
        }
        const gone = await remove(dir, s, name);
        s.commit();
        must(gone.name === name && gone.ino === model.get(name)!.ino, () => `${where()}: remove(${JSON.stringify(name)}) gave ${JSON.stringify(gone)}`);
        model.delete(name);
        drop(name);
        removed.push(name);
      }
      if (model.size > peak.live) peak = { live: model.size, pages: dir.pages };
      if (op % CHECK_EVERY === CHECK_EVERY - 1) {
        try {
          const absent = removed.slice(-50).concat(Array.from({ length: 20 }, () => randomName(rnd)));
          await check(dir, stream, model, absent, op % (3 * CHECK_EVERY) === CHECK_EVERY - 1);
        } catch (e) {
          throw new Error(`after ${where()}: ${(e as Error).message}`);
        }
      }
    }
    if (phase === 0) expect(model.size, 'the first phase grows the directory').to.be.above(1500);
    if (phase === 1) expect(model.size, 'the second phase shrinks it').to.be.below(peak.live / 3);
  }
  await check(dir, stream, model, removed);
  // Pages were reused: growing back to near the peak took (almost) no more pages than the peak did.
  expect(model.size).to.be.above(peak.live / 2);
  expect(dir.pages, `pages ${dir.pages}, at the peak of ${peak.live} names ${peak.pages}`).to.be.at.most(peak.pages + 2);
  expect(extensions).to.equal(dir.pages);
}

const CHECK_EVERY = 400;
