/**
 * `npm run bench -- fs [--quick] [--files N] [--dir-entries N] [--mib N]
 * [--renames N] [--listings N] [--period MS]`: what Mangrove's file system
 * costs against the local disk, the same work on both in one run.
 *
 * Mangrove: a 3-node cluster of real node processes on 127.0.0.1
 * (spec/helpers/process-cluster.ts), 2 core copies of a page (the config's
 * `copies`), driven through the client library's `fs` (runtime/client/
 * files.ts) from this process, talking to node 0; paths under /bench in the
 * default fileset. The local disk: `node:fs/promises` in a temp dir on the
 * same disk as the nodes' data (the OS's tmpdir), one call at a time, with
 * FileHandle.sync() wherever Mangrove's FileHandle.sync() is called.
 *
 * Phases, each on Mangrove then on the disk:
 *  1. create + write 4 KiB + fsync + close of `files` files, one at a time:
 *     files/s, p50/p99 ms, and each call's p50 (open, write, fsync,
 *     close). Mangrove's fsync also makes the file's entry
 *     durable; the disk's is the file's fsync alone (ext4 commits the create
 *     in the same journal transaction, POSIX does not promise it).
 *  2. stat of those files, one at a time, in passes over all of them until
 *     `statMinMs` has passed: stats/s, p50/p99 ms. Every stat must say 4096
 *     bytes.
 *  3. `dirEntries` empty files made in one directory (open 'wx' + close, no
 *     fsync): createEmptyPerSec. Mangrove's create is durable when answered
 *     (a namespace update is flushed); the disk's is not. Then `listings`
 *     full listings: Mangrove's readdirStat (pages of FS_READDIR_MAX entries,
 *     every entry with its attributes), the disk's readdir (names and types)
 *     and, beside it, readdir + lstat of every entry (what readdirStat
 *     returns): ms per listing and entries/s. Every listing must hold every
 *     name exactly once.
 *  4. a `mib` MiB file written sequentially in 1 MiB writes then one fsync,
 *     then read back in 1 MiB reads: MiB/s each (the write's time includes
 *     its fsync, also reported alone; and the writes' rate without it,
 *     SeqWriteOnly). A failed fsync leaves the write without a figure; the
 *     read-back still runs. The bytes read must be those written
 *     (each MiB compared, and a SHA-256 of the whole), or no figure is
 *     reported for the read. Only the I/O calls are timed; making and
 *     checking the data is not. The disk reads from its page cache (the
 *     file was just written), as Mangrove's node serves from its RAM.
 *  5. `renames` renames of one file back and forth (a → b, b → a): renames/s,
 *     p50/p99 ms. Mangrove's rename is durable when answered, so the
 *     disk's peer is rename + fsync of the directory (`renameVsDisk`); a bare
 *     rename is reported too (`renameVsDiskNoFsync`).
 * Also the largest resident set of the three node processes at the end, and
 * the rebuild rounds the cluster went through during Mangrove's phases
 * (mangroveRebuilds: 0 unless a node was counted failed under the load).
 * Heartbeat period `mangrove local`'s, 250 ms (`--period` to change it).
 *
 * Ratios are rates, Mangrove ÷ disk (higher is better); reported, never
 * asserted. A phase that fails is reported on stderr and in `errors`; the
 * others still run. Progress on stderr. Exits non-zero when a figure is
 * missing. Builds dist/ first when a source is newer than it. Every node is
 * stopped by pid, also on failure, and both temp folders are removed.
 * `--quick`: 50 files, a 1,000-entry directory, 16 MiB, 100 renames.
 *
 * Last stdout line:
 * {"bench":"fs","figures":{...},"ratios":{...},"errors":[...]}
 * (`errors` only when something failed).
 */
import { wholeArg } from './shared/args.js';
import { ratiosOf } from './shared/ratios.js';
import { BenchReport, killPid, message } from './shared/report.js';
import { Cleanup } from './shared/cleanup.js';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FS_READDIR_MAX } from '../bus/messages/fs.js';
import { connect, type MangroveClient } from '../runtime/client/pages.js';
import { ProcessCluster } from '../spec/helpers/process-cluster.js';
import { ensureBuild, root } from './shared/build.js';

process.chdir(root);

const NODES = 3;
const COPIES = 2;
const FILE_BYTES = 4096;
const MIB = 1024 * 1024;

/** `mangrove local`'s heartbeat period (cliDefaults.periodMs, runtime/cli/main.ts), as bench/recovery.ts; quorumTimeoutMs is the config's default, 8 periods. */
const PERIOD_MS = 250;

const full = { files: 500, dirEntries: 10_000, mib: 256, renames: 500, listings: 5, statMinMs: 1_000, period: PERIOD_MS };
const quick = { ...full, files: 50, dirEntries: 1_000, mib: 16, renames: 100, listings: 3, statMinMs: 300 };

function options(): typeof full {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean' },
      files: { type: 'string' },
      'dir-entries': { type: 'string' },
      mib: { type: 'string' },
      renames: { type: 'string' },
      listings: { type: 'string' },
      period: { type: 'string' },
    },
  });
  const o = { ...(values.quick ? quick : full) };
  o.files = wholeArg('files', values.files, 1) ?? o.files;
  o.dirEntries = wholeArg('dir-entries', values['dir-entries'], 1) ?? o.dirEntries;
  o.mib = wholeArg('mib', values.mib, 1) ?? o.mib;
  o.renames = wholeArg('renames', values.renames, 2) ?? o.renames;
  o.listings = wholeArg('listings', values.listings, 1) ?? o.listings;
  o.period = wholeArg('period', values.period, 10) ?? o.period;
  return o;
}

const timing = {
  clusterFormMs: 30_000,
  /** Each client call's timeout: a 1 MiB write, or an fsync of many pages, can take a while on 2 cores. */
  opTimeoutMs: 60_000,
  /** At most this often, a progress line inside a phase. */
  progressMs: 3_000,
};

const figures: Record<string, number> = {};
const report = new BenchReport('fs');
const { errors, say, fail } = report;

// ------------------------------------------------------------ clean-up

const cleanup = new Cleanup(say);
const { running } = cleanup;
const stopAll = (): Promise<void> => cleanup.stopAll();


// ------------------------------------------------------------ measuring

const round = (x: number, digits = 3): number => Number(x.toPrecision(digits));
const ms3 = (x: number): number => Math.round(x * 1000) / 1000;

function quantile(sorted: number[], q: number): number {
  return ms3(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);
}

/** Prints `label done/total` on stderr at most every timing.progressMs. */
function progress(label: string, total: number): (done: number) => void {
  const started = performance.now();
  let last = started;
  return (done) => {
    const now = performance.now();
    if (now - last < timing.progressMs) return;
    last = now;
    say(`  ${label}: ${done}/${total}, ${round((done * 1000) / (now - started))}/s so far`);
  };
}

/**
 * Runs `op(i)` for i in [0, n), one at a time; records ops/s, p50 and p99
 * as `${key}PerSec`, `${key}P50Ms`, `${key}P99Ms`.
 */
async function timeEach(key: string, label: string, n: number, op: (i: number) => Promise<void>): Promise<void> {
  const latencies: number[] = [];
  const tick = progress(label, n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await op(i);
    latencies.push(performance.now() - start);
    tick(i + 1);
  }
  const took = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  figures[`${key}PerSec`] = round((n * 1000) / took);
  figures[`${key}P50Ms`] = quantile(latencies, 0.5);
  figures[`${key}P99Ms`] = quantile(latencies, 0.99);
  say(`  ${label}: ${figures[`${key}PerSec`]}/s, p50 ${figures[`${key}P50Ms`]} ms, p99 ${figures[`${key}P99Ms`]} ms (${n} in ${Math.round(took)} ms)`);
}

/** Each of `n` ops, in passes over all of them, until `minMs` has passed (at least one pass). */
async function timePasses(key: string, label: string, n: number, minMs: number, op: (i: number) => Promise<void>): Promise<void> {
  const latencies: number[] = [];
  const t0 = performance.now();
  let passes = 0;
  do {
    for (let i = 0; i < n; i++) {
      const start = performance.now();
      await op(i);
      latencies.push(performance.now() - start);
    }
    passes++;
  } while (performance.now() - t0 < minMs);
  const took = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  figures[`${key}PerSec`] = round((latencies.length * 1000) / took);
  figures[`${key}P50Ms`] = quantile(latencies, 0.5);
  figures[`${key}P99Ms`] = quantile(latencies, 0.99);
  say(`  ${label}: ${figures[`${key}PerSec`]}/s, p50 ${figures[`${key}P50Ms`]} ms, p99 ${figures[`${key}P99Ms`]} ms (${passes} passes of ${n})`);
}

// ------------------------------------------------------------ the two systems

/** One system's calls, so every phase does the same work on both. */
interface Target {
  /** 'mangrove' or 'disk': the prefix of its figures. */
  name: 'mangrove' | 'disk';
  /** A path under the target's root for `rel` (/files/f1…). */
  path(rel: string): string;
  mkdir(rel: string): Promise<void>;
  /** Create (or empty) + write at 0 + fsync + close; `step` hears each call's ms. */
  createWriteFsync(rel: string, data: Buffer, step?: Step): Promise<void>;
  /** open 'wx' + close. */
  createEmpty(rel: string): Promise<void>;
  statSize(rel: string): Promise<number>;
  /** One full listing: the names. */
  list(rel: string): Promise<string[]>;
  rename(from: string, to: string): Promise<void>;
  /** The directory's fsync, for the disk's durable rename (Mangrove: nothing; its rename is durable). */
  syncDir?(rel: string): Promise<void>;
  open(rel: string, flags: 'w' | 'r'): Promise<Handle>;
}

/** Told how long each step of a compound operation took. */
type Step = (name: 'Open' | 'Write' | 'Fsync' | 'Close', ms: number) => void;

/** `f()`, its time told to `step`. */
async function timed<T>(name: Parameters<Step>[0], step: Step | undefined, f: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const r = await f();
  step?.(name, performance.now() - start);
  return r;
}

interface Handle {
  write(data: Buffer, position: number): Promise<void>;
  read(length: number, position: number): Promise<Buffer>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

function mangroveTarget(client: MangroveClient): Target {
  const fs = client.fs;
  const path = (rel: string) => `/bench${rel}`;
  return {
    name: 'mangrove',
    path,
    mkdir: (rel) => fs.mkdir(path(rel), { recursive: true }),
    async createWriteFsync(rel, data, step) {
      const h = await timed('Open', step, () => fs.open(path(rel), 'w'));
      await timed('Write', step, () => h.write(data, 0));
      await timed('Fsync', step, () => h.sync());
      await timed('Close', step, () => h.close());
    },
    async createEmpty(rel) {
      await (await fs.open(path(rel), 'wx')).close();
    },
    statSize: async (rel) => (await fs.stat(path(rel))).size,
    list: async (rel) => (await fs.readdirStat(path(rel))).map((e) => e.name),
    rename: (from, to) => fs.rename(path(from), path(to)),
    async open(rel, flags) {
      const h = await fs.open(path(rel), flags);
      return {
        write: async (data, position) => void (await h.write(data, position)),
        read: async (length, position) => (await h.read(length, position)).data,
        sync: () => h.sync(),
        close: () => h.close(),
      };
    },
  };
}

function diskTarget(dir: string): Target {
  const path = (rel: string) => join(dir, rel);
  return {
    name: 'disk',
    path,
    mkdir: async (rel) => void (await fsp.mkdir(path(rel), { recursive: true })),
    async createWriteFsync(rel, data, step) {
      const h = await timed('Open', step, () => fsp.open(path(rel), 'w'));
      try {
        await timed('Write', step, () => h.write(data, 0, data.length, 0));
        await timed('Fsync', step, () => h.sync());
      } finally {
        await timed('Close', step, () => h.close());
      }
    },
    async createEmpty(rel) {
      await (await fsp.open(path(rel), 'wx')).close();
    },
    statSize: async (rel) => (await fsp.stat(path(rel))).size,
    list: (rel) => fsp.readdir(path(rel)),
    rename: (from, to) => fsp.rename(path(from), path(to)),
    async syncDir(rel) {
      const h = await fsp.open(path(rel), 'r');
      try {
        await h.sync();
      } finally {
        await h.close();
      }
    },
    async open(rel, flags) {
      const h = await fsp.open(path(rel), flags);
      return {
        async write(data, position) {
          for (let done = 0; done < data.length; ) done += (await h.write(data, done, data.length - done, position + done)).bytesWritten;
        },
        async read(length, position) {
          const buf = Buffer.allocUnsafe(length);
          let done = 0;
          for (;;) {
            const { bytesRead } = await h.read(buf, done, length - done, position + done);
            done += bytesRead;
            if (bytesRead === 0 || done === length) break;
          }
          return buf.subarray(0, done);
        },
        sync: () => h.sync(),
        close: () => h.close(),
      };
    },
  };
}

// ------------------------------------------------------------ the phases

const name5 = (prefix: string, i: number) => `${prefix}${String(i).padStart(5, '0')}`;

/** A 4 KiB body unique to file i. */
function fileBody(i: number): Buffer {
  const b = randomBytes(FILE_BYTES);
  b.writeUInt32LE(i, 0);
  return b;
}

/** Phase 1: create + write 4 KiB + fsync + close, one file at a time; also each step's p50. */
async function createWriteFsync(t: Target, n: number): Promise<void> {
  await t.mkdir('/files');
  const steps = new Map<string, number[]>();
  const step: Step = (name, ms) => void (steps.get(name) ?? steps.set(name, []).get(name)!).push(ms);
  await timeEach(`${t.name}CreateWriteFsync`, `${t.name} create+write+fsync+close`, n, (i) => t.createWriteFsync(`/files/${name5('f', i)}`, fileBody(i), step));
  for (const [name, ms] of steps) figures[`${t.name}CreateWriteFsync${name}P50Ms`] = quantile(ms.sort((a, b) => a - b), 0.5);
  say(`  ${t.name} p50 of each step: ${[...steps.keys()].map((k) => `${k.toLowerCase()} ${figures[`${t.name}CreateWriteFsync${k}P50Ms`]} ms`).join(', ')}`);
}

/** Phase 2: stat of those files, in passes. Every one must say 4096 bytes. */
async function stat(t: Target, n: number, minMs: number): Promise<void> {
  let wrong = 0;
  await timePasses(`${t.name}Stat`, `${t.name} stat`, n, minMs, async (i) => {
    if ((await t.statSize(`/files/${name5('f', i)}`)) !== FILE_BYTES) wrong++;
  });
  if (wrong > 0) {
    for (const k of ['PerSec', 'P50Ms', 'P99Ms']) delete figures[`${t.name}Stat${k}`];
    throw new Error(`${wrong} stats did not say ${FILE_BYTES} bytes (the size phase 1 wrote and fsynced)`);
  }
}

/** Phase 3: `entries` empty files in one directory, then `listings` full listings, each checked. */
async function readdir(t: Target, entries: number, listings: number): Promise<void> {
  await t.mkdir('/dir');
  const tick = progress(`${t.name} create empty`, entries);
  const t0 = performance.now();
  for (let i = 0; i < entries; i++) {
    await t.createEmpty(`/dir/${name5('e', i)}`);
    tick(i + 1);
  }
  const took = performance.now() - t0;
  figures[`${t.name}CreateEmptyPerSec`] = round((entries * 1000) / took);
  say(`  ${t.name} create empty (open wx + close): ${figures[`${t.name}CreateEmptyPerSec`]}/s (${entries} in ${Math.round(took)} ms)`);

  const check = (names: string[]): void => {
    const seen = new Set(names);
    if (names.length !== entries || seen.size !== entries || !Array.from({ length: entries }, (_, i) => name5('e', i)).every((n) => seen.has(n))) {
      throw new Error(`a listing of the ${entries}-entry directory held ${names.length} names (${seen.size} distinct), not each of the ${entries} once`);
    }
  };
  const listOnce = async (key: string, label: string, list: () => Promise<string[]>): Promise<void> => {
    const times: number[] = [];
    for (let l = 0; l < listings; l++) {
      const start = performance.now();
      const names = await list();
      times.push(performance.now() - start);
      check(names);
    }
    const total = times.reduce((a, b) => a + b, 0);
    figures[`${key}Ms`] = ms3(total / listings);
    figures[`${key}EntriesPerSec`] = round((entries * listings * 1000) / total);
    say(`  ${label}: ${figures[`${key}Ms`]} ms a listing, ${figures[`${key}EntriesPerSec`]} entries/s (${listings} listings; fastest ${ms3(Math.min(...times))} ms)`);
  };
  await listOnce(`${t.name}Readdir`, t.name === 'mangrove' ? `mangrove readdirStat (${FS_READDIR_MAX} a call)` : 'disk readdir', () => t.list('/dir'));
  if (t.name === 'disk') {
    await listOnce('diskReaddirLstat', 'disk readdir + lstat of each', async () => {
      const names = await t.list('/dir');
      for (const n of names) await fsp.lstat(t.path(`/dir/${n}`));
      return names;
    });
  }
}

/** MiB `i` of the sequential file: random bytes, with i in every 4 KiB, so no two MiB or pages are alike. */
function chunk(base: Buffer, i: number): Buffer {
  const c = Buffer.from(base);
  for (let p = 0; p < MIB; p += FILE_BYTES) c.writeUInt32LE(i, p);
  return c;
}

/** Closes `h` after `err` and throws `err`, not what the close threw (it would hide the cause). */
async function closeQuietly(h: Handle, err: unknown, where: string): Promise<never> {
  await h.close().catch((e: unknown) => say(`  closing after "${message(err)}" failed too: ${message(e)}`));
  throw new Error(`${where}: ${message(err)}`);
}

/** Phase 4: `mib` MiB written in 1 MiB writes then one fsync; read back in 1 MiB reads and compared. */
async function sequential(t: Target, mib: number): Promise<void> {
  const base = randomBytes(MIB);
  const written = createHash('sha256');
  const w = await t.open('/seq.bin', 'w');
  let busy = 0;
  let fsyncMs = 0;
  let where = 'write of MiB 0';
  try {
    const tick = progress(`${t.name} sequential write`, mib);
    for (let i = 0; i < mib; i++) {
      const c = chunk(base, i);
      written.update(c);
      where = `write of MiB ${i}`;
      const start = performance.now();
      await w.write(c, i * MIB);
      busy += performance.now() - start;
      tick(i + 1);
    }
  } catch (err) {
    await closeQuietly(w, err, where);
  }
  figures[`${t.name}SeqWriteOnlyMiBPerSec`] = round((mib * 1000) / busy);
  // The fsync on its own: when it fails, the write has no figure, but what was written is still read back and checked.
  let synced = false;
  const start = performance.now();
  try {
    await w.sync();
    synced = true;
  } catch (err) {
    fail(`${t.name}, phase 4/5`, `the one fsync after ${mib} MiB of 1 MiB writes failed after ${Math.round(performance.now() - start)} ms: ${message(err)} (no write figure; the read-back still runs)`);
  }
  fsyncMs = performance.now() - start;
  // A close that fails is reported; the read-back (a new handle) still checks what the file holds.
  await w.close().catch((err: unknown) => fail(`${t.name}, phase 4/5`, `closing the written file: ${message(err)}`));
  if (synced) {
    busy += fsyncMs;
    figures[`${t.name}SeqWriteMiBPerSec`] = round((mib * 1000) / busy);
    figures[`${t.name}SeqFsyncMs`] = ms3(fsyncMs);
    say(`  ${t.name} sequential write: ${figures[`${t.name}SeqWriteMiBPerSec`]} MiB/s (${mib} MiB in ${Math.round(busy)} ms, the fsync ${Math.round(fsyncMs)} ms of it; the writes alone ${figures[`${t.name}SeqWriteOnlyMiBPerSec`]} MiB/s)`);
  } else {
    say(`  ${t.name} sequential write, without its failed fsync: ${figures[`${t.name}SeqWriteOnlyMiBPerSec`]} MiB/s (${mib} MiB in ${Math.round(busy)} ms)`);
  }

  const read = createHash('sha256');
  const r = await t.open('/seq.bin', 'r');
  let firstBad = -1;
  /** Of the 4 KiB pages that differ: all zeros, or something else; and the bytes that were missing. */
  const bad = { zeroPages: 0, otherPages: 0, missingBytes: 0 };
  busy = 0;
  where = 'read of MiB 0';
  try {
    const tick = progress(`${t.name} sequential read`, mib);
    for (let i = 0; i < mib; i++) {
      where = `read of MiB ${i}`;
      const start = performance.now();
      const data = await r.read(MIB, i * MIB);
      busy += performance.now() - start;
      read.update(data);
      const want = chunk(base, i);
      if (!data.equals(want)) {
        if (firstBad < 0) firstBad = i;
        bad.missingBytes += MIB - data.length;
        for (let p = 0; p < data.length; p += FILE_BYTES) {
          const got = data.subarray(p, p + FILE_BYTES);
          if (got.equals(want.subarray(p, p + got.length))) continue;
          if (got.every((x) => x === 0)) bad.zeroPages++;
          else bad.otherPages++;
        }
      }
      tick(i + 1);
    }
    where = 'the read past the end';
    const start = performance.now();
    const past = await r.read(MIB, mib * MIB);
    busy += performance.now() - start;
    if (past.length !== 0 && firstBad < 0) firstBad = mib;
  } catch (err) {
    await closeQuietly(r, err, where);
  }
  await r.close().catch((err: unknown) => fail(`${t.name}, phase 4/5`, `closing the file read: ${message(err)}`));
  const [a, b] = [written.digest('hex'), read.digest('hex')];
  if (firstBad >= 0 || a !== b) {
    throw new Error(`the ${mib} MiB read back are not those written (sha256 ${b.slice(0, 16)}… against ${a.slice(0, 16)}…; first differing MiB ${firstBad}${firstBad === mib ? ': bytes past the end' : ''}; ${bad.zeroPages} pages of 4 KiB read as zeros, ${bad.otherPages} other pages differ, ${bad.missingBytes} bytes missing at the end); no read figure`);
  }
  figures[`${t.name}SeqReadMiBPerSec`] = round((mib * 1000) / busy);
  say(`  ${t.name} sequential read: ${figures[`${t.name}SeqReadMiBPerSec`]} MiB/s (${mib} MiB in ${Math.round(busy)} ms; sha256 ${a.slice(0, 16)}… matches what was written)`);
}

/** Phase 5: one file renamed back and forth; afterwards exactly the last name holds it. */
async function renames(t: Target, n: number): Promise<void> {
  await t.mkdir('/ren');
  await t.createWriteFsync('/ren/a', fileBody(0));
  const names = ['/ren/a', '/ren/b'];
  const variants: [string, string, boolean][] = t.syncDir
    ? [
        ['diskRenameNoFsync', 'disk rename', false],
        ['diskRename', 'disk rename + fsync of the directory', true],
      ]
    : [['mangroveRename', 'mangrove rename', false]];
  for (const [key, label, durable] of variants) {
    await timeEach(key, label, n, async (i) => {
      await t.rename(names[i % 2], names[(i + 1) % 2]);
      if (durable) await t.syncDir!('/ren');
    });
    // n renames from a: a after an even count.
    const here = names[n % 2];
    const gone = names[(n + 1) % 2];
    const size = await t.statSize(here);
    const stillThere = await t.statSize(gone).then(
      () => true,
      () => false,
    );
    if (size !== FILE_BYTES || stillThere) {
      for (const k of ['PerSec', 'P50Ms', 'P99Ms']) delete figures[`${key}${k}`];
      throw new Error(`after ${n} renames ${here} holds ${size} bytes and ${gone} ${stillThere ? 'still exists' : 'is gone'}; expected ${FILE_BYTES} and gone`);
    }
    if (n % 2 === 1) await t.rename(here, gone); // back to a for the next variant
  }
}

// ------------------------------------------------------------ running them

/** The resident set of a process, in MiB (Linux /proc). */
function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

/** Rebuild rounds finished so far: the most any node's log counts (status gives the last round's number, not a count). */
async function rebuilds(c: ProcessCluster): Promise<number> {
  return Math.max(...[...Array(NODES).keys()].map((i) => c.log(i).split('"msg":"rebuild finished; operations resume"').length - 1));
}

async function run(o: typeof full): Promise<void> {
  ensureBuild(say, (why) => fail('build', why));
  let cluster: ProcessCluster | undefined;
  let client: MangroveClient | undefined;
  const diskDir = mkdtempSync(join(tmpdir(), 'mangrove-bench-fs-disk-'));
  const handle = {
    stop: async () => {
      client?.fs.stop();
      await client?.close().catch(() => undefined);
      client = undefined;
      await cluster?.stop();
      rmSync(diskDir, { recursive: true, force: true });
    },
    kill: () => {
      for (let i = 0; i < NODES; i++) if (cluster?.isRunning(i)) killPid(cluster.pid(i), 'SIGKILL');
      rmSync(diskDir, { recursive: true, force: true });
    },
  };
  running.add(handle);
  try {
    const started = performance.now();
    cluster = await ProcessCluster.start({ nodes: NODES, anchors: 3, copies: COPIES, periodMs: o.period });
    const c = cluster;
    if ((await c.waitFor(() => c.converged(), timing.clusterFormMs, 100)) < 0) {
      fail('mangrove', `the ${NODES}-node cluster did not form (quorum, all alive) within ${timing.clusterFormMs / 1000} s. ${c.died().join(' ')}`);
      return;
    }
    say(`${NODES}-node cluster formed in ${Math.round(performance.now() - started)} ms (${c.dir}, pids ${[0, 1, 2].map((i) => c.pid(i)).join(' ')}); the disk's folder ${diskDir}`);
    client = await connect(c.endpoints[0], { timeoutMs: timing.opTimeoutMs });
    const targets = [mangroveTarget(client), diskTarget(diskDir)];

    const phases: [string, (t: Target) => Promise<void>][] = [
      [`1/5 create+write ${FILE_BYTES} B+fsync+close of ${o.files} files`, (t) => createWriteFsync(t, o.files)],
      [`2/5 stat of those ${o.files} files`, (t) => stat(t, o.files, o.statMinMs)],
      [`3/5 ${o.dirEntries} empty files in one directory, then ${o.listings} full listings`, (t) => readdir(t, o.dirEntries, o.listings)],
      [`4/5 sequential write of ${o.mib} MiB (1 MiB writes, one fsync), read back`, (t) => sequential(t, o.mib)],
      [`5/5 ${o.renames} renames back and forth`, (t) => renames(t, o.renames)],
    ];
    figures.mangroveRebuilds = 0;
    for (const [label, phase] of phases) {
      if (cleanup.stopping) break;
      say(`phase ${label}`);
      for (const t of targets) {
        const t0 = performance.now();
        const before = t.name === 'mangrove' ? await rebuilds(c) : undefined;
        try {
          await phase(t);
        } catch (err) {
          fail(`${t.name}, phase ${label.split(' ')[0]}`, message(err));
        }
        const after = t.name === 'mangrove' ? await rebuilds(c) : undefined;
        const more = before !== undefined && after !== undefined ? Math.max(0, after - before) : 0;
        figures.mangroveRebuilds += more;
        say(`  ${t.name} took ${(Math.round(performance.now() - t0) / 1000).toFixed(1)} s${more > 0 ? `; the cluster rebuilt ${more} times meanwhile (a node counted failed under the load)` : ''}`);
        const died = c.died();
        if (died.length > 0) {
          fail('mangrove', `nodes died: ${died.join(' ')}`);
          return;
        }
      }
    }
    const rss = [0, 1, 2].map((i) => rssMiB(c.pid(i))).filter((x): x is number => x !== undefined);
    if (rss.length > 0) figures.nodeRssMiBMax = Math.max(...rss);
  } catch (err) {
    fail('mangrove', message(err));
  } finally {
    await handle.stop().catch((err: unknown) => fail('mangrove', `stopping the cluster: ${message(err)}`));
    running.delete(handle);
  }
}

// ------------------------------------------------------------ report

const rows: [string, string, string][] = [
  ['CreateWriteFsync', 'create+write 4 KiB+fsync+close', 'files/s'],
  ['Stat', 'stat', 'stats/s'],
  ['CreateEmpty', 'create empty (open wx + close)', 'files/s'],
  ['Readdir', 'full listing', 'entries/s'],
  ['SeqWrite', 'sequential write + fsync', 'MiB/s'],
  ['SeqRead', 'sequential read', 'MiB/s'],
  ['Rename', 'rename (disk: + dir fsync)', 'renames/s'],
];

function rate(prefix: string, key: string): number | undefined {
  if (key === 'Readdir') return figures[`${prefix}ReaddirEntriesPerSec`];
  if (key.startsWith('Seq')) return figures[`${prefix}${key}MiBPerSec`];
  return figures[`${prefix}${key}PerSec`];
}

/** Mangrove ÷ disk, three significant digits; left out when either side is missing. */
function ratios(): Record<string, number> {
  const pairs: [string, string, string][] = [
    ['createWriteFsyncVsDisk', 'mangroveCreateWriteFsyncPerSec', 'diskCreateWriteFsyncPerSec'],
    ['statVsDisk', 'mangroveStatPerSec', 'diskStatPerSec'],
    ['createEmptyVsDisk', 'mangroveCreateEmptyPerSec', 'diskCreateEmptyPerSec'],
    ['readdirVsDisk', 'mangroveReaddirEntriesPerSec', 'diskReaddirEntriesPerSec'],
    ['readdirVsDiskReaddirLstat', 'mangroveReaddirEntriesPerSec', 'diskReaddirLstatEntriesPerSec'],
    ['seqWriteVsDisk', 'mangroveSeqWriteMiBPerSec', 'diskSeqWriteMiBPerSec'],
    ['seqReadVsDisk', 'mangroveSeqReadMiBPerSec', 'diskSeqReadMiBPerSec'],
    ['renameVsDisk', 'mangroveRenamePerSec', 'diskRenamePerSec'],
    ['renameVsDiskNoFsync', 'mangroveRenamePerSec', 'diskRenameNoFsyncPerSec'],
  ];
  return ratiosOf(figures, pairs);
}

async function main(): Promise<number> {
  let o: typeof full;
  try {
    o = options();
  } catch (err) {
    say(message(err));
    return 2;
  }
  Object.assign(figures, { nodes: NODES, copies: COPIES, periodMs: o.period, fileBytes: FILE_BYTES, files: o.files, dirEntries: o.dirEntries, listings: o.listings, seqMiB: o.mib, renames: o.renames });
  try {
    await run(o);
  } finally {
    await stopAll();
  }
  for (const [key, label, unit] of rows) {
    const m = rate('mangrove', key);
    const d = rate('disk', key);
    if (m === undefined && d === undefined) continue;
    const lat = (p: string) => (figures[`${p}${key}P50Ms`] === undefined ? '' : `  p50 ${figures[`${p}${key}P50Ms`]} / p99 ${figures[`${p}${key}P99Ms`]} ms`);
    console.log(`${label.padEnd(32)} Mangrove ${String(m ?? '-').padStart(8)}${lat('mangrove')}   disk ${String(d ?? '-').padStart(8)}${lat('disk')}   ${unit}`);
  }
  const r = ratios();
  console.log(JSON.stringify({ bench: 'fs', figures, ratios: r, ...(errors.length > 0 ? { errors } : {}) }));
  const missing = ['mangrove', 'disk'].flatMap((p) => rows.map(([k]) => [p, k])).filter(([p, k]) => rate(p, k) === undefined).map(([p, k]) => `${p}${k}`);
  if (missing.length > 0) say(`no figure for ${missing.join(', ')}`);
  return missing.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    say(`failed: ${message(err)}`);
    await stopAll();
    process.exit(1);
  },
);
