/**
 * A data stream's pages (SPEC.md M20; patent, "Files"): a stream is cut in
 * 4 KiB pages, inside one range reserved for it on its first write and
 * materialized in segments that double: segment k is pages [2^k - 1,
 * 2^(k+1) - 1) of the range, so the first extension allocates 1 page, the
 * next 2, then 4, 8… (zero filled). A write far past the end allocates the
 * segment it lands in and leaves the ones between unallocated: a sparse
 * stream reads zeros there. Pure.
 */
import { MangroveError } from '../../bus/errors.js';
import { PAGE_BYTES } from '../memory/address.js';

/** Pages reserved for one stream: its largest size is just under 4 GiB. */
export const STREAM_RANGE_PAGES = 2 ** 20;
/** Segments of a stream's range (segment k holds 2^k pages). */
export const SEGMENTS_MAX = 20;
/** The largest stream, in bytes: the pages of all its segments. */
export const STREAM_BYTES_MAX = (2 ** SEGMENTS_MAX - 1) * PAGE_BYTES;

export interface StreamDesc {
  /** '' for the default data stream, 'acl' for the ACL stream (M20), else a named stream's name. */
  name: string;
  /** The stream's reserved range, or null until its first write. */
  base: bigint | null;
  /** Bytes in the stream (the end of file). */
  size: number;
  /** Bit k set: segment k is allocated. */
  segs: number;
  /**
   * Segments an extension is allocating: recorded (flushed) before the
   * engine allocates them, so that a node dying in between leaves a trace
   * and never an allocation nobody knows of; settled by the next extension
   * or `fs check` (extendStream, actors/fs/fs-context.ts).
   */
  pending?: number;
}

export function emptyStream(name: string): StreamDesc {
  return { name, base: null, size: 0, segs: 0 };
}

/** The segment holding page `page` of a stream. */
export function segmentOf(page: number): number {
  return Math.floor(Math.log2(page + 1));
}

export function segmentRange(seg: number): { first: number; pages: number } {
  return { first: 2 ** seg - 1, pages: 2 ** seg };
}

export function isAllocated(s: StreamDesc, page: number): boolean {
  return s.base !== null && (s.segs & (2 ** segmentOf(page))) !== 0;
}

/** Whether the page at address `addr` is one of the stream's allocated pages. */
export function holdsPage(s: StreamDesc, addr: bigint): boolean {
  if (s.base === null || addr < s.base) return false;
  const page = (addr - s.base) / BigInt(PAGE_BYTES);
  return page < BigInt(STREAM_RANGE_PAGES) && (addr - s.base) % BigInt(PAGE_BYTES) === 0n && isAllocated(s, Number(page));
}

export function pageAddress(s: StreamDesc, page: number): bigint {
  if (s.base === null) throw new MangroveError('E_INTERNAL', 'a stream without a range has no pages');
  return s.base + BigInt(page) * BigInt(PAGE_BYTES);
}

/** Pages allocated, the stream's allocation size (M20: reported per replica). */
export function allocatedPages(s: StreamDesc): number {
  let n = 0;
  for (let k = 0; k < SEGMENTS_MAX; k++) if (s.segs & (2 ** k)) n += 2 ** k;
  return n;
}

/**
 * The segments a write of bytes [offset, end) needs and the stream lacks:
 * every one from the first past what is allocated up to the one the write
 * ends in, when the write extends the stream contiguously; only those it
 * touches when it lands past a hole (a sparse write).
 */
export function segmentsToAllocate(s: StreamDesc, offset: number, end: number): number[] {
  checkSpan(offset, end);
  if (end === offset) return [];
  const first = segmentOf(Math.floor(offset / PAGE_BYTES));
  const last = segmentOf(Math.floor((end - 1) / PAGE_BYTES));
  const want: number[] = [];
  for (let k = first; k <= last; k++) if (!(s.segs & (2 ** k))) want.push(k);
  return want;
}

/** The segments of a bitmask, lowest first. */
export function segmentsOf(mask: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < SEGMENTS_MAX; k++) if (mask & (2 ** k)) out.push(k);
  return out;
}

/** The segments wholly past `size` bytes: what a truncate frees. */
export function segmentsBeyond(s: StreamDesc, size: number): number[] {
  const pagesKept = Math.ceil(size / PAGE_BYTES);
  const out: number[] = [];
  for (let k = 0; k < SEGMENTS_MAX; k++) if (s.segs & (2 ** k) && segmentRange(k).first >= pagesKept) out.push(k);
  return out;
}

export function checkSpan(offset: number, end: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new MangroveError('E_BAD_ARGUMENT', `an offset must be a whole number of bytes, 0 or more (${offset} given)`);
  if (!Number.isSafeInteger(end) || end < offset) throw new MangroveError('E_BAD_ARGUMENT', `a length must be a whole number of bytes, 0 or more (${end - offset} given)`);
  if (end > STREAM_BYTES_MAX) throw new MangroveError('E_FILE_TOO_BIG', `a stream holds at most ${STREAM_BYTES_MAX} bytes; byte ${end - 1} is past that`);
}
