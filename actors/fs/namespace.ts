/**
 * The updates that change a fileset's names (SPEC.md M19, M22): create (a
 * file, a directory, a symbolic link), link, unlink and rmdir, rename. Each
 * runs under its directories' metadata locks in the three steps of
 * dir-update.ts: mark (flushed), update (flushed), clear; what a crash leaves is settled by
 * mark-recovery.ts. The inode a name stands for is locked inside its
 * directories' locks (directories first, then inodes, each set in address
 * order), so updates never wait on each other in a circle.
 *
 * Each takes the request's `txn` (bus/messages/fs.ts): its mark carries it,
 * and the directory remembers it once the update is done (by its node, or
 * by a recovery that completes it). A try that finds its `txn` done answers
 * as the update did, rather than failing (E_EXISTS, E_NOT_FOUND) on its own
 * first try's work.
 */
import { MangroveError } from '../../bus/errors.js';
import { insert, lookup, remove } from '../../machines/fs/dir-index.js';
import { entryFor } from '../../machines/fs/entry-page.js';
import { dirOf, isDone, newInode, type FileType, type Inode, type TxnMark } from '../../machines/fs/inode.js';
import { checkName } from '../../machines/fs/names.js';
import { allocInode, DirPages, type FsContext } from './fs-context.js';
import { Update } from './fs-pages.js';
import { clear, mark, touchDir, withDirs, type FilesetRef } from './dir-update.js';
import { reclaimIfUnused } from './reclaim.js';
import { syncPrimaryEntry } from './entry-sync.js';

export interface NewFile {
  type: FileType;
  mode: number;
  uid: number;
  gid: number;
  target?: string;
  temporary?: boolean;
}

function checkWritable(ref: FilesetRef): void {
  if (ref.fs.attrs.readOnly) throw new MangroveError('E_READ_ONLY', `fileset ${ref.fs.name} is read-only (mangrove fs fileset set ${ref.fs.name} --read-write changes that)`);
}

/** Creates `name` in the directory at `parent`; E_EXISTS if the name is taken (by another request than `txn`). */
export async function create(ctx: FsContext, ref: FilesetRef, parent: bigint, name: string, n: NewFile, txn?: string): Promise<{ addr: bigint; inode: Inode }> {
  checkName(name);
  checkWritable(ref);
  const made = await createIn(ctx, ref, parent, name, n, txn);
  // A new subdirectory changes the parent's link count: its own entry, in its parent, is brought up to date (M19).
  if (n.type === 'dir') await syncParentEntry(ctx, ref, parent);
  return made;
}

/**
 * Whether the update `txn` is done in the directory at `dir`, a mark it left
 * settled first (an O_EXCL create sent again finds its own file).
 */
export async function createdBy(ctx: FsContext, ref: FilesetRef, dir: bigint, txn: string | undefined): Promise<boolean> {
  if (txn === undefined) return false;
  return withDirs(ctx, ref, [dir], async (dirs) => isDone(txn, dirs.get(dir)!));
}

/** The parent directory's entry in its own parent, brought up to date with it (its link count and times changed). */
async function syncParentEntry(ctx: FsContext, ref: FilesetRef, dir: bigint): Promise<void> {
  const d = await ctx.pages.inodeIfWhole(dir);
  if (d && d.parentAddr !== dir) await syncPrimaryEntry(ctx, ref, dir, d);
}

async function createIn(ctx: FsContext, ref: FilesetRef, parent: bigint, name: string, n: NewFile, txn: string | undefined): Promise<{ addr: bigint; inode: Inode }> {
  return withDirs(ctx, ref, [parent], async (dirs) => {
    const p = dirs.get(parent)!;
    const pages = new DirPages(ctx, p, parent);
    const there = await lookup(dirOf(p), pages, name);
    if (there && isDone(txn, p)) return { addr: there.entry.addr, inode: await ctx.pages.inode(there.entry.addr) };
    if (there) throw new MangroveError('E_EXISTS', `${JSON.stringify(name)} exists already`);
    const made = (ino: number, nowMs: number) =>
      newInode({ fileset: ref.fs.id, ino, type: n.type, mode: n.mode, uid: n.uid, gid: n.gid, parent: p.ino, parentAddr: parent, nowMs, target: n.target, temporary: n.temporary });
    // The inode's taking and the mark are flushed together: either can be durable without the other, and both are recovered.
    const taking = new Update(ctx.pages);
    const { ino, addr } = await allocInode(ctx, ref.fs, ref.addr, (ino) => ({ ...made(ino, ctx.wallMs()), nlink: 0 }), taking);
    p.mark = { kind: n.type === 'dir' ? 'create_directory' : 'create', ino, addr, name, nlinkBefore: 0, other: null, replaced: null, txn };
    await mark(ctx, [[parent, p]], taking);
    const now = ctx.wallMs();
    const i = made(ino, now);
    i.entry = await insert(p.dir!, pages, entryFor(name, addr, i));
    touchDir(p, now);
    const u = new Update(ctx.pages);
    u.inode(addr, i);
    pages.writeTo(u);
    u.inode(parent, p);
    await u.flush();
    await clear(ctx, [[parent, p]]);
    return { addr, inode: i };
  });
}

/** A hard link `name` in `parent` to the file at `target` (M20: link count). */
export async function link(ctx: FsContext, ref: FilesetRef, target: bigint, parent: bigint, name: string, txn?: string): Promise<Inode> {
  checkName(name);
  checkWritable(ref);
  const i = await linkIn(ctx, ref, target, parent, name, txn);
  // The link count changed: the entry the file was made under shows it too (M19).
  await syncPrimaryEntry(ctx, ref, target, i);
  return i;
}

async function linkIn(ctx: FsContext, ref: FilesetRef, target: bigint, parent: bigint, name: string, txn: string | undefined): Promise<Inode> {
  return withDirs(ctx, ref, [parent], async (dirs) => {
    const p = dirs.get(parent)!;
    const pages = new DirPages(ctx, p, parent);
    const there = await lookup(dirOf(p), pages, name);
    if (there && there.entry.addr === target && isDone(txn, p)) return ctx.pages.inode(target);
    if (there) throw new MangroveError('E_EXISTS', `${JSON.stringify(name)} exists already`);
    return ctx.locks.with([target], async () => {
      const i = await ctx.pages.inode(target);
      if (i.type === 'dir') throw new MangroveError('E_IS_DIR', 'a directory cannot be hard-linked');
      if (i.nlink === 0) throw new MangroveError('E_NOT_FOUND', 'the file was deleted');
      p.mark = { kind: 'link', ino: i.ino, addr: target, name, nlinkBefore: i.nlink, other: null, replaced: null, txn };
      await mark(ctx, [[parent, p]]);
      const now = ctx.wallMs();
      i.nlink++;
      i.ctimeMs = now;
      i.sync++;
      await insert(p.dir!, pages, entryFor(name, target, i));
      touchDir(p, now);
      const u = new Update(ctx.pages);
      u.inode(target, i);
      pages.writeTo(u);
      u.inode(parent, p);
      await u.flush();
      await clear(ctx, [[parent, p]]);
      return i;
    });
  });
}

/**
 * Removes `name` from `parent` (`dir`: rmdir, which wants an empty
 * directory; else unlink, which refuses a directory). The inode goes once
 * its last link and its last handle are gone (two-phase delete, M22).
 */
export async function unlink(ctx: FsContext, ref: FilesetRef, parent: bigint, name: string, dir: boolean, txn?: string): Promise<void> {
  checkName(name);
  checkWritable(ref);
  const gone = await withDirs(ctx, ref, [parent], async (dirs) => {
    const p = dirs.get(parent)!;
    const pages = new DirPages(ctx, p, parent);
    if (isDone(txn, p)) return null;
    const found = await lookup(dirOf(p), pages, name);
    if (!found) throw new MangroveError('E_NOT_FOUND', `no entry ${JSON.stringify(name)}`);
    const e = found.entry;
    if (dir && e.type !== 'dir') throw new MangroveError('E_NOT_DIR', `${JSON.stringify(name)} is not a directory`);
    if (!dir && e.type === 'dir') throw new MangroveError('E_IS_DIR', `${JSON.stringify(name)} is a directory (rmdir removes it)`);
    return ctx.locks.with([e.addr], async () => {
      const t = await ctx.pages.inode(e.addr);
      if (t.type === 'dir' && (t.dir?.count ?? 0) > 0) throw new MangroveError('E_NOT_EMPTY', `directory ${JSON.stringify(name)} is not empty`);
      p.mark = { kind: 'delete', ino: t.ino, addr: e.addr, name, nlinkBefore: t.nlink, other: null, replaced: null, txn };
      await mark(ctx, [[parent, p]]);
      const now = ctx.wallMs();
      dropLink(t, now);
      if (t.parentAddr === parent && t.entry && t.entry.page === found.ref.page && t.entry.slot === found.ref.slot) t.entry = null;
      await remove(p.dir!, pages, name);
      touchDir(p, now);
      const u = new Update(ctx.pages);
      u.inode(e.addr, t);
      pages.writeTo(u);
      u.inode(parent, p);
      await u.flush();
      await clear(ctx, [[parent, p]]);
      return { addr: e.addr, t };
    });
  });
  // Done by an earlier try, which did the rest (or a recovery that completed it did).
  if (gone === null) return;
  if (gone.t.nlink === 0) await reclaimIfUnused(ctx, ref, gone.addr);
  else await syncPrimaryEntry(ctx, ref, gone.addr, gone.t);
  if (dir) await syncParentEntry(ctx, ref, parent);
}

/** One link fewer (a directory has no other): an inode left with none is marked for the second phase of its delete. */
function dropLink(t: Inode, nowMs: number): void {
  t.nlink = t.type === 'dir' ? 0 : t.nlink - 1;
  t.deleting = t.nlink === 0;
  t.ctimeMs = nowMs;
  t.sync++;
}

/**
 * Renames `fromName` in `from` to `toName` in `to`, atomically, replacing
 * what `toName` named (M20). The insert into the target keeps its mark
 * until the delete from the source is done too (M22). Renames between
 * directories also hold the fileset page, so two of them cannot together
 * move a directory into its own subtree.
 */
export async function rename(ctx: FsContext, ref: FilesetRef, from: bigint, fromName: string, to: bigint, toName: string, txn?: string): Promise<void> {
  checkName(fromName);
  checkName(toName);
  checkWritable(ref);
  if (from === to && fromName === toName) return;
  const extra = from === to ? [] : [ref.addr];
  const done = await withDirs(
    ctx,
    ref,
    [from, to],
    async (dirs) => {
      const s = dirs.get(from)!;
      const t = dirs.get(to)!;
      const sp = new DirPages(ctx, s, from);
      const tp = from === to ? sp : new DirPages(ctx, t, to);
      if (isDone(txn, s, t)) return null;
      const moving = await lookup(dirOf(s), sp, fromName);
      if (!moving) throw new MangroveError('E_NOT_FOUND', `no entry ${JSON.stringify(fromName)}`);
      const target = await lookup(dirOf(t), tp, toName);
      const m = moving.entry;
      if (target && target.entry.ino === m.ino) return null;
      if (target) checkReplace(m.type, target.entry.type, toName);
      if (m.type === 'dir' && from !== to) await checkNotInside(ctx, m.addr, to);
      const locked = target ? [m.addr, target.entry.addr] : [m.addr];
      return ctx.locks.with(locked, async () => {
        const mi = await ctx.pages.inode(m.addr);
        const ri = target ? await ctx.pages.inode(target.entry.addr) : null;
        if (ri && ri.type === 'dir' && (ri.dir?.count ?? 0) > 0) throw new MangroveError('E_NOT_EMPTY', `directory ${JSON.stringify(toName)} is not empty`);
        const replacedRef = target ? { ino: target.entry.ino, addr: target.entry.addr } : null;
        t.mark = { kind: 'rename_target', ino: mi.ino, addr: m.addr, name: toName, nlinkBefore: ri?.nlink ?? 0, other: { dir: s.ino, addr: from, name: fromName }, replaced: replacedRef, txn };
        const marks: [bigint, Inode][] = [[to, t]];
        if (from !== to) {
          s.mark = { kind: 'rename', ino: mi.ino, addr: m.addr, name: fromName, nlinkBefore: mi.nlink, other: { dir: t.ino, addr: to, name: toName }, replaced: null, txn } satisfies TxnMark;
          marks.push([from, s]);
        }
        await mark(ctx, marks);
        const now = ctx.wallMs();
        const u = new Update(ctx.pages);
        if (target && ri) {
          await remove(t.dir!, tp, toName);
          dropLink(ri, now);
          u.inode(target.entry.addr, ri);
        }
        // The insert comes first: from here on a crash completes the rename rather than losing the name.
        const at = await insert(t.dir!, tp, entryFor(toName, m.addr, mi));
        await remove(s.dir!, sp, fromName);
        mi.parent = t.ino;
        mi.parentAddr = to;
        mi.entry = at;
        mi.ctimeMs = now;
        mi.sync++;
        u.inode(m.addr, mi);
        touchDir(t, now);
        if (from !== to) touchDir(s, now);
        sp.writeTo(u);
        if (tp !== sp) tp.writeTo(u);
        u.inode(to, t);
        if (from !== to) u.inode(from, s);
        await u.flush();
        await clear(ctx, from === to ? [[to, t]] : [[from, s], [to, t]]);
        return { replaced: ri && ri.nlink === 0 ? target!.entry.addr : null, movedDir: m.type === 'dir' };
      });
    },
    extra,
  );
  if (done === null) return;
  if (done.replaced !== null) await reclaimIfUnused(ctx, ref, done.replaced);
  if (done.movedDir && from !== to) for (const d of [from, to]) await syncParentEntry(ctx, ref, d);
}

function checkReplace(moving: FileType, target: FileType, name: string): void {
  if (moving === 'dir' && target !== 'dir') throw new MangroveError('E_NOT_DIR', `${JSON.stringify(name)} is not a directory; a directory cannot replace it`);
  if (moving !== 'dir' && target === 'dir') throw new MangroveError('E_IS_DIR', `${JSON.stringify(name)} is a directory; a file cannot replace it`);
}

/** Refuses to move the directory at `moving` under `to` when `to` is it or inside it (POSIX EINVAL). */
async function checkNotInside(ctx: FsContext, moving: bigint, to: bigint): Promise<void> {
  for (let at = to, steps = 0; ; steps++) {
    if (at === moving) throw new MangroveError('E_BAD_ARGUMENT', 'a directory cannot be moved into itself or one of its subdirectories');
    if (steps > 4096) throw new MangroveError('E_CORRUPT', "a directory's parents form a loop");
    const i = await ctx.pages.inode(at);
    if (i.parentAddr === at) return;
    at = i.parentAddr;
  }
}
