/**
 * `npm run bench -- mount [--quick] [--mib N] [--rand-mib N] [--runtime S]
 * [--files N] [--period MS]`: what Mangrove's POSIX mount (runtime/mount/,
 * FUSE) costs against FUSE's own cost and against the local disk, the same
 * unmodified programs on three targets in one run.
 *
 * Targets:
 *  - mangrove: a 3-node cluster of real node processes on 127.0.0.1
 *    (spec/helpers/process-cluster.ts, 2 core copies of a page, the config's
 *    default), and `mangrove mount --foreground` of the `default` fileset on
 *    a temp dir through node 0 (spec/helpers/mounts.ts), a process of its own.
 *  - bindfs: `bindfs -f <local dir> <mount dir>`, Debian's FUSE passthrough
 *    of a local directory: the peer that pays FUSE's own cost (a round trip
 *    to a user-space process per call) and nothing else.
 *  - disk: a temp dir in the OS's tmpdir (the same disk as the nodes' data
 *    and bindfs's local dir).
 *
 * Workloads, each on disk, then bindfs, then mangrove (mangrove last, so the
 * mount's last report covers its own last workload), every one in a child
 * process (fio, or a small Node program) so all three are measured alike.
 * fio runs one job, `--ioengine=psync --direct=0 --invalidate=0
 * --fallocate=none --verify_state_save=0`, in `--directory=<target>`:
 *  1. sequential write of `mib` MiB (seq.bin) in 1 MiB writes,
 *     `--end_fsync=1`: seqWriteMiBs (fio's write bandwidth) and the 1 MiB
 *     writes' p50/p99 (seqWriteP50Ms, seqWriteP99Ms).
 *  2. sequential read of that file in 1 MiB reads: seqReadMiBs, p50/p99.
 *     The disk and bindfs read from the kernel's page cache (the file was
 *     just written; `--invalidate=0` keeps fio from dropping it; bindfs does
 *     not keep the FUSE side's cache across opens, so its reads go through
 *     bindfs to the cached local file). Mangrove keeps the page cache of a
 *     file opened read-only only until the next open, and fio's read job
 *     opens the file anew: its reads go through the mount to node 0.
 *  3. random 4 KiB writes over a `randMiB` MiB file (rand.bin, first laid
 *     out by an untimed sequential write + fsync), `--time_based
 *     --runtime=<runtime>`, no fsync: randWriteIops, p50/p99 µs. On the disk
 *     and bindfs the writes land in the page cache.
 *  4. random 4 KiB reads over that file, the same time: randReadIops, p50/p99
 *     µs. The disk and bindfs read from the page cache (bindfs's FUSE side
 *     keeps it while the file stays open). Mangrove too, for a block read
 *     before within the job (the file stays open): where the job goes over
 *     the whole file and more in its runtime, as with --quick's 8 MiB, its
 *     figure is mostly the page cache's; at 64 MiB and a few hundred IOPS
 *     most reads go through the mount to its node.
 *  5. `files` files, one at a time: open(O_CREAT|O_TRUNC) + write 4 KiB +
 *     fsync + close, in a Node child with synchronous calls: createFsyncPerSec
 *     and p50/p99 ms of the four calls. Then, untimed, every file must hold
 *     the 4 KiB written to it, or there is no figure.
 * Each Mangrove workload starts once the cluster has converged (quorum, all
 * alive; at most 30 s), so a workload that cost the cluster its quorum does
 * not fail the next one at once; when one fails or the cluster rebuilt
 * during it, the nodes' warnings and the mount's log from meanwhile are
 * printed on stderr.
 * Figures are flat, `<figure>.<target>` (seqWriteMiBs.mangrove,
 * seqWriteMiBs.bindfs, seqWriteMiBs.disk…). Also the rebuild rounds the
 * cluster went through during Mangrove's workloads (mangroveRebuilds: 0
 * unless a node was counted failed under the load), and the mount's own last
 * report (status.fs.mounts, the entry with the mount's pid) to node 0, or to
 * the node it moved to (mount.reportedTo), taken once a report newer than
 * Mangrove's last workload has come (the mount reports every 5 s):
 * mount.ops, mount.errors, mount.bytesRead, mount.bytesWritten,
 * mount.failovers since it started, and mount.latencyMsP50/P99 of its last
 * report period (the end of workload 5).
 * Heartbeat period `mangrove local`'s, 250 ms (`--period` to change it).
 *
 * Ratios are rates, Mangrove ÷ peer (higher is better): <workload>VsBindfs
 * and <workload>VsDisk for seqWrite, seqRead, randWrite, randRead and
 * createFsync. Reported, never asserted. A workload that fails on a target
 * is reported on stderr and in `errors`; the others still run. Progress on
 * stderr. Exits non-zero when a figure is missing. Builds dist/ first when a
 * source is newer than it. Needs fio, bindfs and fusermount (Debian packages
 * fio, bindfs, fuse). Every process (nodes, the mount, bindfs, fio) is
 * stopped by pid, also on failure, both mounts are unmounted, and the temp
 * folders are removed.
 * `--quick`: 32 MiB sequential, an 8 MiB random file, 5 s per random job,
 * 50 files. Full: 256 MiB, 64 MiB, 15 s, 300 files.
 *
 * Last stdout line:
 * {"bench":"mount","figures":{...},"ratios":{...},"errors":[...]}
 * (`errors` only when something failed).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { NodeStatus } from '../actors/status.js';
import type { MountProcess, Ran } from '../spec/helpers/mounts.js';
import type { ProcessCluster as ProcessClusterType } from '../spec/helpers/process-cluster.js';
import { ensureBuild, root } from './shared/build.js';
import { Cleanup } from './shared/cleanup.js';
import { wholeArg } from './shared/args.js';
import { ratiosOf } from './shared/ratios.js';
import { BenchReport, killPid, message } from './shared/report.js';

// The helpers find dist/ from the working directory when they load: load them from the root.
process.chdir(root);
const { isMounted, mountOn, run, stopAll: stopMountProcesses, unmountProcess } = await import('../spec/helpers/mounts.js');
const { ProcessCluster } = await import('../spec/helpers/process-cluster.js');

const NODES = 3;
const COPIES = 2;
const MIB = 1024 * 1024;
const FILE_BYTES = 4096;
/** How often a mount reports to its node (runtime/mount/session.ts REPORT_MS). */
const MOUNT_REPORT_MS = 5_000;

/** `mangrove local`'s heartbeat period (cliDefaults.periodMs, runtime/cli/main.ts), as bench/fs.ts. */
const PERIOD_MS = 250;

const full = { mib: 256, randMib: 64, runtime: 15, files: 300, period: PERIOD_MS };
const quick = { ...full, mib: 32, randMib: 8, runtime: 5, files: 50 };

const USAGE = `usage: npm run bench -- mount [--quick] [--mib N] [--rand-mib N] [--runtime S] [--files N] [--period MS]

Sequential 1 MiB writes (+ fsync) and reads, random 4 KiB writes and reads
(fio), and create + 4 KiB write + fsync + close of many files, on a
Mangrove mount (3 node processes), on bindfs over a local dir, and on the
local disk. Needs fio, bindfs and fusermount (Debian: fio, bindfs, fuse).

  --quick       ${quick.mib} MiB sequential, ${quick.randMib} MiB random file, ${quick.runtime} s per random job, ${quick.files} files
  --mib N       size of the sequential file in MiB (default ${full.mib})
  --rand-mib N  size of the random-I/O file in MiB (default ${full.randMib})
  --runtime S   seconds of each random job (default ${full.runtime})
  --files N     files created + fsynced (default ${full.files})
  --period MS   the nodes' heartbeat period (default ${PERIOD_MS})
  --help        this text

Progress on stderr; the last stdout line is
{"bench":"mount","figures":{...},"ratios":{...},"errors":[...]}`;

function options(): typeof full | 'help' {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean' },
      mib: { type: 'string' },
      'rand-mib': { type: 'string' },
      runtime: { type: 'string' },
      files: { type: 'string' },
      period: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const o = { ...(values.quick ? quick : full) };
  o.mib = wholeArg('mib', values.mib, 1) ?? o.mib;
  o.randMib = wholeArg('rand-mib', values['rand-mib'], 1) ?? o.randMib;
  o.runtime = wholeArg('runtime', values.runtime, 1) ?? o.runtime;
  o.files = wholeArg('files', values.files, 1) ?? o.files;
  o.period = wholeArg('period', values.period, 10) ?? o.period;
  return o;
}

const timing = {
  clusterFormMs: 30_000,
  mountUpMs: 30_000,
  /** bindfs up, and each stop of a process before the next signal. */
  processMs: 15_000,
  /** A sequential fio job: this long at least, and at least this per MiB. */
  seqMinMs: 180_000,
  seqPerMiBMs: 2_000,
  /** Beyond a time-based job's runtime (opening, closing, the end). */
  timeBasedSlackMs: 120_000,
  /** The create loop: at least this, and this per file. */
  createMinMs: 120_000,
  createPerFileMs: 1_000,
};

const figures: Record<string, number> = {};
const report = new BenchReport('mount');
const { errors, say, fail } = report;
const round = (x: number, digits = 3): number => Number(x.toPrecision(digits));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------ clean-up

const cleanup = new Cleanup(say);
const { running } = cleanup;


const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;

/** Waits up to `ms` for `c` to exit; true when it has. */
async function waitExit(c: ChildProcess, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!exited(c) && Date.now() < deadline) await sleep(50);
  return exited(c);
}

/** Removes a temp folder, but never through a mount still there (rm -r would walk into it). */
function removeDir(dir: string, mounts: string[]): void {
  const still = mounts.filter((m) => isMounted(m));
  if (still.length > 0) {
    say(`not removing ${dir}: ${still.join(', ')} still mounted`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
}

// ------------------------------------------------------------ programs needed

function need(cmd: string, args: string[], pkg: string): string | undefined {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  if (r.error) return `${cmd} is not installed (Debian package ${pkg}: apt-get install ${pkg})`;
  return undefined;
}

// ------------------------------------------------------------ bindfs

interface Bindfs {
  dir: string;
  child: ChildProcess;
  output(): string;
}

async function startBindfs(src: string, dir: string): Promise<Bindfs> {
  const child = spawn('bindfs', ['-f', src, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  child.on('error', (err) => (out += String(err)));
  const b: Bindfs = { dir, child, output: () => out };
  const deadline = Date.now() + timing.processMs;
  while (!isMounted(dir)) {
    if (exited(child)) throw new Error(`bindfs exited (${child.exitCode ?? child.signalCode}): ${out}`);
    if (Date.now() > deadline) {
      await stopBindfs(b);
      throw new Error(`bindfs did not mount ${dir} within ${timing.processMs / 1000} s: ${out}`);
    }
    await sleep(100);
  }
  return b;
}

/** fusermount -uz, then the process by pid: SIGTERM, then SIGKILL. */
async function stopBindfs(b: Bindfs): Promise<void> {
  if (isMounted(b.dir)) spawnSync('fusermount', ['-uz', b.dir], { stdio: 'ignore' });
  if (await waitExit(b.child, 5_000)) return;
  killPid(b.child.pid, 'SIGTERM');
  if (await waitExit(b.child, 5_000)) return;
  killPid(b.child.pid, 'SIGKILL');
  await waitExit(b.child, 5_000);
}

// ------------------------------------------------------------ fio

interface FioSide {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
  runtime: number;
  clat_ns?: { percentile?: Record<string, number> };
}

interface FioJob {
  jobname: string;
  error: number;
  read: FioSide;
  write: FioSide;
}

/** One fio job on `dir`; its job report, or an error with what fio said. */
async function fio(dir: string, name: string, args: string[], timeoutMs: number): Promise<FioJob> {
  const r: Ran = await run(
    'fio',
    [`--name=${name}`, `--directory=${dir}`, '--ioengine=psync', '--direct=0', '--numjobs=1', '--invalidate=0', '--fallocate=none', '--verify_state_save=0', '--output-format=json', ...args],
    { timeoutMs },
  );
  // fio's complaints: stderr, or what it printed before its JSON report.
  const said = r.stderr.trim() || r.stdout.slice(0, Math.max(0, r.stdout.indexOf('{'))).trim();
  if (r.code !== 0) throw new Error(`fio ${name} exited ${r.code} after ${Math.round(r.ms / 1000)} s: ${said.slice(-1500)}`);
  const at = r.stdout.indexOf('{');
  let job: FioJob | undefined;
  try {
    job = (JSON.parse(r.stdout.slice(at)) as { jobs: FioJob[] }).jobs[0];
  } catch (err) {
    throw new Error(`fio ${name}: its output is not JSON (${message(err)}): ${said.slice(-1500)}`);
  }
  if (!job) throw new Error(`fio ${name}: no job in its report`);
  if (job.error !== 0) throw new Error(`fio ${name}: the job failed with error ${job.error}: ${r.stderr.trim().slice(-1500)}`);
  return job;
}

const pct = (s: FioSide, p: '50' | '99'): number | undefined => s.clat_ns?.percentile?.[`${p}.000000`];

// ------------------------------------------------------------ the create + fsync loop (a child)

/**
 * Run by `node -e` with the directory and the count: the loop, timed per
 * file, then every file checked; one JSON line on stdout.
 */
const CREATE_FSYNC = `
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const dir = process.argv[1], n = Number(process.argv[2]), size = Number(process.argv[3]);
fs.mkdirSync(dir, { recursive: true });
const name = (i) => path.join(dir, 'f' + String(i).padStart(6, '0'));
const body = (i) => { const b = crypto.createHash('sha256').update('mangrove bench ' + i).digest(); return Buffer.concat(Array(Math.ceil(size / b.length)).fill(b)).subarray(0, size); };
const bodies = Array.from({ length: n }, (_, i) => body(i));
const ms = [];
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  const start = performance.now();
  const fd = fs.openSync(name(i), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
  for (let done = 0; done < size; ) done += fs.writeSync(fd, bodies[i], done, size - done, done);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  ms.push(performance.now() - start);
}
const took = performance.now() - t0;
let bad = 0, first = -1;
for (let i = 0; i < n; i++) if (!fs.readFileSync(name(i)).equals(bodies[i])) { bad++; if (first < 0) first = i; }
console.log(JSON.stringify({ n, took, ms, bad, first }));
`;

async function createFsync(dir: string, n: number): Promise<{ perSec: number; p50: number; p99: number; took: number }> {
  const r = await run(process.execPath, ['-e', CREATE_FSYNC, join(dir, 'files'), String(n), String(FILE_BYTES)], { timeoutMs: Math.max(timing.createMinMs, n * timing.createPerFileMs) });
  if (r.code !== 0) throw new Error(`the create loop exited ${r.code} after ${Math.round(r.ms / 1000)} s: ${r.stderr.trim().slice(-1500)}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const out = JSON.parse(line) as { n: number; took: number; ms: number[]; bad: number; first: number };
  if (out.bad > 0) throw new Error(`${out.bad} of ${n} files did not hold the ${FILE_BYTES} bytes written and fsynced (the first: file ${out.first}); no figure`);
  const sorted = out.ms.sort((a, b) => a - b);
  const q = (p: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 1000) / 1000;
  return { perSec: round((n * 1000) / out.took), p50: q(0.5), p99: q(0.99), took: out.took };
}

// ------------------------------------------------------------ workloads

type TargetName = 'disk' | 'bindfs' | 'mangrove';

interface Target {
  name: TargetName;
  /** The directory the workloads run in. */
  dir: string;
}

const fix = (name: string, t: TargetName, v: number | undefined, digits = 3): void => {
  if (v !== undefined && Number.isFinite(v)) figures[`${name}.${t}`] = round(v, digits);
};

/** Targets whose sequential write succeeded (the read needs the file). */
const seqWritten = new Set<TargetName>();
/** Targets whose random file was laid out. */
const randLaidOut = new Set<TargetName>();

interface Workload {
  label: string;
  run(t: Target): Promise<void>;
}

function workloads(o: typeof full): Workload[] {
  const seqMs = Math.max(timing.seqMinMs, o.mib * timing.seqPerMiBMs);
  const randLayMs = Math.max(timing.seqMinMs, o.randMib * timing.seqPerMiBMs);
  const timedMs = o.runtime * 1000 + timing.timeBasedSlackMs;
  return [
    {
      label: `1/5 sequential write of ${o.mib} MiB, 1 MiB writes, end fsync`,
      async run(t) {
        const j = await fio(t.dir, 'seqwrite', ['--filename=seq.bin', '--rw=write', '--bs=1M', `--size=${o.mib}M`, '--end_fsync=1'], seqMs);
        if (j.write.io_bytes !== o.mib * MIB) throw new Error(`fio wrote ${j.write.io_bytes} bytes, not ${o.mib * MIB}`);
        seqWritten.add(t.name);
        fix('seqWriteMiBs', t.name, j.write.bw_bytes / MIB);
        const [p50, p99] = [pct(j.write, '50'), pct(j.write, '99')];
        fix('seqWriteP50Ms', t.name, p50 === undefined ? undefined : p50 / 1e6);
        fix('seqWriteP99Ms', t.name, p99 === undefined ? undefined : p99 / 1e6);
        say(`  ${t.name}: ${figures[`seqWriteMiBs.${t.name}`]} MiB/s (${j.write.runtime} ms), 1 MiB write p50 ${figures[`seqWriteP50Ms.${t.name}`]} / p99 ${figures[`seqWriteP99Ms.${t.name}`]} ms`);
      },
    },
    {
      label: `2/5 sequential read of those ${o.mib} MiB, 1 MiB reads`,
      async run(t) {
        if (!seqWritten.has(t.name)) throw new Error('not run: the sequential write before it failed');
        const j = await fio(t.dir, 'seqread', ['--filename=seq.bin', '--rw=read', '--bs=1M', `--size=${o.mib}M`], seqMs);
        if (j.read.io_bytes !== o.mib * MIB) throw new Error(`fio read ${j.read.io_bytes} bytes, not ${o.mib * MIB}`);
        fix('seqReadMiBs', t.name, j.read.bw_bytes / MIB);
        const [p50, p99] = [pct(j.read, '50'), pct(j.read, '99')];
        fix('seqReadP50Ms', t.name, p50 === undefined ? undefined : p50 / 1e6);
        fix('seqReadP99Ms', t.name, p99 === undefined ? undefined : p99 / 1e6);
        say(`  ${t.name}: ${figures[`seqReadMiBs.${t.name}`]} MiB/s (${j.read.runtime} ms), 1 MiB read p50 ${figures[`seqReadP50Ms.${t.name}`]} / p99 ${figures[`seqReadP99Ms.${t.name}`]} ms`);
      },
    },
    {
      label: `3/5 random 4 KiB writes over a ${o.randMib} MiB file for ${o.runtime} s`,
      async run(t) {
        const lay = await fio(t.dir, 'layout', ['--filename=rand.bin', '--rw=write', '--bs=1M', `--size=${o.randMib}M`, '--end_fsync=1'], randLayMs);
        if (lay.write.io_bytes !== o.randMib * MIB) throw new Error(`laying out rand.bin: fio wrote ${lay.write.io_bytes} bytes, not ${o.randMib * MIB}`);
        randLaidOut.add(t.name);
        const j = await fio(t.dir, 'randwrite', ['--filename=rand.bin', '--rw=randwrite', '--bs=4k', `--size=${o.randMib}M`, '--time_based', `--runtime=${o.runtime}`], timedMs);
        fix('randWriteIops', t.name, j.write.iops);
        const [p50, p99] = [pct(j.write, '50'), pct(j.write, '99')];
        fix('randWriteP50Us', t.name, p50 === undefined ? undefined : p50 / 1e3);
        fix('randWriteP99Us', t.name, p99 === undefined ? undefined : p99 / 1e3);
        say(`  ${t.name}: ${figures[`randWriteIops.${t.name}`]} IOPS, p50 ${figures[`randWriteP50Us.${t.name}`]} / p99 ${figures[`randWriteP99Us.${t.name}`]} µs (laid out at ${round(lay.write.bw_bytes / MIB)} MiB/s first)`);
      },
    },
    {
      label: `4/5 random 4 KiB reads over that file for ${o.runtime} s`,
      async run(t) {
        if (!randLaidOut.has(t.name)) throw new Error('not run: the random file was not laid out');
        const j = await fio(t.dir, 'randread', ['--filename=rand.bin', '--rw=randread', '--bs=4k', `--size=${o.randMib}M`, '--time_based', `--runtime=${o.runtime}`], timedMs);
        fix('randReadIops', t.name, j.read.iops);
        const [p50, p99] = [pct(j.read, '50'), pct(j.read, '99')];
        fix('randReadP50Us', t.name, p50 === undefined ? undefined : p50 / 1e3);
        fix('randReadP99Us', t.name, p99 === undefined ? undefined : p99 / 1e3);
        say(`  ${t.name}: ${figures[`randReadIops.${t.name}`]} IOPS, p50 ${figures[`randReadP50Us.${t.name}`]} / p99 ${figures[`randReadP99Us.${t.name}`]} µs`);
      },
    },
    {
      label: `5/5 create + ${FILE_BYTES} B write + fsync + close of ${o.files} files`,
      async run(t) {
        const r = await createFsync(t.dir, o.files);
        fix('createFsyncPerSec', t.name, r.perSec);
        fix('createFsyncP50Ms', t.name, r.p50);
        fix('createFsyncP99Ms', t.name, r.p99);
        say(`  ${t.name}: ${r.perSec} files/s, p50 ${r.p50} / p99 ${r.p99} ms (${o.files} in ${Math.round(r.took)} ms; each file read back and checked)`);
      },
    },
  ];
}

// ------------------------------------------------------------ running them

/** Each node's log length now, to read what it logged after. */
const logMarks = (c: ProcessClusterType): number[] => [...Array(NODES).keys()].map((i) => c.log(i).length);

/** The warnings and errors (pino level 40 and up) the nodes logged since `marks`: each distinct message with its count, per node. */
function nodeWarnings(c: ProcessClusterType, marks: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < NODES; i++) {
    const counts = new Map<string, number>();
    for (const line of c.log(i).slice(marks[i] ?? 0).split('\n')) {
      const m = /"level":(\d+).*"msg":"([^"]*)"/.exec(line);
      if (m && Number(m[1]) >= 40) counts.set(m[2], (counts.get(m[2]) ?? 0) + 1);
    }
    if (counts.size > 0) parts.push(`node ${i}: ${[...counts].slice(0, 8).map(([msg, n]) => `${msg}${n > 1 ? ` ×${n}` : ''}`).join('; ')}`);
  }
  return parts.length > 0 ? parts.join(' | ') : 'no warnings in the nodes\' logs';
}

/** Rebuild rounds finished so far: the most any node's log counts (status gives the last round's number, not a count), as bench/fs.ts. */
function rebuilds(c: ProcessClusterType): number {
  return Math.max(...[...Array(NODES).keys()].map((i) => c.log(i).split('"msg":"rebuild finished; operations resume"').length - 1));
}

type MountEntry = NonNullable<NodeStatus['fs']>['mounts'][number];

/**
 * The mount's newest entry in the nodes' statuses (status.fs.mounts, the
 * entry with the mount's pid), once one reported at `afterMs` (wall clock)
 * or later, and the node it reported to: node 0, unless the mount moved.
 */
async function mountReport(c: ProcessClusterType, m: MountProcess, afterMs: number): Promise<{ entry: MountEntry; node: number }> {
  const deadline = Date.now() + MOUNT_REPORT_MS * 3;
  let last: { entry: MountEntry; node: number } | undefined;
  for (;;) {
    const statuses = await c.statuses();
    statuses.forEach((s, node) => {
      const entry = s?.fs?.mounts.find((x) => x.pid === m.child.pid);
      if (entry && (!last || entry.reportedMs > last.entry.reportedMs)) last = { entry, node };
    });
    if (last && last.entry.reportedMs >= afterMs) return last;
    if (Date.now() > deadline) {
      if (last) throw new Error(`no report from the mount since its last workload within ${(MOUNT_REPORT_MS * 3) / 1000} s (the last, to node ${last.node}, was ${Date.now() - last.entry.reportedMs} ms old)`);
      throw new Error(`no node's status lists a mount with pid ${m.child.pid}`);
    }
    await sleep(500);
  }
}

async function runAll(o: typeof full): Promise<void> {
  const made: string[] = [];
  const tempDir = (prefix: string): string => {
    const d = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
    made.push(d);
    return d;
  };
  const diskDir = tempDir('mangrove-bench-mount-disk-');
  const bindBase = tempDir('mangrove-bench-mount-bindfs-');
  const bindSrc = join(bindBase, 'src');
  const bindDir = join(bindBase, 'mnt');
  const mgBase = tempDir('mangrove-bench-mount-mangrove-');
  const mgDir = join(mgBase, 'mnt');
  mkdirSync(bindSrc);
  mkdirSync(bindDir);
  mkdirSync(mgDir);
  const mountDirs = [bindDir, mgDir];

  let cluster: ProcessClusterType | undefined;
  let mount: MountProcess | undefined;
  let bindfs: Bindfs | undefined;
  const handle = {
    stop: async () => {
      if (mount) await unmountProcess(mount).catch((err: unknown) => fail('mangrove', `unmounting: ${message(err)}`));
      mount = undefined;
      await cluster?.stop().catch((err: unknown) => fail('mangrove', `stopping the cluster: ${message(err)}`));
      cluster = undefined;
      if (bindfs) await stopBindfs(bindfs).catch((err: unknown) => fail('bindfs', `unmounting: ${message(err)}`));
      bindfs = undefined;
      await stopMountProcesses(mountDirs);
      for (const d of made) removeDir(d, mountDirs);
    },
    kill: () => {
      if (mount) killPid(mount.child.pid, 'SIGKILL');
      if (bindfs) killPid(bindfs.child.pid, 'SIGKILL');
      for (let i = 0; i < NODES; i++) if (cluster?.isRunning(i)) killPid(cluster.pid(i), 'SIGKILL');
      for (const d of mountDirs) spawnSync('fusermount', ['-uz', d], { stdio: 'ignore' });
      for (const d of made) removeDir(d, mountDirs);
    },
  };
  running.add(handle);
  try {
    const targets: Target[] = [{ name: 'disk', dir: diskDir }];
    try {
      bindfs = await startBindfs(bindSrc, bindDir);
      targets.push({ name: 'bindfs', dir: bindDir });
      say(`bindfs ${bindSrc} on ${bindDir} (pid ${bindfs.child.pid})`);
    } catch (err) {
      fail('bindfs', message(err));
    }

    if (!cleanup.stopping) {
      const started = performance.now();
      try {
        cluster = await ProcessCluster.start({ nodes: NODES, anchors: 3, copies: COPIES, periodMs: o.period });
        const c = cluster;
        if ((await c.waitFor(() => c.converged(), timing.clusterFormMs, 100)) < 0) {
          throw new Error(`the ${NODES}-node cluster did not form (quorum, all alive) within ${timing.clusterFormMs / 1000} s. ${c.died().join(' ')}`);
        }
        say(`${NODES}-node cluster formed in ${Math.round(performance.now() - started)} ms (${c.dir}, pids ${[0, 1, 2].map((i) => c.pid(i)).join(' ')})`);
        mount = await mountOn(mgDir, [c.endpoints[0]], { timeoutMs: timing.mountUpMs });
        targets.push({ name: 'mangrove', dir: mgDir });
        say(`mangrove mount of fileset default on ${mgDir} through node 0 (pid ${mount.child.pid})`);
      } catch (err) {
        fail('mangrove', message(err));
      }
    }
    say(`the disk's folder ${diskDir}`);

    figures.mangroveRebuilds = 0;
    let lastMangroveMs = 0;
    for (const w of workloads(o)) {
      if (cleanup.stopping) break;
      say(`workload ${w.label}`);
      for (const t of targets) {
        if (cleanup.stopping) break;
        const c = t.name === 'mangrove' ? cluster : undefined;
        if (c) {
          // Each workload starts on a settled cluster: one that lost its quorum in the last must not fail the next at once.
          const waited = await c.waitFor(() => c.converged(), timing.clusterFormMs, 100);
          if (waited < 0) say(`  the cluster has not converged (quorum, all alive) for ${timing.clusterFormMs / 1000} s; running the workload anyway`);
          else if (waited > 500) say(`  waited ${waited} ms for the cluster to converge first`);
        }
        const before = c ? rebuilds(c) : undefined;
        const marks = c ? logMarks(c) : [];
        const mountLog = mount?.output().length ?? 0;
        const t0 = performance.now();
        let failed = false;
        try {
          await w.run(t);
        } catch (err) {
          failed = true;
          fail(`${t.name}, workload ${w.label.split(' ')[0]}`, message(err));
        }
        if (!c) continue;
        lastMangroveMs = Date.now();
        const more = Math.max(0, rebuilds(c) - (before ?? 0));
        figures.mangroveRebuilds += more;
        if (more > 0) say(`  the cluster rebuilt ${more} times during it (a node counted failed under the load); ${Math.round(performance.now() - t0)} ms`);
        if (more > 0 || failed) {
          say(`  the nodes meanwhile: ${nodeWarnings(c, marks)}`);
          const said = mount?.output().slice(mountLog).trim();
          if (said) say(`  the mount logged meanwhile (the last of it): ${said.slice(-2000)}`);
        }
        const died = c.died();
        if (died.length > 0) {
          fail('mangrove', `nodes died: ${died.join(' ')}`);
          targets.splice(targets.findIndex((x) => x.name === 'mangrove'), 1);
        }
        if (mount && exited(mount.child)) {
          fail('mangrove', `the mount process exited (${mount.child.exitCode ?? mount.child.signalCode}): ${mount.output().slice(-2000)}`);
          const i = targets.findIndex((x) => x.name === 'mangrove');
          if (i >= 0) targets.splice(i, 1);
        }
      }
    }

    if (cluster && mount && !exited(mount.child) && lastMangroveMs > 0 && !cleanup.stopping) {
      say(`waiting for the mount's next report to its node (every ${MOUNT_REPORT_MS / 1000} s)`);
      try {
        const { entry: r, node } = await mountReport(cluster, mount, lastMangroveMs);
        figures['mount.reportedTo'] = node;
        figures['mount.ops'] = r.ops;
        figures['mount.errors'] = r.errors;
        figures['mount.bytesRead'] = r.bytesRead;
        figures['mount.bytesWritten'] = r.bytesWritten;
        figures['mount.failovers'] = r.failovers;
        figures['mount.latencyMsP50'] = round(r.latencyMsP50);
        figures['mount.latencyMsP99'] = round(r.latencyMsP99);
        say(`  the mount (its report to node ${node}): ${r.ops} ops, ${r.errors} errors, ${Math.round(r.bytesRead / MIB)} MiB read, ${Math.round(r.bytesWritten / MIB)} MiB written, ${r.failovers} failovers; its last period's latency p50 ${figures['mount.latencyMsP50']} / p99 ${figures['mount.latencyMsP99']} ms`);
        if (r.errors > 0) say(`  the mount counted ${r.errors} failed operations (some, e.g. a lookup of a name that does not exist, are expected)`);
      } catch (err) {
        fail('mangrove', `the mount's report: ${message(err)}`);
      }
    }
  } finally {
    await handle.stop();
    running.delete(handle);
  }
}

// ------------------------------------------------------------ report

const rows: [key: string, label: string, unit: string, ratio: string][] = [
  ['seqWriteMiBs', 'sequential write 1 MiB + fsync', 'MiB/s', 'seqWrite'],
  ['seqReadMiBs', 'sequential read 1 MiB', 'MiB/s', 'seqRead'],
  ['randWriteIops', 'random write 4 KiB', 'IOPS', 'randWrite'],
  ['randReadIops', 'random read 4 KiB', 'IOPS', 'randRead'],
  ['createFsyncPerSec', 'create+write 4 KiB+fsync+close', 'files/s', 'createFsync'],
];
const TARGETS: TargetName[] = ['mangrove', 'bindfs', 'disk'];

/** Mangrove ÷ peer, three significant digits; left out when either side is missing. */
function ratios(): Record<string, number> {
  const pairs = rows.flatMap(([key, , , r]) => [
    [`${r}VsBindfs`, `${key}.mangrove`, `${key}.bindfs`] as const,
    [`${r}VsDisk`, `${key}.mangrove`, `${key}.disk`] as const,
  ]);
  return ratiosOf(figures, pairs);
}

async function main(): Promise<number> {
  let o: typeof full | 'help';
  try {
    o = options();
  } catch (err) {
    say(message(err));
    console.error(USAGE);
    return 2;
  }
  if (o === 'help') {
    console.log(USAGE);
    return 0;
  }
  const missingTools = [need('fio', ['--version'], 'fio'), need('bindfs', ['--version'], 'bindfs'), need('fusermount', ['-V'], 'fuse')].filter((x): x is string => x !== undefined);
  if (missingTools.length > 0) {
    for (const m of missingTools) say(m);
    return 1;
  }
  let built = true;
  ensureBuild(say, (why) => {
    fail('build', why);
    built = false;
  });
  if (!built) return 1;
  Object.assign(figures, { nodes: NODES, copies: COPIES, periodMs: o.period, seqMiB: o.mib, randMiB: o.randMib, runtimeS: o.runtime, files: o.files, fileBytes: FILE_BYTES });
  try {
    await runAll(o);
  } finally {
    await cleanup.stopAll();
  }
  for (const [key, label, unit] of rows) {
    const cell = (t: TargetName) => String(figures[`${key}.${t}`] ?? '-').padStart(9);
    console.log(`${label.padEnd(32)} Mangrove ${cell('mangrove')}   bindfs ${cell('bindfs')}   disk ${cell('disk')}   ${unit}`);
  }
  const r = ratios();
  console.log(JSON.stringify({ bench: 'mount', figures, ratios: r, ...(errors.length > 0 ? { errors } : {}) }));
  const wanted = [...rows.flatMap(([key]) => TARGETS.map((t) => `${key}.${t}`)), 'mount.ops', 'mount.latencyMsP50', 'mount.latencyMsP99'];
  const missing = wanted.filter((k) => figures[k] === undefined);
  if (missing.length > 0) say(`no figure for ${missing.join(', ')}`);
  return missing.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    say(`failed: ${message(err)}`);
    await cleanup.stopAll();
    process.exit(1);
  },
);
