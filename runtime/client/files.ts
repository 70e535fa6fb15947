/**
 * The file system from a program (SPEC.md M18-M22, M24): `client.fs`, an API
 * a Node programmer expects. Promises, Buffers, Node streams; paths as
 * `FILESET:/a/b` (or `/a/b` in the default fileset); errors are
 * MangroveErrors whose `code` is Mangrove's (E_NOT_FOUND…) and whose
 * `posix` is POSIX's (ENOENT…).
 *
 * Open files are FileHandles: each holds a handle on the node this client
 * talks to (never pages), renewed while it is open; a client that goes away
 * loses its handles after the node's lease (a minute). Large reads and
 * writes are cut into calls of FS_IO_BYTES_MAX.
 */
import { Readable, Writable } from 'node:stream';
import { MangroveError } from '../../bus/errors.js';
import { FS_IO_BYTES_MAX, FS_READDIR_MAX, type CheckReport, type ClientFsOp, type FilesetInfo, type FsDirEntry, type FsStat } from '../../bus/messages/fs.js';
import { parseFsPath } from '../../machines/fs/names.js';

export type { CheckReport, FilesetInfo, FsDirEntry, FsStat };

/** What the client sends a file-system call through (MangroveClient's link, with its rebuild retries). */
export type FsSend = (op: ClientFsOp) => Promise<unknown>;

/** Open flags as Node's fs takes them. */
export type OpenFlags = 'r' | 'r+' | 'w' | 'w+' | 'wx' | 'wx+' | 'a' | 'a+' | 'ax';

export interface OpenOptions {
  /** Permission bits of a file the open makes; default 0o644. */
  mode?: number;
  /** A named stream of the file (M20); made by an open that creates. */
  stream?: string;
  /** A temporary file: its pages are volatile, never replicated (M20). */
  temporary?: boolean;
}

const FLAGS: Record<OpenFlags, { read: boolean; write: boolean; create: boolean; excl: boolean; truncate: boolean; append: boolean }> = {
  r: { read: true, write: false, create: false, excl: false, truncate: false, append: false },
  'r+': { read: true, write: true, create: false, excl: false, truncate: false, append: false },
  w: { read: false, write: true, create: true, excl: false, truncate: true, append: false },
  'w+': { read: true, write: true, create: true, excl: false, truncate: true, append: false },
  wx: { read: false, write: true, create: true, excl: true, truncate: false, append: false },
  'wx+': { read: true, write: true, create: true, excl: true, truncate: false, append: false },
  a: { read: false, write: true, create: true, excl: false, truncate: false, append: true },
  'a+': { read: true, write: true, create: true, excl: false, truncate: false, append: true },
  ax: { read: false, write: true, create: true, excl: true, truncate: false, append: true },
};

/** Bytes one stream chunk carries by default. */
const STREAM_CHUNK_BYTES = 256 * 1024;
/** How often an open handle tells its node the client is still there (the node's lease is a minute). */
export const HANDLE_RENEW_MS = 20_000;

function split(path: string): { fs: string; path: string } {
  if (typeof path !== 'string') throw new MangroveError('E_BAD_ARGUMENT', `a path is a string like default:/a/b, not ${typeof path}`);
  const p = parseFsPath(path);
  return { fs: p.fileset, path: p.path };
}

function asBytes(data: Uint8Array | string): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new MangroveError('E_BAD_ARGUMENT', 'data must be a Buffer, a Uint8Array or a string');
}

export class FsClient {
  private readonly handles = new Set<FileHandle>();
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly send: FsSend) {}

  // ---- filesets (M18) ----

  filesets(): Promise<FilesetInfo[]> {
    return this.send({ op: 'fileset_list' }) as Promise<FilesetInfo[]>;
  }

  createFileset(name: string): Promise<FilesetInfo> {
    return this.send({ op: 'fileset_create', name }) as Promise<FilesetInfo>;
  }

  /** Deletes an offline fileset and every page it has. */
  async deleteFileset(name: string): Promise<{ freedInodes: number }> {
    return (await this.send({ op: 'fileset_delete', name })) as { freedInodes: number };
  }

  /** Mount (online) or unmount (offline) a fileset for every node. */
  setFilesetState(name: string, state: 'online' | 'offline'): Promise<FilesetInfo> {
    return this.send({ op: 'fileset_state', name, state }) as Promise<FilesetInfo>;
  }

  setFilesetAttrs(name: string, attrs: { readOnly?: boolean; comment?: string }): Promise<FilesetInfo> {
    return this.send({ op: 'fileset_attrs', name, ...attrs }) as Promise<FilesetInfo>;
  }

  /** A fileset's size and free space: the whole space's (M18). */
  statfs(fileset = 'default'): Promise<{ fileset: string; totalPages: number; freePages: number; pageBytes: number }> {
    return this.send({ op: 'statfs', fs: fileset }) as Promise<{ fileset: string; totalPages: number; freePages: number; pageBytes: number }>;
  }

  /** Verifies a fileset, repairing what it can (`repair: false`: only report). */
  check(fileset: string, opts: { repair?: boolean } = {}): Promise<CheckReport> {
    return this.send({ op: 'check', fs: fileset, repair: opts.repair ?? true }) as Promise<CheckReport>;
  }

  // ---- names ----

  stat(path: string): Promise<FsStat> {
    return this.send({ op: 'stat', ...split(path), follow: true }) as Promise<FsStat>;
  }

  lstat(path: string): Promise<FsStat> {
    return this.send({ op: 'stat', ...split(path), follow: false }) as Promise<FsStat>;
  }

  /** Whether `path` names anything. */
  async exists(path: string): Promise<boolean> {
    try {
      await this.lstat(path);
      return true;
    } catch (err) {
      if (err instanceof MangroveError && err.code === 'E_NOT_FOUND') return false;
      throw err;
    }
  }

  /** The names in a directory. */
  async readdir(path: string): Promise<string[]> {
    return (await this.readdirStat(path)).map((e) => e.name);
  }

  /** The entries of a directory with their attributes, as the entries duplicate them (M19: no inode read). */
  async readdirStat(path: string): Promise<FsDirEntry[]> {
    const out: FsDirEntry[] = [];
    for (let cookie: number | null = 0; cookie !== null; ) {
      const r = (await this.send({ op: 'readdir', ...split(path), cookie, max: FS_READDIR_MAX })) as { entries: FsDirEntry[]; next: number | null };
      out.push(...r.entries);
      cookie = r.next;
    }
    return out;
  }

  /** Makes a directory; `recursive`: its missing parents too, and no error if it exists. */
  async mkdir(path: string, opts: { mode?: number; recursive?: boolean } = {}): Promise<void> {
    const { fs, path: p } = split(path);
    if (!opts.recursive) return void (await this.send({ op: 'mkdir', fs, path: p, mode: opts.mode }));
    const parts = p.split('/').filter((x) => x !== '' && x !== '.');
    for (let i = 1; i <= parts.length; i++) {
      const at = '/' + parts.slice(0, i).join('/');
      try {
        await this.send({ op: 'mkdir', fs, path: at, mode: opts.mode });
      } catch (err) {
        if (!(err instanceof MangroveError && err.code === 'E_EXISTS')) throw err;
        const st = (await this.send({ op: 'stat', fs, path: at, follow: true })) as FsStat;
        if (st.type !== 'dir') throw new MangroveError('E_NOT_DIR', `${fs}:${at} exists and is not a directory`);
      }
    }
  }

  async rmdir(path: string): Promise<void> {
    await this.send({ op: 'rmdir', ...split(path) });
  }

  async unlink(path: string): Promise<void> {
    await this.send({ op: 'unlink', ...split(path) });
  }

  /** Renames atomically, replacing what `to` named (both in one fileset). */
  async rename(from: string, to: string): Promise<void> {
    const a = split(from);
    const b = split(to);
    if (a.fs !== b.fs) throw new MangroveError('E_BAD_ARGUMENT', `a rename stays in its fileset (${a.fs} → ${b.fs})`);
    await this.send({ op: 'rename', fs: a.fs, from: a.path, to: b.path });
  }

  async link(existing: string, path: string): Promise<void> {
    const a = split(existing);
    const b = split(path);
    if (a.fs !== b.fs) throw new MangroveError('E_BAD_ARGUMENT', `a hard link stays in its fileset (${a.fs} → ${b.fs})`);
    await this.send({ op: 'link', fs: a.fs, existing: a.path, path: b.path });
  }

  async symlink(target: string, path: string): Promise<void> {
    await this.send({ op: 'symlink', ...split(path), target });
  }

  async readlink(path: string): Promise<string> {
    return ((await this.send({ op: 'readlink', ...split(path) })) as { target: string }).target;
  }

  async truncate(path: string, size = 0): Promise<void> {
    await this.send({ op: 'truncate', ...split(path), size });
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.send({ op: 'setattr', ...split(path), mode });
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.send({ op: 'setattr', ...split(path), uid, gid });
  }

  async utimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    const ms = (t: Date | number) => (t instanceof Date ? t.getTime() : t * 1000);
    await this.send({ op: 'setattr', ...split(path), atimeMs: ms(atime), mtimeMs: ms(mtime) });
  }

  /** A file's named streams (M20), beside its data and ACL streams. */
  async streams(path: string): Promise<{ name: string; size: number }[]> {
    return (await this.send({ op: 'streams', ...split(path) })) as { name: string; size: number }[];
  }

  async removeStream(path: string, stream: string): Promise<void> {
    await this.send({ op: 'remove_stream', ...split(path), stream });
  }

  // ---- files ----

  async open(path: string, flags: OpenFlags = 'r', opts: OpenOptions = {}): Promise<FileHandle> {
    const f = FLAGS[flags];
    if (!f) throw new MangroveError('E_BAD_ARGUMENT', `open flags are one of ${Object.keys(FLAGS).join(', ')}, not ${JSON.stringify(flags)}`);
    const r = (await this.send({ op: 'open', ...split(path), ...f, mode: opts.mode, stream: opts.stream, temporary: opts.temporary })) as { handle: string; stat: FsStat };
    const h = new FileHandle(this.send, r.handle, path, () => this.closed(h));
    this.handles.add(h);
    this.renewing();
    return h;
  }

  async readFile(path: string, opts: { stream?: string } = {}): Promise<Buffer> {
    const h = await this.open(path, 'r', opts);
    try {
      return await h.readAll();
    } finally {
      await h.close();
    }
  }

  /** Writes a whole file (made or emptied first); `fsync`: durable on every core holder before it resolves. */
  async writeFile(path: string, data: Uint8Array | string, opts: OpenOptions & { fsync?: boolean; flag?: OpenFlags } = {}): Promise<void> {
    const h = await this.open(path, opts.flag ?? 'w', opts);
    try {
      await h.write(asBytes(data), 0);
      if (opts.fsync) await h.sync();
    } finally {
      await h.close();
    }
  }

  /** A Node Readable of the file's bytes from `start` to `end` (inclusive, as fs.createReadStream). */
  createReadStream(path: string, opts: { start?: number; end?: number; highWaterMark?: number; stream?: string } = {}): Readable {
    const chunk = Math.min(opts.highWaterMark ?? STREAM_CHUNK_BYTES, FS_IO_BYTES_MAX);
    const self = this;
    async function* bytes(): AsyncGenerator<Buffer> {
      const h = await self.open(path, 'r', { stream: opts.stream });
      try {
        let at = opts.start ?? 0;
        const end = opts.end === undefined ? Infinity : opts.end + 1;
        while (at < end) {
          const { data, eof } = await h.read(Math.min(chunk, end - at), at);
          if (data.length > 0) yield data;
          at += data.length;
          if (eof || data.length === 0) break;
        }
      } finally {
        await h.close();
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }

  /** A Node Writable into the file (made or emptied first; `flags: 'a'` appends); `fsync`: the stream finishes once the file is durable. */
  createWriteStream(path: string, opts: { flags?: OpenFlags; fsync?: boolean; mode?: number; stream?: string } = {}): Writable {
    let handle: Promise<FileHandle> | null = null;
    let at = 0;
    const h = () => (handle ??= this.open(path, opts.flags ?? 'w', { mode: opts.mode, stream: opts.stream }));
    return new Writable({
      highWaterMark: STREAM_CHUNK_BYTES,
      write: (chunk: Buffer, _enc, done) => {
        h()
          .then(async (fh) => {
            for (let i = 0; i < chunk.length; i += FS_IO_BYTES_MAX) {
              const part = chunk.subarray(i, i + FS_IO_BYTES_MAX);
              const r = await fh.write(part, opts.flags?.startsWith('a') ? undefined : at);
              at = r.offset + r.written;
            }
          })
          .then(() => done(), done);
      },
      final: (done) => {
        h()
          .then(async (fh) => {
            if (opts.fsync) await fh.sync();
            await fh.close();
          })
          .then(() => done(), done);
      },
      destroy: (err, done) => {
        if (!handle) return done(err);
        handle.then((fh) => fh.close()).then(() => done(err), () => done(err));
      },
    });
  }

  /** Stops renewing (the client is closing): handles still open go with the node's lease. */
  stop(): void {
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
  }

  private closed(h: FileHandle): void {
    this.handles.delete(h);
  }

  private renewing(): void {
    if (this.renewTimer !== undefined) return;
    const tick = () => {
      this.renewTimer = undefined;
      if (this.handles.size === 0) return;
      this.send({ op: 'renew' }).catch(() => undefined);
      this.renewTimer = setTimeout(tick, HANDLE_RENEW_MS);
      this.renewTimer.unref();
    };
    this.renewTimer = setTimeout(tick, HANDLE_RENEW_MS);
    this.renewTimer.unref();
  }
}

/** One open file (one stream of it) on the client's node. */
export class FileHandle {
  private isClosed = false;
  private position = 0;

  constructor(
    private readonly send: FsSend,
    readonly id: string,
    readonly path: string,
    private readonly onClose: () => void,
  ) {}

  /** Up to `length` bytes from `position` (default: where the last read or write ended). */
  async read(length: number, position?: number): Promise<{ data: Buffer; eof: boolean }> {
    const at = position ?? this.position;
    const parts: Buffer[] = [];
    let eof = false;
    for (let done = 0; done < length && !eof; ) {
      const n = Math.min(FS_IO_BYTES_MAX, length - done);
      const r = (await this.send({ op: 'read', handle: this.id, offset: at + done, length: n })) as { data: Uint8Array; eof: boolean };
      parts.push(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength));
      done += r.data.length;
      eof = r.eof || r.data.length < n;
    }
    const data = Buffer.concat(parts);
    this.position = at + data.length;
    return { data, eof };
  }

  async readAll(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let at = 0; ; ) {
      const { data, eof } = await this.read(FS_IO_BYTES_MAX, at);
      parts.push(data);
      at += data.length;
      if (eof || data.length === 0) return Buffer.concat(parts);
    }
  }

  /** Writes `data` at `position` (default: where the last read or write ended; a handle opened to append: at the end). */
  async write(data: Uint8Array | string, position?: number): Promise<{ offset: number; written: number; size: number }> {
    const bytes = asBytes(data);
    let at: number | undefined = position ?? this.position;
    let first: { offset: number; written: number; size: number } | null = null;
    let size = 0;
    for (let i = 0; i < bytes.length || (i === 0 && bytes.length === 0); i += FS_IO_BYTES_MAX) {
      const part = bytes.subarray(i, i + FS_IO_BYTES_MAX);
      const r = (await this.send({ op: 'write', handle: this.id, offset: at, data: part })) as { offset: number; written: number; size: number };
      first ??= r;
      at = r.offset + r.written;
      size = r.size;
      if (bytes.length === 0) break;
    }
    this.position = at ?? 0;
    return { offset: first?.offset ?? 0, written: bytes.length, size };
  }

  async stat(): Promise<FsStat> {
    return (await this.send({ op: 'fstat', handle: this.id })) as FsStat;
  }

  async truncate(size = 0): Promise<void> {
    await this.send({ op: 'ftruncate', handle: this.id, size });
  }

  /** Durable on every core holder: the pages this node wrote to the file, its inode and its entry (M20). */
  async sync(): Promise<void> {
    await this.send({ op: 'fsync', handle: this.id });
  }

  /**
   * A byte-range lock on [start, end) (M21); `end` may lie past the end of
   * the file. A conflicting lock fails at once with E_LOCKED (EAGAIN), or
   * with `wait`, waits for it (up to `waitMs`, default 30 s).
   */
  async lock(start: number, end: number, opts: { mode?: 'shared' | 'exclusive'; wait?: boolean; waitMs?: number; key?: number } = {}): Promise<void> {
    const mode = opts.mode ?? 'exclusive';
    const deadline = Date.now() + (opts.waitMs ?? 30_000);
    for (;;) {
      try {
        await this.send({ op: 'lock', handle: this.id, start, end, mode, wait: opts.wait ?? false, waitMs: Math.max(1, Math.min(5000, deadline - Date.now())), key: opts.key });
        return;
      } catch (err) {
        if (!(err instanceof MangroveError && err.code === 'E_TIMEOUT' && opts.wait && Date.now() < deadline)) throw err;
      }
    }
  }

  async unlock(start: number, end: number): Promise<void> {
    await this.send({ op: 'unlock', handle: this.id, start, end });
  }

  /** Closes the handle: its byte-range locks go. Closing twice is a no-op. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    this.onClose();
    await this.send({ op: 'close', handle: this.id });
  }
}
