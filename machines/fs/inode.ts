/**
 * The inode (SPEC.md M19, M20, M22): one page per file, fixed in size because
 * names live only in directory entries. It holds the file's attributes, its
 * stream descriptors (the default data stream, the ACL stream, named ones),
 * the synchronisation version its directory entries copy, and the
 * transaction mark a multi-page update leaves on a directory's inode until
 * that update is flushed. A directory's inode also holds its name hash table
 * (directory.ts). Pure: the layout and its checks; no I/O.
 */
import { z } from 'zod';
import { MangroveError } from '../../bus/errors.js';
import { FS_TXN_CHARS_MAX } from '../../bus/messages/fs.js';
import { addressFromKey, addressKey } from '../memory/address.js';
import { decodeFsPage, sealFsPage } from './fs-page.js';
import { emptyStream, type StreamDesc } from './stream.js';

export type FileType = 'file' | 'dir' | 'symlink';

/**
 * What a multi-page update is doing to a directory (M22), with the inode it
 * is about: `create`, `create_directory`, `delete`, `link` and, for a
 * rename, `rename` on the source directory and `rename_target` on the
 * target's (one `rename_target` mark with `other` when both are the same).
 */
export type MarkKind = 'create' | 'create_directory' | 'delete' | 'rename' | 'rename_target' | 'link';

export interface TxnMark {
  kind: MarkKind;
  /** The inode inserted or removed, and where it lives. */
  ino: number;
  addr: bigint;
  /** Its entry's name in this directory. */
  name: string;
  /** The inode's link count before the update: recovery tells from it whether the inode's half was written. */
  nlinkBefore: number;
  /** A rename's other side: the source directory (on `rename_target`) or the target (on `rename`), and the name there. */
  other: { dir: number; addr: bigint; name: string } | null;
  /** A rename's target that the moved entry replaces: its link count drops by one. */
  replaced: { ino: number; addr: bigint } | null;
  /** The client's id for the request (its `txn`), kept with the outcome once the update is done (`Inode.done`). */
  txn?: string;
}

/** A node with handles open on the file (M22, two-phase delete): they keep an unlinked file readable. */
export interface Opener {
  node: string;
  epoch: number;
  count: number;
}

/** A directory's index (M19): its entry count, the hash table, the free-space list. */
export interface DirIndex {
  count: number;
  /** Subdirectories, for the directory's link count (2 + subdirs). */
  subdirs: number;
  /** HASH_BUCKETS references (entry page + 1, slot), 6 bytes each; 0 page: empty bucket. */
  buckets: Uint8Array;
  /** The first entry page of the free-space list, or -1. */
  freeHead: number;
  /** Entry pages in use, from page 0 of the entries stream. */
  pages: number;
}

export interface Inode {
  fileset: number;
  ino: number;
  type: FileType;
  /** Permission bits (and setuid/setgid/sticky), 0 to 0o7777. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  btimeMs: number;
  /** Synchronisation version (M19): bumped on every update, copied into the entry. */
  sync: number;
  /** The directory holding the file's first entry, and its inode's address ('..' of a directory). */
  parent: number;
  parentAddr: bigint;
  /** Where that entry is in the parent (M19: the entry the inode's attributes are copied to), once inserted. */
  entry: { page: number; slot: number } | null;
  /** A temporary file: its pages are volatile, never replicated or written to disk (M20). */
  temporary: boolean;
  /** streams[0]: the default data stream (a directory's entries); streams[1]: the ACL stream. */
  streams: StreamDesc[];
  /** A symbolic link's target. */
  target: string | null;
  mark: TxnMark | null;
  /**
   * A directory's last TXNS_KEPT updates done (their marks' `txn`, newest
   * last): a request sent again after its answer was lost (its node died, or
   * a rebuild refused a later step) is answered as done, not done twice
   * (M22; bus/messages/fs.ts FS_TXN_CHARS_MAX).
   */
  done: string[];
  /** Unlinked (nlink 0) but open somewhere: freed when the last handle closes (M22). */
  deleting: boolean;
  /** Why the directory was found damaged past repair: it is refused, never served (M22). */
  corrupt: string | null;
  openers: Opener[];
  /** The volatile page holding the byte-range lock records (M21), once a lock was taken. */
  lockPage: bigint | null;
  dir: DirIndex | null;
}

/** Buckets of a directory's hash table: 6 bytes each, in the inode page. */
export const HASH_BUCKETS = 256;
export const BUCKET_BYTES = 6;
/**
 * Named streams of a file besides the default and the ACL stream (a
 * directory has none): with OPENERS_MAX openers they fill at most ~3 KB, so
 * a file's inode always fits its page; a directory's holds its hash table
 * instead, and the longest mark.
 */
export const NAMED_STREAMS_MAX = 8;
export const STREAM_NAME_CHARS_MAX = 64;
/** Nodes with handles open on one file, as its inode can record them (a directory records none). */
export const OPENERS_MAX = 16;
/** A symbolic link's target, in characters. */
export const SYMLINK_TARGET_CHARS_MAX = 1024;
export const ACL_STREAM = 'acl';
/** Updates done a directory remembers (`Inode.done`): a client sends a request again within seconds, before many others. */
export const TXNS_KEPT = 4;

const address = z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.byteLength === 16, 'an address of 16 bytes').transform(addressFromKey);
const u32 = z.number().int().min(0).max(2 ** 32 - 1);
const safe = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const time = z.number().min(0).max(8.64e15);
const stream = z.object({ name: z.string().max(STREAM_NAME_CHARS_MAX), base: address.nullable(), size: safe, segs: safe, pending: safe.optional() });
const mark = z.object({
  kind: z.enum(['create', 'create_directory', 'delete', 'rename', 'rename_target', 'link']),
  ino: u32,
  addr: address,
  name: z.string().min(1).max(255),
  nlinkBefore: u32,
  other: z.object({ dir: u32, addr: address, name: z.string().min(1).max(255) }).nullable(),
  replaced: z.object({ ino: u32, addr: address }).nullable(),
  txn: z.string().min(1).max(FS_TXN_CHARS_MAX).optional(),
});
const dirIndex = z.object({
  count: u32,
  subdirs: u32,
  buckets: z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.byteLength === HASH_BUCKETS * BUCKET_BYTES, 'a hash table'),
  freeHead: z.number().int().min(-1).max(2 ** 31),
  pages: u32,
});

export const inodeSchema = z.object({
  fileset: u32,
  ino: u32,
  type: z.enum(['file', 'dir', 'symlink']),
  mode: z.number().int().min(0).max(0o7777),
  uid: u32,
  gid: u32,
  nlink: u32,
  atimeMs: time,
  mtimeMs: time,
  ctimeMs: time,
  btimeMs: time,
  sync: safe,
  parent: u32,
  parentAddr: address,
  entry: z.object({ page: z.number().int().min(0).max(2 ** 31), slot: z.number().int().min(0).max(63) }).nullable(),
  temporary: z.boolean(),
  streams: z.array(stream).min(2).max(2 + NAMED_STREAMS_MAX),
  target: z.string().max(SYMLINK_TARGET_CHARS_MAX).nullable(),
  mark: mark.nullable(),
  // Pages written before updates were remembered have none.
  done: z.array(z.string().min(1).max(FS_TXN_CHARS_MAX)).max(TXNS_KEPT).default([]),
  deleting: z.boolean(),
  corrupt: z.string().max(1000).nullable(),
  openers: z.array(z.object({ node: z.string().min(1).max(64), epoch: safe, count: u32 })).max(OPENERS_MAX),
  lockPage: address.nullable(),
  dir: dirIndex.nullable(),
}) satisfies z.ZodType<Inode, unknown>;

function toWire(i: Inode): unknown {
  const key = (a: bigint | null) => (a === null ? null : addressKey(a));
  return {
    ...i,
    parentAddr: addressKey(i.parentAddr),
    streams: i.streams.map(({ pending, ...s }) => ({ ...s, base: key(s.base), ...(pending ? { pending } : {}) })),
    mark: i.mark && {
      ...i.mark,
      addr: addressKey(i.mark.addr),
      other: i.mark.other && { ...i.mark.other, addr: addressKey(i.mark.other.addr) },
      replaced: i.mark.replaced && { ...i.mark.replaced, addr: addressKey(i.mark.replaced.addr) },
    },
    lockPage: key(i.lockPage),
  };
}

export function encodeInode(i: Inode, addr: bigint): Uint8Array {
  return sealFsPage('inode', toWire(i), addr);
}

/** The inode at `addr`, or null for a page never written (a free inode of its group). */
export function decodeInode(page: Uint8Array, addr: bigint): Inode | null {
  return decodeFsPage('inode', page, addr, inodeSchema);
}

/** What a new inode is made of: the rest starts empty (no links counted yet beyond its first entry, no streams' pages). */
export type NewInode = Pick<Inode, 'fileset' | 'ino' | 'type' | 'mode' | 'uid' | 'gid' | 'parent' | 'parentAddr'> & {
  nowMs: number;
  target?: string;
  temporary?: boolean;
};

export function newInode(n: NewInode): Inode {
  const isDir = n.type === 'dir';
  return {
    fileset: n.fileset,
    ino: n.ino,
    type: n.type,
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    nlink: isDir ? 2 : 1,
    atimeMs: n.nowMs,
    mtimeMs: n.nowMs,
    ctimeMs: n.nowMs,
    btimeMs: n.nowMs,
    sync: 1,
    parent: n.parent,
    parentAddr: n.parentAddr,
    entry: null,
    temporary: n.temporary ?? false,
    streams: [emptyStream(''), emptyStream(ACL_STREAM)],
    target: n.target ?? null,
    mark: null,
    done: [],
    deleting: false,
    corrupt: null,
    openers: [],
    lockPage: null,
    dir: isDir ? { count: 0, subdirs: 0, buckets: new Uint8Array(HASH_BUCKETS * BUCKET_BYTES), freeHead: -1, pages: 0 } : null,
  };
}

/** Records that the update `txn` is done in directory `i` (the oldest remembered one goes). */
export function rememberDone(i: Inode, txn: string | undefined): void {
  if (txn === undefined || i.done.includes(txn)) return;
  i.done.push(txn);
  if (i.done.length > TXNS_KEPT) i.done.splice(0, i.done.length - TXNS_KEPT);
}

/** Whether the update `txn` is done in one of `dirs` (a request sent again). */
export function isDone(txn: string | undefined, ...dirs: Inode[]): boolean {
  return txn !== undefined && dirs.some((d) => d.done.includes(txn));
}

/** The directory index of a directory's inode; a file's is E_NOT_DIR. */
export function dirOf(i: Inode, what = 'a path'): DirIndex {
  if (i.dir === null || i.type !== 'dir') throw new MangroveError('E_NOT_DIR', `${what} goes through ino ${i.ino}, which is not a directory`);
  if (i.corrupt !== null) throw new MangroveError('E_CORRUPT', `directory ino ${i.ino} was found damaged past repair and is refused: ${i.corrupt}`);
  return i.dir;
}

/** A file's size: its default data stream's; a symbolic link's, its target's bytes (as lstat says). */
export function sizeOf(i: Inode): number {
  return i.type === 'symlink' ? new TextEncoder().encode(i.target ?? '').length : i.streams[0].size;
}

/** The bits `stat` reports for the type, beside the permission bits (S_IFREG, S_IFDIR, S_IFLNK). */
export function typeBits(t: FileType): number {
  return t === 'dir' ? 0o040000 : t === 'symlink' ? 0o120000 : 0o100000;
}
