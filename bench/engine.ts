/**
 * `npm run bench -- engine`: what Mangrove's memory engine costs against
 * Redis and against LMDB's own durable commit, on one machine.
 *
 * Mangrove: a 3-node cluster of real node processes on 127.0.0.1
 * (spec/helpers/process-cluster.ts), pages of 4 KiB with 2 core holders
 * each (alloc's `copies`), driven by a client in another process
 * (bench/engine-peer.ts) talking to node 0 with 8 requests in flight:
 *  - local-hit read: pages node 0 wrote (so it owns them), read again and again;
 *  - remote-miss read: distinct pages written through node 1 (which then
 *    holds the only copy in RAM), each read exactly once through node 0, so
 *    every read is node 0's first touch and fetches node 1's copy (the read
 *    checks the page carries node 1's stamp);
 *  - write: one page rewritten by node 0, which owns it;
 *  - write + flush: the same, then flush the page, durable on both core holders.
 * Redis (redis-server from Debian's packages, started here on free loopback
 * ports and stopped after), from the same client process with one
 * connection per worker, so again 8 requests in flight: GET and SET on a
 * server without replica or AOF; SET then `WAIT 1 0` on a primary with
 * `appendfsync always` and a replica (also `appendfsync always`).
 * An embedded node: a one-node cluster started inside the client process
 * (`startNode`, runtime/node/embedded.ts), its pages read through the same
 * client API without a socket, 8 in flight.
 * Then 4 client processes at once against node 0 (local-hit read, and
 * write+flush), 8 in flight each: `mangrove4Clients…`, throughput summed,
 * p50 and p99 the worst client's.
 * The same with keys: a second 3-node cluster whose configs have keys
 * (CURVE on every link, each link proving its key), its admin client's key
 * in the client process, local-hit read and write+flush: `…Curve…`, and the
 * ratios `curveVsPlain…` to the cluster without keys.
 * LMDB: runtime/storage/lmdb-pages.ts's store in a temp dir on the same disk,
 * synchronous durable 4 KiB puts, one at a time: the ceiling a node's own
 * durable commit sets.
 *
 * Every workload warms up, then is measured for a fixed time; figures are
 * ops/s and p50/p99 latency in ms, and the CPU time per request of the
 * client process and (Mangrove) of node 0's process, in µs. Ratios are throughput, Mangrove ÷ peer
 * (higher is better). A part that fails is reported on stderr and in
 * `errors`; the others still run. Without redis-server the bench says so
 * and prints Mangrove's figures. Exits non-zero when a Mangrove or LMDB
 * figure is missing. Builds dist/ first when a source is newer than it.
 *
 * Last stdout line:
 * {"bench":"engine","figures":{...},"ratios":{...},"errors":[...]}
 * (`errors` only when something failed).
 */
import { ratiosOf } from './shared/ratios.js';
import { Cleanup } from './shared/cleanup.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PAGE_BYTES } from '../machines/memory/address.js';
import { FS_ATTR_BYTES } from '../actors/storage/page-store.js';
import { LmdbPageStore } from '../runtime/storage/lmdb-pages.js';
import { ProcessCluster } from '../spec/helpers/process-cluster.js';
import { freePort } from '../spec/helpers/ports.js';
import type { Plan } from './engine-peer.js';
import { findRedisServer, RedisServer } from './redis-peer.js';
import { ensureBuild, root } from './shared/build.js';

process.chdir(root);

const CONCURRENCY = 8;
/** Client processes in the run that loads one node from several processes at once. */
const CLIENT_PROCESSES = 4;
const COPIES = 2;

const timing = {
  warmupMs: 1_000,
  measureMs: 4_000,
  opTimeoutMs: 10_000,
  clusterFormMs: 30_000,
  /** Longest a client process may run, per system. */
  mangrovePeerMs: 80_000,
  redisPeerMs: 40_000,
  lmdbWarmupMs: 500,
  lmdbMeasureMs: 3_000,
};

const figures: Record<string, number> = {};
const errors: string[] = [];

function fail(part: string, text: string): void {
  const line = `${part}: ${text}`.replace(/\s+/g, ' ').trim();
  errors.push(line);
  console.error(`bench engine: ${line}`);
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// ------------------------------------------------------------ clean-up

const cleanup = new Cleanup((line) => console.error(`bench engine: ${line}`));
const { running } = cleanup;
const stopAll = (): Promise<void> => cleanup.stopAll();

function killPid(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

// ------------------------------------------------------------ the client process

/** Runs bench/engine-peer.ts with `plan`; merges its figures, records its errors. */
async function runPeer(part: string, plan: Plan, limitMs: number): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(root, 'bench/engine-peer.ts'), JSON.stringify(plan)], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const handle = {
    stop: () => stopChild(child),
    kill: () => killPid(child.exitCode === null ? child.pid : undefined, 'SIGKILL'),
  };
  running.add(handle);
  let done = false;
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        fail(part, `the client process did not finish within ${limitMs / 1000} s; stopped it`);
        resolve();
      }, limitMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        fail(part, `cannot start the client process: ${err.message}`);
        resolve();
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!done) fail(part, `the client process exited (${code ?? signal}) before it was done`);
        resolve();
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.startsWith('FIGURE ')) Object.assign(figures, JSON.parse(line.slice(7)) as Record<string, number>);
        else if (line.startsWith('ERROR ')) {
          errors.push(line.slice(6));
        } else if (line === 'DONE') done = true;
      });
    });
  } finally {
    await handle.stop();
    running.delete(handle);
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => killPid(child.pid, 'SIGKILL'), 3_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.stdin?.end();
    killPid(child.pid, 'SIGTERM');
  });
}

// ------------------------------------------------------------ Mangrove

function mangrovePlan(c: ProcessCluster): NonNullable<Plan['mangrove']> {
  return { node0: c.endpoints[0], node0Pid: c.pid(0), node1: c.endpoints[1], copies: COPIES, localPages: 256, remotePagesMin: 2_048, remotePagesMax: 16_384, remoteSetupMs: 15_000 };
}

/** The client processes' figures as one: throughputs summed, p50 and p99 the worst of them. */
function sumClients(prefix: string, into: string, tags: string[]): void {
  const ops = tags.map((t) => figures[`${prefix}${t}Ops`]);
  if (ops.some((o) => o === undefined)) return;
  figures[`${into}Ops`] = ops.reduce((a, b) => a + b, 0);
  for (const q of ['P50Ms', 'P99Ms']) figures[`${into}${q}`] = Math.max(...tags.map((t) => figures[`${prefix}${t}${q}`]));
  for (const t of tags) for (const k of ['Ops', 'P50Ms', 'P99Ms', 'ClientCpuUs', 'NodeCpuUs']) delete figures[`${prefix}${t}${k}`];
  delete figures[`mangroveFlushHoldersMin${tags[0]}`];
  for (const t of tags.slice(1)) delete figures[`mangroveFlushHoldersMin${t}`];
}

/**
 * A 3-node cluster of `options` for one part of the bench: formed, handed
 * to `work`, stopped after (killed by pid if the bench is interrupted);
 * what fails is reported under `part`.
 */
async function withCluster(part: string, options: Parameters<typeof ProcessCluster.start>[0], work: (c: ProcessCluster) => Promise<void>): Promise<void> {
  let cluster: ProcessCluster | undefined;
  const handle = {
    stop: async () => {
      await cluster?.stop();
    },
    kill: () => {
      for (let i = 0; i < 3; i++) if (cluster?.isRunning(i)) killPid(cluster.pid(i), 'SIGKILL');
    },
  };
  running.add(handle);
  try {
    const started = performance.now();
    cluster = await ProcessCluster.start(options);
    const c = cluster;
    if ((await c.waitFor(() => c.converged(), timing.clusterFormMs, 100)) < 0) {
      fail(part, `the 3-node cluster did not form (quorum, all 3 alive) within ${timing.clusterFormMs / 1000} s. ${c.died().join(' ')}`);
      return;
    }
    console.error(`bench engine: ${part}: 3-node cluster formed in ${Math.round(performance.now() - started)} ms (${c.dir})`);
    await work(c);
    const died = c.died();
    if (died.length > 0) fail(part, `nodes died during the run: ${died.join(' ')}`);
  } catch (err) {
    fail(part, message(err));
  } finally {
    await handle.stop().catch((err: unknown) => fail(part, `stopping the cluster: ${message(err)}`));
    running.delete(handle);
  }
}

/** The measured runs of one client process against `c` (`mangrove` plan fields beside the cluster's own). */
function peerPlan(c: ProcessCluster, extra: Partial<NonNullable<Plan['mangrove']>> = {}): Plan {
  return { concurrency: CONCURRENCY, warmupMs: timing.warmupMs, measureMs: timing.measureMs, opTimeoutMs: timing.opTimeoutMs, mangrove: { ...mangrovePlan(c), ...extra } };
}

async function mangrove(): Promise<void> {
  ensureBuild((line) => console.error(`bench engine: ${line}`), (why) => fail('build', why));
  await withCluster('mangrove', { nodes: 3, anchors: 3 }, async (c) => {
    await runPeer('mangrove', peerPlan(c), timing.mangrovePeerMs);
    // The same node, 4 client processes at once, each with its 8 in flight: what one node serves, not one client.
    const tags = [...Array(CLIENT_PROCESSES).keys()].map((i) => `C${i}`);
    await Promise.all(tags.map((tag) => runPeer(`mangrove, client process ${tag}`, peerPlan(c, { workloads: ['localRead', 'writeFlush'], tag }), timing.mangrovePeerMs)));
    for (const w of ['LocalRead', 'WriteFlush']) sumClients(`mangrove${w}`, `mangrove${CLIENT_PROCESSES}Clients${w}`, tags);
  });
}

/** A second cluster, with keys: the cost of CURVE and the link proofs on the same workloads. */
async function mangroveCurve(): Promise<void> {
  await withCluster('mangrove with keys', { nodes: 3, anchors: 3, secure: {} }, async (c) => {
    await runPeer('mangrove with keys', peerPlan(c, { workloads: ['localRead', 'writeFlush'], tag: 'Curve', key: c.adminKeyPath }), timing.mangrovePeerMs);
    delete figures.mangroveFlushHoldersMinCurve;
  });
}

// ------------------------------------------------------------ an embedded node

/** A one-node cluster inside the client process (`startNode`), read without a socket. */
async function embedded(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mangrove-bench-embedded-'));
  try {
    await runPeer(
      'embedded',
      {
        concurrency: CONCURRENCY,
        warmupMs: timing.warmupMs,
        measureMs: timing.measureMs,
        opTimeoutMs: timing.opTimeoutMs,
        embedded: { listen: `tcp://127.0.0.1:${await freePort()}`, dataDir: dir, localPages: 256, formMs: timing.clusterFormMs },
      },
      timing.mangrovePeerMs,
    );
  } catch (err) {
    fail('embedded', message(err));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------ Redis

async function redis(): Promise<void> {
  const binary = findRedisServer();
  if (binary === undefined) {
    fail('redis', 'redis-server is not installed (apt-get install redis-server); no Redis figures or ratios');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'mangrove-bench-redis-'));
  const servers: RedisServer[] = [];
  const handle = {
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
    kill: () => servers.forEach((s) => s.killNow()),
  };
  running.add(handle);
  try {
    const plain = await RedisServer.start({ binary, dir: join(dir, 'plain') });
    servers.push(plain);
    const primary = await RedisServer.start({ binary, dir: join(dir, 'primary'), durable: true });
    servers.push(primary);
    const replica = await RedisServer.start({ binary, dir: join(dir, 'replica'), durable: true, replicaOf: primary.port });
    servers.push(replica);
    await primary.waitForReplica();
    console.error(`bench engine: redis-server on ports ${plain.port} (plain), ${primary.port} (durable primary), ${replica.port} (its replica)`);
    await runPeer(
      'redis',
      {
        concurrency: CONCURRENCY,
        warmupMs: timing.warmupMs,
        measureMs: timing.measureMs,
        opTimeoutMs: timing.opTimeoutMs,
        redis: { plain: plain.port, durable: primary.port },
      },
      timing.redisPeerMs,
    );
  } catch (err) {
    fail('redis', `cannot run Redis: ${message(err)}`);
  } finally {
    await handle.stop();
    running.delete(handle);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------ LMDB

/** Synchronous durable 4 KiB puts into the node's page store, one at a time. */
async function lmdb(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mangrove-bench-lmdb-'));
  let store: LmdbPageStore | undefined;
  try {
    store = LmdbPageStore.open(dir);
    const pages = 256;
    const data = new Uint8Array(PAGE_BYTES).fill(0x5a);
    const attrs = new Uint8Array(FS_ATTR_BYTES);
    const latencies: number[] = [];
    const t0 = performance.now();
    const from = t0 + timing.lmdbWarmupMs;
    const to = from + timing.lmdbMeasureMs;
    let last = from;
    for (let n = 0; ; n++) {
      const start = performance.now();
      if (start >= to) break;
      data[0] = n & 0xff;
      store.put(BigInt(n % pages) * BigInt(PAGE_BYTES), { data, version: Math.floor(n / pages), attrs });
      const end = performance.now();
      if (start >= from) {
        latencies.push(end - start);
        last = end;
      }
    }
    latencies.sort((a, b) => a - b);
    const at = (q: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] * 1000) / 1000;
    figures.lmdbSyncPutOps = Math.round((latencies.length * 1000) / (last - from));
    figures.lmdbSyncPutP50Ms = at(0.5);
    figures.lmdbSyncPutP99Ms = at(0.99);
  } catch (err) {
    fail('lmdb', message(err));
  } finally {
    await store?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------ report

const rows: [string, string][] = [
  ['mangroveLocalRead', 'Mangrove local-hit read'],
  ['mangroveRemoteRead', 'Mangrove remote-miss read'],
  ['mangroveWrite', 'Mangrove write'],
  ['mangroveWriteFlush', 'Mangrove write+flush (2 holders)'],
  ['mangrove4ClientsLocalRead', 'Mangrove local-hit read, 4 clients'],
  ['mangrove4ClientsWriteFlush', 'Mangrove write+flush, 4 clients'],
  ['mangroveLocalReadCurve', 'Mangrove local-hit read, with keys'],
  ['mangroveWriteFlushCurve', 'Mangrove write+flush, with keys'],
  ['embeddedLocalRead', 'Embedded node local-hit read'],
  ['redisGet', 'Redis GET'],
  ['redisSet', 'Redis SET'],
  ['redisSetWait', 'Redis SET+WAIT 1 0 (fsync always)'],
  ['lmdbSyncPut', 'LMDB sync put (1 at a time)'],
];

/** Mangrove ÷ peer, three significant digits; left out when either side is missing. */
function ratios(): Record<string, number> {
  const pairs: [string, string, string][] = [
    ['localReadVsGet', 'mangroveLocalReadOps', 'redisGetOps'],
    ['embeddedLocalReadVsGet', 'embeddedLocalReadOps', 'redisGetOps'],
    ['remoteReadVsGet', 'mangroveRemoteReadOps', 'redisGetOps'],
    ['writeVsSet', 'mangroveWriteOps', 'redisSetOps'],
    ['durableWriteVsSetWait', 'mangroveWriteFlushOps', 'redisSetWaitOps'],
    ['durableWriteVsLmdbSync', 'mangroveWriteFlushOps', 'lmdbSyncPutOps'],
    ['curveVsPlainLocalRead', 'mangroveLocalReadCurveOps', 'mangroveLocalReadOps'],
    ['curveVsPlainWriteFlush', 'mangroveWriteFlushCurveOps', 'mangroveWriteFlushOps'],
  ];
  return ratiosOf(figures, pairs);
}

async function main(): Promise<number> {
  figures.concurrency = CONCURRENCY;
  figures.pageBytes = PAGE_BYTES;
  figures.copies = COPIES;
  try {
    for (const part of [mangrove, mangroveCurve, embedded, redis, lmdb]) if (!cleanup.stopping) await part();
  } finally {
    await stopAll();
  }
  for (const [key, label] of rows) {
    if (figures[`${key}Ops`] === undefined) continue;
    const cpu = figures[`${key}ClientCpuUs`] === undefined ? '' : `  CPU/request: client ${figures[`${key}ClientCpuUs`]} µs${figures[`${key}NodeCpuUs`] === undefined ? '' : `, node ${figures[`${key}NodeCpuUs`]} µs`}`;
    console.log(`${label.padEnd(36)} ${String(figures[`${key}Ops`]).padStart(7)} ops/s  p50 ${figures[`${key}P50Ms`]} ms  p99 ${figures[`${key}P99Ms`]} ms${cpu}`);
  }
  const r = ratios();
  console.log(JSON.stringify({ bench: 'engine', figures, ratios: r, ...(errors.length > 0 ? { errors } : {}) }));
  const required = ['mangroveLocalReadOps', 'mangroveRemoteReadOps', 'mangroveWriteOps', 'mangroveWriteFlushOps', 'lmdbSyncPutOps'];
  const missing = required.filter((k) => figures[k] === undefined);
  if (missing.length > 0) console.error(`bench engine: no figure for ${missing.join(', ')}`);
  return missing.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    console.error(`bench engine failed: ${message(err)}`);
    await stopAll();
    process.exit(1);
  },
);
