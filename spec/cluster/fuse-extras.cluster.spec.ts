/**
 * fcntl and flock locks, and utimens, on a real FUSE mount reach the handler of
 * runtime/mount/fuse-extras.ts. This process mounts a tiny in-memory file
 * system with @cocalc/fuse-native; python3 child processes take, test, wait
 * for and drop locks on it (the mount's own process does no file I/O on its
 * mount). The handler records each request and keeps a small lock table, so
 * every conflict is decided in JavaScript, as a cluster-wide one would be.
 */
import { expect } from 'chai';
import { spawn, execFile, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type * as FuseModule from '@cocalc/fuse-native';
import { loadFuseExtras, setExtrasHandler, fuseExtrasLoaded, type LockAnswer, type LockRequest, type UtimensRequest } from '../../runtime/mount/fuse-extras.js';
import { until } from '../helpers/until.js';

const EAGAIN = -11;
const EINTR = -4;
const STEP_MS = 10_000;

type Fuse = FuseModule.default;

/** One python3 process with the file open read-write, doing one JSON command a line. */
const LOCKER = String.raw`
import errno, fcntl, json, os, signal, struct, sys

class Alarm(Exception):
    pass

def ring(signum, frame):
    raise Alarm()

signal.signal(signal.SIGALRM, ring)
FLOCK = 'hhqqi4x'
TYPES = {'read': fcntl.F_RDLCK, 'write': fcntl.F_WRLCK, 'unlock': fcntl.F_UNLCK}
NAMES = {v: k for k, v in TYPES.items()}
MODES = {'shared': fcntl.LOCK_SH, 'exclusive': fcntl.LOCK_EX, 'unlock': fcntl.LOCK_UN}
fd = os.open(sys.argv[1], os.O_RDWR)
for line in sys.stdin:
    c = json.loads(line)
    out = {'ok': True}
    try:
        signal.setitimer(signal.ITIMER_REAL, c.get('alarm', 0))
        if c['op'] == 'fcntl':
            cmd = fcntl.F_SETLKW if c.get('wait') else fcntl.F_SETLK
            fcntl.fcntl(fd, cmd, struct.pack(FLOCK, TYPES[c['type']], os.SEEK_SET, c['start'], c['len'], 0))
        elif c['op'] == 'getlk':
            asked = struct.pack(FLOCK, TYPES[c['type']], os.SEEK_SET, c['start'], c['len'], 0)
            t, _, start, length, pid = struct.unpack(FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, asked))
            out = {'type': NAMES[t], 'start': start, 'len': length, 'pid': pid}
        elif c['op'] == 'flock':
            fcntl.flock(fd, MODES[c['mode']] | (0 if c.get('wait') else fcntl.LOCK_NB))
        elif c['op'] == 'close':
            os.close(fd)
    except Alarm:
        out = {'error': 'interrupted'}
    except OSError as e:
        out = {'error': errno.errorcode[e.errno]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    print(json.dumps(out), flush=True)
`;

type Command =
  | { op: 'fcntl'; type: 'read' | 'write' | 'unlock'; start: number; len: number; wait?: boolean; alarm?: number }
  | { op: 'getlk'; type: 'read' | 'write'; start: number; len: number }
  | { op: 'flock'; mode: 'shared' | 'exclusive' | 'unlock'; wait?: boolean }
  | { op: 'close' };

type Outcome = { ok: true } | { error: string } | { type: string; start: number; len: number; pid: number };

class Locker {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private stderr = '';

  constructor(file: string) {
    this.child = spawn('python3', ['-c', LOCKER, file]);
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Resolves when the command has returned in the child; fails after STEP_MS. */
  async do(command: Command): Promise<Outcome> {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${JSON.stringify(command)} did not return within ${STEP_MS} ms`)), STEP_MS);
    });
    try {
      const line = await Promise.race([this.lines.next(), late]);
      if (line.done) throw new Error(`the locker ended: ${this.stderr}`);
      return JSON.parse(line.value) as Outcome;
    } finally {
      clearTimeout(timer);
    }
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** A lock the handler holds: its end is inclusive, Infinity to the end of the file. */
interface Held {
  path: string;
  kind: 'posix' | 'flock';
  owner: bigint;
  write: boolean;
  start: number;
  end: number;
  pid: number;
}

/** The handler: records every request and decides conflicts from its own table. */
class LockTable {
  readonly seen: LockRequest[] = [];
  readonly aborted: LockRequest[] = [];
  readonly held: Held[] = [];
  private readonly waiting = new Set<() => boolean>();

  readonly handle = async (req: LockRequest, signal: AbortSignal): Promise<LockAnswer> => {
    this.seen.push(req);
    const whole = { start: 0, end: Infinity, pid: 0 };
    const range =
      req.kind === 'posix' ? { start: req.start, end: req.len === 0 ? Infinity : req.start + req.len - 1, pid: req.pid } : whole;
    const type = req.kind === 'posix' ? req.type : req.op === 'unlock' ? 'unlock' : req.op === 'exclusive' ? 'write' : 'read';
    const lock: Held = { path: req.path, kind: req.kind, owner: req.owner, write: type === 'write', ...range };
    if (type === 'unlock') {
      this.drop(lock);
      return { errno: 0 };
    }
    if (req.kind === 'posix' && req.cmd === 'getlk') {
      const c = this.conflict(lock);
      const getlk = c
        ? { type: c.write ? ('write' as const) : ('read' as const), start: c.start, len: c.end === Infinity ? 0 : c.end - c.start + 1, pid: c.pid }
        : { type: 'unlock' as const, start: req.start, len: req.len, pid: 0 };
      return { errno: 0, getlk };
    }
    const wait = req.kind === 'posix' ? req.cmd === 'setlkw' : !req.nonblock;
    return this.acquire(lock, wait, req, signal);
  };

  private conflict(lock: Held): Held | undefined {
    return this.held.find(
      (h) => h.path === lock.path && h.kind === lock.kind && h.owner !== lock.owner && (h.write || lock.write) && h.start <= lock.end && lock.start <= h.end,
    );
  }

  /** Unlocks drop every lock of the owner they overlap (no splitting: the spec needs none). */
  private drop(unlock: Held): void {
    for (let i = this.held.length - 1; i >= 0; i--) {
      const h = this.held[i];
      if (h.path === unlock.path && h.kind === unlock.kind && h.owner === unlock.owner && h.start <= unlock.end && unlock.start <= h.end) {
        this.held.splice(i, 1);
      }
    }
    for (const attempt of [...this.waiting]) if (attempt()) this.waiting.delete(attempt);
  }

  private acquire(lock: Held, wait: boolean, req: LockRequest, signal: AbortSignal): Promise<LockAnswer> {
    return new Promise((resolve) => {
      const attempt = (): boolean => {
        if (this.conflict(lock)) return false;
        this.held.push(lock);
        resolve({ errno: 0 });
        return true;
      };
      if (attempt()) return;
      if (!wait) return resolve({ errno: EAGAIN });
      this.waiting.add(attempt);
      signal.addEventListener('abort', () => {
        if (!this.waiting.delete(attempt)) return;
        this.aborted.push(req);
        resolve({ errno: EINTR });
      });
    });
  }
}

describe('the FUSE addon on a real mount: fcntl and flock locks, and utimens, reach its handler', function () {
  this.timeout(60_000);
  const table = new LockTable();
  const times: UtimensRequest[] = [];
  const lockers: Locker[] = [];
  const handles = new Set<number>();
  let dir = '';
  let file = '';
  let fuse: Fuse | undefined;

  function locker(): Locker {
    const l = new Locker(file);
    lockers.push(l);
    return l;
  }

  function requests(filter: (r: LockRequest) => boolean): LockRequest[] {
    return table.seen.filter(filter);
  }

  before(async () => {
    loadFuseExtras();
    expect(fuseExtrasLoaded()).to.equal(true);
    setExtrasHandler(async (req, signal) => {
      if (req.kind !== 'utimens') return table.handle(req, signal);
      times.push(req);
      return { errno: 0 };
    });
    // Imported only now, after loadFuseExtras. The typings declare an ES default export, but the
    // package is CommonJS: the default the import gives is the class itself.
    const { default: loaded } = await import('@cocalc/fuse-native');
    const FuseNative = loaded as unknown as typeof loaded.default;
    dir = await mkdtemp(join(tmpdir(), 'mangrove-fuse-locks-'));
    file = join(dir, 'shared');
    fuse = new FuseNative(dir, memoryFileSystem(handles), { force: true });
    const mounted = fuse;
    await bounded('the mount', new Promise<void>((resolve, reject) => mounted.mount((err) => (err ? reject(err) : resolve()))));
  });

  afterEach(() => {
    for (const l of lockers.splice(0)) l.stop();
    table.held.splice(0);
  });

  after(async () => {
    const mounted = fuse;
    if (mounted) {
      await bounded('the unmount', new Promise<void>((resolve) => mounted.unmount(() => resolve()))).catch(() => undefined);
    }
    if (!dir) return;
    // Whatever fuse-native's unmount did, the mount point is let go of.
    await new Promise<void>((resolve) => execFile('fusermount', ['-uz', dir], { timeout: STEP_MS }, () => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('hands an fcntl write lock over with its range and owner, refuses a conflicting one with EAGAIN, and unlocks at close', async () => {
    const a = locker();
    const b = locker();
    expect(await a.do({ op: 'fcntl', type: 'write', start: 10, len: 100 })).to.deep.equal({ ok: true });
    const [taken] = requests((r) => r.kind === 'posix' && r.cmd === 'setlk' && r.type === 'write');
    expect(taken).to.include({ kind: 'posix', path: '/shared', cmd: 'setlk', type: 'write', start: 10, len: 100, pid: a.pid });
    expect(handles.has(taken.fh), 'fh is a handle open gave out').to.equal(true);
    expect(taken.owner).to.be.a('bigint').and.not.equal(0n);

    expect(await b.do({ op: 'fcntl', type: 'write', start: 50, len: 10 })).to.deep.equal({ error: 'EAGAIN' });
    const refused = requests((r) => r.kind === 'posix' && r.cmd === 'setlk' && r.type === 'write' && r.pid === b.pid);
    expect(refused).to.have.length(1);
    expect(refused[0].owner, "another process's owner").to.not.equal(taken.owner);

    expect(await a.do({ op: 'close' })).to.deep.equal({ ok: true });
    const unlocks = requests((r) => r.kind === 'posix' && r.type === 'unlock' && r.owner === taken.owner);
    expect(unlocks, 'the close sent an unlock of the whole file').to.have.length.at.least(1);
    expect(unlocks[0]).to.include({ cmd: 'setlk', start: 0, len: 0 });
    expect(table.held.filter((h) => h.kind === 'posix')).to.deep.equal([]);
    expect(await b.do({ op: 'fcntl', type: 'write', start: 50, len: 10 })).to.deep.equal({ ok: true });
    expect(await b.do({ op: 'close' })).to.deep.equal({ ok: true });
  });

  it('answers F_GETLK from the handler, with the holder it names', async () => {
    const c = locker();
    // A lock the handler knows of but libfuse's own table does not, as one held on another node.
    // The kernel maps the pid through this host's pid namespace, so a pid of no process here comes back 0.
    table.held.push({ path: '/shared', kind: 'posix', owner: 1n, write: false, start: 1000, end: 1009, pid: process.pid });
    expect(await c.do({ op: 'getlk', type: 'write', start: 0, len: 0 })).to.deep.equal({ type: 'read', start: 1000, len: 10, pid: process.pid });
    expect(await c.do({ op: 'getlk', type: 'read', start: 0, len: 0 })).to.include({ type: 'unlock' });
    expect(requests((r) => r.kind === 'posix' && r.cmd === 'getlk')).to.have.length(2);
    expect(await c.do({ op: 'close' })).to.deep.equal({ ok: true });
  });

  it('hands flock LOCK_EX|LOCK_NB over, refuses a conflicting one, and unlocks it at close', async () => {
    const a = locker();
    const b = locker();
    expect(await a.do({ op: 'flock', mode: 'exclusive' })).to.deep.equal({ ok: true });
    const [taken] = requests((r) => r.kind === 'flock' && r.op === 'exclusive');
    expect(taken).to.include({ kind: 'flock', path: '/shared', op: 'exclusive', nonblock: true });
    expect(handles.has(taken.fh)).to.equal(true);

    expect(await b.do({ op: 'flock', mode: 'exclusive' })).to.deep.equal({ error: 'EAGAIN' });
    const refused = requests((r) => r.kind === 'flock' && r.op === 'exclusive' && r.owner !== taken.owner);
    expect(refused).to.have.length(1);

    expect(await a.do({ op: 'close' })).to.deep.equal({ ok: true });
    const unlock = await until('the flock unlock of the closed file', () =>
      requests((r) => r.kind === 'flock' && r.op === 'unlock' && r.owner === taken.owner)[0],
    );
    expect(unlock).to.include({ path: '/shared', op: 'unlock' });
    expect(table.held).to.deep.equal([]);
    expect(await b.do({ op: 'flock', mode: 'exclusive' })).to.deep.equal({ ok: true });
    expect(await b.do({ op: 'close' })).to.deep.equal({ ok: true });
  });

  it('hands utimens over with both times, "now" and "leave as it is" kept apart', async () => {
    const touch = (...args: string[]) => new Promise<void>((resolve, reject) => execFile('touch', [...args, file], { timeout: STEP_MS }, (err) => (err ? reject(err) : resolve())));
    await touch('-m', '-d', '@1000000000.5');
    await touch('-a', '-d', '@2000000000');
    await touch();
    const asked = times.map(({ atimeMs, mtimeMs }) => [atimeMs, mtimeMs]);
    expect(asked).to.deep.equal([
      [null, 1_000_000_000_500],
      [2_000_000_000_000, null],
      ['now', 'now'],
    ]);
    expect(times.every((t) => t.path === '/shared')).to.equal(true);
  });

  it('keeps an F_SETLKW waiting until the lock is free, and ends one whose process is interrupted with EINTR', async () => {
    const a = locker();
    const b = locker();
    const c = locker();
    expect(await a.do({ op: 'fcntl', type: 'write', start: 0, len: 0 })).to.deep.equal({ ok: true });
    const granted = b.do({ op: 'fcntl', type: 'write', start: 0, len: 1, wait: true });
    await until('the waiting F_SETLKW', () => requests((r) => r.kind === 'posix' && r.cmd === 'setlkw' && r.pid === b.pid)[0]);

    expect(await c.do({ op: 'fcntl', type: 'read', start: 0, len: 1, wait: true, alarm: 0.5 })).to.deep.equal({ error: 'interrupted' });
    expect(table.aborted).to.have.length(1);
    expect(table.aborted[0]).to.include({ kind: 'posix', cmd: 'setlkw', type: 'read', pid: c.pid });

    expect(await a.do({ op: 'fcntl', type: 'unlock', start: 0, len: 0 })).to.deep.equal({ ok: true });
    expect(await granted).to.deep.equal({ ok: true });
    for (const l of [a, b, c]) expect(await l.do({ op: 'close' })).to.deep.equal({ ok: true });
    expect(table.held).to.deep.equal([]);
  });
});

/** Fails with `what` when the promise takes longer than STEP_MS. */
async function bounded<T>(what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${STEP_MS} ms`)), STEP_MS);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** One empty file, /shared, in memory; the handles open gives out go into `handles`. */
function memoryFileSystem(handles: Set<number>): FuseModule.default.OPERATIONS {
  const files = new Map<string, Buffer>([['/shared', Buffer.alloc(0)]]);
  let lastHandle = 10;
  const handle = (): number => {
    handles.add(++lastHandle);
    return lastHandle;
  };
  const stat = (mode: number, size: number): FuseModule.default.Stats => {
    const now = new Date();
    return { mode, size, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, nlink: 1, dev: 0, ino: 0, rdev: 0, blksize: 4096, blocks: Math.ceil(size / 512), atime: now, mtime: now, ctime: now };
  };
  return {
    getattr(path, cb) {
      if (path === '/') return cb(0, stat(0o40755, 0));
      const data = files.get(path);
      return data ? cb(0, stat(0o100644, data.length)) : cb(-2);
    },
    readdir(_path, cb) {
      cb(0, [...files.keys()].map((p) => p.slice(1)));
    },
    open(path, _flags, cb) {
      return files.has(path) ? cb(0, handle()) : cb(-2);
    },
    create(path, _mode, cb) {
      files.set(path, Buffer.alloc(0));
      cb(0, handle());
    },
    read(path, _fd, buffer, length, position, cb) {
      const data = files.get(path) ?? Buffer.alloc(0);
      cb(data.copy(buffer, 0, position, Math.min(data.length, position + length)));
    },
    write(path, _fd, buffer, length, position, cb) {
      const data = files.get(path) ?? Buffer.alloc(0);
      const grown = Buffer.alloc(Math.max(data.length, position + length));
      data.copy(grown);
      buffer.copy(grown, position, 0, length);
      files.set(path, grown);
      cb(length);
    },
    // A stand-in: the addon replaces it, and the spec's handler answers instead.
    utimens(_path, _atime, _mtime, cb) {
      cb(-5);
    },
    release(_path, _fd, cb) {
      cb(0);
    },
    truncate(path, size, cb) {
      const data = files.get(path) ?? Buffer.alloc(0);
      const cut = Buffer.alloc(size);
      data.copy(cut, 0, 0, size);
      files.set(path, cut);
      cb(0);
    },
  };
}
