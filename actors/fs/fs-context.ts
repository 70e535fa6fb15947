/**
 * What every part of a node's file system shares (SPEC.md M18-M22): the page
 * adapter, the metadata locks, the clocks, liveness, and the pieces of work
 * every update builds on: a directory's entry pages as the name index sees
 * them, inode allocation from the fileset's inode table, and stream
 * extension in doubling segments with the free-space check (M20).
 */
import type { Clock } from '../../bus/clock.js';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import type { EntryPages } from '../../machines/fs/dir-index.js';
import { emptyEntryPage, type EntryPage } from '../../machines/fs/entry-page.js';
import type { Fileset } from '../../machines/fs/fileset.js';
import type { Inode } from '../../machines/fs/inode.js';
import { GROUP_INODES, inodeAddress, INODES_PER_TABLE_PAGE, locate, nextFree, release, TABLE_PAGES_MAX, take } from '../../machines/fs/inode-table.js';
import { pageAddress, segmentRange, segmentsOf, segmentsToAllocate, STREAM_RANGE_PAGES, type StreamDesc } from '../../machines/fs/stream.js';
import { ignoreGone } from './ignore-gone.js';
import type { Log } from '../log.js';
import { Update, type FsPages } from './fs-pages.js';
import type { MetaLocks } from './meta-locks.js';
import type { Recovery } from './mark-recovery.js';

export interface FsContext {
  readonly self: string;
  readonly epoch: number;
  readonly pages: FsPages;
  readonly locks: MetaLocks;
  readonly clock: Clock;
  readonly log: Log;
  /** Wall-clock time for file times, in ms. */
  wallMs(): number;
  /** Whether `node` is up in incarnation `epoch` (its handles count, M22). */
  isLive(node: string, epoch: number): boolean;
  /** Free pages in the whole space, for the allocation check (M20); cached briefly. */
  freePages(): Promise<number>;
  /** How many times this node's engine dropped every copy it held, unflushed writes with them (M14: counted out while alive). */
  resets(): number;
  /** The latest recoveries of half-done updates on this node (mark-recovery.ts), and how many there were. */
  readonly recoveries: Recovery[];
  recovered: number;
}

/** A directory's entry pages, read once per update and written by `writeTo`. */
export class DirPages implements EntryPages {
  private readonly read = new Map<number, EntryPage>();
  private readonly changed = new Set<number>();

  constructor(
    private readonly ctx: FsContext,
    /** The directory's inode: its entries stream grows here as pages are added. */
    readonly dir: Inode,
    /** Where that inode lives: an extension records its pending segments there first. */
    private readonly dirAddr: bigint,
  ) {}

  private async record(): Promise<void> {
    const u = new Update(this.ctx.pages);
    u.inode(this.dirAddr, this.dir);
    await u.flush();
  }

  addressOf(page: number): bigint {
    return pageAddress(this.dir.streams[0], page);
  }

  async get(page: number): Promise<EntryPage> {
    const known = this.read.get(page);
    if (known) return known;
    const p = await this.ctx.pages.entryPage(this.addressOf(page), page);
    this.read.set(page, p);
    return p;
  }

  async extend(page: number): Promise<EntryPage> {
    const s = this.dir.streams[0];
    await extendStream(this.ctx, s, page * PAGE_BYTES, (page + 1) * PAGE_BYTES, this.dir.temporary, () => this.record());
    const p = emptyEntryPage(page);
    this.read.set(page, p);
    return p;
  }

  put(p: EntryPage): void {
    this.changed.add(p.page);
  }

  writeTo(u: Update): void {
    for (const page of this.changed) u.entryPage(this.addressOf(page), this.read.get(page)!);
    this.changed.clear();
  }
}

/**
 * Makes bytes [offset, end) of a stream writable: reserves its range on its
 * first write and allocates the segments it lacks there, after checking the
 * whole space has room (M20: refused at once when it has not). The segments
 * about to be allocated (and a new range) are recorded first, by `record`
 * (the caller writes and flushes the inode), so a node dying between the
 * engine's allocation and the inode's write leaves `pending` segments,
 * never pages nobody knows of; the caller records the outcome with its own
 * inode write after (M22: an allocation is recorded once the engine made it).
 */
export async function extendStream(ctx: FsContext, s: StreamDesc, offset: number, end: number, volatile: boolean, record: () => Promise<void>): Promise<void> {
  if (s.pending) await settlePending(ctx, s);
  const segs = segmentsToAllocate(s, offset, end);
  if (segs.length === 0) return;
  const pages = segs.reduce((n, k) => n + segmentRange(k).pages, 0);
  const free = await ctx.freePages();
  if (pages > free) throw new MangroveError('E_NO_SPACE', `extending the file needs ${pages} more pages and the whole space has ${free} free`);
  if (s.base === null) s.base = await ctx.pages.reserve(STREAM_RANGE_PAGES);
  s.pending = segs.reduce((m, k) => m | (2 ** k), 0);
  await record();
  for (const k of segs) {
    const { first, pages: n } = segmentRange(k);
    await allocFresh(ctx, pageAddress(s, first), n, volatile);
    s.segs |= 2 ** k;
  }
  s.pending = 0;
}

/**
 * Allocates zero-filled pages. Found allocated already, they are a try of
 * this extension that failed after the engine made it (its answer lost to a
 * rebuild, the caller trying the write again): they may hold what that try
 * wrote, so they are freed and allocated again, zero filled.
 */
async function allocFresh(ctx: FsContext, addr: bigint, pages: number, volatile: boolean): Promise<void> {
  try {
    await ctx.pages.alloc(addr, pages, volatile);
  } catch (err) {
    if (!isMangroveError(err) || err.code !== 'E_EXISTS') throw err;
    await ignoreGone(ctx.pages.dealloc(addr, pages));
    await ctx.pages.alloc(addr, pages, volatile);
  }
}

/**
 * Segments an extension recorded as pending and never finished: whatever
 * the engine allocated of them is freed (its pages may hold what the cut
 * short write left; a later extension allocates them again, zero filled).
 * Returns how many pages were freed.
 */
export async function settlePending(ctx: FsContext, s: StreamDesc): Promise<number> {
  let freed = 0;
  for (const k of segmentsOf(s.pending ?? 0)) {
    if (s.segs & (2 ** k)) continue;
    const { first, pages } = segmentRange(k);
    const at = pageAddress(s, first);
    if ((await ctx.pages.stat(at)).state !== 'materialized') continue;
    await ignoreGone(ctx.pages.dealloc(at, pages));
    freed += pages;
  }
  s.pending = 0;
  return freed;
}

/**
 * A free inode of the fileset, taken in its table (flushed before anything
 * points at it, M22: here, or by the caller together with its mark), with
 * its address; its page holds `placeholder` (no links yet) until the create
 * writes it. The
 * table page is locked for the taking; a group with no pages yet is reserved
 * and materialized first.
 */
export async function allocInode(
  ctx: FsContext,
  fs: Fileset,
  filesetAddr: bigint,
  placeholder: (ino: number, addr: bigint) => Inode,
  /** Where the taking is written; the caller flushes it (with its mark). Default: flushed here. */
  into?: Update,
): Promise<{ ino: number; addr: bigint }> {
  for (let page = fs.tableFree; page < TABLE_PAGES_MAX; page++) {
    if (page >= fs.tablePages) await growTable(ctx, fs, filesetAddr, page);
    const tableAddr = fs.tableBase + BigInt(page * PAGE_BYTES);
    const got = await ctx.locks.with([tableAddr], async () => {
      const t = await ctx.pages.tablePage(tableAddr, page);
      const free = nextFree(t);
      if (!free) return null;
      if (free.needsGroup) {
        const base = await ctx.pages.reserve(GROUP_INODES);
        await ctx.pages.alloc(base, GROUP_INODES);
        t.groups[free.group].base = base;
      }
      take(t, free.ino);
      const addr = inodeAddress(t, free.ino)!;
      // Until its create names it, the inode says it is being made and since when: `fs check` leaves it alone meanwhile.
      const u = into ?? new Update(ctx.pages);
      u.inode(addr, placeholder(free.ino, addr));
      u.tablePage(tableAddr, t);
      // Written under the table page's lock, so the next taking reads it; flushed here or with the caller's mark.
      if (into) await u.apply();
      else await u.flush();
      return { ino: free.ino, addr };
    });
    if (got) return got;
  }
  throw new MangroveError('E_NO_SPACE', `fileset ${fs.name} has no free inode left (${TABLE_PAGES_MAX * INODES_PER_TABLE_PAGE} at most)`);
}

/** Adds table page `page` to the fileset's inode table (under the fileset page's lock). */
async function growTable(ctx: FsContext, fs: Fileset, filesetAddr: bigint, page: number): Promise<void> {
  await ctx.locks.with([filesetAddr], async () => {
    const now = await ctx.pages.fileset(filesetAddr);
    if (now.tablePages > page) return void (fs.tablePages = now.tablePages);
    await ctx.pages.alloc(fs.tableBase + BigInt(page * PAGE_BYTES), 1);
    now.tablePages = page + 1;
    const u = new Update(ctx.pages);
    u.fileset(filesetAddr, now);
    await u.flush();
    fs.tablePages = now.tablePages;
  });
}

/** Gives inode `ino` back to the fileset's table (after its pages were freed, M22: freeing is recorded before the engine frees). */
export async function freeInode(ctx: FsContext, fs: Fileset, ino: number): Promise<void> {
  const { page } = locate(ino);
  const tableAddr = fs.tableBase + BigInt(page * PAGE_BYTES);
  await ctx.locks.with([tableAddr], async () => {
    const t = await ctx.pages.tablePage(tableAddr, page);
    release(t, ino);
    const u = new Update(ctx.pages);
    u.tablePage(tableAddr, t);
    await u.flush();
  });
}
