/**
 * The second phase of a delete (SPEC.md M22): an inode whose last link went
 * is freed once no live node has it open. Its pages go first, then its inode
 * page is cleared, then its bit in the inode table: a crash between any two
 * leaves an unlinked inode that the next look (a close, a recovery, `fs
 * check`) finishes freeing, and never an inode in use that points at freed
 * pages (freeing is idempotent, and no address is ever handed out twice).
 */
import { PAGE_BYTES } from '../../machines/memory/address.js';
import type { Inode } from '../../machines/fs/inode.js';
import type { FsContext } from './fs-context.js';
import { freeInode } from './fs-context.js';
import type { FilesetRef } from './dir-update.js';
import { freeFilePages } from './file-pages.js';

/** Whether a node with the file open is still up in the incarnation that opened it. */
export function liveOpeners(ctx: FsContext, i: Inode): number {
  return i.openers.filter((o) => o.count > 0 && ctx.isLive(o.node, o.epoch)).reduce((n, o) => n + o.count, 0);
}

/** Frees the inode at `addr` if it is unlinked and open nowhere; says whether it did. */
export async function reclaimIfUnused(ctx: FsContext, ref: FilesetRef, addr: bigint): Promise<boolean> {
  const freed = await ctx.locks.with([addr], async () => {
    const i = await ctx.pages.inodeOrNull(addr);
    if (!i || i.nlink > 0 || liveOpeners(ctx, i) > 0) return null;
    await freeFilePages(ctx, i);
    await ctx.pages.write(addr, new Uint8Array(PAGE_BYTES));
    await ctx.pages.flush([addr]);
    return i.ino;
  });
  if (freed === null) return false;
  await freeInode(ctx, ref.fs, freed);
  return true;
}
