/**
 * How a multi-page update of directories runs (SPEC.md M22; patent, "File
 * system recovery"): with the directories' inode pages locked (metadata
 * locks), in three steps: the transaction mark written into each
 * directory's inode and flushed, the update itself (entry pages, inodes,
 * the hash table) written and flushed, the mark cleared (`clear`). A directory found with a mark when its lock is
 * taken was left half updated by an update that died (its node failed, or
 * its flush was refused in a rebuild): it is recovered first
 * (mark-recovery.ts), with every directory the mark names locked too.
 */
import { MangroveError } from '../../bus/errors.js';
import type { Fileset } from '../../machines/fs/fileset.js';
import { rememberDone, type Inode } from '../../machines/fs/inode.js';
import type { FsContext } from './fs-context.js';
import { Update } from './fs-pages.js';
import { recoverMark } from './mark-recovery.js';

/** The fileset an update works in: its page and what it held when the call began. */
export interface FilesetRef {
  addr: bigint;
  fs: Fileset;
}

/** Lock rounds before giving up on a set of directories whose marks keep naming others. */
const LOCK_ROUNDS_MAX = 4;

/**
 * Runs `work` holding the inode pages of `dirs` (and `extra`, e.g. the
 * fileset page) locked, every one free of a mark, read fresh.
 */
export async function withDirs<T>(ctx: FsContext, ref: FilesetRef, dirs: bigint[], work: (inodes: Map<bigint, Inode>) => Promise<T>, extra: bigint[] = []): Promise<T> {
  let want = new Set(dirs);
  for (let round = 0; round < LOCK_ROUNDS_MAX; round++) {
    const r = await ctx.locks.with([...want, ...extra], async (): Promise<{ done: T } | { more: bigint[] }> => {
      let inodes = await readAll(ctx, want);
      const more = [...inodes.values()].flatMap((i) => (i.mark?.other && !want.has(i.mark.other.addr) ? [i.mark.other.addr] : []));
      if (more.length > 0) return { more };
      for (const [addr, i] of inodes) if (i.mark) await recoverMark(ctx, ref, inodes, addr);
      if ([...inodes.values()].some((i) => i.mark)) inodes = await readAll(ctx, want);
      return { done: await work(inodes) };
    });
    if ('done' in r) return r.done;
    want = new Set([...want, ...r.more]);
  }
  throw new MangroveError('E_BUSY', 'the directories of this update kept naming others half updated; try again');
}

async function readAll(ctx: FsContext, addrs: Iterable<bigint>): Promise<Map<bigint, Inode>> {
  const out = new Map<bigint, Inode>();
  for (const a of addrs) out.set(a, await ctx.pages.inode(a));
  return out;
}

/** Writes the marks into the directories' inodes and flushes them: the first step of an update, with whatever else `u` holds. */
export async function mark(ctx: FsContext, inodes: [bigint, Inode][], u = new Update(ctx.pages)): Promise<void> {
  for (const [a, i] of inodes) u.inode(a, i);
  await u.flush();
}

/**
 * Writes the directories' inodes with their marks cleared: the last step.
 * It is not flushed: the update itself is durable by now, and a crash that
 * loses the cleared mark leaves a mark whose recovery finds the update
 * whole and completes it (mark-recovery.ts). The next flush of the
 * directory's inode makes it durable; until then every node sees it
 * cleared, the inode being coherent (M10).
 */
export async function clear(ctx: FsContext, inodes: [bigint, Inode][]): Promise<void> {
  const u = new Update(ctx.pages);
  for (const [a, i] of inodes) {
    rememberDone(i, i.mark?.txn);
    i.mark = null;
    u.inode(a, i);
  }
  await u.apply();
}

/** A directory after its entries changed: times, link count, synchronisation version. */
export function touchDir(d: Inode, nowMs: number): void {
  d.mtimeMs = nowMs;
  d.ctimeMs = nowMs;
  d.nlink = 2 + (d.dir?.subdirs ?? 0);
  d.sync++;
}
