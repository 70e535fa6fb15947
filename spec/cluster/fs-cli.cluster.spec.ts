/**
 * The file system from a shell on real node processes (M18-M22, M24): three
 * nodes over ZeroMQ on 127.0.0.1 and the built `mangrove fs` commands, each
 * a process of its own. Filesets are listed, made, taken offline and
 * deleted; directories made with their parents; a local file put through
 * one node comes back byte for byte through another, stdin goes in and
 * `cat` gives it back; ls, stat, mv, ln, rm and rmdir do what they say; bad
 * input is refused with Mangrove's code and POSIX's beside it; a byte-range
 * lock one process holds through node 0 refuses a second process on node 1;
 * and `fs check` finds the fileset clean. Runs dist/ (npm test builds it).
 * Every process it starts is stopped by pid.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FsStat } from '../../bus/messages/fs.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { CLI } from '../helpers/run-cli.js';
import { until } from '../helpers/until.js';

/** A heartbeat period with room for a loaded machine: a node paused for a second is not counted out. */
const PERIOD = 300;
/** Each CLI call's own --timeout; a call that outlives KILL_MS is killed (and fails its test). */
const CALL_MS = 10_000;
const KILL_MS = 45_000;
/** A few MiB of random bytes, not a whole number of calls or pages. */
const FILE_BYTES = 4 * 1024 * 1024 + 12_345;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

/** Processes started by a test and not yet ended: stopped by pid in `after` whatever happened. */
const running = new Set<ChildProcess>();

/** The built `mangrove` with `input` on stdin (or none), stdout kept as bytes. */
function start(args: string[], input?: Uint8Array): { child: ChildProcess; done: Promise<Run>; out: () => string } {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  running.add(child);
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), KILL_MS);
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: stderr + (signal ? `(killed by ${signal})` : ''), ms: Date.now() - started });
    });
  });
  if (input) {
    child.stdin!.on('error', () => {});
    child.stdin!.end(input);
  }
  return { child, done, out: () => Buffer.concat(out).toString() };
}

function mangrove(args: string[], input?: Uint8Array): Promise<Run> {
  return start(args, input).done;
}

describe('the file system through `mangrove fs`, on real processes', function () {
  this.timeout(120_000);
  let cluster: ProcessCluster;
  let local: string;
  const given = randomBytes(FILE_BYTES);

  const on = (i: number) => ['--connect', cluster.endpoints[i], '--timeout', String(CALL_MS)];
  const ok = (r: Run, what: string) => expect(r.code, `${what}: ${r.stderr}`).to.equal(0);
  const text = (r: Run) => r.stdout.toString();
  const json = <T>(r: Run): T => JSON.parse(text(r)) as T;
  /** A refusal as the user sees it: exit 1, nothing on stdout, one error line with both codes. */
  const refused = (r: Run, line: RegExp) => {
    expect(r.stderr, 'the error line').to.match(line);
    expect(r.code, `exit status (${r.stderr})`).to.equal(1);
    expect(text(r), 'nothing on stdout').to.equal('');
  };

  before(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    local = mkdtempSync(join(tmpdir(), 'mangrove-fs-cli-'));
    cluster = await ProcessCluster.start({ nodes: 3, anchors: 3, periodMs: PERIOD });
    const took = await cluster.waitFor(() => cluster.converged(), 30_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || `node-0 log:\n${cluster.log(0).slice(-3000)}`}`);
    // The file system is made once the cluster has formed: wait, bounded, until every node lists the filesets.
    await until(
      'every node to answer `fs fileset list`',
      async () => (await Promise.all([0, 1, 2].map((i) => mangrove(['fs', 'fileset', 'list', '--json', ...on(i)])))).every((r) => r.code === 0),
      { timeoutMs: 30_000, pollMs: 250 },
    );
  });

  after(async () => {
    for (const child of running) if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    await cluster?.stop();
    if (local) rmSync(local, { recursive: true, force: true });
  });

  it('fileset list shows the fileset "default", as a table and as JSON', async () => {
    const t = await mangrove(['fs', 'fileset', 'list', ...on(0)]);
    ok(t, 'fileset list');
    expect(text(t)).to.match(/^NAME\s+ID\s+STATE\s+CREATED \(UTC\)\s+COMMENT\n/);
    expect(text(t)).to.match(/^default\s+\d+\s+online\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/m);
    const j = await mangrove(['fs', 'fileset', 'list', '--json', ...on(1)]);
    ok(j, 'fileset list --json');
    const list = json<{ name: string; id: number; state: string; created: string; readOnly: boolean; comment: string }[]>(j);
    const d = list.find((f) => f.name === 'default');
    expect(d, 'default in the list').to.not.equal(undefined);
    expect(d).to.include({ state: 'online', readOnly: false });
    expect(d!.created).to.match(ISO);
  });

  it('mkdir -p makes the missing parents, and is no error when the directory exists', async () => {
    const r = await mangrove(['fs', 'mkdir', '-p', '/cli/deep/er', ...on(0)]);
    ok(r, 'mkdir -p');
    expect(text(r)).to.equal('made directory default:/cli/deep/er\n');
    ok(await mangrove(['fs', 'mkdir', '-p', 'default:/cli/deep', ...on(1)]), 'mkdir -p of an existing directory');
    const again = await mangrove(['fs', 'mkdir', '/cli/deep', ...on(2)]);
    refused(again, /^error E_EXISTS \(EEXIST\): /);
    const ls = await mangrove(['fs', 'ls', '/cli/deep', '--json', ...on(2)]);
    ok(ls, 'ls');
    expect(json<{ name: string; type: string }[]>(ls).map((e) => [e.name, e.type])).to.deep.equal([['er', 'dir']]);
  });

  it('puts a local file through node 0 and gets the same bytes back through node 1', async () => {
    const src = join(local, 'given.bin');
    writeFileSync(src, given);
    const put = await mangrove(['fs', 'put', src, '/cli/', '--json', ...on(0)]);
    ok(put, 'put');
    const p = json<{ path: string; bytes: number; ms: number }>(put);
    expect(Object.keys(p).sort()).to.deep.equal(['bytes', 'ms', 'path']);
    expect(p).to.include({ path: 'default:/cli/given.bin', bytes: FILE_BYTES });

    const dest = join(local, 'back.bin');
    const get = await mangrove(['fs', 'get', '/cli/given.bin', dest, ...on(1)]);
    ok(get, 'get');
    expect(text(get)).to.match(new RegExp(`^got 4\\.0 MiB \\(${FILE_BYTES} bytes\\) from default:/cli/given\\.bin to ${dest.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} in `));
    expect(readFileSync(dest).equals(given), 'node 1 gives back what was put through node 0').to.equal(true);
  });

  it('puts stdin (put -) through node 2; cat and get - give it back through node 0', async () => {
    const note = Buffer.from('hello from stdin\nsecond line\n');
    const put = await mangrove(['fs', 'put', '-', '/cli/note.txt', ...on(2)], note);
    ok(put, 'put -');
    expect(text(put)).to.match(/^put 0\.0 MiB \(29 bytes\) from stdin to default:\/cli\/note\.txt in /);
    const cat = await mangrove(['fs', 'cat', '/cli/note.txt', ...on(0)]);
    ok(cat, 'cat');
    expect(cat.stdout.equals(note)).to.equal(true);
    const big = await mangrove(['fs', 'get', '/cli/given.bin', '-', ...on(0)]);
    ok(big, 'get -');
    expect(big.stdout.equals(given), 'get - writes the file itself to stdout').to.equal(true);
    // Without a name to give it, stdin cannot go into a directory.
    const nameless = await mangrove(['fs', 'put', '-', '/cli/', ...on(2)], note);
    expect(nameless.code).to.equal(2);
    expect(nameless.stderr).to.match(/^error E_BAD_ARGUMENT \(EINVAL\): default:\/cli\/ is a directory: name the file to make in it/);
  });

  it('ls --json gives exactly {name, type, size, mtime} for each entry; ls -l the long form', async () => {
    const r = await mangrove(['fs', 'ls', '/cli', '--json', ...on(1)]);
    ok(r, 'ls --json');
    const entries = json<Record<string, unknown>[]>(r);
    for (const e of entries) {
      expect(Object.keys(e).sort(), JSON.stringify(e)).to.deep.equal(['mtime', 'name', 'size', 'type']);
      expect(e.mtime).to.match(ISO);
      expect(Math.abs(Date.parse(e.mtime as string) - Date.now()), 'mtime is recent').to.be.below(10 * 60_000);
    }
    expect(entries.map((e) => [e.name, e.type, e.size])).to.deep.equal([
      ['deep', 'dir', 0],
      ['given.bin', 'file', FILE_BYTES],
      ['note.txt', 'file', 29],
    ]);

    const human = await mangrove(['fs', 'ls', '/cli', ...on(2)]);
    ok(human, 'ls');
    expect(text(human)).to.match(/^TYPE\s+SIZE\s+MODIFIED \(UTC\)\s+NAME\n/);
    expect(text(human)).to.match(new RegExp(`^file\\s+${FILE_BYTES}\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\s+given\\.bin$`, 'm'));
    expect(text(human)).to.match(/^dir\s+0\s+\S+ \S+\s+deep\/$/m);

    const long = await mangrove(['fs', 'ls', '-l', '/cli', ...on(0)]);
    ok(long, 'ls -l');
    expect(text(long)).to.match(new RegExp(`^-rw-r--r--\\s+1\\s+0\\s+0\\s+${FILE_BYTES}\\s+\\S+ \\S+\\s+given\\.bin$`, 'm'));
    expect(text(long)).to.match(/^drwxr-xr-x\s+\d+\s+0\s+0\s+\d+\s+\S+ \S+\s+deep$/m);
  });

  it('stat --json gives the stat object; stat shows type, size and mode', async () => {
    const r = await mangrove(['fs', 'stat', '/cli/given.bin', '--json', ...on(2)]);
    ok(r, 'stat --json');
    const s = json<FsStat>(r);
    expect(s).to.include({ type: 'file', size: FILE_BYTES, nlink: 1, mode: 0o100644 });
    for (const k of ['ino', 'uid', 'gid', 'blocks', 'atimeMs', 'mtimeMs', 'ctimeMs', 'birthtimeMs']) expect(s, k).to.have.property(k).that.is.a('number');
    const t = await mangrove(['fs', 'stat', '/cli/deep', ...on(0)]);
    ok(t, 'stat');
    expect(text(t)).to.match(/^path +default:\/cli\/deep$/m);
    expect(text(t)).to.match(/^type +directory$/m);
    expect(text(t)).to.match(/^mode +0755 \(drwxr-xr-x\)$/m);
  });

  it('mv renames, and moves into an existing directory; ls shows the result', async () => {
    const a = await mangrove(['fs', 'mv', '/cli/note.txt', '/cli/renamed.txt', ...on(1)]);
    ok(a, 'mv');
    expect(text(a)).to.equal('moved default:/cli/note.txt to default:/cli/renamed.txt\n');
    const b = await mangrove(['fs', 'mv', '/cli/renamed.txt', '/cli/deep', '--json', ...on(2)]);
    ok(b, 'mv into a directory');
    expect(json(b)).to.deep.equal({ from: 'default:/cli/renamed.txt', to: 'default:/cli/deep/renamed.txt' });
    const top = json<{ name: string }[]>(await mangrove(['fs', 'ls', '/cli', '--json', ...on(0)]));
    expect(top.map((e) => e.name)).to.deep.equal(['deep', 'given.bin']);
    const inside = json<{ name: string }[]>(await mangrove(['fs', 'ls', '/cli/deep', '--json', ...on(0)]));
    expect(inside.map((e) => e.name)).to.deep.equal(['er', 'renamed.txt']);
    expect((await mangrove(['fs', 'cat', '/cli/deep/renamed.txt', ...on(1)])).stdout.toString()).to.equal('hello from stdin\nsecond line\n');
  });

  it('ln makes a hard link (two names, one file); ln -s a symbolic link that reads through', async () => {
    const hard = await mangrove(['fs', 'ln', '/cli/deep/renamed.txt', '/cli/hard.txt', ...on(0)]);
    ok(hard, 'ln');
    expect(text(hard)).to.equal('linked default:/cli/hard.txt to default:/cli/deep/renamed.txt\n');
    const a = json<FsStat>(await mangrove(['fs', 'stat', '/cli/hard.txt', '--json', ...on(1)]));
    const b = json<FsStat>(await mangrove(['fs', 'stat', '/cli/deep/renamed.txt', '--json', ...on(2)]));
    expect(a.ino, 'one inode').to.equal(b.ino);
    expect(a.nlink).to.equal(2);

    const soft = await mangrove(['fs', 'ln', '-s', '/cli/given.bin', '/cli/soft', ...on(1)]);
    ok(soft, 'ln -s');
    expect(text(soft)).to.equal('default:/cli/soft -> /cli/given.bin\n');
    const l = json<FsStat>(await mangrove(['fs', 'stat', '/cli/soft', '--json', ...on(2)]));
    expect(l.type, 'stat shows the link itself').to.equal('symlink');
    const followed = json<FsStat>(await mangrove(['fs', 'stat', '-L', '/cli/soft', '--json', ...on(2)]));
    expect(followed).to.include({ type: 'file', size: FILE_BYTES });
    const through = await mangrove(['fs', 'cat', '/cli/soft', ...on(0)]);
    ok(through, 'cat through the link');
    expect(through.stdout.equals(given)).to.equal(true);
    const long = await mangrove(['fs', 'ls', '-l', '/cli', ...on(0)]);
    expect(text(long)).to.match(/^lrwxrwxrwx\s.*\ssoft -> \/cli\/given\.bin$/m);

    const dir = await mangrove(['fs', 'ln', '/cli/deep', '/cli/dirlink', ...on(0)]);
    refused(dir, /^error E_IS_DIR \(EISDIR\): a directory cannot be hard-linked/);
  });

  it('rm removes a file; rmdir refuses a directory that is not empty (E_NOT_EMPTY); rm -r removes the tree', async () => {
    const rm = await mangrove(['fs', 'rm', '/cli/hard.txt', ...on(1)]);
    ok(rm, 'rm');
    expect(text(rm)).to.equal('removed default:/cli/hard.txt\n');
    expect(json<FsStat>(await mangrove(['fs', 'stat', '/cli/deep/renamed.txt', '--json', ...on(0)])).nlink, 'the other name is left').to.equal(1);

    refused(await mangrove(['fs', 'rmdir', '/cli/deep', ...on(2)]), /^error E_NOT_EMPTY \(ENOTEMPTY\): /);
    refused(await mangrove(['fs', 'rm', '/cli/deep', ...on(2)]), /^error E_IS_DIR \(EISDIR\): /);
    refused(await mangrove(['fs', 'rm', '/cli/nothing', ...on(2)]), /^error E_NOT_FOUND \(ENOENT\): /);
    const forced = await mangrove(['fs', 'rm', '-f', '/cli/nothing', ...on(2)]);
    ok(forced, 'rm -f of nothing');
    expect(text(forced)).to.equal('');

    ok(await mangrove(['fs', 'rmdir', '/cli/deep/er', ...on(0)]), 'rmdir of an empty directory');
    ok(await mangrove(['fs', 'mkdir', '-p', '/cli/deep/a/b', ...on(0)]), 'mkdir -p');
    ok(await mangrove(['fs', 'put', '-', '/cli/deep/a/b/leaf', ...on(0)], Buffer.from('leaf')), 'put a leaf');
    const tree = await mangrove(['fs', 'rm', '-r', '/cli/deep', '--json', ...on(1)]);
    ok(tree, 'rm -r');
    expect(json(tree)).to.deep.equal({ path: 'default:/cli/deep', files: 2, directories: 3 });
    const left = json<{ name: string }[]>(await mangrove(['fs', 'ls', '/cli', '--json', ...on(2)]));
    expect(left.map((e) => e.name)).to.deep.equal(['given.bin', 'soft']);
  });

  it('refuses bad input with both codes and exit 1: a 256-byte name, a path through a file, an unknown fileset', async () => {
    const long = 'x'.repeat(256);
    refused(await mangrove(['fs', 'mkdir', `/cli/${long}`, ...on(0)]), /^error E_NAME_TOO_LONG \(ENAMETOOLONG\): a name is at most 255 bytes/);
    refused(await mangrove(['fs', 'put', '-', `/cli/${long}`, ...on(1)], Buffer.from('x')), /^error E_NAME_TOO_LONG \(ENAMETOOLONG\): /);
    refused(await mangrove(['fs', 'mkdir', '/cli/given.bin/sub', ...on(1)]), /^error E_NOT_DIR \(ENOTDIR\): /);
    refused(await mangrove(['fs', 'ls', '/cli/given.bin/sub', ...on(2)]), /^error E_NOT_DIR \(ENOTDIR\): /);
    refused(await mangrove(['fs', 'ls', 'nosuch:/', ...on(2)]), /^error E_NOT_FOUND \(ENOENT\): no fileset is named "nosuch"/);
    refused(await mangrove(['fs', 'ls', '/no/such/dir', ...on(0)]), /^error E_NOT_FOUND \(ENOENT\): no "no" in /);
    // A missing source leaves the local destination untouched.
    const dest = join(local, 'untouched');
    writeFileSync(dest, 'before');
    refused(await mangrove(['fs', 'get', '/cli/missing', dest, ...on(0)]), /^error E_NOT_FOUND \(ENOENT\): /);
    expect(readFileSync(dest, 'utf8')).to.equal('before');
    // Nothing changed.
    const left = json<{ name: string }[]>(await mangrove(['fs', 'ls', '/cli', '--json', ...on(1)]));
    expect(left.map((e) => e.name)).to.deep.equal(['given.bin', 'soft']);
  });

  it('a byte-range lock one process holds through node 0 refuses a second process on node 1 (E_LOCKED); a third waits for it', async () => {
    ok(await mangrove(['fs', 'put', '-', '/cli/locked', ...on(0)], Buffer.alloc(200, 7)), 'put');
    const holder = start(['fs', 'lock', '/cli/locked', '--start', '0', '--end', '100', '--hold-ms', '5000', ...on(0)]);
    await until('the first process to hold its lock', () => holder.out().includes('locked bytes [0, 100)'), { timeoutMs: 20_000 });

    const second = await mangrove(['fs', 'lock', '/cli/locked', '--start', '50', '--end', '60', '--shared', '--hold-ms', '1', ...on(1)]);
    refused(second, /^error E_LOCKED \(EAGAIN\): bytes \[0, 100\) are locked exclusive by another handle/);
    expect(holder.out(), 'the holder still holds it').to.not.include('released');

    const other = await mangrove(['fs', 'lock', '/cli/locked', '--start', '100', '--end', '200', '--hold-ms', '1', ...on(1)]);
    ok(other, 'a range that does not overlap');

    const third = await mangrove(['fs', 'lock', '/cli/locked', '--start', '0', '--end', '10', '--wait', '--hold-ms', '1', '--json', ...on(2)]);
    ok(third, 'lock --wait');
    expect(holder.out(), 'the third got it only once the first let it go').to.include('released bytes [0, 100) of default:/cli/locked');
    expect(
      text(third)
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown),
    ).to.deep.equal([
      { path: 'default:/cli/locked', start: 0, end: 10, mode: 'exclusive', held: true },
      { path: 'default:/cli/locked', start: 0, end: 10, mode: 'exclusive', held: false },
    ]);
    const first = await holder.done;
    ok(first, 'the holder');
  });

  it('fileset create, offline (ls refused with E_OFFLINE), online, offline and delete', async () => {
    const made = await mangrove(['fs', 'fileset', 'create', 'scratch', '--json', ...on(0)]);
    ok(made, 'fileset create');
    expect(json(made)).to.include({ name: 'scratch', state: 'online', readOnly: false });
    ok(await mangrove(['fs', 'put', '-', 'scratch:/f', ...on(1)], Buffer.from('in scratch')), 'put into it');
    refused(await mangrove(['fs', 'fileset', 'create', 'scratch', ...on(2)]), /^error E_EXISTS \(EEXIST\): /);

    const off = await mangrove(['fs', 'fileset', 'offline', 'scratch', ...on(2)]);
    ok(off, 'offline');
    expect(text(off)).to.match(/^fileset scratch \(id \d+\): offline, read-write\n$/);
    refused(await mangrove(['fs', 'ls', 'scratch:/', ...on(1)]), /^error E_OFFLINE \(ENODEV\): fileset scratch is offline/);
    ok(await mangrove(['fs', 'fileset', 'online', 'scratch', ...on(1)]), 'online');
    expect(text(await mangrove(['fs', 'cat', 'scratch:/f', ...on(0)]))).to.equal('in scratch');

    refused(await mangrove(['fs', 'fileset', 'delete', 'scratch', ...on(0)]), /^error E_BUSY \(EBUSY\): fileset scratch is online/);
    ok(await mangrove(['fs', 'fileset', 'offline', 'scratch', ...on(0)]), 'offline again');
    const del = await mangrove(['fs', 'fileset', 'delete', 'scratch', ...on(0)]);
    ok(del, 'delete');
    expect(text(del)).to.match(/^deleted fileset scratch \(\d+ inodes? freed\)\n$/);
    const names = json<{ name: string }[]>(await mangrove(['fs', 'fileset', 'list', '--json', ...on(1)])).map((f) => f.name);
    expect(names).to.include('default').and.not.include('scratch');
    refused(await mangrove(['fs', 'ls', 'scratch:/', ...on(2)]), /^error E_NOT_FOUND \(ENOENT\): no fileset is named "scratch"/);
  });

  it('check default exits 0 and says it is clean', async () => {
    const r = await mangrove(['fs', 'check', 'default', ...on(1)]);
    ok(r, 'check');
    expect(text(r)).to.match(/^fileset default: checked \d+ director(y|ies) and \d+ files?\n/);
    expect(text(r)).to.match(/\nclean\n$/);
    const j = await mangrove(['fs', 'check', 'default', '--no-repair', '--json', ...on(2)]);
    ok(j, 'check --json');
    expect(json(j)).to.include({ fileset: 'default', clean: true }).and.to.deep.include({ problems: [], repairs: [] });
  });
});
