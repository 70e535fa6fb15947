/**
 * Recovery of a directory found with a transaction mark (SPEC.md M22;
 * patent, "File system recovery"). The update that set the mark died before
 * it cleared it, with any part of its pages flushed. First the directory is
 * verified and repaired (dir-index.ts `rebuild`: hash buckets, entry lists,
 * free-space list recomputed from the entries); a directory that cannot be
 * repaired is marked corrupt and refused from then on. Then, from what the
 * pages show, the update is completed or undone:
 *
 * - create, create_directory: the entry is there and the new inode is
 *   whole: complete. Otherwise undo: the entry goes, the inode's pages and
 *   the inode go back.
 * - delete: the entry is still there and the inode's link count is as it
 *   was: undo (nothing happened). Otherwise complete: the entry goes.
 * - link: the entry is there: complete; else the link count goes back.
 * - rename (on the source) / rename_target (on the target): the new entry
 *   is in the target: complete, the source entry goes and a replaced
 *   target loses its link; else undo, restoring the source entry (and the
 *   replaced target's) from the inodes.
 *
 * The caller holds every directory the mark names (dir-update.ts
 * `withDirs`); the inodes the mark names are locked here.
 */
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import { formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import { insert, lookup, rebuild, remove } from '../../machines/fs/dir-index.js';
import { entryFor } from '../../machines/fs/entry-page.js';
import { rememberDone, type Inode, type TxnMark } from '../../machines/fs/inode.js';
import { DirPages, freeInode, type FsContext } from './fs-context.js';
import type { FilesetRef } from './dir-update.js';
import { Update } from './fs-pages.js';
import { freeFilePages } from './file-pages.js';
import { reclaimIfUnused } from './reclaim.js';

/** What one recovery did, as `fs check` and status report it. */
export interface Recovery {
  at: number;
  dir: string;
  mark: string;
  outcome: string;
  repairs: string[];
}

/** The longest reason a corrupt directory's inode keeps (the inode schema's bound). */
const CORRUPT_NOTE_CHARS_MAX = 1000;

/** Recoveries a node remembers (the latest). */
export const RECOVERIES_KEPT = 200;

/** Recovers the directory at `addr` (its inode in `dirs`, which this updates). */
export async function recoverMark(ctx: FsContext, ref: FilesetRef, dirs: Map<bigint, Inode>, addr: bigint): Promise<void> {
  const d = dirs.get(addr)!;
  const m = d.mark;
  if (!m) return;
  const pagesOf = new Map<bigint, DirPages>();
  const pagesFor = (a: bigint) => pagesOf.get(a) ?? pagesOf.set(a, new DirPages(ctx, dirs.get(a)!, a)).get(a)!;
  const repairs: string[] = [];
  for (const a of involved(addr, m)) {
    const dir = dirs.get(a)!;
    try {
      repairs.push(...(await rebuild(dir.dir!, pagesFor(a), true)));
    } catch (err) {
      if (!isMangroveError(err) || err.code !== 'E_CORRUPT') throw err;
      dir.corrupt = err.message.slice(0, CORRUPT_NOTE_CHARS_MAX);
      const u = new Update(ctx.pages);
      u.inode(a, dir);
      await u.flush();
      ctx.log.error({ dir: formatAddress(a), err: err.message }, 'a directory is damaged past repair; it is refused from now on');
      throw new MangroveError('E_CORRUPT', `directory ino ${dir.ino} is damaged past repair and is refused: ${err.message}`);
    }
  }
  const u = new Update(ctx.pages);
  // What may run only once the recovery is flushed: giving an inode back before its entry is gone could hand it out twice.
  const after: (() => Promise<void>)[] = [];
  const outcome = await settle(ctx, ref, dirs, addr, m, pagesFor, u, after);
  for (const a of involved(addr, m)) {
    const dir = dirs.get(a)!;
    // A request sent again finds its update done; one undone is simply done again.
    if (outcome === 'completed') rememberDone(dir, m.txn);
    dir.mark = null;
    dir.nlink = 2 + dir.dir!.subdirs;
    dir.sync++;
    pagesFor(a).writeTo(u);
    u.inode(a, dir);
  }
  await u.flush();
  for (const then of after) await then();
  ctx.recoveries.push({ at: ctx.wallMs(), dir: formatAddress(addr), mark: `${m.kind} ${JSON.stringify(m.name)} (ino ${m.ino})`, outcome, repairs });
  if (ctx.recoveries.length > RECOVERIES_KEPT) ctx.recoveries.shift();
  ctx.recovered++;
  ctx.log.warn({ dir: formatAddress(addr), mark: m.kind, name: m.name, ino: m.ino, outcome, repairs }, 'recovered a directory left half updated');
  if (m.kind === 'delete' || m.replaced) await reclaimIfUnused(ctx, ref, m.kind === 'delete' ? m.addr : m.replaced!.addr);
}

/** The directories a mark involves: its own, and a rename's other side. */
function involved(addr: bigint, m: TxnMark): bigint[] {
  return m.other && m.other.addr !== addr ? [addr, m.other.addr] : [addr];
}

/** Completes or undoes the marked update; says which. */
async function settle(
  ctx: FsContext,
  ref: FilesetRef,
  dirs: Map<bigint, Inode>,
  addr: bigint,
  m: TxnMark,
  pagesFor: (a: bigint) => DirPages,
  u: Update,
  after: (() => Promise<void>)[],
): Promise<string> {
  const d = dirs.get(addr)!;
  const here = pagesFor(addr);
  const entry = await lookup(d.dir!, here, m.name);
  const pointsAt = entry !== null && entry.entry.ino === m.ino;
  switch (m.kind) {
    case 'create':
    case 'create_directory': {
      const i = await ctx.pages.inodeIfWhole(m.addr);
      if (pointsAt && i && i.ino === m.ino && i.nlink > 0) return 'completed';
      if (pointsAt) await remove(d.dir!, here, m.name);
      if (i) await freeFilePages(ctx, i);
      u.put(m.addr, new Uint8Array(PAGE_BYTES));
      after.push(() => freeInode(ctx, ref.fs, m.ino));
      return 'undone';
    }
    case 'delete': {
      const i = await ctx.pages.inodeIfWhole(m.addr);
      if (!pointsAt) return 'completed';
      if (i && i.nlink === m.nlinkBefore) return 'undone';
      await remove(d.dir!, here, m.name);
      return 'completed';
    }
    case 'link': {
      if (pointsAt) return 'completed';
      const i = await ctx.pages.inodeIfWhole(m.addr);
      if (i && i.nlink === m.nlinkBefore + 1) {
        i.nlink--;
        i.sync++;
        u.inode(m.addr, i);
      }
      return 'undone';
    }
    case 'rename':
    case 'rename_target':
      return settleRename(ctx, dirs, addr, m, pagesFor, u);
  }
}

async function settleRename(ctx: FsContext, dirs: Map<bigint, Inode>, addr: bigint, m: TxnMark, pagesFor: (a: bigint) => DirPages, u: Update): Promise<string> {
  const other = m.other!;
  const [target, targetName, source, sourceName] = m.kind === 'rename_target' ? [addr, m.name, other.addr, other.name] : [other.addr, other.name, addr, m.name];
  const t = dirs.get(target)!;
  const s = dirs.get(source)!;
  const tp = pagesFor(target);
  const sp = pagesFor(source);
  const moved = await ctx.pages.inodeIfWhole(m.addr);
  const atTarget = await lookup(t.dir!, tp, targetName);
  const atSource = await lookup(s.dir!, sp, sourceName);
  const replaced = m.kind === 'rename_target' ? m.replaced : null;
  const sameEntry = target === source && targetName === sourceName;
  if (atTarget && atTarget.entry.ino === m.ino) {
    if (!sameEntry && atSource && atSource.entry.ino === m.ino) await remove(s.dir!, sp, sourceName);
    if (replaced) {
      const r = await ctx.pages.inodeIfWhole(replaced.addr);
      if (r && r.nlink === m.nlinkBefore && m.nlinkBefore > 0) {
        r.nlink = r.type === 'dir' ? 0 : r.nlink - 1;
        r.deleting = r.nlink === 0;
        r.sync++;
        u.inode(replaced.addr, r);
      }
    }
    if (moved && (moved.parentAddr !== target || !sameRefOf(moved.entry, atTarget.ref))) {
      moved.parent = t.ino;
      moved.parentAddr = target;
      moved.entry = atTarget.ref;
      moved.sync++;
      u.inode(m.addr, moved);
    }
    return 'completed';
  }
  if (!atSource && moved) {
    const r = await insert(s.dir!, sp, entryFor(sourceName, m.addr, moved));
    moved.entry = r;
    moved.parentAddr = source;
    moved.parent = s.ino;
    u.inode(m.addr, moved);
  }
  if (replaced && !atTarget) {
    const r = await ctx.pages.inodeIfWhole(replaced.addr);
    if (r) {
        r.nlink = Math.max(r.nlink, m.nlinkBefore);
      r.deleting = false;
      await insert(t.dir!, tp, entryFor(targetName, replaced.addr, r));
      u.inode(replaced.addr, r);
    }
  }
  return 'undone';
}

function sameRefOf(a: { page: number; slot: number } | null, b: { page: number; slot: number }): boolean {
  return a !== null && a.page === b.page && a.slot === b.slot;
}
