/**
 * Open files and their bytes (SPEC.md M19-M21): open (creating the file or a
 * named stream when asked), read, write, truncate, fsync and close, with the
 * byte-range locks checked on every read and write (M21), and the inode's
 * newer attributes copied into its directory entry (M19) when a handle that
 * wrote closes, on fsync, and whenever an open finds the two out of step.
 *
 * A write holds the file's inode lock (metadata locks), so writers on
 * different nodes extend and size the file one at a time; the pages
 * themselves are coherent through the engine (M10): what one node wrote, a
 * reader on another reads, without a flush.
 */
import { MangroveError } from '../../bus/errors.js';
import type { ClientFsOp, FsStat } from '../../bus/messages/fs.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import { accessAllowed, decodeRangeLocks, type AccessKind } from '../../machines/fs/byte-ranges.js';
import { NAMED_STREAMS_MAX, OPENERS_MAX, sizeOf, typeBits, type Inode } from '../../machines/fs/inode.js';
import { allocatedPages, emptyStream, holdsPage, type StreamDesc } from '../../machines/fs/stream.js';
import { extendStream, type FsContext } from './fs-context.js';
import { Update } from './fs-pages.js';
import type { FilesetRef } from './dir-update.js';
import { syncEntry, syncPrimaryEntry } from './entry-sync.js';
import { readStream, truncateStream, writeStream } from './file-pages.js';
import type { Handle, Handles } from './handles.js';
import { create, createdBy } from './namespace.js';
import { readLockPage } from './range-locks.js';
import { reclaimIfUnused } from './reclaim.js';
import { lookupIn, resolve, resolveParent } from './resolve.js';

type Op<K extends ClientFsOp['op']> = Extract<ClientFsOp, { op: K }>;

/**
 * Pages one node's writes to one file may leave unflushed (8 MiB): past it,
 * the write that crosses it flushes them first. A writer is then held back
 * to the pace of its core holders' disks, as Linux's dirty-page limits hold
 * back a writer, instead of filling this node's RAM with dirty pages, whose
 * paging (M12) stalls the node; and a node counted out loses at most this
 * much that no fsync made durable.
 */
export const WRITE_BEHIND_PAGES = 2048;

export function statOf(i: Inode): FsStat {
  return {
    ino: i.ino,
    type: i.type,
    mode: typeBits(i.type) | i.mode,
    uid: i.uid,
    gid: i.gid,
    nlink: i.nlink,
    size: sizeOf(i),
    blocks: i.streams.reduce((n, s) => n + allocatedPages(s), 0) * (PAGE_BYTES / 512),
    atimeMs: i.atimeMs,
    mtimeMs: i.mtimeMs,
    ctimeMs: i.ctimeMs,
    birthtimeMs: i.btimeMs,
  };
}

function streamOf(i: Inode, name: string): StreamDesc {
  const s = i.streams.find((x) => x.name === name);
  if (!s) throw new MangroveError('E_NOT_FOUND', `the file has no stream ${JSON.stringify(name)}`);
  return s;
}

/** Opens a file (or makes it), registering this node as one that has it open (two-phase delete, M22). */
export async function open(ctx: FsContext, handles: Handles, ref: FilesetRef, op: Op<'open'>, client: string): Promise<{ handle: string; stat: FsStat }> {
  const write = op.write ?? false;
  const read = op.read ?? !write;
  if (ref.fs.attrs.readOnly && (write || op.create || op.truncate)) throw new MangroveError('E_READ_ONLY', `fileset ${ref.fs.name} is read-only (mangrove fs fileset set ${ref.fs.name} --read-write changes that)`);
  let addr: bigint;
  let entry: { dir: bigint; ref: { page: number; slot: number }; sync: number } | null = null;
  if (op.create) {
    const { dir, name } = await resolveParent(ctx, ref, op.path);
    const found = await lookupIn(ctx, ref, dir, name);
    // An O_EXCL create sent again, its first try's file found: made by this request, so it is opened.
    if (found && op.excl && !(await createdBy(ctx, ref, dir, op.txn))) throw new MangroveError('E_EXISTS', `${JSON.stringify(op.path)} exists already`);
    if (found) {
      const r = await resolve(ctx, ref, op.path, true);
      addr = r.addr;
      if (r.found) entry = { dir: r.parent, ref: r.found.ref, sync: r.found.entry.sync };
    } else {
      try {
        addr = (await create(ctx, ref, dir, name, { type: 'file', mode: op.mode ?? 0o644, uid: op.uid ?? 0, gid: op.gid ?? 0, temporary: op.temporary }, op.txn)).addr;
      } catch (err) {
        // Another node made it between the lookup and the create: open what it made, as O_CREAT without O_EXCL does.
        if (!(err instanceof MangroveError && err.code === 'E_EXISTS') || op.excl) throw err;
        addr = (await resolve(ctx, ref, op.path, true)).addr;
      }
    }
  } else {
    const r = await resolve(ctx, ref, op.path, true);
    addr = r.addr;
    if (r.found) entry = { dir: r.parent, ref: r.found.ref, sync: r.found.entry.sync };
  }
  // The handle is taken first: a node out of handles refuses before the inode counts it as an opener.
  const h = handles.add({ client, ref, addr, stream: op.stream ?? '', read, write, append: op.append ?? false, heardMs: ctx.clock.now() });
  const inode = await openInode(ctx, handles, addr, op, write).catch((err: unknown) => {
    handles.remove(h);
    throw err;
  });
  // M19: an entry found out of step with its inode is repaired on open.
  if (entry && entry.sync !== inode.sync) await syncEntry(ctx, ref, addr, entry.dir, entry.ref);
  return { handle: h.id, stat: statOf(inode) };
}

/** The inode's side of an open, under its lock: checks, a named stream made, this node counted as an opener, a truncation. */
async function openInode(ctx: FsContext, handles: Handles, addr: bigint, op: Op<'open'>, write: boolean): Promise<Inode> {
  return ctx.locks.with([addr], async () => {
    const i = await ctx.pages.inode(addr);
    if (i.nlink === 0) throw new MangroveError('E_NOT_FOUND', `${JSON.stringify(op.path)} was deleted`);
    if (i.type === 'dir' && (write || op.truncate)) throw new MangroveError('E_IS_DIR', `${JSON.stringify(op.path)} is a directory`);
    const stream = op.stream ?? '';
    if (!i.streams.some((s) => s.name === stream)) {
      if (!op.create) throw new MangroveError('E_NOT_FOUND', `${JSON.stringify(op.path)} has no stream ${JSON.stringify(stream)}`);
      if (i.type !== 'file') throw new MangroveError('E_BAD_ARGUMENT', `only a regular file has named streams; ${JSON.stringify(op.path)} is a ${i.type === 'dir' ? 'directory' : 'symbolic link'}`);
      if (i.streams.length >= 2 + NAMED_STREAMS_MAX) throw new MangroveError('E_NO_SPACE', `a file has at most ${NAMED_STREAMS_MAX} named streams`);
      i.streams.push(emptyStream(stream));
    }
    // A directory's inode records no openers (its page holds the hash table): an rmdir frees it at once.
    if (i.type !== 'dir') {
      i.openers = i.openers.filter((o) => o.count > 0 && ctx.isLive(o.node, o.epoch));
      const mine = i.openers.find((o) => o.node === ctx.self && o.epoch === ctx.epoch);
      if (mine) mine.count++;
      else if (i.openers.length >= OPENERS_MAX) throw new MangroveError('E_BUSY', `the file is open on ${OPENERS_MAX} nodes already`);
      else i.openers.push({ node: ctx.self, epoch: ctx.epoch, count: 1 });
    }
    const u = new Update(ctx.pages);
    if (op.truncate && write && streamOf(i, stream).size > 0) {
      const cut = await truncateStream(ctx, streamOf(i, stream), 0, handles.wrote(addr, ctx.resets()));
      touchFile(i, ctx.wallMs());
      u.inode(addr, i);
      await u.flush();
      await cut.free();
    } else {
      // Who has the file open matters only while those nodes live: it need not be durable.
      u.inode(addr, i);
      await u.apply();
    }
    return i;
  });
}

function touchFile(i: Inode, nowMs: number): void {
  i.mtimeMs = nowMs;
  i.ctimeMs = nowMs;
  i.sync++;
}

/** Refuses an access another handle's byte-range lock forbids (M21: checked on every read and write). */
async function checkRangeLocks(ctx: FsContext, h: Handle, i: Inode, start: number, end: number, kind: AccessKind): Promise<void> {
  if (i.lockPage === null || end <= start) return;
  const table = decodeRangeLocks(await readLockPage(ctx.pages, i.lockPage)).filter((l) => ctx.isLive(l.node, l.epoch));
  const blocking = accessAllowed(table, h.id, start, end, kind);
  if (blocking) throw new MangroveError('E_LOCKED', `bytes [${blocking.start}, ${blocking.end}) are locked ${blocking.mode} by another handle; this ${kind} overlaps them`);
}

export async function read(ctx: FsContext, h: Handle, offset: number, length: number): Promise<{ data: Uint8Array; eof: boolean }> {
  if (!h.read) throw new MangroveError('E_BAD_HANDLE', `handle ${h.id} was not opened for reading`);
  const i = await ctx.pages.inode(h.addr);
  if (i.type === 'dir') throw new MangroveError('E_IS_DIR', `handle ${h.id} is of a directory: readdir lists it`);
  const s = streamOf(i, h.stream);
  await checkRangeLocks(ctx, h, i, offset, Math.min(offset + length, s.size), 'read');
  const data = await readStream(ctx, s, offset, length);
  return { data, eof: offset + data.length >= s.size };
}

export async function write(ctx: FsContext, handles: Handles, h: Handle, offset: number | undefined, data: Uint8Array): Promise<{ offset: number; written: number; size: number }> {
  if (!h.write) throw new MangroveError('E_BAD_HANDLE', `handle ${h.id} was not opened for writing`);
  const done = await ctx.locks.with([h.addr], async () => {
    const i = await ctx.pages.inode(h.addr);
    const s = streamOf(i, h.stream);
    const at = h.append || offset === undefined ? s.size : offset;
    await checkRangeLocks(ctx, h, i, at, at + data.length, 'write');
    await extendStream(ctx, s, at, at + data.length, i.temporary, async () => {
      const u = new Update(ctx.pages);
      u.inode(h.addr, i);
      await u.flush();
    });
    await writeStream(ctx, s, at, data, handles.wrote(h.addr, ctx.resets()));
    touchFile(i, ctx.wallMs());
    const u = new Update(ctx.pages);
    u.inode(h.addr, i);
    await u.apply();
    return { offset: at, written: data.length, size: s.size };
  });
  // Write-behind: a writer that has more than WRITE_BEHIND_PAGES unflushed flushes them before it goes on.
  if (handles.writtenCount(h.addr) >= WRITE_BEHIND_PAGES) await flushWritten(ctx, handles, h.addr);
  return done;
}

/** Cuts the file at `addr` to `size` bytes (or grows it, sparse). */
export async function truncate(ctx: FsContext, handles: Handles, ref: FilesetRef, addr: bigint, stream: string, size: number): Promise<FsStat> {
  if (ref.fs.attrs.readOnly) throw new MangroveError('E_READ_ONLY', `fileset ${ref.fs.name} is read-only (mangrove fs fileset set ${ref.fs.name} --read-write changes that)`);
  const i = await ctx.locks.with([addr], async () => {
    const i = await ctx.pages.inode(addr);
    if (i.type === 'dir') throw new MangroveError('E_IS_DIR', 'a directory cannot be truncated');
    const s = streamOf(i, stream);
    const cut = await truncateStream(ctx, s, size, handles.wrote(addr, ctx.resets()));
    touchFile(i, ctx.wallMs());
    // The inode says the pages are gone, durably, before the engine frees them (M22).
    const u = new Update(ctx.pages);
    u.inode(addr, i);
    await u.flush();
    await cut.free();
    return i;
  });
  await syncPrimaryEntry(ctx, ref, addr, i);
  return statOf(i);
}

/**
 * Makes the file durable on every core holder: the pages this node wrote to
 * it, its inode, its entry (M20 fsync). If this node was counted out of the
 * cluster since the first of those writes (a pause, a cut-off: it dropped
 * its unflushed copies, M14), some of them are gone: fsync says so
 * (E_PAGE_LOST, POSIX EIO) rather than make durable what is left, and the
 * program writes them again.
 */
export async function fsync(ctx: FsContext, handles: Handles, h: Handle): Promise<void> {
  await flushWritten(ctx, handles, h.addr);
  await ctx.pages.flush([h.addr]);
  const i = await ctx.pages.inode(h.addr);
  await syncPrimaryEntry(ctx, h.ref, h.addr, i, true);
}

/** Flushes what this node wrote to the file since its last fsync; refuses if a reset lost some of it. */
async function flushWritten(ctx: FsContext, handles: Handles, file: bigint): Promise<void> {
  const taken = handles.takeWritten(file);
  if (taken.resets !== null && taken.resets !== ctx.resets()) {
    throw new MangroveError(
      'E_PAGE_LOST',
      'writes to this file since its last fsync were lost: this node was counted out of the cluster meanwhile (a pause or a cut-off) and dropped what it had not made durable; write them again',
    );
  }
  // Written pages the file no longer has (freed by a truncate, or with the file itself: the
  // inode's address may now be another file's) are not flushed; address ranges are never reused.
  const i = await ctx.pages.inodeOrNull(file);
  const pages = i === null ? [] : taken.pages.filter((p) => i.streams.some((s) => holdsPage(s, p)));
  try {
    await ctx.pages.flush(pages);
  } catch (err) {
    handles.unflushed(file, taken);
    throw err;
  }
}

/**
 * Closes a handle: its byte-range locks go, this node stops counting it as
 * an opener, its entry is brought up to date, and an unlinked file open
 * nowhere else is freed. The handle is forgotten only once the opener count
 * is written, so a close refused midway by a rebuild can be made again.
 */
export async function close(ctx: FsContext, handles: Handles, h: Handle, releaseLocks: (h: Handle) => Promise<void>): Promise<void> {
  await releaseLocks(h);
  const i = await ctx.locks.with([h.addr], async () => {
    const i = await ctx.pages.inodeOrNull(h.addr);
    if (!i) return null;
    const mine = i.openers.find((o) => o.node === ctx.self && o.epoch === ctx.epoch);
    if (mine && !handles.isOpen(h.addr, h)) i.openers = i.openers.filter((o) => o !== mine);
    else if (mine) mine.count = Math.max(1, mine.count - 1);
    const u = new Update(ctx.pages);
    u.inode(h.addr, i);
    await u.apply();
    return i;
  });
  handles.remove(h);
  if (!i) return;
  if (i.nlink === 0) await reclaimIfUnused(ctx, h.ref, h.addr);
  else if (h.write) await syncPrimaryEntry(ctx, h.ref, h.addr, i);
}
