/**
 * The FUSE operations of a mount (SPEC.md M28): each kernel request turned
 * into the file-system calls of bus/messages/fs.ts on the mount's node, and
 * each refusal into its POSIX errno (errno.ts).
 *
 * - Paths arrive resolved by the kernel (it walks symlinks itself), so
 *   attributes are taken without following the last name.
 * - Files are opened on the node and known to the kernel by a number
 *   (open-files.ts); they are opened again after a failover.
 * - Named streams (M20) are the extended attributes of the `user.`
 *   namespace: `user.NAME` is the stream NAME. Other namespaces (security.,
 *   system., trusted.) hold nothing here: ENODATA on reads, ENOTSUP on writes,
 *   answered without asking the node (the kernel asks for
 *   security.capability before every write).
 * - Directory updates are durable when they return (the file system flushes
 *   each one, M22), so fsyncdir has nothing left to do; fsync, and the
 *   close (flush) of a file written through, make the file's data durable on
 *   every core holder.
 */
import { constants } from 'node:os';
import { isMangroveError } from '../../bus/errors.js';
import { FS_IO_BYTES_MAX, type FsDirEntry, type FsStat } from '../../bus/messages/fs.js';
import { EEXIST, EIO, ENODATA, ENOENT, ENOTSUP, ESTALE, errnoOf } from './errno.js';
import type { UtimensRequest } from './fuse-extras.js';
import type { OpenFiles, OpenMode } from './open-files.js';
import type { MountSession } from './session.js';
import type { MountStats } from './stats.js';

/** What fuse-native takes as a file's attributes. */
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  dev: number;
  nlink: number;
  ino: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
}

type Cb = (err: number, ...results: unknown[]) => void;
type Ops = Record<string, (...args: never[]) => void>;

const O_ACCMODE = 3;
const { O_WRONLY, O_RDONLY, O_APPEND } = constants as unknown as Record<'O_WRONLY' | 'O_RDONLY' | 'O_APPEND', number>;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const USER_XATTR = 'user.';
/** chown's "leave as it is" (-1 as an unsigned 32-bit id). */
const ID_UNCHANGED = 0xffff_ffff;
const BLOCK_BYTES = 4096;
const NAME_MAX = 255;
/** Inodes statfs reports (the space has no fixed inode count: as many as pages). */
const FILES_REPORTED = 2 ** 32 - 1;

const DIR_ENTRY: FuseStat = { mode: 0o040755, uid: 0, gid: 0, size: 0, dev: 0, nlink: 2, ino: 0, rdev: 0, blksize: BLOCK_BYTES, blocks: 0, atime: 0, mtime: 0, ctime: 0 };

export interface OpsDeps {
  session: MountSession;
  files: OpenFiles;
  fileset: string;
  stats: MountStats;
  owner: { uid: number; gid: number };
  /** Logs an operation that failed with something other than a plain POSIX refusal (EIO). */
  onError(op: string, path: string, err: unknown): void;
}

export function toFuseStat(s: FsStat): FuseStat {
  return {
    mode: s.mode,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    dev: 0,
    nlink: s.nlink,
    ino: s.ino,
    rdev: 0,
    blksize: BLOCK_BYTES,
    blocks: s.blocks,
    atime: s.atimeMs,
    mtime: s.mtimeMs,
    ctime: s.ctimeMs,
  };
}

/** The open(2) flags the kernel passes, as the file system's open takes them. */
export function openMode(flags: number): OpenMode {
  const acc = flags & O_ACCMODE;
  return { read: acc !== O_WRONLY, write: acc !== O_RDONLY, append: (flags & O_APPEND) !== 0 };
}

/**
 * The FUSE operations for fuse-native, and `utimens` for the addon's
 * requests (fuse-extras.ts): it answers 0 or a negative errno.
 */
export function buildOps(d: OpsDeps): { ops: Ops; utimens: (req: UtimensRequest) => Promise<number> } {
  const { session, files, fileset: fs, stats } = d;
  const call = <T>(op: Parameters<MountSession['call']>[0]) => session.call<T>(op);

  /**
   * Runs `work` and answers the kernel: an array is the callback's results
   * after 0, a number is the answer itself (a count, or a negative errno),
   * anything else is 0; a failure is its errno. Counts it.
   */
  function serve(name: string, path: string, cb: Cb, work: () => Promise<unknown>): void {
    const started = performance.now();
    work().then(
      (r) => {
        stats.done(performance.now() - started, false);
        if (Array.isArray(r)) cb(0, ...(r as unknown[]));
        else cb(typeof r === 'number' ? r : 0);
      },
      (err: unknown) => {
        const errno = errnoOf(err);
        // A name that is not there is an answer (lookups ask for many), not a failure.
        stats.done(performance.now() - started, errno !== ENOENT);
        if (!isMangroveError(err) || errno === EIO || err.code === 'E_UNREACHABLE') d.onError(name, path, err);
        cb(errno);
      },
    );
  }

  const stat = (path: string) => call<FsStat>({ op: 'stat', fs, path, follow: false });
  const setattr = (path: string, a: { mode?: number; uid?: number; gid?: number; atimeMs?: number; mtimeMs?: number }) =>
    call({ op: 'setattr', fs, path, follow: false, ...a });

  async function listing(path: string): Promise<FsDirEntry[]> {
    const out: FsDirEntry[] = [];
    for (let cookie: number | null = 0; cookie !== null; ) {
      const r: { entries: FsDirEntry[]; next: number | null } = await call<{ entries: FsDirEntry[]; next: number | null }>({ op: 'readdir', fs, path, cookie });
      out.push(...r.entries);
      cookie = r.next;
    }
    return out;
  }

  async function streamSize(path: string, stream: string): Promise<number | null> {
    const all = await call<{ name: string; size: number }[]>({ op: 'streams', fs, path });
    return all.find((s) => s.name === stream)?.size ?? null;
  }

  async function readStream(path: string, stream: string): Promise<Buffer> {
    const { fh } = await files.open(path, { read: true, write: false, append: false, stream });
    try {
      const parts: Buffer[] = [];
      for (let at = 0; ; ) {
        const r: { data: Uint8Array; eof: boolean } = await files.with(fh, null, (c, handle) => c.fsCall({ op: 'read', handle, offset: at, length: FS_IO_BYTES_MAX }) as Promise<{ data: Uint8Array; eof: boolean }>);
        parts.push(Buffer.from(r.data));
        at += r.data.length;
        if (r.eof || r.data.length === 0) return Buffer.concat(parts);
      }
    } finally {
      await files.close(fh);
    }
  }

  const utimens = (req: UtimensRequest) =>
    new Promise<number>((resolve) => {
      const at = (t: number | 'now' | null) => (t === 'now' ? Date.now() : (t ?? undefined));
      serve('utimens', req.path, (errno) => resolve(errno), () => setattr(req.path, { atimeMs: at(req.atimeMs), mtimeMs: at(req.mtimeMs) }));
    });

  const ops: Ops = {
    init: (cb: Cb) => cb(0),

    statfs: (path: string, cb: Cb) =>
      serve('statfs', path, cb, async () => {
        const r = await call<{ totalPages: number; freePages: number; pageBytes: number }>({ op: 'statfs', fs });
        return [{ bsize: r.pageBytes, frsize: r.pageBytes, blocks: r.totalPages, bfree: r.freePages, bavail: r.freePages, files: FILES_REPORTED, ffree: FILES_REPORTED, favail: FILES_REPORTED, fsid: 0, flag: 0, namemax: NAME_MAX }];
      }),

    getattr: (path: string, cb: Cb) => serve('getattr', path, cb, async () => [toFuseStat(await stat(path))]),

    fgetattr: (path: string, fh: number, cb: Cb) =>
      serve('fgetattr', path, cb, async () => [toFuseStat(await files.with(fh, path, (c, handle) => c.fsCall({ op: 'fstat', handle }) as Promise<FsStat>))]),

    readdir: (path: string, cb: Cb) =>
      serve('readdir', path, cb, async () => {
        // libfuse passes on only the type of each entry (the kernel asks getattr for the rest).
        const entries = await listing(path);
        return [['.', '..', ...entries.map((e) => e.name)], [DIR_ENTRY, DIR_ENTRY, ...entries.map(toFuseStat)]];
      }),

    // A name another mount removed may still be in this kernel's cache (entry_timeout): ESTALE makes
    // the kernel look the name up again and retry the open once, as a create when it asked O_CREAT.
    open: (path: string, flags: number, cb: Cb) =>
      serve('open', path, cb, async () => {
        try {
          return [(await files.open(path, openMode(flags))).fh];
        } catch (err) {
          if (isMangroveError(err) && err.code === 'E_NOT_FOUND') return ESTALE;
          throw err;
        }
      }),

    create: (path: string, mode: number, cb: Cb) =>
      serve('create', path, cb, async () => [(await files.open(path, { read: true, write: true, append: false }, { mode })).fh]),

    read: (path: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      serve('read', path, cb, async () => {
        const r = await files.with(fh, path, (c, handle) => c.fsCall({ op: 'read', handle, offset: pos, length: len }) as Promise<{ data: Uint8Array }>);
        const n = Math.min(len, r.data.length);
        buf.set(r.data.subarray(0, n));
        stats.bytesRead += n;
        return n;
      }),

    write: (path: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      serve('write', path, cb, async () => {
        const data = buf.subarray(0, len);
        const r = await files.with(fh, path, (c, handle) => c.fsCall({ op: 'write', handle, offset: pos, data }) as Promise<{ written: number }>);
        // Noted once done: a write sent again on another node after a move is not one the move lost.
        files.written(fh);
        stats.bytesWritten += r.written;
        return r.written;
      }),

    // Each close(2) makes what the file was given durable, as NFS commits at close: the node keeps
    // unflushed writes in RAM, and a node counted out of the cluster drops them (fsync's E_PAGE_LOST
    // then fails the close with EIO rather than lose them unsaid).
    flush: (path: string, fh: number, cb: Cb) => serve('flush', path, cb, () => files.sync(fh, path)),

    release: (path: string, fh: number, cb: Cb) => serve('release', path, cb, () => files.close(fh)),

    fsync: (path: string, _datasync: boolean, fh: number, cb: Cb) => serve('fsync', path, cb, () => files.sync(fh, path, true)),

    fsyncdir: (path: string, _datasync: boolean, _fh: number, cb: Cb) => serve('fsyncdir', path, cb, async () => void (await stat(path))),

    truncate: (path: string, size: number, cb: Cb) => serve('truncate', path, cb, () => call({ op: 'truncate', fs, path, size })),

    ftruncate: (path: string, fh: number, size: number, cb: Cb) =>
      serve('ftruncate', path, cb, async () => {
        await files.with(fh, path, (c, handle) => c.fsCall({ op: 'ftruncate', handle, size }));
        files.written(fh);
      }),

    // Stands in for fuse-native's, which loses the modification time: the addon sends utimens to `utimens` below instead.
    utimens: (path: string, _atime: unknown, _mtime: unknown, cb: Cb) => cb(EIO),

    chmod: (path: string, mode: number, cb: Cb) => serve('chmod', path, cb, () => setattr(path, { mode: mode & 0o7777 })),

    chown: (path: string, uid: number, gid: number, cb: Cb) =>
      serve('chown', path, cb, () => setattr(path, { ...(uid === ID_UNCHANGED ? {} : { uid }), ...(gid === ID_UNCHANGED ? {} : { gid }) })),

    readlink: (path: string, cb: Cb) => serve('readlink', path, cb, async () => [(await call<{ target: string }>({ op: 'readlink', fs, path })).target]),

    mkdir: (path: string, mode: number, cb: Cb) => serve('mkdir', path, cb, () => call({ op: 'mkdir', fs, path, mode: mode & 0o7777, uid: d.owner.uid, gid: d.owner.gid })),
    rmdir: (path: string, cb: Cb) => serve('rmdir', path, cb, () => call({ op: 'rmdir', fs, path })),
    unlink: (path: string, cb: Cb) => serve('unlink', path, cb, () => call({ op: 'unlink', fs, path })),
    rename: (from: string, to: string, cb: Cb) => serve('rename', from, cb, () => call({ op: 'rename', fs, from, to })),
    link: (existing: string, path: string, cb: Cb) => serve('link', path, cb, () => call({ op: 'link', fs, existing, path })),
    symlink: (target: string, path: string, cb: Cb) => serve('symlink', path, cb, () => call({ op: 'symlink', fs, target, path })),

    getxattr: (path: string, name: string, _position: number, cb: Cb) => {
      if (!name.startsWith(USER_XATTR)) return cb(ENODATA);
      serve('getxattr', path, cb, async () => {
        const stream = name.slice(USER_XATTR.length);
        if ((await streamSize(path, stream)) === null) return ENODATA;
        return [await readStream(path, stream)];
      });
    },

    setxattr: (path: string, name: string, value: Buffer, _position: number, flags: number, cb: Cb) => {
      if (!name.startsWith(USER_XATTR)) return cb(ENOTSUP);
      serve('setxattr', path, cb, async () => {
        const stream = name.slice(USER_XATTR.length);
        if (flags & (XATTR_CREATE | XATTR_REPLACE)) {
          const exists = (await streamSize(path, stream)) !== null;
          if (flags & XATTR_CREATE && exists) return EEXIST;
          if (flags & XATTR_REPLACE && !exists) return ENODATA;
        }
        const data = Buffer.from(value);
        const { fh } = await files.open(path, { read: false, write: true, append: false, stream }, { mode: 0o644 });
        try {
          await files.with(fh, null, (c, handle) => c.fsCall({ op: 'ftruncate', handle, size: 0 }));
          if (data.length > 0) await files.with(fh, null, (c, handle) => c.fsCall({ op: 'write', handle, offset: 0, data }));
        } finally {
          await files.close(fh);
        }
      });
    },

    listxattr: (path: string, cb: Cb) =>
      serve('listxattr', path, cb, async () => {
        const all = await call<{ name: string }[]>({ op: 'streams', fs, path });
        return [all.map((s) => USER_XATTR + s.name)];
      }),

    removexattr: (path: string, name: string, cb: Cb) => {
      if (!name.startsWith(USER_XATTR)) return cb(ENODATA);
      serve('removexattr', path, cb, async () => {
        const stream = name.slice(USER_XATTR.length);
        if ((await streamSize(path, stream)) === null) return ENODATA;
        await call({ op: 'remove_stream', fs, path, stream });
      });
    },
  };
  return { ops, utimens };
}
