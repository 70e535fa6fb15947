/**
 * Synchronisation of directory entries with their inodes (SPEC.md M19): an
 * entry duplicates its inode's attributes, and its `sync` says which update
 * of the inode it copied. The inode is updated (and, where the caller needs
 * it, flushed) first; the entry is copied under its directory's lock after,
 * and flushed on fsync and chmod-like calls, lazily otherwise. An entry found
 * out of step on open is repaired.
 */
import { rewrite } from '../../machines/fs/dir-index.js';
import { entryFor } from '../../machines/fs/entry-page.js';
import type { Inode } from '../../machines/fs/inode.js';
import { withDirs, type FilesetRef } from './dir-update.js';
import { DirPages, type FsContext } from './fs-context.js';
import { Update } from './fs-pages.js';

/** Copies the inode's attributes into the entry it was created under (M19), when they differ; `flush`: durably. */
export async function syncPrimaryEntry(ctx: FsContext, ref: FilesetRef, addr: bigint, i: Inode, flush = false): Promise<void> {
  if (i.entry === null || i.nlink === 0) return;
  await syncEntry(ctx, ref, addr, i.parentAddr, i.entry, flush);
}

/** Copies the inode at `addr` into the entry at `at` of the directory at `dir`, under the directory's lock. */
export async function syncEntry(ctx: FsContext, ref: FilesetRef, addr: bigint, dir: bigint, at: { page: number; slot: number }, flush = false): Promise<void> {
  await withDirs(ctx, ref, [dir], async (dirs) => {
    const d = dirs.get(dir)!;
    const pages = new DirPages(ctx, d, dir);
    if (at.page >= (d.dir?.pages ?? 0)) return;
    const e = (await pages.get(at.page)).slots[at.slot];
    if (!e || e.addr !== addr) return;
    const i = await ctx.pages.inode(addr);
    if (e.sync === i.sync && !flush) return;
    await rewrite(pages, at, entryFor(e.name, addr, i));
    const u = new Update(ctx.pages);
    pages.writeTo(u);
    if (flush) await u.flush();
    else await u.apply();
  });
}
