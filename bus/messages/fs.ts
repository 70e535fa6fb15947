/**
 * The file system's requests (SPEC.md M18-M22, M24): `client.fs`, one
 * op-code per call, sent by the client library, the CLI and the mount to
 * any node, which runs it as `fs.<op>` in its flow scheduler and answers
 * `reply.ok` or `reply.err`. Paths are inside a fileset (`fs`), handles are
 * the strings `open` returned. Every size is bounded here.
 */
import { z } from 'zod';
import { bytes } from './schema.js';

/** Bytes one read or write call carries; the client library cuts larger transfers. */
export const FS_IO_BYTES_MAX = 1024 * 1024;
/** Entries one readdir call returns at most. */
export const FS_READDIR_MAX = 1000;
/** How long one waiting byte-range lock call waits at most before E_TIMEOUT (the client asks again). */
export const FS_LOCK_WAIT_MS_MAX = 60_000;

/**
 * A request's id for an update of names (create, mkdir, symlink, link,
 * unlink, rmdir, rename), the same in every try of it: a node that finds it
 * done in the directory (machines/fs/inode.ts `done`) answers the try as
 * done, so a request sent again after its answer was lost happens once.
 */
export const FS_TXN_CHARS_MAX = 32;
/** The ops that take a `txn`. */
export const FS_TXN_OPS = ['open', 'mkdir', 'symlink', 'link', 'unlink', 'rmdir', 'rename'] as const;

const txn = z.string().min(1).max(FS_TXN_CHARS_MAX).optional();
const fileset = z.string().min(1).max(255);
const path = z.string().max(4096);
const handle = z.string().min(1).max(40);
const mode = z.number().int().min(0).max(0o7777);
const u32 = z.number().int().min(0).max(2 ** 32 - 1);
const offset = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const time = z.number().min(0).max(8.64e15);
const data = bytes('data', (n) => n <= FS_IO_BYTES_MAX, `at most ${FS_IO_BYTES_MAX} bytes`);
const stream = z.string().min(1).max(64);

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const ms = z.number().min(0).max(1e9);

/** What a mount reports (op `mount_report`): where it is, and its counts since it started. */
const mountReport = z.object({
  id: z.string().min(1).max(64),
  dir: z.string().min(1).max(4096),
  host: z.string().max(255),
  pid: u32,
  fileset,
  startedMs: time,
  ops: count,
  errors: count,
  bytesRead: count,
  bytesWritten: count,
  /** Times the mount moved to another node after its node stopped answering. */
  failovers: count,
  /** Latency of the operations of the last report period, in ms. */
  latencyMsP50: ms,
  latencyMsP99: ms,
});
export type MountReport = z.infer<typeof mountReport>;

export const clientFsOp = z.discriminatedUnion('op', [
  z.object({ op: z.literal('fileset_create'), name: fileset }),
  z.object({ op: z.literal('fileset_delete'), name: fileset }),
  z.object({ op: z.literal('fileset_list') }),
  z.object({ op: z.literal('fileset_state'), name: fileset, state: z.enum(['online', 'offline']) }),
  z.object({ op: z.literal('fileset_attrs'), name: fileset, readOnly: z.boolean().optional(), comment: z.string().max(200).optional() }),
  z.object({ op: z.literal('statfs'), fs: fileset }),
  z.object({ op: z.literal('stat'), fs: fileset, path, follow: z.boolean().optional() }),
  z.object({ op: z.literal('fstat'), handle }),
  z.object({ op: z.literal('readdir'), fs: fileset, path, cookie: offset.optional(), max: z.number().int().min(1).max(FS_READDIR_MAX).optional() }),
  z.object({ op: z.literal('mkdir'), fs: fileset, path, mode: mode.optional(), uid: u32.optional(), gid: u32.optional(), txn }),
  z.object({
    op: z.literal('open'),
    fs: fileset,
    path,
    read: z.boolean().optional(),
    write: z.boolean().optional(),
    create: z.boolean().optional(),
    excl: z.boolean().optional(),
    truncate: z.boolean().optional(),
    append: z.boolean().optional(),
    mode: mode.optional(),
    uid: u32.optional(),
    gid: u32.optional(),
    /** A named stream of the file (M20), made on open with `create`; default the data stream. */
    stream: stream.optional(),
    /** A temporary file: its pages are volatile, not replicated (M20). */
    temporary: z.boolean().optional(),
    /** With `create`: the request's id (FS_TXN_CHARS_MAX). */
    txn,
  }),
  z.object({ op: z.literal('close'), handle }),
  z.object({ op: z.literal('read'), handle, offset, length: z.number().int().min(0).max(FS_IO_BYTES_MAX) }),
  /** Without `offset` the data goes at the end (a handle opened to append always writes there). */
  z.object({ op: z.literal('write'), handle, offset: offset.optional(), data }),
  z.object({ op: z.literal('truncate'), fs: fileset, path, size: offset }),
  z.object({ op: z.literal('ftruncate'), handle, size: offset }),
  z.object({ op: z.literal('fsync'), handle }),
  z.object({ op: z.literal('unlink'), fs: fileset, path, txn }),
  z.object({ op: z.literal('rmdir'), fs: fileset, path, txn }),
  z.object({ op: z.literal('rename'), fs: fileset, from: path, to: path, txn }),
  z.object({ op: z.literal('link'), fs: fileset, existing: path, path, txn }),
  z.object({ op: z.literal('symlink'), fs: fileset, target: z.string().min(1).max(1024), path, txn }),
  z.object({ op: z.literal('readlink'), fs: fileset, path }),
  z.object({
    op: z.literal('setattr'),
    fs: fileset,
    path,
    follow: z.boolean().optional(),
    mode: mode.optional(),
    uid: u32.optional(),
    gid: u32.optional(),
    atimeMs: time.optional(),
    mtimeMs: time.optional(),
  }),
  z.object({ op: z.literal('streams'), fs: fileset, path }),
  z.object({ op: z.literal('remove_stream'), fs: fileset, path, stream }),
  z.object({
    op: z.literal('lock'),
    handle,
    start: offset,
    end: offset,
    mode: z.enum(['shared', 'exclusive']),
    wait: z.boolean().optional(),
    waitMs: z.number().int().min(1).max(FS_LOCK_WAIT_MS_MAX).optional(),
    key: u32.optional(),
    /** POSIX's kind (the mount's fcntl and flock locks): conflicts with other locks, forbids no read or write. */
    advisory: z.boolean().optional(),
  }),
  z.object({ op: z.literal('unlock'), handle, start: offset, end: offset }),
  z.object({ op: z.literal('check'), fs: fileset, repair: z.boolean().optional() }),
  /** The client is still there: its handles stay open (any call says as much). */
  z.object({ op: z.literal('renew') }),
  /** A mount (runtime/mount/) tells its node what it has done, every few seconds: `status` and /metrics list it. */
  z.object({ op: z.literal('mount_report'), mount: mountReport }),
]);
export type ClientFsOp = z.infer<typeof clientFsOp>;
export type FsOpName = ClientFsOp['op'];

export const fsBodies = {
  'client.fs': clientFsOp,
} as const;

/** What `stat`, `fstat` and `readdir` answer per file. Times in ms since the epoch. */
export interface FsStat {
  ino: number;
  type: 'file' | 'dir' | 'symlink';
  /** Type bits and permission bits, as st_mode. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  /** 512-byte blocks allocated (one replica's). */
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  birthtimeMs: number;
}

export interface FsDirEntry extends FsStat {
  name: string;
}

/** A fileset as `fileset_list`, `fileset_create`, `fileset_state` and `fileset_attrs` answer it (M18). */
export interface FilesetInfo {
  id: number;
  name: string;
  state: 'online' | 'offline' | 'deleting';
  createdMs: number;
  attrs: { readOnly: boolean; comment: string };
}

/** What `check` answers (M22): what it counted, repaired, and could not repair. */
export interface CheckReport {
  fileset: string;
  directories: number;
  files: number;
  repairs: string[];
  /** What could not be repaired: non-empty means the fileset is damaged. */
  problems: string[];
  clean: boolean;
}

