/**
 * The file system in the simulator (SPEC.md M18-M22): what two clients on
 * different nodes see of each other's files, an atomic rename watched from a
 * third, byte-range locks across nodes, the two-phase delete, bad input
 * refused with its code and nothing changed, and histories of file contents
 * and directory listings from concurrent clients on several nodes, under
 * message loss, duplication, reordering and pauses, checked linearizable
 * (a file as a durable register of its content, a directory as a set of
 * names; runtime/conformance/linearizability/). A failing seed is printed;
 * `MANGROVE_SEED=S` replays one, `DEBUG_FS=1` prints each run's figures.
 */
import { expect } from 'chai';
import { MangroveError } from '../../bus/errors.js';
import type { ClientFsOp, FsDirEntry, FsStat } from '../../bus/messages/fs.js';
import { STREAM_BYTES_MAX } from '../../machines/fs/stream.js';
import { checkLinearizable } from '../../runtime/conformance/linearizability/search.js';
import { durableRegisterModel, type DurableOp } from '../../runtime/conformance/linearizability/durable-register.js';
import { dirSetModel, type DirOp, type DirOutput } from '../../runtime/conformance/linearizability/dir-set.js';
import { SeededRandom } from '../../runtime/world/random.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';
import { formedCluster } from '../helpers/page-workload.js';
import { forSeedsAsync } from '../helpers/sim-checks.js';
import { fsCall, fsCode, fsSoon, getFile, names, putFile } from '../helpers/fs-workload.js';

const text = (s: string) => new TextEncoder().encode(s);

/** As fsCode, with refusals for a rebuild waited out. */
async function fsCodeSoon(c: SimCluster, i: number, op: ClientFsOp, client: string): Promise<string> {
  for (let tries = 0; ; tries++) {
    const code = await fsCode(c, i, op, client);
    if (code !== 'E_RECOVERING' || tries > 100) return code;
    await c.runAsync(200);
  }
}
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

interface CheckReport {
  repairs: string[];
  problems: string[];
  clean: boolean;
}

describe('file system in the simulator', function () {
  this.timeout(300_000);

  it('a file written and fsynced through one node is read exactly through another, and its listing shows it without an inode read', async () => {
    const c = await formedCluster(21, 3);
    const data = new Uint8Array(3 * 4096 + 123).map((_, i) => (i * 7) & 0xff);
    await fsSoon(c, 0, { op: 'mkdir', fs: 'default', path: '/docs' });
    await putFile(c, 0, '/docs/report', data, 'writer');
    expect(await getFile(c, 2, '/docs/report', 'reader')).to.deep.equal(data);
    const ls = await fsSoon<{ entries: FsDirEntry[] }>(c, 1, { op: 'readdir', fs: 'default', path: '/docs' });
    expect(ls.entries.map((e) => [e.name, e.type, e.size])).to.deep.equal([['report', 'file', data.length]]);
    // Sparse: a write far past the end leaves zeros between.
    const { handle } = await fsSoon<{ handle: string }>(c, 1, { op: 'open', fs: 'default', path: '/docs/report', write: true, read: true }, 'w2');
    await fsSoon(c, 1, { op: 'write', handle, offset: 1_000_000, data: text('end') }, 'w2');
    const mid = await fsSoon<{ data: Uint8Array }>(c, 2, { op: 'read', handle: (await fsSoon<{ handle: string }>(c, 2, { op: 'open', fs: 'default', path: '/docs/report' }, 'r2')).handle, offset: 500_000, length: 10 }, 'r2');
    expect([...mid.data]).to.deep.equal(new Array(10).fill(0));
    const st = await fsSoon<FsStat>(c, 0, { op: 'stat', fs: 'default', path: '/docs/report' });
    expect(st.size).to.equal(1_000_003);
    await c.stopAll();
  });

  it('a rename is atomic for a reader on a third node: it sees the old name or the new, never neither or both', async () => {
    const c = await formedCluster(22, 3);
    await fsSoon(c, 0, { op: 'mkdir', fs: 'default', path: '/r' });
    await putFile(c, 0, '/r/a', text('payload'));
    const seen: string[] = [];
    let done = false;
    const reader = (async () => {
      while (!done) {
        const ls = (await fsCall<{ entries: FsDirEntry[] }>(c, 2, { op: 'readdir', fs: 'default', path: '/r' }, 'reader')).entries.map((e) => e.name);
        seen.push(ls.join(','));
        await new Promise<void>((r) => c.clock.setTimeout(() => r(), 1));
      }
    })();
    for (let i = 0; i < 20; i++) {
      const [from, to] = i % 2 === 0 ? ['/r/a', '/r/b'] : ['/r/b', '/r/a'];
      await fsCall(c, 1, { op: 'rename', fs: 'default', from, to }, 'mover');
    }
    done = true;
    await c.settle(reader);
    expect(seen.length).to.be.greaterThan(20);
    expect([...new Set(seen)].sort()).to.deep.equal(['a', 'b']);
    expect(decode(await getFile(c, 2, '/r/a'))).to.equal('payload');
    await c.stopAll();
  });

  it('byte-range locks exclude across nodes: a conflict fails at once (E_LOCKED) or waits for the release', async () => {
    const c = await formedCluster(23, 3);
    await putFile(c, 0, '/db', new Uint8Array(100));
    const open = async (i: number, client: string) => (await fsSoon<{ handle: string }>(c, i, { op: 'open', fs: 'default', path: '/db', read: true, write: true }, client)).handle;
    const h1 = await open(1, 'one');
    const h2 = await open(2, 'two');
    await fsSoon(c, 1, { op: 'lock', handle: h1, start: 0, end: 50, mode: 'exclusive' }, 'one');
    expect(await fsCode(c, 2, { op: 'lock', handle: h2, start: 40, end: 60, mode: 'shared' }, 'two')).to.equal('E_LOCKED');
    // Beyond the end of the file is a range like any other, and disjoint ranges do not conflict.
    await fsSoon(c, 2, { op: 'lock', handle: h2, start: 50, end: 10_000, mode: 'exclusive' }, 'two');
    // A lock is checked on every read and write of another handle.
    expect(await fsCode(c, 2, { op: 'write', handle: h2, offset: 10, data: text('x') }, 'two')).to.equal('E_LOCKED');
    expect(await fsCode(c, 2, { op: 'read', handle: h2, offset: 0, length: 10 }, 'two')).to.equal('E_LOCKED');
    const waiting = c.node(2)!.fs.call({ op: 'lock', handle: h2, start: 0, end: 10, mode: 'exclusive', wait: true, waitMs: 20_000 }, 'two');
    let granted = false;
    waiting.then(() => (granted = true), () => undefined);
    await c.runAsync(500);
    expect(granted, 'the waiter waits while the lock is held').to.equal(false);
    await fsSoon(c, 1, { op: 'unlock', handle: h1, start: 0, end: 50 }, 'one');
    await c.settle(waiting);
    expect(granted).to.equal(true);
    // Closing a handle gives its locks back.
    await fsSoon(c, 2, { op: 'close', handle: h2 }, 'two');
    await fsSoon(c, 1, { op: 'lock', handle: h1, start: 0, end: 100, mode: 'exclusive' }, 'one');
    await c.stopAll();
  });

  it('a node that fails takes its byte-range locks with it: the waiter on another node gets the lock', async () => {
    const c = await formedCluster(24, 4);
    await putFile(c, 0, '/shared', new Uint8Array(10));
    const h3 = (await fsSoon<{ handle: string }>(c, 3, { op: 'open', fs: 'default', path: '/shared', write: true }, 'three')).handle;
    const h2 = (await fsSoon<{ handle: string }>(c, 2, { op: 'open', fs: 'default', path: '/shared', write: true }, 'two')).handle;
    await fsSoon(c, 3, { op: 'lock', handle: h3, start: 0, end: 10, mode: 'exclusive' }, 'three');
    c.crash(3);
    const got = await fsSoon(c, 2, { op: 'lock', handle: h2, start: 0, end: 10, mode: 'exclusive', wait: true, waitMs: 30_000 }, 'two', 120_000);
    expect(got).to.deep.equal({ start: 0, end: 10, mode: 'exclusive' });
    await c.stopAll();
  });

  it('a live node\'s byte-range lock outlives the failure of the node that held the lock page\'s newest copy', async () => {
    const c = await formedCluster(28, 4);
    await putFile(c, 0, '/locked', new Uint8Array(100));
    const open = async (i: number, client: string) => (await fsSoon<{ handle: string }>(c, i, { op: 'open', fs: 'default', path: '/locked', read: true, write: true }, client)).handle;
    const h2 = await open(2, 'two');
    const h3 = await open(3, 'three');
    const h0 = await open(0, 'zero');
    await fsSoon(c, 2, { op: 'lock', handle: h2, start: 0, end: 10, mode: 'exclusive' }, 'two');
    // Node 3 writes the lock page last: its copy is the newest, and it dies with it.
    await fsSoon(c, 3, { op: 'lock', handle: h3, start: 20, end: 30, mode: 'exclusive' }, 'three');
    c.crash(3);
    await c.runAsync(15_000);
    expect(await fsCodeSoon(c, 0, { op: 'lock', handle: h0, start: 0, end: 5, mode: 'exclusive' }, 'zero'), 'node 2 still holds bytes 0-9').to.equal('E_LOCKED');
    await fsSoon(c, 0, { op: 'lock', handle: h0, start: 20, end: 30, mode: 'exclusive' }, 'zero');
    await c.stopAll();
  });

  it('fsync fails (E_PAGE_LOST, EIO) when its node was counted out after writes it had not made durable; written again, they are made durable', async () => {
    const c = await formedCluster(29, 4);
    await putFile(c, 0, '/journal', text('durable'));
    const h = (await fsSoon<{ handle: string }>(c, 3, { op: 'open', fs: 'default', path: '/journal', write: true }, 'writer')).handle;
    await fsSoon(c, 3, { op: 'write', handle: h, offset: 0, data: text('LOST!!!') }, 'writer');
    const resets = c.node(3)!.engine.recoveryState().resets;
    // Node 3 is cut off long enough to be counted failed: it drops its unflushed copies when it comes back.
    c.network.partition([[c.id(3)], [0, 1, 2].map((i) => c.id(i))]);
    await c.runAsync(5_000);
    c.network.heal();
    await c.runUntilAsync(() => c.node(3)!.engine.recoveryState().resets > resets, 60_000, () => 'node 3 to drop its copies');
    const err = await c.settle(fsSoon(c, 3, { op: 'fsync', handle: h }, 'writer', 60_000).then(() => null, (e: MangroveError) => e));
    expect(err?.code).to.equal('E_PAGE_LOST');
    expect(err?.posix).to.equal('EIO');
    // Written again, it is made durable as usual.
    await fsSoon(c, 3, { op: 'write', handle: h, offset: 0, data: text('again!!') }, 'writer', 60_000);
    await fsSoon(c, 3, { op: 'fsync', handle: h }, 'writer', 60_000);
    expect(decode(await getFile(c, 1, '/journal'))).to.equal('again!!');
    await c.stopAll();
  });

  it('an unlinked file open elsewhere stays readable until its last handle closes, then its pages go', async () => {
    const c = await formedCluster(25, 3);
    await putFile(c, 0, '/tmp1', text('still here'));
    const h = (await fsSoon<{ handle: string }>(c, 2, { op: 'open', fs: 'default', path: '/tmp1' }, 'holder')).handle;
    await fsSoon(c, 1, { op: 'unlink', fs: 'default', path: '/tmp1' });
    expect(await fsCode(c, 1, { op: 'stat', fs: 'default', path: '/tmp1' })).to.equal('E_NOT_FOUND');
    expect(await fsCode(c, 1, { op: 'open', fs: 'default', path: '/tmp1' })).to.equal('E_NOT_FOUND');
    const r = await fsSoon<{ data: Uint8Array }>(c, 2, { op: 'read', handle: h, offset: 0, length: 100 }, 'holder');
    expect(decode(r.data)).to.equal('still here');
    const before = await fsSoon<CheckReport>(c, 0, { op: 'check', fs: 'default', repair: false });
    expect(before.problems, 'an unlinked file still open is not a problem').to.deep.equal([]);
    await fsSoon(c, 2, { op: 'close', handle: h }, 'holder');
    const after = await fsSoon<CheckReport>(c, 0, { op: 'check', fs: 'default' });
    expect(after.repairs, 'nothing left to free after the last close').to.deep.equal([]);
    expect(after.clean).to.equal(true);
    await c.stopAll();
  });

  it('fsync of a file whose inode page an unlinked, never-fsynced file had is not held up by that file\'s freed pages', async () => {
    const c = await formedCluster(26, 3);
    const stat = async (path: string) => fsSoon<FsStat>(c, 0, { op: 'stat', fs: 'default', path });
    // Files written (not fsynced) and unlinked until one's inode page is used again by a new file.
    const seen = new Set<number>();
    for (let k = 0; ; k++) {
      expect(k, 'an inode page was used again within 20 files').to.be.lessThan(20);
      const { handle } = await fsSoon<{ handle: string }>(c, 0, { op: 'open', fs: 'default', path: `/f${k}`, write: true, create: true }, 'w');
      await fsSoon(c, 0, { op: 'write', handle, offset: 0, data: new Uint8Array(3 * 4096).fill(k) }, 'w');
      const ino = (await stat(`/f${k}`)).ino;
      const again = seen.has(ino);
      seen.add(ino);
      if (again) {
        await fsSoon(c, 0, { op: 'fsync', handle }, 'w');
        await fsSoon(c, 0, { op: 'close', handle }, 'w');
        break;
      }
      await fsSoon(c, 0, { op: 'close', handle }, 'w');
      await fsSoon(c, 0, { op: 'unlink', fs: 'default', path: `/f${k}` });
    }
    await c.stopAll();
  });

  it('refuses bad input with its code and changes nothing', async () => {
    const c = await formedCluster(26, 3);
    await fsSoon(c, 0, { op: 'mkdir', fs: 'default', path: '/d' });
    await fsSoon(c, 0, { op: 'mkdir', fs: 'default', path: '/d/sub' });
    await putFile(c, 0, '/d/file', text('keep'));
    const { handle } = await fsSoon<{ handle: string }>(c, 1, { op: 'open', fs: 'default', path: '/d/file', read: true, write: true }, 'owner');
    const cases: [string, ClientFsOp, string, string?][] = [
      ['a name of 256 bytes', { op: 'mkdir', fs: 'default', path: '/d/' + 'é'.repeat(128) }, 'E_NAME_TOO_LONG'],
      ['an empty name', { op: 'mkdir', fs: 'default', path: '/' }, 'E_BAD_NAME'],
      ['a name with NUL', { op: 'mkdir', fs: 'default', path: '/d/a\0b' }, 'E_BAD_NAME'],
      ["a name '..'", { op: 'unlink', fs: 'default', path: '/d/..' }, 'E_BAD_NAME'],
      ['a fileset that does not exist', { op: 'stat', fs: 'nosuch', path: '/' }, 'E_NOT_FOUND'],
      ['a path through a file', { op: 'mkdir', fs: 'default', path: '/d/file/x' }, 'E_NOT_DIR'],
      ['a directory moved into itself', { op: 'rename', fs: 'default', from: '/d', to: '/d/sub/d' }, 'E_BAD_ARGUMENT'],
      ['a file replacing a directory', { op: 'rename', fs: 'default', from: '/d/file', to: '/d/sub' }, 'E_IS_DIR'],
      ['rmdir of a directory with entries', { op: 'rmdir', fs: 'default', path: '/d' }, 'E_NOT_EMPTY'],
      ['unlink of a directory', { op: 'unlink', fs: 'default', path: '/d/sub' }, 'E_IS_DIR'],
      ['an exclusive create of a name taken', { op: 'open', fs: 'default', path: '/d/file', create: true, excl: true, write: true }, 'E_EXISTS'],
      ['a write past the largest file', { op: 'write', handle, offset: STREAM_BYTES_MAX, data: text('x') }, 'E_FILE_TOO_BIG', 'owner'],
      ['a negative length', { op: 'read', handle, offset: 0, length: -1 }, 'E_BAD_ARGUMENT', 'owner'],
      ['a handle of another client', { op: 'read', handle, offset: 0, length: 1 }, 'E_BAD_HANDLE', 'thief'],
      ['a handle never opened', { op: 'read', handle: `1.${c.node(1)!.settings.epoch}.999`, offset: 0, length: 1 }, 'E_BAD_HANDLE', 'owner'],
      ['a lock of an empty range', { op: 'lock', handle, start: 5, end: 5, mode: 'shared' }, 'E_BAD_ARGUMENT', 'owner'],
    ];
    for (const [what, op, code, client] of cases) expect(await fsCode(c, 1, op, client ?? 'spec'), what).to.equal(code);
    // '..' past a fileset's root stays at the root, as in POSIX.
    const viaDots = await fsSoon<FsStat>(c, 2, { op: 'stat', fs: 'default', path: '/../../d/../d/sub' });
    const direct = await fsSoon<FsStat>(c, 2, { op: 'stat', fs: 'default', path: '/d/sub' });
    expect(viaDots.ino).to.equal(direct.ino);
    // A directory opens (for reading), but its bytes are not read: readdir lists it.
    const dirHandle = (await fsSoon<{ handle: string }>(c, 1, { op: 'open', fs: 'default', path: '/d' }, 'owner')).handle;
    expect(await fsCode(c, 1, { op: 'read', handle: dirHandle, offset: 0, length: 10 }, 'owner'), 'a read of a directory').to.equal('E_IS_DIR');
    await fsSoon(c, 1, { op: 'close', handle: dirHandle }, 'owner');
    // A handle from before its node restarted, and a lock on a closed handle.
    await fsSoon(c, 1, { op: 'close', handle }, 'owner');
    expect(await fsCode(c, 1, { op: 'lock', handle, start: 0, end: 1, mode: 'shared' }, 'owner')).to.equal('E_BAD_HANDLE');
    const old = (await fsSoon<{ handle: string }>(c, 2, { op: 'open', fs: 'default', path: '/d/file' }, 'owner')).handle;
    c.crash(2);
    c.start(2);
    const again = await fsSoon<{ handle: string }>(c, 2, { op: 'open', fs: 'default', path: '/d/file' }, 'owner', 120_000);
    expect(again.handle).to.not.equal(old);
    const stale = await fsCode(c, 2, { op: 'read', handle: old, offset: 0, length: 1 }, 'owner');
    expect(stale).to.equal('E_BAD_HANDLE');
    // Nothing changed.
    expect(await names(c, 0, '/d')).to.deep.equal(['file', 'sub']);
    expect(decode(await getFile(c, 0, '/d/file'))).to.equal('keep');
    const report = await fsSoon<CheckReport>(c, 0, { op: 'check', fs: 'default' });
    expect(report.problems).to.deep.equal([]);
    await c.stopAll();
  });

  it('filesets: the default is there, others are made, taken offline (refused) and deleted with every page they held', async () => {
    const c = await formedCluster(27, 3);
    const list = async () => (await fsSoon<{ name: string; state: string }[]>(c, 1, { op: 'fileset_list' })).map((f) => `${f.name}:${f.state}`);
    expect(await list()).to.deep.equal(['default:online']);
    await fsSoon(c, 1, { op: 'fileset_create', name: 'projects' });
    expect(await fsCode(c, 2, { op: 'fileset_create', name: 'projects' })).to.equal('E_EXISTS');
    expect(await fsCode(c, 2, { op: 'fileset_create', name: 'a:b' })).to.equal('E_BAD_NAME');
    await fsSoon(c, 2, { op: 'mkdir', fs: 'projects', path: '/x' });
    const pagesBefore = c.diskOf(0).count() + c.diskOf(1).count() + c.diskOf(2).count();
    for (let i = 0; i < 5; i++) await putFile(c, 2, `/x/f${i}`, new Uint8Array(20_000).fill(i), 'spec', 'projects');
    expect(await fsCode(c, 0, { op: 'fileset_delete', name: 'projects' })).to.equal('E_BUSY');
    await fsSoon(c, 0, { op: 'fileset_state', name: 'projects', state: 'offline' });
    expect(await fsCode(c, 1, { op: 'readdir', fs: 'projects', path: '/x' })).to.equal('E_OFFLINE');
    await fsSoon(c, 0, { op: 'fileset_delete', name: 'projects' });
    expect(await list()).to.deep.equal(['default:online']);
    await c.runAsync(20_000);
    const pagesAfter = c.diskOf(0).count() + c.diskOf(1).count() + c.diskOf(2).count();
    expect(pagesAfter, 'the pages of the deleted fileset were freed on disk').to.be.lessThan(pagesBefore);
    await c.stopAll();
  });

  it('histories of file contents and directory listings from clients on several nodes are linearizable under faults', async () => {
    await forSeedsAsync([31, 32, 33, 34], async (seed) => {
      const run = await historyRun(seed);
      if (process.env.DEBUG_FS) console.log(`seed ${seed}: ${run.files.length} file ops, ${run.dirs.length} directory ops, failures ${JSON.stringify(run.failures)}`);
      const files = checkLinearizable(durableRegisterModel(run.initial), run.files, { sequentialClients: true });
      expect(files.ok, files.ok === false ? files.explanation : 'file histories decided').to.equal(true);
      const dirs = checkLinearizable(dirSetModel(), run.dirs, { sequentialClients: true });
      expect(dirs.ok, dirs.ok === false ? dirs.explanation : 'directory histories decided').to.equal(true);
      expect(run.files.filter((o) => o.ret !== undefined).length, 'file calls answered').to.be.greaterThan(25);
      expect(run.dirs.filter((o) => o.ret !== undefined).length, 'directory calls answered').to.be.greaterThan(25);
    });
  });

  it('the directory check catches a rename planted to be two steps (link, a pause, unlink)', async () => {
    let caught = 0;
    for (const seed of [41, 42, 43]) {
      const run = await historyRun(seed, plantTwoStepRename);
      if (checkLinearizable(dirSetModel(), run.dirs, { sequentialClients: true }).ok === false) caught++;
    }
    expect(caught, 'seeds whose directory history the checker refused').to.be.greaterThan(0);
  });
});

/** Every node's fs.rename made a link, a pause, then an unlink: a reader can see both names. */
function plantTwoStepRename(c: SimCluster): void {
  for (let i = 0; i < c.size; i++) {
    const fs = c.node(i)!.fs;
    c.node(i)!.engine.scheduler.replace('fs.rename', async (input, ctx) => {
      const { from, to } = input as { from: string; to: string };
      await fs.call({ op: 'unlink', fs: 'default', path: to }, ctx.origin).catch(() => undefined);
      await fs.call({ op: 'link', fs: 'default', existing: from, path: to }, ctx.origin);
      await new Promise<void>((r) => c.clock.setTimeout(() => r(), 40));
      await fs.call({ op: 'unlink', fs: 'default', path: from }, ctx.origin);
    });
  }
}

const FILES = ['/h/f0', '/h/f1'];
const NAMES = ['n0', 'n1', 'n2', 'n3'];
const VALUE_BYTES = 64;

interface HistoryRun {
  initial: Uint8Array;
  files: DurableOp[];
  dirs: DirOp[];
  failures: Record<string, number>;
}

function valueOf(token: number): Uint8Array {
  const v = new Uint8Array(VALUE_BYTES);
  new DataView(v.buffer).setFloat64(0, token);
  return v;
}

/** Clients on random nodes write, fsync and read two files and add, remove, move and list names in a directory. */
async function historyRun(seed: number, plant?: (c: SimCluster) => void): Promise<HistoryRun> {
  const r = new SeededRandom(seed);
  const c = await formedCluster(seed, 3 + r.int(2));
  plant?.(c);
  const initial = valueOf(0);
  await fsSoon(c, 0, { op: 'mkdir', fs: 'default', path: '/h' });
  await fsSoon(c, 0, { op: 'mkdir', fs: 'default', path: '/h/set' });
  for (const f of FILES) await putFile(c, 0, f, initial);
  const run: HistoryRun = { initial, files: [], dirs: [], failures: {} };
  const sleep = (ms: number) => new Promise<void>((res) => c.clock.setTimeout(res, ms));
  c.network.configure({ drop: 0.03, duplicate: 0.03, delayMs: [1, 20], reorder: true });
  let running = 0;
  let token = 0;
  /** Counts a failed call; one refused for a rebuild is followed by a pause, as the client library's retries make. */
  const noteFailure = async (err: unknown) => {
    const code = err instanceof MangroveError ? err.code : String(err);
    run.failures[code] = (run.failures[code] ?? 0) + 1;
    if (code === 'E_RECOVERING') await sleep(100);
  };
  const client = async (k: number) => {
    running++;
    const cr = r.derive(`client-${k}`);
    const node = cr.int(c.size);
    const name = `c${k}@n${node}`;
    const fs = c.node(node)!.fs;
    const handles = new Map<string, string>();
    for (const f of FILES) {
      try {
        handles.set(f, ((await fs.call({ op: 'open', fs: 'default', path: f, read: true, write: true }, name)) as { handle: string }).handle);
      } catch (err) {
        await noteFailure(err);
      }
    }
    for (let n = 0; n < 30; n++) {
      await sleep(cr.int(30));
      const call = c.clock.now();
      const roll = cr.next();
      if (roll < 0.5) {
        const file = FILES[cr.int(FILES.length)];
        const handle = handles.get(file);
        if (!handle) continue;
        const kind = roll < 0.2 ? 'read' : roll < 0.4 ? 'write' : 'flush';
        const value = valueOf(++token + k / 100);
        const op: DurableOp = { client: name, input: kind === 'write' ? { kind, page: file, value } : { kind, page: file }, call };
        try {
          if (kind === 'read') op.output = ((await fs.call({ op: 'read', handle, offset: 0, length: VALUE_BYTES }, name)) as { data: Uint8Array }).data.slice();
          else if (kind === 'write') await fs.call({ op: 'write', handle, offset: 0, data: value }, name);
          else await fs.call({ op: 'fsync', handle }, name);
          op.ret = c.clock.now();
        } catch (err) {
          // A read that failed saw nothing; a write or a flush may have taken effect.
          if (kind !== 'read') run.files.push(op);
          await noteFailure(err);
          continue;
        }
        run.files.push(op);
      } else {
        const a = NAMES[cr.int(NAMES.length)];
        const b = NAMES[cr.int(NAMES.length)];
        const kind = roll < 0.65 ? 'add' : roll < 0.75 ? 'remove' : roll < 0.85 ? 'move' : 'list';
        const input = kind === 'move' ? { kind, dir: '/h/set', from: a, to: b } : kind === 'list' ? { kind, dir: '/h/set' } : { kind, dir: '/h/set', name: a };
        if (kind === 'move' && a === b) continue;
        const op: DirOp = { client: name, input: input as DirOp['input'], call };
        try {
          op.output = await dirCall(fs, op.input, name);
          op.ret = c.clock.now();
        } catch (err) {
          if (kind !== 'list') run.dirs.push(op);
          await noteFailure(err);
          continue;
        }
        run.dirs.push(op);
      }
    }
    running--;
  };
  const pauses = async () => {
    await sleep(100);
    while (running > 0) {
      await sleep(300 + r.int(300));
      const victim = r.int(c.size);
      const rest = [...Array(c.size).keys()].filter((i) => i !== victim).map((i) => c.id(i));
      c.network.partition([[c.id(victim)], rest]);
      await sleep(30 + r.int(60));
      c.network.heal();
    }
  };
  for (let k = 0; k < 5; k++) void client(k);
  void pauses();
  await c.runUntilAsync(() => running === 0, 600_000, () => `every client to finish (${running} running)`, 5);
  c.network.heal();
  await c.stopAll();
  return run;
}

/** A directory operation's answer: a refusal that says what the set held is an answer too. */
async function dirCall(fs: { call(op: ClientFsOp, client: string): Promise<unknown> }, input: DirOp['input'], client: string): Promise<DirOutput> {
  const at = (name: string) => `/h/set/${name}`;
  const answered = async (work: Promise<unknown>, refusal: string, as: DirOutput): Promise<DirOutput> => {
    try {
      await work;
      return 'ok';
    } catch (err) {
      if (err instanceof MangroveError && err.code === refusal) return as;
      throw err;
    }
  };
  switch (input.kind) {
    case 'add': {
      const out = await answered(fs.call({ op: 'open', fs: 'default', path: at(input.name), create: true, excl: true, write: true }, client).then((h) => fs.call({ op: 'close', handle: (h as { handle: string }).handle }, client).catch(() => undefined)), 'E_EXISTS', 'exists');
      return out;
    }
    case 'remove':
      return answered(fs.call({ op: 'unlink', fs: 'default', path: at(input.name) }, client), 'E_NOT_FOUND', 'missing');
    case 'move':
      return answered(fs.call({ op: 'rename', fs: 'default', from: at(input.from), to: at(input.to) }, client), 'E_NOT_FOUND', 'missing');
    case 'list':
      return ((await fs.call({ op: 'readdir', fs: 'default', path: '/h/set' }, client)) as { entries: FsDirEntry[] }).entries.map((e) => e.name).sort();
  }
}
