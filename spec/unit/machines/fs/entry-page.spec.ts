/**
 * A directory's entry page (machines/fs/entry-page.ts; SPEC M19): entries
 * round-trip with their list links and free slots; an entry's size is its
 * name's, so refreshing its attributes never overflows a full page; about 30
 * entries of ordinary names fit a page; attributes out of range are corrupt.
 */
import { expect } from 'chai';
import { decode as cborDecode } from 'cbor-x';
import { formatAddress, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { encodeFsPage, FS_BODY_BYTES_MAX, FS_HEADER_BYTES } from '../../../../machines/fs/fs-page.js';
import {
  decodeEntryPage,
  emptyEntryPage,
  encodeEntryPage,
  ENTRY_ATTR_BYTES,
  entriesOf,
  entryFor,
  freeBytes,
  sameRef,
  slotFor,
  SLOTS_MAX,
  usedBytes,
  type DirEntry,
  type EntryPage,
} from '../../../../machines/fs/entry-page.js';
import { newInode } from '../../../../machines/fs/inode.js';
import { errorOf } from '../../../helpers/error-of.js';

const A = (page: number) => (5n << 64n) + 0x10000000000n + BigInt(page) * 4096n;
const ADDR = A(77);

function entry(name: string, extra: Partial<DirEntry> = {}): DirEntry {
  return {
    name,
    ino: 12,
    addr: A(12),
    type: 'file',
    mode: 0o644,
    uid: 1000,
    gid: 100,
    nlink: 1,
    size: 0,
    atimeMs: 1,
    mtimeMs: 2,
    ctimeMs: 3,
    btimeMs: 4,
    sync: 1,
    next: null,
    ...extra,
  };
}

/** Every numeric attribute at the top of its range, and a list link far out. */
const HUGE: Omit<DirEntry, 'name'> = {
  ino: 2 ** 32 - 1,
  addr: (1n << 128n) - 4096n,
  type: 'symlink',
  mode: 0o7777,
  uid: 2 ** 32 - 1,
  gid: 2 ** 32 - 1,
  nlink: 2 ** 32 - 1,
  size: Number.MAX_SAFE_INTEGER,
  atimeMs: 8.64e15,
  mtimeMs: 8.64e15,
  ctimeMs: 8.64e15 - 0.5,
  btimeMs: 8.64e15,
  sync: Number.MAX_SAFE_INTEGER,
  next: { page: 2 ** 31, slot: SLOTS_MAX - 1 },
};

/** Adds entries made by `make` until the page takes no more; answers how many went in. */
function fill(p: EntryPage, make: (i: number) => DirEntry): number {
  let n = 0;
  for (;;) {
    const e = make(n);
    const slot = slotFor(p, e);
    if (slot === undefined) return n;
    expect(slot, 'the first free slot').to.equal(p.slots.indexOf(null) >= 0 ? p.slots.indexOf(null) : p.slots.length);
    p.slots[slot] = e;
    n++;
    expect(n, 'a page that never fills').to.be.below(SLOTS_MAX + 1);
  }
}

/** The raw wire body of an encoded entry page, to damage and re-seal. */
function wireOf(page: Uint8Array): [number, boolean, number, ([string, Uint8Array] | null)[]] {
  const length = new DataView(page.buffer, page.byteOffset).getUint16(6);
  return cborDecode(page.subarray(FS_HEADER_BYTES, FS_HEADER_BYTES + length));
}

describe('machines/fs/entry-page', () => {
  it('round-trips entries with list links and free slots between them', () => {
    const p: EntryPage = {
      page: 3,
      onFree: true,
      nextFree: 9,
      slots: [
        entry('alpha', { next: { page: 3, slot: 2 } }),
        null,
        entry('gamma', { type: 'dir', nlink: 2, next: { page: 0, slot: 0 } }),
        null,
        entry('ünïcødé 😀', { type: 'symlink', next: null }),
        entry('huge', HUGE),
      ],
    };
    const data = encodeEntryPage(p, ADDR);
    expect(data.length).to.equal(PAGE_BYTES);
    expect(decodeEntryPage(data, ADDR, 3)).to.deep.equal(p);
    expect(entriesOf(p).map((f) => [f.entry.name, f.ref])).to.deep.equal([
      ['alpha', { page: 3, slot: 0 }],
      ['gamma', { page: 3, slot: 2 }],
      ['ünïcødé 😀', { page: 3, slot: 4 }],
      ['huge', { page: 3, slot: 5 }],
    ]);
  });

  it('stores no trailing free slots: they read back as a shorter list', () => {
    const p: EntryPage = { page: 0, onFree: false, nextFree: -1, slots: [entry('a'), null, entry('b'), null, null] };
    const back = decodeEntryPage(encodeEntryPage(p, ADDR), ADDR, 0);
    expect(back.slots).to.deep.equal([entry('a'), null, entry('b')]);
    expect(usedBytes(p)).to.equal(usedBytes(back));
    const empty = decodeEntryPage(encodeEntryPage({ page: 1, onFree: true, nextFree: -1, slots: [null, null] }, ADDR), ADDR, 1);
    expect(empty).to.deep.equal({ page: 1, onFree: true, nextFree: -1, slots: [] });
  });

  it('reads a page never written as an empty page of the index asked', () => {
    expect(decodeEntryPage(new Uint8Array(PAGE_BYTES), ADDR, 6)).to.deep.equal(emptyEntryPage(6));
    expect(emptyEntryPage(6)).to.deep.equal({ page: 6, onFree: false, nextFree: -1, slots: [] });
  });

  it('fits about 30 entries of 20-byte names in a page (M19), and then refuses more', () => {
    const p = emptyEntryPage(0);
    const n = fill(p, (i) => entry(`file-${String(i).padStart(15, '0')}`));
    expect(n).to.be.within(25, 45);
    expect(freeBytes(p)).to.be.at.least(0);
    expect(slotFor(p, entry('x'.repeat(20)))).to.equal(undefined);
    expect(decodeEntryPage(encodeEntryPage(p, ADDR), ADDR, 0).slots).to.have.length(n);
  });

  it("gives an entry a size that depends on its name alone: a full page takes every entry's largest attributes", () => {
    for (const nameLength of [1, 20, 100, 255]) {
      const p = emptyEntryPage(0);
      const n = fill(p, (i) => entry(String(i).padStart(nameLength, 'n')));
      expect(n, `names of ${nameLength}`).to.be.at.least(1);
      const before = usedBytes(p);
      p.slots = p.slots.map((e) => e && { ...e, ...HUGE, name: e.name });
      expect(usedBytes(p), `names of ${nameLength}`).to.equal(before);
      const data = encodeEntryPage(p, ADDR);
      expect(decodeEntryPage(data, ADDR, 0), `names of ${nameLength}`).to.deep.equal(p);
    }
  });

  it('takes the first free slot, and refuses past SLOTS_MAX even with room to spare', () => {
    const p: EntryPage = { page: 0, onFree: false, nextFree: -1, slots: [entry('a'), null, entry('b'), null] };
    expect(slotFor(p, entry('c'))).to.equal(1);
    p.slots[1] = entry('c');
    expect(slotFor(p, entry('d'))).to.equal(3);
    expect(slotFor({ ...p, slots: [entry('a')] }, entry('d'))).to.equal(1);
    // SLOTS_MAX slots, every one held: no slot, though the page has room (only in memory: it could not be encoded).
    const crowded: EntryPage = { page: 0, onFree: false, nextFree: -1, slots: Array.from({ length: SLOTS_MAX }, (_, i) => entry(`${i}`)) };
    expect(slotFor(crowded, entry('z'))).to.equal(undefined);
    // The last slot free, the others empty: it is given, and the page round-trips.
    const sparse: EntryPage = { page: 0, onFree: false, nextFree: -1, slots: [...Array<null>(SLOTS_MAX - 1).fill(null), entry('last')] };
    const back = decodeEntryPage(encodeEntryPage(sparse, ADDR), ADDR, 0);
    expect(back.slots).to.have.length(SLOTS_MAX);
    expect(back.slots[SLOTS_MAX - 1]!.name).to.equal('last');
    expect(slotFor(sparse, entry('x'))).to.equal(0);
    // A page that holds more than SLOTS_MAX slots is corrupt.
    const tooMany = encodeFsPage('entries', [0, false, -1, Array<null>(SLOTS_MAX + 1).fill(null)])!;
    expect(errorOf(() => decodeEntryPage(tooMany, ADDR, 0))).to.match(/^E_CORRUPT: /);
    // An empty page's body is a few bytes: a page takes the room of what it holds.
    expect(freeBytes(emptyEntryPage(0))).to.be.above(FS_BODY_BYTES_MAX - 10);
  });

  it('takes an entry only if the whole of it fits: slotFor agrees with the bytes the page would take', () => {
    const p = emptyEntryPage(0);
    fill(p, (i) => entry(String(i).padStart(200, 'q')));
    const outcomes = new Set<boolean>();
    for (let length = 1; length <= 255; length++) {
      const e = entry('L'.repeat(length));
      const slot = slotFor(p, e);
      const trial: EntryPage = { ...p, slots: [...p.slots, e] };
      expect(slot !== undefined, `a ${length}-byte name`).to.equal(usedBytes(trial) <= FS_BODY_BYTES_MAX);
      outcomes.add(slot !== undefined);
    }
    // Short names still fit the page that refused another 200-byte one; long ones do not.
    expect([...outcomes].sort()).to.deep.equal([false, true]);
    // slotFor only measures: the page is as it was.
    expect(p.slots.every((e) => e !== null && e.name.length === 200)).to.equal(true);
  });

  it('calls attributes out of range corrupt, naming the address and the slot', () => {
    const good = encodeEntryPage({ page: 0, onFree: false, nextFree: -1, slots: [entry('ok'), entry('bad')] }, ADDR);
    const attrs = wireOf(good)[3][1]![1];
    expect(attrs.length).to.equal(ENTRY_ATTR_BYTES);
    // Offsets from the layout in entry-page.ts: type u8 at 20, then mode, uid, gid, nlink, then six float64 from 35.
    const damagedPage = (f: (v: DataView, b: Uint8Array) => void, name = 'bad') => {
      const b = attrs.slice();
      f(new DataView(b.buffer), b);
      const w = wireOf(good);
      w[3][1] = [name, b];
      return encodeFsPage('entries', w)!;
    };
    const cases: [string, Uint8Array][] = [
      ['type byte 7', damagedPage((v) => v.setUint8(20, 7))],
      ['type byte 3', damagedPage((v) => v.setUint8(20, 3))],
      ['negative size', damagedPage((v) => v.setFloat64(35, -1))],
      ['fractional size', damagedPage((v) => v.setFloat64(35, 1.5))],
      ['size past 2^53', damagedPage((v) => v.setFloat64(35, 2 ** 53))],
      ['negative atime', damagedPage((v) => v.setFloat64(43, -1))],
      ['NaN mtime', damagedPage((v) => v.setFloat64(51, NaN))],
      ['ctime past the last date', damagedPage((v) => v.setFloat64(59, 8.64e15 + 1))],
      ['negative btime', damagedPage((v) => v.setFloat64(67, -0.5))],
      ['negative sync', damagedPage((v) => v.setFloat64(75, -1))],
      ['next slot past SLOTS_MAX', damagedPage((v) => (v.setUint32(83, 1), v.setUint16(87, SLOTS_MAX)))],
    ];
    for (const [why, page] of cases) {
      expect(errorOf(() => decodeEntryPage(page, ADDR, 0)), why).to.equal(`E_CORRUPT: the entries page at ${formatAddress(ADDR)} has slot 1 out of range`);
    }
    const short = wireOf(good);
    short[3][1] = ['bad', attrs.slice(0, ENTRY_ATTR_BYTES - 1)];
    const shape: [string, Uint8Array][] = [
      ['attributes one byte short', encodeFsPage('entries', short)!],
      ['an empty name', damagedPage(() => {}, '')],
      ['a 256-character name', damagedPage(() => {}, 'x'.repeat(256))],
      ['a page index below 0', encodeFsPage('entries', [-1, false, -1, []])!],
      ['nextFree below -1', encodeFsPage('entries', [0, false, -2, []])!],
      ['onFree not a boolean', encodeFsPage('entries', [0, 1, -1, []])!],
      ['an entry that is not a pair', encodeFsPage('entries', [0, false, -1, [['x']]])!],
    ];
    for (const [why, page] of shape) {
      expect(errorOf(() => decodeEntryPage(page, ADDR, 0)), why).to.match(new RegExp(`^E_CORRUPT: the entries page at ${formatAddress(ADDR)} has a malformed body`));
    }
    // A page of another kind is not an entries page.
    expect(errorOf(() => decodeEntryPage(encodeFsPage('inode', [0, false, -1, []])!, ADDR, 0))).to.match(/^E_CORRUPT: .*holds a page of kind 4, not 5/);
    // The good one reads.
    expect(decodeEntryPage(good, ADDR, 0).slots.map((e) => e?.name)).to.deep.equal(['ok', 'bad']);
  });

  it("copies an inode's attributes into its entry (M19), with no list link yet", () => {
    const i = newInode({ fileset: 2, ino: 99, type: 'dir', mode: 0o750, uid: 7, gid: 8, parent: 1, parentAddr: A(1), nowMs: 1_700_000_000_000 });
    i.sync = 5;
    i.streams[0].size = 8192;
    i.atimeMs = 1_700_000_000_001;
    expect(entryFor('sub', A(99), i)).to.deep.equal({
      name: 'sub',
      ino: 99,
      addr: A(99),
      type: 'dir',
      mode: 0o750,
      uid: 7,
      gid: 8,
      nlink: 2,
      size: 8192,
      atimeMs: 1_700_000_000_001,
      mtimeMs: 1_700_000_000_000,
      ctimeMs: 1_700_000_000_000,
      btimeMs: 1_700_000_000_000,
      sync: 5,
      next: null,
    });
  });

  it('compares references by value', () => {
    expect(sameRef(null, null)).to.equal(true);
    expect(sameRef({ page: 1, slot: 2 }, { page: 1, slot: 2 })).to.equal(true);
    expect(sameRef({ page: 1, slot: 2 }, { page: 2, slot: 1 })).to.equal(false);
    expect(sameRef({ page: 0, slot: 0 }, null)).to.equal(false);
    expect(sameRef(null, { page: 0, slot: 0 })).to.equal(false);
  });
});
