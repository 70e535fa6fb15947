/**
 * A stream's bytes on its pages (SPEC.md M20): reads that map a byte range to
 * the pages holding it (zeros where a sparse stream has no page), writes that
 * replace whole pages and merge partial ones, truncation that frees the
 * segments past the new end, and the freeing of every page of a file.
 */
import { PAGE_BYTES } from '../../machines/memory/address.js';
import type { Inode } from '../../machines/fs/inode.js';
import { checkSpan, isAllocated, pageAddress, segmentRange, segmentsBeyond, STREAM_RANGE_PAGES, type StreamDesc } from '../../machines/fs/stream.js';
import type { FsContext } from './fs-context.js';
import { IO_PAGES_MAX } from './fs-pages.js';
import { ignoreGone } from './ignore-gone.js';

/** Runs of consecutive allocated pages in [first, last], each at most IO_PAGES_MAX. */
function allocatedRuns(s: StreamDesc, first: number, last: number): [number, number][] {
  const runs: [number, number][] = [];
  for (let p = first; p <= last; p++) {
    if (!isAllocated(s, p)) continue;
    const run = runs[runs.length - 1];
    if (run && run[0] + run[1] === p && run[1] < IO_PAGES_MAX) run[1]++;
    else runs.push([p, 1]);
  }
  return runs;
}

/** Bytes [offset, offset + length) of the stream, cut at its end; zeros where it has no page. */
export async function readStream(ctx: FsContext, s: StreamDesc, offset: number, length: number): Promise<Uint8Array> {
  checkSpan(offset, offset + length);
  const end = Math.min(offset + length, s.size);
  if (end <= offset) return new Uint8Array(0);
  const out = new Uint8Array(end - offset);
  const first = Math.floor(offset / PAGE_BYTES);
  const last = Math.floor((end - 1) / PAGE_BYTES);
  await Promise.all(
    allocatedRuns(s, first, last).map(async ([p, n]) => {
      const data = await ctx.pages.read(pageAddress(s, p), n);
      const from = Math.max(offset, p * PAGE_BYTES);
      const to = Math.min(end, (p + n) * PAGE_BYTES);
      out.set(data.subarray(from - p * PAGE_BYTES, to - p * PAGE_BYTES), from - offset);
    }),
  );
  return out;
}

/**
 * Writes `data` at `offset` into pages the stream has (extendStream first):
 * whole pages are replaced, the partial first and last ones read and merged.
 * Adds every page written to `written`, for fsync. The size grows to cover
 * the write; the caller records the descriptor.
 */
export async function writeStream(ctx: FsContext, s: StreamDesc, offset: number, data: Uint8Array, written: Set<bigint>): Promise<void> {
  const end = offset + data.length;
  checkSpan(offset, end);
  if (data.length === 0) return;
  const first = Math.floor(offset / PAGE_BYTES);
  const last = Math.floor((end - 1) / PAGE_BYTES);
  const jobs: Promise<void>[] = [];
  for (let p = first; p <= last; p += IO_PAGES_MAX) {
    const n = Math.min(IO_PAGES_MAX, last - p + 1);
    jobs.push(writeRun(ctx, s, p, n, offset, data));
    for (let i = 0; i < n; i++) written.add(pageAddress(s, p + i));
  }
  await Promise.all(jobs);
  s.size = Math.max(s.size, end);
}

async function writeRun(ctx: FsContext, s: StreamDesc, p: number, n: number, offset: number, data: Uint8Array): Promise<void> {
  const runStart = p * PAGE_BYTES;
  const runEnd = (p + n) * PAGE_BYTES;
  const end = offset + data.length;
  const buf = new Uint8Array(n * PAGE_BYTES);
  // A page the write covers only in part keeps the rest of what it held.
  if (offset > runStart) buf.set(await ctx.pages.read(pageAddress(s, p)), 0);
  if (end < runEnd && (n > 1 || offset <= runStart)) buf.set(await ctx.pages.read(pageAddress(s, p + n - 1)), (n - 1) * PAGE_BYTES);
  const from = Math.max(offset, runStart);
  const to = Math.min(end, runEnd);
  buf.set(data.subarray(from - offset, to - offset), from - runStart);
  await ctx.pages.write(pageAddress(s, p), buf);
}

/**
 * Cuts the stream to `size` bytes: the segments wholly past it leave the
 * descriptor (the caller records that and flushes before `free` runs: the
 * file system says a page is gone before the engine frees it, M22), and the
 * bytes past the new end in the pages kept are zeroed, so a later extension
 * reads zeros there.
 */
export async function truncateStream(ctx: FsContext, s: StreamDesc, size: number, written: Set<bigint>): Promise<{ free: () => Promise<void> }> {
  checkSpan(size, size);
  const gone = segmentsBeyond(s, size);
  const oldSize = s.size;
  const base = s.base;
  for (const k of gone) s.segs &= ~(2 ** k);
  if (size < oldSize) {
    const lastKept = Math.ceil(oldSize / PAGE_BYTES) - 1;
    if (size % PAGE_BYTES !== 0 && isAllocated(s, Math.floor(size / PAGE_BYTES))) await writeStream(ctx, s, size, new Uint8Array(PAGE_BYTES - (size % PAGE_BYTES)), written);
    for (let p = Math.ceil(size / PAGE_BYTES); p <= lastKept; p++) {
      if (!isAllocated(s, p)) continue;
      await ctx.pages.write(pageAddress(s, p), new Uint8Array(PAGE_BYTES));
      written.add(pageAddress(s, p));
    }
  }
  s.size = size;
  const free = async () => {
    if (base === null) return;
    for (const k of gone) {
      const { first, pages } = segmentRange(k);
      await ignoreGone(ctx.pages.dealloc(base + BigInt(first * PAGE_BYTES), pages));
    }
  };
  return { free };
}

/** Frees every page of a file: its streams' ranges and its lock page (the inode itself stays, in its group). */
export async function freeFilePages(ctx: FsContext, i: Inode): Promise<void> {
  for (const s of i.streams) if (s.base !== null) await ignoreGone(ctx.pages.unreserve(s.base, STREAM_RANGE_PAGES));
  if (i.lockPage !== null) await ignoreGone(ctx.pages.unreserve(i.lockPage, 1));
}
