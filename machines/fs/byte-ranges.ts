/**
 * The byte-range lock table of one file stream (SPEC.md M21; the patent's
 * "FILE ACCESS AND RESOURCE SHARING — BYTE RANGE LOCKING"): the records, the
 * Win32 rules that decide which of them conflict or forbid an access, and how
 * the table is laid out in the one volatile page it lives in. Pure: no I/O;
 * machines/fs/byte-range-lock.ts changes the table under the page's lock.
 *
 * Rules (patent (a)-(e), Win32 LockFileEx):
 * - a record is owned by the file handle that took it; a range may reach
 *   past the end of the file (`end` up to Number.MAX_SAFE_INTEGER);
 * - two ranges overlap when each starts before the other ends, so adjacent
 *   ranges never do;
 * - a lock conflicts with every overlapping lock unless both are shared,
 *   whoever owns them: locks may not overlap an existing locked region, and
 *   only shared locks may share one (a handle's second shared lock over its
 *   own shared region is fine; its exclusive lock over its own region is not);
 * - an access is checked against the other handles' locks only: an exclusive
 *   lock forbids them reading and writing, a shared one writing;
 * - an advisory lock (POSIX fcntl and flock, taken through the mount)
 *   conflicts with other locks as any does, and forbids no access.
 *
 * Layout: the magic 'MGBR', the body's length (16 bits big-endian), the body,
 * zeros. The body is one CBOR array of `[start, end, exclusive, owner, node,
 * epoch, key]` tuples (`exclusive` 0 or 1), with an eighth item 1 for an
 * advisory lock. An all-zero page is an empty
 * table (the engine zero-fills a new page). Decoding trusts nothing: anything
 * but a table this file wrote, whose records break no rule above, is
 * E_CORRUPT, and nothing else ever escapes it.
 */
import { decode, encode } from 'cbor-x';
import { assert } from '../../bus/assert.js';
import { MangroveError } from '../../bus/errors.js';
import { PAGE_BYTES } from '../memory/address.js';

export type RangeLockMode = 'shared' | 'exclusive';
export type AccessKind = 'read' | 'write';

export interface RangeLock {
  /** First byte locked. */
  start: number;
  /** Just past the last byte locked; Number.MAX_SAFE_INTEGER reaches to the end of the file and beyond. */
  end: number;
  mode: RangeLockMode;
  /** The handle id that took the lock (patent (a): handles identify owners). */
  owner: string;
  /** The node the handle lives on: its failure or restart drops the lock. */
  node: string;
  /** That node's incarnation when the lock was taken. */
  epoch: number;
  /** The Win32 lock key (u32). */
  key: number;
  /** POSIX's kind of lock: it forbids no read or write (absent: Win32's, it does). */
  advisory?: boolean;
}

export const RANGE_LOCKS_MAGIC = 0x4d474252; // 'MGBR'
export const RANGE_LOCKS_HEADER_BYTES = 6;
export const RANGE_LOCKS_BODY_BYTES_MAX = PAGE_BYTES - RANGE_LOCKS_HEADER_BYTES;
/**
 * Longest owner or node id, in UTF-8 bytes. Handle and node ids are ASCII,
 * so this is 64 characters; counting bytes, not UTF-16 units, is what keeps
 * RANGE_LOCKS_MAX at 24 rather than 9.
 */
export const RANGE_LOCK_ID_BYTES_MAX = 64;
export const RANGE_LOCK_KEY_MAX = 0xffff_ffff;

/**
 * The largest one record can encode to: a 1-byte array head, start, end and
 * epoch as 9-byte numbers (cbor-x writes integers past 32 bits as float64),
 * the mode byte, two ids with 2-byte string heads, a 5-byte u32 key and the
 * advisory byte.
 */
export const RANGE_LOCK_RECORD_BYTES_MAX = 1 + 9 + 9 + 1 + 2 * (2 + RANGE_LOCK_ID_BYTES_MAX) + 9 + 5 + 1;
/** Head of the table's array: 2 bytes for up to 255 records. */
const TABLE_HEAD_BYTES_MAX = 2;
/** Records one file stream holds: as many worst-case records as fit in the page. */
export const RANGE_LOCKS_MAX = Math.floor((RANGE_LOCKS_BODY_BYTES_MAX - TABLE_HEAD_BYTES_MAX) / RANGE_LOCK_RECORD_BYTES_MAX);

type Tuple = [number, number, 0 | 1, string, string, number, number] | [number, number, 0 | 1, string, string, number, number, 1];

const utf8 = new TextEncoder();
const badArgument = (why: string) => new MangroveError('E_BAD_ARGUMENT', why);
const corrupt = (why: string) => new MangroveError('E_CORRUPT', `the byte-range lock page ${why}`);

/** Throws E_BAD_ARGUMENT unless [start, end) is a non-empty range of whole, non-negative byte offsets. */
export function checkRange(start: number, end: number): void {
  if (!Number.isSafeInteger(start) || start < 0) throw badArgument(`a byte range starts at a whole offset of 0 or more, not ${String(start)}`);
  if (!Number.isSafeInteger(end)) throw badArgument(`a byte range ends at a whole offset up to ${Number.MAX_SAFE_INTEGER}, not ${String(end)}`);
  if (end <= start) throw badArgument(`a byte range ends after it starts: [${start}, ${end}) is empty or reversed`);
}

/** Why `lock` is not a record the table can hold, or undefined. */
function recordFault(lock: RangeLock): string | undefined {
  try {
    checkRange(lock.start, lock.end);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  if (lock.mode !== 'shared' && lock.mode !== 'exclusive') return `a lock's mode is shared or exclusive, not ${String(lock.mode)}`;
  for (const [what, id] of [['owner', lock.owner], ['node', lock.node]] as const) {
    if (typeof id !== 'string' || id.length === 0) return `a lock names its ${what}`;
    if (utf8.encode(id).length > RANGE_LOCK_ID_BYTES_MAX) return `a lock's ${what} id is at most ${RANGE_LOCK_ID_BYTES_MAX} bytes`;
  }
  if (!Number.isSafeInteger(lock.epoch) || lock.epoch < 0) return `a lock's node epoch is a whole number of 0 or more, not ${String(lock.epoch)}`;
  if (!Number.isInteger(lock.key) || lock.key < 0 || lock.key > RANGE_LOCK_KEY_MAX) return `a lock key is a u32, not ${String(lock.key)}`;
  return undefined;
}

/** Throws E_BAD_ARGUMENT unless `lock` is a record the table can hold. */
export function checkRangeLock(lock: RangeLock): void {
  const fault = recordFault(lock);
  if (fault !== undefined) throw badArgument(fault);
}

const overlaps = (a: Pick<RangeLock, 'start' | 'end'>, start: number, end: number): boolean => a.start < end && start < a.end;

/** Whether two locks may both be held: apart, or both shared (owners do not matter, see the rules above). */
export function compatible(a: Pick<RangeLock, 'start' | 'end' | 'mode'>, b: Pick<RangeLock, 'start' | 'end' | 'mode'>): boolean {
  return !overlaps(a, b.start, b.end) || (a.mode === 'shared' && b.mode === 'shared');
}

/** The records that stop `request` from being granted, in table order; [] when it may be. */
export function conflicts(table: readonly RangeLock[], request: Pick<RangeLock, 'start' | 'end' | 'mode' | 'owner'>): RangeLock[] {
  checkRange(request.start, request.end);
  return table.filter((held) => !compatible(held, request));
}

/**
 * The record that forbids `owner` a `kind` access of [start, end), or
 * undefined when it is allowed (patent (c), checked on every read and
 * write). An empty access touches nothing and is always allowed.
 */
export function accessAllowed(table: readonly RangeLock[], owner: string, start: number, end: number, kind: AccessKind): RangeLock | undefined {
  if (start === end && Number.isSafeInteger(start) && start >= 0) return undefined;
  checkRange(start, end);
  return table.find((held) => held.advisory !== true && held.owner !== owner && overlaps(held, start, end) && (held.mode === 'exclusive' || kind === 'write'));
}

/** The table with `lock` added; the caller checked `conflicts` first. E_BUSY when the table is full. */
export function withLock(table: readonly RangeLock[], lock: RangeLock): RangeLock[] {
  checkRangeLock(lock);
  assert(conflicts(table, lock).length === 0, 'a byte-range lock is added only beside compatible ones');
  if (table.length >= RANGE_LOCKS_MAX) throw tableFull(table.length + 1);
  return [...table, { ...lock }];
}

/** The table without `owner`'s first record of exactly [start, end) (Win32 UnlockFile names the range it locked). */
export function withoutLock(table: readonly RangeLock[], owner: string, start: number, end: number): { table: RangeLock[]; removed: boolean } {
  const at = table.findIndex((held) => held.owner === owner && held.start === start && held.end === end);
  if (at < 0) return { table: [...table], removed: false };
  return { table: [...table.slice(0, at), ...table.slice(at + 1)], removed: true };
}

/** The table without any of `owner`'s records (its handle closed). */
export function withoutOwner(table: readonly RangeLock[], owner: string): RangeLock[] {
  return table.filter((held) => held.owner !== owner);
}

/** The table without the records of nodes that failed or restarted since they took them. */
export function withoutNodes(table: readonly RangeLock[], isLive: (node: string, epoch: number) => boolean): { table: RangeLock[]; dropped: number } {
  const kept = table.filter((held) => isLive(held.node, held.epoch));
  return { table: kept, dropped: table.length - kept.length };
}

const tableFull = (count: number) =>
  new MangroveError('E_BUSY', `too many byte-range locks on one file: ${count} would not fit its lock page, which holds at most ${RANGE_LOCKS_MAX}; unlock some first`);

/** The page holding `locks`, exactly PAGE_BYTES long. E_BUSY past RANGE_LOCKS_MAX, E_BAD_ARGUMENT for a malformed record. */
export function encodeRangeLocks(locks: readonly RangeLock[]): Uint8Array {
  if (locks.length > RANGE_LOCKS_MAX) throw tableFull(locks.length);
  for (const lock of locks) checkRangeLock(lock);
  const body = encode(
    locks.map((l): Tuple => {
      const t: Tuple = [l.start, l.end, l.mode === 'exclusive' ? 1 : 0, l.owner, l.node, l.epoch, l.key];
      return l.advisory === true ? [...t, 1] : t;
    }),
  );
  assert(body.length <= RANGE_LOCKS_BODY_BYTES_MAX, 'RANGE_LOCKS_MAX records of bounded size always fit the page');
  const page = new Uint8Array(PAGE_BYTES);
  const view = new DataView(page.buffer);
  view.setUint32(0, RANGE_LOCKS_MAGIC);
  view.setUint16(4, body.length);
  page.set(body, RANGE_LOCKS_HEADER_BYTES);
  return page;
}

/** The table in `page`; [] for an all-zero page. Throws E_CORRUPT, and only that, for anything encodeRangeLocks did not write. */
export function decodeRangeLocks(page: Uint8Array): RangeLock[] {
  if (!(page instanceof Uint8Array) || page.length !== PAGE_BYTES) throw corrupt(`is not ${PAGE_BYTES} bytes long`);
  if (page.every((b) => b === 0)) return [];
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  if (view.getUint32(0) !== RANGE_LOCKS_MAGIC) throw corrupt('is not a byte-range lock page (bad magic)');
  const length = view.getUint16(4);
  if (length === 0 || length > RANGE_LOCKS_BODY_BYTES_MAX) throw corrupt(`claims a ${length}-byte body`);
  const bodyEnd = RANGE_LOCKS_HEADER_BYTES + length;
  // Zeros past the body, as written: a torn or stray write shows here.
  for (let i = bodyEnd; i < PAGE_BYTES; i++) if (page[i] !== 0) throw corrupt(`has data past its ${length}-byte body`);
  let raw: unknown;
  try {
    raw = decode(page.slice(RANGE_LOCKS_HEADER_BYTES, bodyEnd));
  } catch (e) {
    throw corrupt(`has a body that is not CBOR: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!Array.isArray(raw)) throw corrupt('has a body that is not a list of locks');
  if (raw.length > RANGE_LOCKS_MAX) throw corrupt(`holds ${raw.length} locks, more than ${RANGE_LOCKS_MAX}`);
  const table = raw.map((item: unknown, i) => recordOf(item, i));
  for (let i = 0; i < table.length; i++) {
    for (let j = i + 1; j < table.length; j++) {
      if (!compatible(table[i], table[j])) throw corrupt(`holds locks ${i} and ${j}, which conflict`);
    }
  }
  return table;
}

function recordOf(item: unknown, i: number): RangeLock {
  if (!Array.isArray(item) || (item.length !== 7 && item.length !== 8)) throw corrupt(`has a lock (${i}) that is not a 7- or 8-item record`);
  const [start, end, exclusive, owner, node, epoch, key, advisory] = item as unknown[];
  if (item.length === 8 && advisory !== 1) throw corrupt(`has a lock (${i}) whose advisory mark is not 1`);
  if (exclusive !== 0 && exclusive !== 1) throw corrupt(`has a lock (${i}) of unknown mode`);
  if (typeof start !== 'number' || typeof end !== 'number' || typeof epoch !== 'number' || typeof key !== 'number') {
    throw corrupt(`has a lock (${i}) with a field that is not a number`);
  }
  if (typeof owner !== 'string' || typeof node !== 'string') throw corrupt(`has a lock (${i}) with an id that is not a string`);
  const lock: RangeLock = { start, end, mode: exclusive === 1 ? 'exclusive' : 'shared', owner, node, epoch, key, ...(advisory === 1 ? { advisory: true } : {}) };
  const fault = recordFault(lock);
  if (fault !== undefined) throw corrupt(`has a malformed lock (${i}): ${fault}`);
  return lock;
}
