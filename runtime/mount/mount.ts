/**
 * A POSIX mount of one fileset (SPEC.md M28): the fileset under a directory
 * through FUSE, for programs that know nothing of Mangrove. `startMount`
 * checks the directory and the fileset, connects (session.ts), mounts, and
 * returns the running mount; `stop` closes its files and unmounts.
 *
 * Caching, as documented in docs/mount.md: attributes are not cached
 * (attr_timeout=0), names for 1 s (entry_timeout=1; a name another mount
 * removed is refused by the node when used), missing names not at all; the
 * page cache of a file opened to read is dropped at every open, and a file
 * opened to write has none (direct I/O, set by the addon). So after `close`
 * on one mount, an `open` on any other sees the data (close-to-open), and
 * `stat` sees every size change at once.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { MangroveError } from '../../bus/errors.js';
import type { FilesetInfo } from '../../bus/messages/fs.js';
import type { Logger } from '../node/logger.js';
import { OpenFiles } from './open-files.js';
import { buildOps } from './ops.js';
import { MountSession } from './session.js';
import { MountStats } from './stats.js';
import { errnoName, errnoOf } from './errno.js';
import { loadFuseExtras, setExtrasHandler } from './fuse-extras.js';
import { PosixLocks } from './posix-locks.js';

export interface MountOptions {
  dir: string;
  /** Nodes to use, in order of preference; the mount learns the others from the node database. */
  endpoints: string[];
  fileset: string;
  log: Logger;
  /** Mount on a directory that is not empty (its files are hidden while mounted). */
  nonEmpty?: boolean;
  /** One try of one call (a node that does not answer in this long is left for another). */
  timeoutMs?: number;
}

/** FUSE options (libfuse 2.9), see the file comment for the caching they choose. */
export const FUSE_OPTIONS = {
  attrTimeoutS: 0,
  entryTimeoutS: 1,
  negativeTimeoutS: 0,
  /** The kernel's largest write request with big_writes (32 pages). */
  maxWriteBytes: 128 * 1024,
} as const;

/** The FUSE binding, loaded with the lock extension in front of it (posix-locks.ts). */
interface FuseBinding {
  new (mnt: string, ops: object, opts: object): FuseInstance;
  unmount(mnt: string, cb: (err: Error | null) => void): void;
}
interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  _fuseOptions(): string;
}

export class Mount {
  private stopping: Promise<void> | null = null;

  constructor(
    readonly dir: string,
    readonly fileset: string,
    readonly id: string,
    readonly session: MountSession,
    readonly stats: MountStats,
    private readonly files: OpenFiles,
    private readonly fuse: FuseInstance,
    private readonly log: Logger,
  ) {}

  /** Closes the open files on the node and unmounts (lazily: a program still inside lets go when it leaves). */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ dir: this.dir }, 'unmounting');
      await this.files.closeAll();
      await new Promise<void>((res) => this.fuse.unmount((err) => (err ? (this.log.warn({ err: String(err) }, 'fusermount failed; the mount may already be gone'), res()) : res())));
      await this.session.close();
      this.log.info({ dir: this.dir, ...this.stats.report() }, 'unmounted');
    })();
    return this.stopping;
  }
}

export async function startMount(opts: MountOptions): Promise<Mount> {
  const dir = resolvePath(opts.dir);
  checkMountPoint(dir, opts.nonEmpty ?? false);
  const stats = new MountStats();
  const id = `mount-${randomBytes(6).toString('hex')}`;
  const session = await MountSession.open({
    endpoints: opts.endpoints,
    mount: { id, dir, fileset: opts.fileset, startedMs: Date.now() },
    stats,
    log: opts.log,
    timeoutMs: opts.timeoutMs,
  });
  try {
    await checkFileset(session, opts.fileset);
    const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const files = new OpenFiles(session, opts.fileset, owner);
    const { ops, utimens } = buildOps({
      session,
      files,
      fileset: opts.fileset,
      stats,
      owner,
      onError: (op, path, err) => opts.log.warn({ op, path, errno: errnoName(errnoOf(err)), err: String(err) }, 'an operation failed'),
    });
    // The addon goes in front of the binding: it must be loaded first.
    try {
      loadFuseExtras();
    } catch (err) {
      throw new MangroveError('E_UNSUPPORTED', `${err instanceof Error ? err.message : String(err)} (it needs Debian's libfuse-dev and fuse)`);
    }
    const locks = new PosixLocks(files, opts.log);
    setExtrasHandler(async (req, signal) => (req.kind === 'utimens' ? { errno: await utimens(req) } : locks.handle(req, signal)));
    const Fuse = loadFuse();
    const fuse = new Fuse(dir, ops, { timeout: false, fsname: `mangrove:${opts.fileset}`, subtype: 'mangrove', nonEmpty: opts.nonEmpty ?? false });
    // fuse-native has no settings for these; its option string is extended.
    const base = fuse._fuseOptions.bind(fuse);
    fuse._fuseOptions = () => {
      const extra = [
        'use_ino',
        'big_writes',
        `max_write=${FUSE_OPTIONS.maxWriteBytes}`,
        `attr_timeout=${FUSE_OPTIONS.attrTimeoutS}`,
        `entry_timeout=${FUSE_OPTIONS.entryTimeoutS}`,
        `negative_timeout=${FUSE_OPTIONS.negativeTimeoutS}`,
      ].join(',');
      const given = base();
      return given === '' ? `-o${extra}` : `${given},${extra}`;
    };
    await new Promise<void>((res, rej) => fuse.mount((err) => (err ? rej(new MangroveError('E_BUSY', `cannot mount on ${dir}: ${err.message}`)) : res())));
    opts.log.info({ dir, fileset: opts.fileset, node: session.endpoint, id }, 'mounted');
    return new Mount(dir, opts.fileset, id, session, stats, files, fuse, opts.log);
  } catch (err) {
    await session.close();
    throw err;
  }
}

/** Refuses a mount point that is missing, no directory, already mounted on, or (unless asked) not empty. */
export function checkMountPoint(dir: string, nonEmpty: boolean): void {
  if (!existsSync(dir)) throw new MangroveError('E_NOT_FOUND', `the mount point ${dir} does not exist (make it first: mkdir -p ${dir})`);
  if (!statSync(dir).isDirectory()) throw new MangroveError('E_NOT_DIR', `the mount point ${dir} is not a directory`);
  if (isMountPoint(dir)) throw new MangroveError('E_BUSY', `${dir} is already a mount point (unmount it first: mangrove umount ${dir})`);
  if (!nonEmpty && readdirSync(dir).length > 0) throw new MangroveError('E_NOT_EMPTY', `the mount point ${dir} is not empty (its files would be hidden; pass --non-empty to mount anyway)`);
}

/** Whether something is mounted on `dir` (an absolute path), from /proc/self/mountinfo. */
export function isMountPoint(dir: string): boolean {
  return mountPoints().includes(dir);
}

function mountPoints(): string[] {
  // Field 5 is the mount point, with spaces and the like written as octal escapes.
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

async function checkFileset(session: MountSession, name: string): Promise<void> {
  const all = await session.call<FilesetInfo[]>({ op: 'fileset_list' });
  const fs = all.find((f) => f.name === name);
  if (fs === undefined) throw new MangroveError('E_NOT_FOUND', `no fileset ${JSON.stringify(name)} (there are ${all.map((f) => f.name).join(', ') || 'none'}; make it with: mangrove fs fileset create ${name})`);
  if (fs.state !== 'online') throw new MangroveError('E_OFFLINE', `the fileset ${JSON.stringify(name)} is ${fs.state} (bring it online: mangrove fs fileset online ${name})`);
}

/** The FUSE binding; a clear error when it was not built (it needs Debian's libfuse-dev at install). */
function loadFuse(): FuseBinding {
  try {
    const require = createRequire(import.meta.url);
    return require('@cocalc/fuse-native') as FuseBinding;
  } catch (err) {
    throw new MangroveError('E_UNSUPPORTED', `the FUSE binding @cocalc/fuse-native did not load (on Debian: apt-get install libfuse-dev fuse, then npm ci): ${String(err)}`);
  }
}
