/**
 * One page of the global disk directory (SPEC M8, FIG. 11 and 12; the tree
 * itself is machines/memory/directory.ts): what an entry may hold, and how a page
 * is laid out in its 4096 bytes, so the directory can live in the shared
 * address space as ordinary persistent pages. Pure: no I/O.
 *
 * Layout: a 7-byte header (a format byte, the body's length as a 16-bit
 * big-endian number, a CRC-32 over those three bytes and the body), the body,
 * then zeros. The body is one CBOR array `[address, level, items, meta]`:
 * - `address`, the page's own address (16 bytes), so a page read from the
 *   wrong place is recognised;
 * - `level`, 0 for a leaf, the height above the leaves for an inner page;
 * - `items`: a leaf's entries `[start, pages, flags, copies, holders]` sorted
 *   by start and disjoint; an inner page's `[key, child]` pairs, keys rising,
 *   child i holding the starts from key i up to key i+1 (child 0 everything
 *   below key 1 in the page's own range: key 0 is not used for routing);
 * - `meta`, on the root page only: `[highWater, superRoot or null]` (M7).
 * Addresses are 16 bytes big-endian, as on the wire (docs/engine.md).
 *
 * Decoding trusts nothing: a page that is not one this file wrote (torn,
 * bit-flipped, misdirected) is an E_STORAGE error naming its address. Every
 * entry is bounded (ids of at most ID_CHARS_MAX UTF-16 units, so at most 192
 * UTF-8 bytes, and at most HOLDERS_MAX of them), so any two entries fit in
 * one page and a split always succeeds.
 */
import { Encoder } from 'cbor-x';
import { MangroveError } from '../../bus/errors.js';
import { CRC_START, crcEnd, crcStep } from './crc32.js';
import { ADDRESS_BYTES, addressFromKey, addressKey, checkAddress, checkPageAddress, formatAddress, MAX_ADDRESS, PAGE_BYTES, pageRange } from './address.js';

/** Format byte: changes whenever the layout does. */
export const DIRECTORY_FORMAT = 0xd1;
export const HEADER_BYTES = 7;
export const BODY_BYTES_MAX = PAGE_BYTES - HEADER_BYTES;
/** Most core holders an entry names (COPIES_MAX in bus/messages/page.ts). */
export const HOLDERS_MAX = 8;
/** Longest node id, in UTF-16 units (limits.idCharsMax in bus/envelope.ts). */
export const ID_CHARS_MAX = 64;
/** Most pages one entry spans (PAGES_PER_RANGE_MAX). */
export const ENTRY_PAGES_MAX = 2 ** 32;
/** A sanity bound on tree height; a real directory stays far below it. */
export const LEVELS_MAX = 32;

export interface DirectoryEntry {
  /** Page-aligned base address of the range. */
  start: bigint;
  /** Pages in the range, >= 1 (up to 2^32). */
  pages: number;
  state: 'reserved' | 'materialized';
  /** Core copies asked for (M11); 0 while reserved. */
  copies: number;
  volatile: boolean;
  /** Core holders, node ids; the first is the responsible node. [] while reserved. */
  holders: string[];
  cacheInRam: boolean;
}

/** The record the owner keeps in the root page (M7). */
export interface DirectoryMeta {
  highWater: bigint;
  superRoot: bigint | null;
}

export interface LeafPage {
  readonly kind: 'leaf';
  readonly level: 0;
  readonly entries: readonly DirectoryEntry[];
  readonly meta: DirectoryMeta | null;
}

export interface InnerPage {
  readonly kind: 'inner';
  readonly level: number;
  readonly keys: readonly bigint[];
  readonly children: readonly bigint[];
  readonly meta: DirectoryMeta | null;
}

export type DirectoryPage = LeafPage | InnerPage;

const FLAG_MATERIALIZED = 1;
const FLAG_VOLATILE = 2;
const FLAG_CACHE_IN_RAM = 4;
const FLAGS_ALL = 7;

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, copyBuffers: true });
const encoded = new WeakMap<DirectoryEntry, Uint8Array>();

/** One past the last byte of the entry's range. */
export function entryEnd(e: DirectoryEntry): bigint {
  return e.start + BigInt(e.pages) * BigInt(PAGE_BYTES);
}

/** `0x… (N pages, to 0x…)`: both ends in hex, for error messages. */
export function describeRange(start: bigint, pages: number): string {
  const last = start + BigInt(pages) * BigInt(PAGE_BYTES) - 1n;
  return `${formatAddress(start)} (${pages} ${pages === 1 ? 'page' : 'pages'}, to ${formatAddress(last)})`;
}

/** A checked copy of `e` (only the known fields); E_BAD_ADDRESS or E_BAD_ARGUMENT naming what is wrong. */
export function checkEntry(e: DirectoryEntry): DirectoryEntry {
  if (typeof e !== 'object' || e === null) throw new MangroveError('E_BAD_ARGUMENT', `a directory entry is an object, not ${String(e)}`);
  checkPageAddress(e.start);
  if (!Number.isSafeInteger(e.pages) || e.pages < 1 || e.pages > ENTRY_PAGES_MAX) {
    throw new MangroveError('E_BAD_ARGUMENT', `an entry spans 1 to ${ENTRY_PAGES_MAX} pages, not ${String(e.pages)}`);
  }
  if (entryEnd(e) - 1n > MAX_ADDRESS) pageRange(e.start, e.pages);
  if (e.state !== 'reserved' && e.state !== 'materialized') badEntry(e, `has state ${String(e.state)}, not reserved or materialized`);
  if (typeof e.volatile !== 'boolean') badEntry(e, `has volatile ${String(e.volatile)}, not a boolean`);
  if (typeof e.cacheInRam !== 'boolean') badEntry(e, `has cacheInRam ${String(e.cacheInRam)}, not a boolean`);
  if (!Number.isSafeInteger(e.copies) || e.copies < 0 || e.copies > HOLDERS_MAX) badEntry(e, `asks for ${String(e.copies)} copies; 0 to ${HOLDERS_MAX} are allowed`);
  if (!Array.isArray(e.holders) || e.holders.length > HOLDERS_MAX) badEntry(e, `must name at most ${HOLDERS_MAX} holders in an array`);
  const holders = e.holders.slice();
  for (let i = 0; i < holders.length; i++) {
    const h = holders[i];
    if (typeof h !== 'string' || h.length < 1 || h.length > ID_CHARS_MAX) {
      badEntry(e, `has holder ${i} ${typeof h === 'string' ? `of ${h.length} characters` : `a ${typeof h}`}; an id has 1 to ${ID_CHARS_MAX} characters`);
    }
    if (!wellFormed(h)) badEntry(e, `has holder ${i} that is not well-formed Unicode (a lone surrogate)`);
    if (holders.indexOf(h) !== i) badEntry(e, `names holder ${JSON.stringify(h)} twice; core holders are distinct nodes`);
  }
  if (e.state === 'reserved' && (e.copies !== 0 || holders.length !== 0)) badEntry(e, 'is reserved, so it has 0 copies and no holders');
  if (e.state === 'materialized' && holders.length === 0) badEntry(e, 'is materialized, so it names its responsible node (the first holder)');
  return { start: e.start, pages: e.pages, state: e.state, copies: e.copies, volatile: e.volatile, holders, cacheInRam: e.cacheInRam };
}

/** No lone surrogate, so the UTF-8 form reads back as the same string. */
function wellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    const d = s.charCodeAt(i + 1);
    if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) return false;
    i += 1;
  }
  return true;
}

function badEntry(e: DirectoryEntry, what: string): never {
  throw new MangroveError('E_BAD_ARGUMENT', `the entry at ${formatAddress(e.start)} ${what}`);
}

/** The page's 4096 bytes, or undefined if its body would not fit. */
export function encodeDirectoryPage(addr: bigint, page: DirectoryPage): Uint8Array | undefined {
  // CBOR encodes an array as its head and then its items, so the body is
  // assembled from each entry's bytes, encoded once per entry (entries are
  // never changed in place) rather than once per page write.
  const items = page.kind === 'leaf' ? page.entries.map(entryBytes) : page.keys.map((k, i) => pairBytes(k, page.children[i]));
  const meta = page.meta === null ? null : [addressKey(page.meta.highWater), page.meta.superRoot === null ? null : addressKey(page.meta.superRoot)];
  const parts = [Uint8Array.of(0x84), cbor.encode(addressKey(addr)), cbor.encode(page.level), arrayHead(items.length), ...items, cbor.encode(meta)];
  const length = parts.reduce((n, p) => n + p.byteLength, 0);
  if (length > BODY_BYTES_MAX) return undefined;
  const out = new Uint8Array(PAGE_BYTES);
  let at = HEADER_BYTES;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return seal(out, length);
}

/**
 * Pieces of a page whose body does not fit, each of which does: items stay
 * in order, and a cut falls where the two sides are closest in bytes.
 */
export function splitPage(page: DirectoryPage): DirectoryPage[] {
  const sizes = page.kind === 'leaf' ? page.entries.map((e) => entryBytes(e).byteLength) : page.keys.map((k, i) => pairBytes(k, page.children[i]).byteLength);
  if (sizes.length < 2) throw new MangroveError('E_INTERNAL', 'a directory page with one item does not fit in a page');
  const total = sizes.reduce((a, b) => a + b, 0);
  let cut = 1;
  let left = sizes[0];
  while (cut < sizes.length - 1 && Math.abs(total - 2 * (left + sizes[cut])) < Math.abs(total - 2 * left)) left += sizes[cut++];
  const part = (from: number, to?: number): DirectoryPage =>
    page.kind === 'leaf'
      ? { kind: 'leaf', level: 0, entries: page.entries.slice(from, to), meta: null }
      : { kind: 'inner', level: page.level, keys: page.keys.slice(from, to), children: page.children.slice(from, to), meta: null };
  // The address is not part of the size: every address takes 16 bytes.
  return [part(0, cut), part(cut)].flatMap((p) => (encodeDirectoryPage(0n, p) === undefined ? splitPage(p) : [p]));
}

/** Header, body and zero padding; exported so specs can build pages with a valid checksum and bad content. */
export function sealDirectoryPage(body: Uint8Array): Uint8Array {
  if (body.byteLength > BODY_BYTES_MAX) throw new MangroveError('E_INTERNAL', `a directory page body of ${body.byteLength} bytes exceeds ${BODY_BYTES_MAX}`);
  const out = new Uint8Array(PAGE_BYTES);
  out.set(body, HEADER_BYTES);
  return seal(out, body.byteLength);
}

function seal(out: Uint8Array, length: number): Uint8Array {
  out[0] = DIRECTORY_FORMAT;
  out[1] = length >> 8;
  out[2] = length & 0xff;
  new DataView(out.buffer, out.byteOffset).setUint32(3, checksum(out, length));
  return out;
}

/** Decodes and checks a page read from `addr`; E_STORAGE naming the address for anything this file would not have written. */
export function decodeDirectoryPage(addr: bigint, data: Uint8Array): DirectoryPage {
  checkAddress(addr);
  const where = formatAddress(addr);
  const corrupt = (why: string): never => {
    throw new MangroveError('E_STORAGE', `directory page ${where} is corrupt: ${why}`);
  };
  if (!(data instanceof Uint8Array) || data.byteLength !== PAGE_BYTES) corrupt(`it has ${data instanceof Uint8Array ? data.byteLength : 'no'} bytes, not ${PAGE_BYTES}`);
  if (data[0] !== DIRECTORY_FORMAT) corrupt(`format byte 0x${data[0].toString(16)}, expected 0x${DIRECTORY_FORMAT.toString(16)}`);
  const length = (data[1] << 8) | data[2];
  if (length > BODY_BYTES_MAX) corrupt(`a body of ${length} bytes does not fit`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (view.getUint32(3) !== checksum(data, length)) corrupt('checksum mismatch');
  const size = data.byteLength;
  for (let i = HEADER_BYTES + length; i < size; i++) if (data[i] !== 0) corrupt(`byte ${i} after the body is not zero`);
  let body: unknown;
  try {
    body = cbor.decode(data.subarray(HEADER_BYTES, HEADER_BYTES + length));
  } catch (e) {
    corrupt(`not CBOR (${e instanceof Error ? e.message : String(e)})`);
  }
  try {
    return pageFromWire(addr, body);
  } catch (e) {
    if (e instanceof MangroveError) corrupt(e.message);
    throw e;
  }
}

function pageFromWire(addr: bigint, body: unknown): DirectoryPage {
  const bad = (why: string): never => {
    throw new MangroveError('E_STORAGE', why);
  };
  if (!Array.isArray(body) || body.length !== 4) bad('the body is not a 4-item array');
  const [own, level, items, rawMeta] = body as unknown[];
  if (wireAddress(own, 'its own address') !== addr) bad(`it says it is page ${formatAddress(wireAddress(own, ''))}`);
  if (!Number.isSafeInteger(level) || (level as number) < 0 || (level as number) > LEVELS_MAX) bad(`level ${String(level)} is not 0 to ${LEVELS_MAX}`);
  if (!Array.isArray(items)) bad('its items are not an array');
  const meta = metaFromWire(rawMeta);
  const list = items as unknown[];
  if (level === 0) {
    const entries = list.map((w, i) => entryFromWire(w, i));
    for (let i = 1; i < entries.length; i++) {
      if (entryEnd(entries[i - 1]) > entries[i].start) bad(`entries ${i - 1} and ${i} are out of order or overlap`);
    }
    return { kind: 'leaf', level: 0, entries, meta };
  }
  if (list.length === 0) bad('an inner page with no children');
  const keys: bigint[] = [];
  const children: bigint[] = [];
  list.forEach((w, i) => {
    if (!Array.isArray(w) || w.length !== 2) bad(`child ${i} is not a [key, address] pair`);
    const [k, c] = w as unknown[];
    keys.push(wireAddress(k, `key ${i}`));
    children.push(checkPageAddress(wireAddress(c, `child ${i}`)));
    if (i > 0 && keys[i] <= keys[i - 1]) bad(`key ${i} does not rise`);
    if (children[i] === addr) bad(`child ${i} is the page itself`);
  });
  return { kind: 'inner', level: level as number, keys, children, meta };
}

function metaFromWire(raw: unknown): DirectoryMeta | null {
  if (raw === null) return null;
  if (!Array.isArray(raw) || raw.length !== 2) throw new MangroveError('E_STORAGE', 'its meta is not a [highWater, superRoot] pair');
  const superRoot = raw[1] === null ? null : checkPageAddress(wireAddress(raw[1], 'the super-root'));
  return { highWater: wireAddress(raw[0], 'the high-water mark'), superRoot };
}

/** An entry's CBOR bytes, kept while the (never changed) entry object lives. */
function entryBytes(e: DirectoryEntry): Uint8Array {
  let bytes = encoded.get(e);
  if (bytes === undefined) {
    const flags = (e.state === 'materialized' ? FLAG_MATERIALIZED : 0) | (e.volatile ? FLAG_VOLATILE : 0) | (e.cacheInRam ? FLAG_CACHE_IN_RAM : 0);
    // A copy: the encoder's result shares a larger buffer it would pin.
    bytes = cbor.encode([addressKey(e.start), e.pages, flags, e.copies, e.holders]).slice();
    encoded.set(e, bytes);
  }
  return bytes;
}

function pairBytes(key: bigint, child: bigint): Uint8Array {
  return cbor.encode([addressKey(key), addressKey(child)]);
}

function arrayHead(n: number): Uint8Array {
  if (n < 24) return Uint8Array.of(0x80 | n);
  if (n < 256) return Uint8Array.of(0x98, n);
  return Uint8Array.of(0x99, n >> 8, n & 0xff);
}

function entryFromWire(w: unknown, i: number): DirectoryEntry {
  if (!Array.isArray(w) || w.length !== 5) throw new MangroveError('E_STORAGE', `entry ${i} is not a 5-item array`);
  const [start, pages, flags, copies, holders] = w as unknown[];
  if (!Number.isSafeInteger(flags) || (flags as number) < 0 || (flags as number) > FLAGS_ALL) {
    throw new MangroveError('E_STORAGE', `entry ${i} has flags ${String(flags)}`);
  }
  const f = flags as number;
  const entry = {
    start: wireAddress(start, `entry ${i}`),
    pages,
    state: f & FLAG_MATERIALIZED ? 'materialized' : 'reserved',
    copies,
    volatile: (f & FLAG_VOLATILE) !== 0,
    holders,
    cacheInRam: (f & FLAG_CACHE_IN_RAM) !== 0,
  } as DirectoryEntry;
  try {
    return checkEntry(entry);
  } catch (e) {
    if (e instanceof MangroveError) throw new MangroveError('E_STORAGE', `entry ${i}: ${e.message}`);
    throw e;
  }
}

/** addressFromKey, without BigInt arithmetic for the small addresses most pages hold. */
function wireAddress(w: unknown, what: string): bigint {
  if (!(w instanceof Uint8Array) || w.byteLength !== ADDRESS_BYTES) throw new MangroveError('E_STORAGE', `${what} is not a ${ADDRESS_BYTES}-byte address`);
  const word = (i: number): number => ((w[i] << 24) | (w[i + 1] << 16) | (w[i + 2] << 8) | w[i + 3]) >>> 0;
  const w2 = word(8);
  if ((word(0) | word(4)) === 0 && w2 < 0x200000) return BigInt(w2 * 2 ** 32 + word(12));
  return addressFromKey(w);
}

/** CRC-32 (IEEE) over the header's first three bytes and the body. */
function checksum(page: Uint8Array, bodyLength: number): number {
  return crcEnd(crcStep(crcStep(CRC_START, page, 0, 3), page, HEADER_BYTES, HEADER_BYTES + bodyLength));
}
