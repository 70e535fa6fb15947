/**
 * The file system, an element of every node (SPEC.md M18-M22; patent FIG. 3):
 * its calls are op-codes in the node's flow scheduler (`fs.<op>`), so a
 * client of any node reaches it through that node, which works on pages in
 * its own caches through the memory engine; clients hold handles, never
 * pages. Files live in the shared space, so every node serves every file:
 * a node that fails costs its clients their handles (they open again on
 * another node), and what its half-done updates left is recovered by the
 * next node to touch them (M22).
 *
 * Wiring here: the page adapter (fs-pages.ts) as the client `fs@<node>`,
 * metadata locks, filesets, handles (a client that stops renewing loses
 * them after HANDLE_LEASE_MS), byte-range locks, and the op-codes. The
 * updates themselves live in namespace.ts, files.ts, filesets.ts,
 * mark-recovery.ts and fs-check.ts.
 */
import type { Observable } from 'rxjs';
import type { InspectionEvent } from 'xstate';
import type { Clock } from '../../bus/clock.js';
import type { Envelope } from '../../bus/envelope.js';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { ClientFsOp, FsDirEntry, MountReport } from '../../bus/messages/fs.js';
import type { SpaceReport } from '../../bus/messages/page.js';
import type { ReplyRoute } from '../../bus/transport/transport.js';
import { checkRange, type RangeLock } from '../../machines/fs/byte-ranges.js';
import { list } from '../../machines/fs/dir-index.js';
import { dirOf, typeBits } from '../../machines/fs/inode.js';
import { ACL_STREAM } from '../../machines/fs/inode.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import type { FlowScheduler } from '../engine/flow-scheduler.js';
import type { Log } from '../log.js';
import type { Outbox } from '../outbox.js';
import type { PageChange } from '../pages/page-holder.js';
import { withDirs, type FilesetRef } from './dir-update.js';
import * as files from './files.js';
import { syncEntry } from './entry-sync.js';
import { Filesets } from './filesets.js';
import { checkFileset } from './fs-check.js';
import { DirPages, type FsContext } from './fs-context.js';
import { FsPages, Update, type EngineCalls } from './fs-pages.js';
import { Handles, type Handle } from './handles.js';
import { MetaLocks } from './meta-locks.js';
import * as names from './namespace.js';
import { RangeLocks } from './range-locks.js';
import { resolve, resolveParent } from './resolve.js';

/** A client's handles close once the node has not heard from it for this long (it went away). */
export const HANDLE_LEASE_MS = 60_000;
const LEASE_SWEEP_MS = 5_000;
/** How long the whole space's free pages guide the allocation check before they are asked for again. */
const SPACE_TTL_MS = 2_000;
const READDIR_DEFAULT = 1000;
const LOCK_WAIT_DEFAULT_MS = 5_000;
/** Refusals a lock's putting back waits out (the cluster still rebuilding): it is tried again at the next look. */
const PASSING: ReadonlySet<string> = new Set(['E_RECOVERING', 'E_TIMEOUT', 'E_UNREACHABLE', 'E_NO_QUORUM']);
/** How long after a membership change this node puts back the byte-range locks its handles hold (a rebuild takes about this long). */
const REASSERT_DELAY_MS = 2_000;

export interface FileSystemDeps {
  self: string;
  epoch: number;
  clock: Clock;
  log: Log;
  engine: EngineCalls;
  scheduler: FlowScheduler;
  changes$: Observable<PageChange>;
  outbox: Outbox;
  /** Core copies a page has (engine setting `copies`): the free-space check counts each. */
  copies: number;
  wallMs(): number;
  isLive(node: string, epoch: number): boolean;
  /** This node's short id in the node database (M1). */
  shortId(): number;
  /** The engine's count of resets (recoveryState().resets): fsync fails once one lost writes it has not made durable. */
  resets(): number;
  inspect?: (e: InspectionEvent) => void;
}

export interface FsStats {
  calls: number;
  failed: number;
  handles: number;
  recoveries: number;
  /** The mounts (runtime/mount/) that reported to this node in the last MOUNT_REPORT_STALE_MS, with the client each speaks as. */
  mounts: (MountReport & { client: string; reportedMs: number })[];
}

/** A mount reports every few seconds; one not heard from for this long is gone from status. */
export const MOUNT_REPORT_STALE_MS = 30_000;
/** Mounts one node lists at most (the oldest report goes first): bounds what reports can make it keep. */
const MOUNTS_LISTED_MAX = 256;

export class FileSystem {
  readonly ctx: FsContext;
  readonly filesets: Filesets;
  readonly handles: Handles;
  private readonly ranges: RangeLocks;
  private readonly locks: MetaLocks;
  private readonly heard = new Map<string, number>();
  private readonly stats = { calls: 0, failed: 0 };
  /** The last report of each mount using this node, by mount id. */
  private readonly mounts = new Map<string, MountReport & { client: string; heard: number; reportedMs: number }>();
  private sweep: unknown = null;
  private reassertTimer: unknown = null;
  private space: { at: number; free: number } | null = null;

  constructor(private readonly deps: FileSystemDeps) {
    const pages = new FsPages(deps.engine, `fs@${deps.self}`);
    this.locks = new MetaLocks(pages, deps.clock, deps.log);
    this.ctx = {
      self: deps.self,
      epoch: deps.epoch,
      pages,
      locks: this.locks,
      clock: deps.clock,
      log: deps.log,
      wallMs: deps.wallMs,
      isLive: (node, epoch) => (node === deps.self ? epoch === deps.epoch : deps.isLive(node, epoch)),
      freePages: () => this.freePages(),
      resets: deps.resets,
      recoveries: [],
      recovered: 0,
    };
    this.filesets = new Filesets(this.ctx);
    this.handles = new Handles(deps.epoch, deps.shortId);
    this.ranges = new RangeLocks(this.ctx, deps.engine, deps.changes$, deps.inspect);
    this.register();
    this.armSweep();
  }

  /** A client's `client.fs` call, answered on its route. */
  onClient(env: Envelope, route: ReplyRoute): void {
    const op = env.body as ClientFsOp;
    this.call(op, env.from).then(
      (result) => this.deps.outbox.reply(route, env, 'reply.ok', { result }),
      (err: unknown) => {
        const e = isMangroveError(err) ? err : new MangroveError('E_INTERNAL', String(err));
        if (e.code === 'E_INTERNAL') this.deps.log.error({ err: String(err), stack: (err as Error)?.stack, op: op.op }, 'file-system call failed');
        this.deps.outbox.reply(route, env, 'reply.err', { code: e.code, message: e.message });
      },
    );
  }

  /** Runs a call on this node as `client` (a program in this process calls it directly). */
  call(op: ClientFsOp, client = 'local'): Promise<unknown> {
    this.heard.set(client, this.deps.clock.now());
    this.stats.calls++;
    const done = this.deps.scheduler.dispatch(`fs.${op.op}`, op, client);
    done.catch(() => this.stats.failed++);
    return done;
  }

  /** A node failed, left or came back: waiting byte-range locks look at their tables again. */
  membershipChanged(): void {
    this.ranges.wakeAll();
    if (this.reassertTimer !== null || this.handles.size === 0) return;
    this.reassertTimer = this.deps.clock.setTimeout(() => {
      this.reassertTimer = null;
      void this.reassertLocks();
    }, REASSERT_DELAY_MS);
  }

  /**
   * After a node failure, a file's lock page (volatile, M21) may come back
   * without its records, if its newest copy died: every lock this node's
   * handles hold is put back where it is missing. One another handle took
   * meanwhile is lost, and said so in the log; the handle no longer holds it.
   */
  private async reassertLocks(): Promise<void> {
    for (const h of this.handles.all()) {
      if (h.locks.length === 0) continue;
      const i = await this.ctx.pages.inodeOrNull(h.addr).catch(() => null);
      if (!i?.lockPage) continue;
      for (const l of [...h.locks]) {
        const back = await this.ranges.reassert(i.lockPage, l).catch((err: unknown) => ({ ok: false as const, code: isMangroveError(err) ? err.code : ('E_INTERNAL' as const), message: String(err) }));
        if (back.ok) continue;
        if (PASSING.has(back.code)) {
          this.membershipChanged();
          continue;
        }
        h.locks.splice(h.locks.indexOf(l), 1);
        this.deps.log.error({ handle: h.id, start: l.start, end: l.end, code: back.code }, 'a byte-range lock lost with a failed node\'s copy of its lock page was taken by another handle meanwhile');
      }
    }
  }

  status(): FsStats {
    const now = this.deps.clock.now();
    for (const [id, m] of this.mounts) if (now - m.heard > MOUNT_REPORT_STALE_MS) this.mounts.delete(id);
    const mounts = [...this.mounts.values()].map(({ heard: _, ...m }) => m);
    return { calls: this.stats.calls, failed: this.stats.failed, handles: this.handles.size, recoveries: this.ctx.recovered, mounts };
  }

  close(): void {
    if (this.sweep !== null) this.deps.clock.clearTimeout(this.sweep);
    if (this.reassertTimer !== null) this.deps.clock.clearTimeout(this.reassertTimer);
    this.sweep = null;
    this.reassertTimer = null;
    this.locks.close();
  }

  // ---- op-codes ----

  private register(): void {
    const s = this.deps.scheduler;
    const op = <K extends ClientFsOp['op']>(name: K, run: (input: Extract<ClientFsOp, { op: K }>, client: string) => Promise<unknown>) =>
      s.register(`fs.${name}`, { applet: (input, actx) => run(input as Extract<ClientFsOp, { op: K }>, actx.origin) });
    const ctx = this.ctx;
    op('fileset_create', ({ name }) => this.filesets.create(name));
    op('fileset_delete', ({ name }) => this.filesets.delete(name, (id) => this.handles.inFileset(id)));
    op('fileset_list', () => this.filesets.list());
    op('fileset_state', ({ name, state }) => this.filesets.setState(name, state));
    op('fileset_attrs', ({ name, readOnly, comment }) => this.filesets.setAttrs(name, { ...(readOnly === undefined ? {} : { readOnly }), ...(comment === undefined ? {} : { comment }) }));
    op('statfs', async ({ fs }) => this.statfs(await this.ref(fs)));
    op('stat', async ({ fs, path, follow }) => files.statOf((await resolve(ctx, await this.ref(fs), path, follow ?? true)).inode));
    op('fstat', async ({ handle }, client) => files.statOf(await ctx.pages.inode(this.handle(handle, client).addr)));
    op('readdir', async ({ fs, path, cookie, max }) => this.readdir(await this.ref(fs), path, cookie ?? 0, max ?? READDIR_DEFAULT));
    op('mkdir', async ({ fs, path, mode, uid, gid, txn }) => {
      const ref = await this.ref(fs);
      const { dir, name } = await resolveParent(ctx, ref, path);
      return files.statOf((await names.create(ctx, ref, dir, name, { type: 'dir', mode: mode ?? 0o755, uid: uid ?? 0, gid: gid ?? 0 }, txn)).inode);
    });
    op('open', async (o, client) => files.open(ctx, this.handles, await this.ref(o.fs), o, client));
    op('close', async ({ handle }, client) => files.close(ctx, this.handles, this.handle(handle, client), (h) => this.releaseAll(h)));
    op('read', async ({ handle, offset, length }, client) => files.read(ctx, this.handle(handle, client), offset, length));
    op('write', async ({ handle, offset, data }, client) => files.write(ctx, this.handles, this.handle(handle, client), offset, data));
    op('truncate', async ({ fs, path, size }) => {
      const ref = await this.ref(fs);
      return files.truncate(ctx, this.handles, ref, (await resolve(ctx, ref, path, true)).addr, '', size);
    });
    op('ftruncate', async ({ handle, size }, client) => {
      const h = this.handle(handle, client);
      if (!h.write) throw new MangroveError('E_BAD_HANDLE', `handle ${h.id} was not opened for writing`);
      return files.truncate(ctx, this.handles, h.ref, h.addr, h.stream, size);
    });
    op('fsync', async ({ handle }, client) => files.fsync(ctx, this.handles, this.handle(handle, client)));
    op('unlink', async ({ fs, path, txn }) => this.remove(fs, path, false, txn));
    op('rmdir', async ({ fs, path, txn }) => this.remove(fs, path, true, txn));
    op('rename', async ({ fs, from, to, txn }) => {
      const ref = await this.ref(fs);
      const a = await resolveParent(ctx, ref, from);
      const b = await resolveParent(ctx, ref, to);
      await names.rename(ctx, ref, a.dir, a.name, b.dir, b.name, txn);
    });
    op('link', async ({ fs, existing, path, txn }) => {
      const ref = await this.ref(fs);
      const target = await resolve(ctx, ref, existing, false);
      const { dir, name } = await resolveParent(ctx, ref, path);
      return files.statOf(await names.link(ctx, ref, target.addr, dir, name, txn));
    });
    op('symlink', async ({ fs, target, path, txn }) => {
      const ref = await this.ref(fs);
      const { dir, name } = await resolveParent(ctx, ref, path);
      return files.statOf((await names.create(ctx, ref, dir, name, { type: 'symlink', mode: 0o777, uid: 0, gid: 0, target }, txn)).inode);
    });
    op('readlink', async ({ fs, path }) => {
      const r = await resolve(ctx, await this.ref(fs), path, false);
      if (r.inode.type !== 'symlink') throw new MangroveError('E_BAD_ARGUMENT', `${JSON.stringify(path)} is not a symbolic link`);
      return { target: r.inode.target };
    });
    op('setattr', async (o) => this.setattr(await this.ref(o.fs), o));
    op('streams', async ({ fs, path }) => {
      const r = await resolve(ctx, await this.ref(fs), path, true);
      return r.inode.streams.filter((s) => s.name !== '' && s.name !== ACL_STREAM).map((s) => ({ name: s.name, size: s.size }));
    });
    op('remove_stream', async ({ fs, path, stream }) => this.removeStream(await this.ref(fs), path, stream));
    op('lock', async (o, client) => this.lock(this.handle(o.handle, client), o));
    op('unlock', async ({ handle, start, end }, client) => this.unlock(this.handle(handle, client), start, end));
    op('check', async ({ fs, repair }) => {
      const { record, fs: f } = await this.filesets.find(fs);
      return checkFileset(ctx, { addr: record.addr, fs: f }, repair ?? true);
    });
    op('renew', async (_, client) => ({ handles: this.handles.ofClient(client).length }));
    op('mount_report', async ({ mount }, client) => {
      if (!this.mounts.has(mount.id) && this.mounts.size >= MOUNTS_LISTED_MAX) this.mounts.delete(this.mounts.keys().next().value!);
      this.mounts.set(mount.id, { ...mount, client, heard: this.deps.clock.now(), reportedMs: this.deps.wallMs() });
      return { handles: this.handles.ofClient(client).length };
    });
  }

  /** The fileset named `name`, which must be online. */
  private async ref(name: string): Promise<FilesetRef> {
    const { record, fs } = await this.filesets.find(name);
    if (fs.state !== 'online') throw new MangroveError('E_OFFLINE', `fileset ${name} is ${fs.state}${fs.state === 'offline' ? ' (mangrove fs fileset online brings it back)' : ''}`);
    return { addr: record.addr, fs };
  }

  private handle(id: string, client: string): Handle {
    const h = this.handles.get(id, client);
    h.heardMs = this.deps.clock.now();
    return h;
  }

  private async remove(fs: string, path: string, dir: boolean, txn: string | undefined): Promise<void> {
    const ref = await this.ref(fs);
    const { dir: parent, name } = await resolveParent(this.ctx, ref, path);
    await names.unlink(this.ctx, ref, parent, name, dir, txn);
  }

  /** Entries of the directory at `path` from `cookie` on: their duplicated attributes, no inode read (M19). */
  private async readdir(ref: FilesetRef, path: string, cookie: number, max: number): Promise<{ entries: FsDirEntry[]; next: number | null }> {
    const r = await resolve(this.ctx, ref, path, true);
    const listing = async (d: typeof r.inode) => list(dirOf(d, 'the path'), new DirPages(this.ctx, d, r.addr), cookie, max);
    const got = r.inode.mark ? await withDirs(this.ctx, ref, [r.addr], async (dirs) => listing(dirs.get(r.addr)!)) : await listing(r.inode);
    const entries = got.entries.map((e) => ({
      name: e.name,
      ino: e.ino,
      type: e.type,
      mode: typeBits(e.type) | e.mode,
      uid: e.uid,
      gid: e.gid,
      nlink: e.nlink,
      size: e.size,
      // The entry holds no allocation: its size in whole pages stands in (stat reads the inode's).
      blocks: Math.ceil(e.size / PAGE_BYTES) * (PAGE_BYTES / 512),
      atimeMs: e.atimeMs,
      mtimeMs: e.mtimeMs,
      ctimeMs: e.ctimeMs,
      birthtimeMs: e.btimeMs,
    }));
    return { entries, next: got.next };
  }

  private async setattr(ref: FilesetRef, o: Extract<ClientFsOp, { op: 'setattr' }>): Promise<unknown> {
    if (ref.fs.attrs.readOnly) throw new MangroveError('E_READ_ONLY', `fileset ${ref.fs.name} is read-only (mangrove fs fileset set ${ref.fs.name} --read-write changes that)`);
    const r = await resolve(this.ctx, ref, o.path, o.follow ?? true);
    const i = await this.locks.with([r.addr], async () => {
      const i = await this.ctx.pages.inode(r.addr);
      if (o.mode !== undefined) i.mode = o.mode;
      if (o.uid !== undefined) i.uid = o.uid;
      if (o.gid !== undefined) i.gid = o.gid;
      if (o.atimeMs !== undefined) i.atimeMs = o.atimeMs;
      if (o.mtimeMs !== undefined) i.mtimeMs = o.mtimeMs;
      i.ctimeMs = this.ctx.wallMs();
      i.sync++;
      const u = new Update(this.ctx.pages);
      u.inode(r.addr, i);
      await u.flush();
      return i;
    });
    if (r.found) await syncEntry(this.ctx, ref, r.addr, r.parent, r.found.ref, true);
    return files.statOf(i);
  }

  private async removeStream(ref: FilesetRef, path: string, stream: string): Promise<void> {
    if (stream === ACL_STREAM) throw new MangroveError('E_BAD_ARGUMENT', 'the ACL stream belongs to every file and cannot be removed');
    const r = await resolve(this.ctx, ref, path, true);
    await this.locks.with([r.addr], async () => {
      const i = await this.ctx.pages.inode(r.addr);
      const at = i.streams.findIndex((s, k) => k >= 2 && s.name === stream);
      if (at < 0) throw new MangroveError('E_NOT_FOUND', `the file has no stream ${JSON.stringify(stream)}`);
      const [gone] = i.streams.splice(at, 1);
      i.ctimeMs = this.ctx.wallMs();
      i.sync++;
      const u = new Update(this.ctx.pages);
      u.inode(r.addr, i);
      await u.flush();
      if (gone.base !== null) await this.ctx.pages.unreserve(gone.base, 2 ** 20);
    });
  }

  private async statfs(ref: FilesetRef): Promise<{ fileset: string; totalPages: number; freePages: number; pageBytes: number }> {
    const s = (await this.ctx.pages.space()) as SpaceReport;
    const total = s.cluster?.totalDiskPages ?? s.disk.pagesMax;
    const free = s.cluster?.freeDiskPages ?? s.disk.freePages;
    // A fileset's size and free space are the whole space's (M18), counted as one replica's.
    return { fileset: ref.fs.name, totalPages: Math.floor(total / this.deps.copies), freePages: Math.floor(free / this.deps.copies), pageBytes: PAGE_BYTES };
  }

  private async freePages(): Promise<number> {
    const now = this.deps.clock.now();
    if (this.space && now - this.space.at < SPACE_TTL_MS) return this.space.free;
    const s = (await this.ctx.pages.space()) as SpaceReport;
    const free = Math.floor((s.cluster?.freeDiskPages ?? s.disk.freePages) / this.deps.copies);
    this.space = { at: now, free };
    return free;
  }

  // ---- byte-range locks (M21) ----

  private async lock(h: Handle, o: Extract<ClientFsOp, { op: 'lock' }>): Promise<{ start: number; end: number; mode: string }> {
    checkRange(o.start, o.end);
    const page = await this.lockPage(h);
    const lock: RangeLock = { start: o.start, end: o.end, mode: o.mode, owner: h.id, node: this.deps.self, epoch: this.deps.epoch, key: o.key ?? 0, ...(o.advisory ? { advisory: true } : {}) };
    const out = await this.ranges.run(page, lock, 'lock', o.wait ?? false, o.waitMs ?? LOCK_WAIT_DEFAULT_MS);
    if (!out.ok) throw new MangroveError(out.code, out.message);
    h.locks.push(lock);
    return { start: o.start, end: o.end, mode: o.mode };
  }

  private async unlock(h: Handle, start: number, end: number): Promise<{ released: boolean }> {
    const held = h.locks.findIndex((l) => l.start === start && l.end === end);
    if (held < 0) throw new MangroveError('E_NOT_FOUND', `handle ${h.id} holds no lock on bytes [${start}, ${end})`);
    const i = await this.ctx.pages.inode(h.addr);
    const out = await this.ranges.run(i.lockPage!, h.locks[held], 'release', false, LOCK_WAIT_DEFAULT_MS);
    if (!out.ok) throw new MangroveError(out.code, out.message);
    h.locks.splice(held, 1);
    return { released: true };
  }

  private async releaseAll(h: Handle): Promise<void> {
    if (h.locks.length === 0) return;
    const i = await this.ctx.pages.inodeOrNull(h.addr);
    if (!i?.lockPage) return;
    for (const l of h.locks.splice(0)) {
      const out = await this.ranges.run(i.lockPage, l, 'release', false, LOCK_WAIT_DEFAULT_MS);
      if (!out.ok) this.deps.log.warn({ handle: h.id, code: out.code }, 'a byte-range lock was not released at close; it goes when this node restarts');
    }
  }

  /** The file's lock page (a volatile page, M21), allocated on its first lock. */
  private async lockPage(h: Handle): Promise<bigint> {
    const known = (await this.ctx.pages.inode(h.addr)).lockPage;
    if (known !== null) return known;
    return this.locks.with([h.addr], async () => {
      const i = await this.ctx.pages.inode(h.addr);
      if (i.lockPage !== null) return i.lockPage;
      const page = await this.ctx.pages.reserve(1);
      await this.ctx.pages.alloc(page, 1, true);
      i.lockPage = page;
      const u = new Update(this.ctx.pages);
      u.inode(h.addr, i);
      await u.flush();
      return page;
    });
  }

  // ---- clients that went away ----

  private armSweep(): void {
    this.sweep = this.deps.clock.setTimeout(() => {
      this.sweep = null;
      void this.sweepClients().finally(() => this.armSweep());
    }, LEASE_SWEEP_MS);
  }

  private async sweepClients(): Promise<void> {
    const now = this.deps.clock.now();
    for (const h of this.handles.all()) {
      const heard = Math.max(h.heardMs, this.heard.get(h.client) ?? 0);
      if (now - heard < HANDLE_LEASE_MS) continue;
      this.deps.log.warn({ handle: h.id, client: h.client }, 'a client went away: its handle is closed');
      await files.close(this.ctx, this.handles, h, (x) => this.releaseAll(x)).catch((err: unknown) => this.deps.log.warn({ handle: h.id, err: String(err) }, 'closing a lost handle failed'));
    }
    for (const [client, at] of this.heard) if (now - at >= HANDLE_LEASE_MS) this.heard.delete(client);
  }
}
