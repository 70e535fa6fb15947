/**
 * A directory's entry page (SPEC.md M19; patent, "Directory"): the entries of
 * one page of a directory's entries stream. An entry duplicates its inode's
 * attributes (times, size, mode, link count, the inode's address) so a
 * listing needs no inode reads; the name lives here only. An entry never
 * spans pages: a page takes an entry only if the whole of it fits, and with
 * names of average length about 30 fit. Entries keep their slot for life, so
 * a reference (page, slot) stays valid while others come and go. Pure.
 */
import { z } from 'zod';
import { MangroveError } from '../../bus/errors.js';
import { addressFromKey, addressKey, formatAddress } from '../memory/address.js';
import { bodyBytes, decodeFsPage, encodeFsPage, FS_BODY_BYTES_MAX, sealFsPage } from './fs-page.js';
import { sizeOf, type FileType, type Inode } from './inode.js';

/** Where an entry is: its page in the entries stream and its slot there. */
export interface EntryRef {
  page: number;
  slot: number;
}

export interface DirEntry {
  name: string;
  ino: number;
  addr: bigint;
  type: FileType;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  btimeMs: number;
  /** The inode's synchronisation version this entry's attributes were copied at (M19). */
  sync: number;
  /** The next entry of its hash bucket's list, in name order. */
  next: EntryRef | null;
}

export interface EntryPage {
  /** Its index in the entries stream (a page read from the wrong place is recognised). */
  page: number;
  /** On the directory's free-space list, and the page after it there (-1: the last). */
  onFree: boolean;
  nextFree: number;
  /** By slot; null: a free slot. */
  slots: (DirEntry | null)[];
}

/** Slots of one page: more than the ~30 entries of average names fit, few enough to bound a page's work. */
export const SLOTS_MAX = 64;
/**
 * A page stays on the free-space list while it has this much room: enough
 * for an entry with a name of the longest length, so any entry fits any page
 * on the list. That entry is 349 bytes of CBOR (a pair: 1, the name: 2 + 255,
 * the attributes: 2 + ENTRY_ATTR_BYTES), and the slot list's head may grow
 * by one byte as it passes 23 slots.
 */
export const FREE_BYTES_MIN = 350;

const TYPES: FileType[] = ['file', 'dir', 'symlink'];
/**
 * An entry's attributes in a fixed binary layout beside its name, so that
 * an entry's size depends on its name alone: copying an inode's newer
 * attributes into it (M19) never makes a full page overflow.
 * ino u32, address 16, type u8, mode u16, uid u32, gid u32, nlink u32,
 * size, atime, mtime, ctime, btime, sync as float64, next page + 1 u32
 * (0: none), next slot u16.
 */
export const ENTRY_ATTR_BYTES = 89;
const entryWire = z.tuple([z.string().min(1).max(255), z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.byteLength === ENTRY_ATTR_BYTES, 'entry attributes')]);
const pageWire = z.tuple([z.number().int().min(0).max(2 ** 31), z.boolean(), z.number().int().min(-1).max(2 ** 31), z.array(entryWire.nullable()).max(SLOTS_MAX)]);

type EntryWire = z.infer<typeof entryWire>;

function entryToWire(e: DirEntry): EntryWire {
  const b = new Uint8Array(ENTRY_ATTR_BYTES);
  const v = new DataView(b.buffer);
  v.setUint32(0, e.ino);
  b.set(addressKey(e.addr), 4);
  v.setUint8(20, TYPES.indexOf(e.type));
  v.setUint16(21, e.mode);
  v.setUint32(23, e.uid);
  v.setUint32(27, e.gid);
  v.setUint32(31, e.nlink);
  [e.size, e.atimeMs, e.mtimeMs, e.ctimeMs, e.btimeMs, e.sync].forEach((x, i) => v.setFloat64(35 + 8 * i, x));
  v.setUint32(83, e.next ? e.next.page + 1 : 0);
  v.setUint16(87, e.next ? e.next.slot : 0);
  return [e.name, b];
}

/** An entry read back; attributes out of their ranges make the page corrupt (null). */
function entryFromWire(w: EntryWire): DirEntry | null {
  const [name, b] = w;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const type = TYPES[v.getUint8(20)];
  const [size, atimeMs, mtimeMs, ctimeMs, btimeMs, sync] = [0, 1, 2, 3, 4, 5].map((i) => v.getFloat64(35 + 8 * i));
  const nextPage = v.getUint32(83);
  const next = nextPage === 0 ? null : { page: nextPage - 1, slot: v.getUint16(87) };
  const whole = (x: number) => Number.isSafeInteger(x) && x >= 0;
  if (!type || !whole(size) || !whole(sync) || ![atimeMs, mtimeMs, ctimeMs, btimeMs].every((t) => t >= 0 && t <= 8.64e15) || (next && next.slot >= SLOTS_MAX)) return null;
  return { name, ino: v.getUint32(0), addr: addressFromKey(b.subarray(4, 20)), type, mode: v.getUint16(21), uid: v.getUint32(23), gid: v.getUint32(27), nlink: v.getUint32(31), size, atimeMs, mtimeMs, ctimeMs, btimeMs, sync, next };
}

function pageToWire(p: EntryPage): unknown {
  // Trailing free slots are not stored: a page's size is that of what it holds.
  let last = p.slots.length;
  while (last > 0 && p.slots[last - 1] === null) last--;
  return [p.page, p.onFree, p.nextFree, p.slots.slice(0, last).map((e) => (e ? entryToWire(e) : null))];
}

export function emptyEntryPage(page: number): EntryPage {
  return { page, onFree: false, nextFree: -1, slots: [] };
}

/** The page at index `page` of a directory's entries stream, read from `addr`; a page never written is empty. */
export function decodeEntryPage(data: Uint8Array, addr: bigint, page: number): EntryPage {
  const w = decodeFsPage('entries', data, addr, pageWire);
  if (w === null) return emptyEntryPage(page);
  if (w[0] !== page) throw new MangroveError('E_CORRUPT', `the entries page at ${formatAddress(addr)} says it is page ${w[0]} of its directory, not ${page}`);
  const slots = w[3].map((e) => (e ? entryFromWire(e) : null));
  const bad = slots.findIndex((e, i) => e === null && w[3][i] !== null);
  if (bad >= 0) throw new MangroveError('E_CORRUPT', `the entries page at ${formatAddress(addr)} has slot ${bad} out of range`);
  return { page: w[0], onFree: w[1], nextFree: w[2], slots };
}

export function encodeEntryPage(p: EntryPage, addr: bigint): Uint8Array {
  return sealFsPage('entries', pageToWire(p), addr);
}

/** Bytes the page's body takes now. */
export function usedBytes(p: EntryPage): number {
  return bodyBytes(pageToWire(p)).length;
}

/**
 * Room left in the page, measured as if its free-list link were the widest
 * it can be: relinking the list around a page (its `nextFree` changing) then
 * never moves it across FREE_BYTES_MIN, so it is on the list exactly while
 * it has the room, as rebuild recomputes it.
 */
export function freeBytes(p: EntryPage): number {
  return FS_BODY_BYTES_MAX - usedBytes({ ...p, nextFree: NEXT_FREE_WIDEST });
}

/** A `nextFree` whose CBOR takes the most bytes the page layout allows (5). */
const NEXT_FREE_WIDEST = 2 ** 31;

/** The slot `e` would take in `p`, if the whole entry fits there. */
export function slotFor(p: EntryPage, e: DirEntry): number | undefined {
  let slot = p.slots.indexOf(null);
  if (slot < 0) slot = p.slots.length;
  if (slot >= SLOTS_MAX) return undefined;
  const trial: EntryPage = { ...p, slots: [...p.slots] };
  trial.slots[slot] = e;
  return encodeFsPage('entries', pageToWire(trial)) ? slot : undefined;
}

export function entriesOf(p: EntryPage): { entry: DirEntry; ref: EntryRef }[] {
  const out: { entry: DirEntry; ref: EntryRef }[] = [];
  p.slots.forEach((entry, slot) => {
    if (entry) out.push({ entry, ref: { page: p.page, slot } });
  });
  return out;
}

export function sameRef(a: EntryRef | null, b: EntryRef | null): boolean {
  return a === b || (a !== null && b !== null && a.page === b.page && a.slot === b.slot);
}

/** The entry that stands for inode `i` at `addr` under `name`: its attributes copied (M19). */
export function entryFor(name: string, addr: bigint, i: Inode): DirEntry {
  return {
    name,
    ino: i.ino,
    addr,
    type: i.type,
    mode: i.mode,
    uid: i.uid,
    gid: i.gid,
    nlink: i.nlink,
    size: sizeOf(i),
    atimeMs: i.atimeMs,
    mtimeMs: i.mtimeMs,
    ctimeMs: i.ctimeMs,
    btimeMs: i.btimeMs,
    sync: i.sync,
    next: null,
  };
}
