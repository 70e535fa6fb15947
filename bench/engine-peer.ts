/**
 * The client process of bench/engine.ts: runs the workloads against
 * Mangrove's nodes or against Redis, from a process of its own, with the
 * same number of requests in flight for both, and reports back on stdout,
 * one line per message:
 *
 *   FIGURE {"name": number, ...}   figures measured so far
 *   ERROR text                     a workload that failed (the others still run)
 *   DONE                           finished
 *
 * Progress goes to stderr. The plan is argv[2], JSON (see `Plan`). Exits
 * when its parent closes stdin or sends SIGTERM.
 *
 * Every workload is a closed loop: `concurrency` workers, each with one
 * request outstanding, for `warmupMs` unmeasured then `measureMs` measured.
 * A request started inside the measured window counts; throughput is the
 * count over the time from the window's start to the last one's answer.
 */
import { readFileSync } from 'node:fs';
import { PAGE_BYTES } from '../machines/memory/address.js';
import { RespClient, type RespValue } from './redis-peer.js';

export interface Plan {
  concurrency: number;
  warmupMs: number;
  measureMs: number;
  /** How long one request may wait for its answer. */
  opTimeoutMs: number;
  mangrove?: {
    /** The node the measured client talks to. */
    node0: string;
    /** Its process id, for its CPU time per request (Linux /proc). */
    node0Pid?: number;
    /** Another node, whose client writes the pages node 0 then misses on. */
    node1: string;
    /** Core holders per page (alloc's `copies`). */
    copies: number;
    /** Pages read over and over by the local-hit workload. */
    localPages: number;
    /** Fewest and most distinct pages set up for the remote-miss workload. */
    remotePagesMin: number;
    remotePagesMax: number;
    /** Longest the remote-miss set-up may spend writing pages through node 1. */
    remoteSetupMs: number;
    /** The workloads to run (all when absent). */
    workloads?: Workload[];
    /** Added to every figure's name (`mangroveLocalRead` + tag + `Ops`), so several client processes report apart. */
    tag?: string;
    /** The client key file for a cluster with keys (CURVE on every link); none for an insecure one. */
    key?: string;
  };
  /** A one-node cluster embedded in this process (runtime/node/embedded.ts), used without a socket. */
  embedded?: {
    /** The node's own port, for its (absent) peers. */
    listen: string;
    dataDir: string;
    /** Pages read over and over by the local-hit workload. */
    localPages: number;
    /** Longest the node may take to form its one-node cluster. */
    formMs: number;
  };
  redis?: {
    /** A server without replica or AOF: GET and SET unreplicated. */
    plain: number;
    /** A primary with `appendfsync always` and one replica: SET then `WAIT 1 0`. */
    durable?: number;
  };
}

/* The page client is loaded at run time (a non-literal specifier), so the
 * Redis half still runs when runtime/client/pages.ts cannot be loaded; the
 * Mangrove half then fails with the import's error and says so. Its types
 * are the real ones. */
type PageClientModule = typeof import('../runtime/client/pages.js');
type MangroveClient = Awaited<ReturnType<PageClientModule['connect']>>;
const PAGE_CLIENT_MODULE = '../runtime/client/pages.js';

export type Workload = 'localRead' | 'remoteRead' | 'write' | 'writeFlush';

const PAGE = BigInt(PAGE_BYTES);
/** Most pages one client write carries (bus/messages/page.ts). */
const WRITE_BATCH_PAGES = 256;

const plan = JSON.parse(process.argv[2] ?? '{}') as Plan;

// ---------------------------------------------------------------- reporting

function figure(values: Record<string, number>): void {
  process.stdout.write(`FIGURE ${JSON.stringify(values)}\n`);
}

function error(text: string): void {
  const line = text.replace(/\s+/g, ' ').trim();
  process.stderr.write(`engine-peer: ${line}\n`);
  process.stdout.write(`ERROR ${line}\n`);
}

function progress(text: string): void {
  process.stderr.write(`engine-peer: ${text}\n`);
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// ---------------------------------------------------------------- the loop

interface Measured {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  samples: number;
  /** CPU time of this process per measured request, µs. */
  clientCpuUs: number;
  /** CPU time of the node process the requests go to per measured request, µs (when its pid is known). */
  nodeCpuUs?: number;
}

/** A process's CPU time so far, µs, from /proc (user + system clock ticks; Linux's USER_HZ is 100). */
function cpuOfPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start past its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return undefined;
  }
}

function cpuOfSelf(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * Runs `concurrency` workers; worker w calls `op(w)` again as soon as its
 * last call ended. `op` resolves false when it had no work left (it then did
 * nothing). The first error stops every worker and is thrown.
 */
async function closedLoop(name: string, op: (worker: number) => Promise<boolean>, nodePid?: number): Promise<Measured> {
  const t0 = performance.now();
  const measureFrom = t0 + plan.warmupMs;
  const measureTo = measureFrom + plan.measureMs;
  const latencies: number[] = [];
  let lastEnd = measureFrom;
  let stop = false;
  // CPU is sampled when the first measured request starts and when the last one ends.
  let cpuFrom: { self: number; node: number | undefined } | undefined;
  const worker = async (w: number): Promise<void> => {
    while (!stop) {
      const start = performance.now();
      if (start >= measureTo) return;
      if (start >= measureFrom && cpuFrom === undefined) cpuFrom = { self: cpuOfSelf(), node: nodePid === undefined ? undefined : cpuOfPid(nodePid) };
      const more = await op(w);
      const end = performance.now();
      if (!more) return;
      if (start >= measureFrom) {
        latencies.push(end - start);
        if (end > lastEnd) lastEnd = end;
      }
    }
  };
  const results = await Promise.allSettled(
    [...Array(plan.concurrency).keys()].map((w) =>
      worker(w).catch((err: unknown) => {
        stop = true;
        throw err;
      }),
    ),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw new Error(`${name}: ${message(failed.reason)}`);
  if (latencies.length === 0) throw new Error(`${name}: no request was measured (the warm-up used all the work)`);
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] * 1000) / 1000;
  const selfNow = cpuOfSelf();
  const nodeNow = nodePid === undefined ? undefined : cpuOfPid(nodePid);
  const per = (used: number): number => Math.round(used / latencies.length);
  return {
    opsPerSec: Math.round((latencies.length * 1000) / (lastEnd - measureFrom)),
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    samples: latencies.length,
    clientCpuUs: per(selfNow - (cpuFrom?.self ?? selfNow)),
    ...(nodeNow !== undefined && cpuFrom?.node !== undefined ? { nodeCpuUs: per(nodeNow - cpuFrom.node) } : {}),
  };
}

function reportAs(prefix: string, m: Measured): void {
  const cpu = { [`${prefix}ClientCpuUs`]: m.clientCpuUs, ...(m.nodeCpuUs !== undefined ? { [`${prefix}NodeCpuUs`]: m.nodeCpuUs } : {}) };
  figure({ [`${prefix}Ops`]: m.opsPerSec, [`${prefix}P50Ms`]: m.p50Ms, [`${prefix}P99Ms`]: m.p99Ms, ...cpu });
  const cpuText = `CPU per request: client ${m.clientCpuUs} µs${m.nodeCpuUs !== undefined ? `, node ${m.nodeCpuUs} µs` : ''}`;
  progress(`${prefix}: ${m.opsPerSec} ops/s, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms (${m.samples} requests; ${cpuText})`);
}

/** Runs one workload; its failure is reported and the next one still runs. */
async function run(name: string, fn: () => Promise<void>): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (err) {
    error(`${name}: ${message(err)}`);
    return false;
  }
}

// ---------------------------------------------------------------- page data

/**
 * A page whose first 8 bytes say which page it is and who wrote it, so a
 * read can check it got that writer's copy and not an older one.
 */
function stampedPage(index: number, writer: number, into?: Uint8Array): Uint8Array {
  const page = into ?? new Uint8Array(PAGE_BYTES).fill(0x5a);
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  view.setUint32(0, index >>> 0, true);
  view.setUint32(4, writer >>> 0, true);
  return page;
}

function checkStamp(what: string, data: Uint8Array, index: number, writer: number): void {
  if (data.byteLength !== PAGE_BYTES) throw new Error(`${what} returned ${data.byteLength} bytes, not ${PAGE_BYTES}`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const gotIndex = view.getUint32(0, true);
  const gotWriter = view.getUint32(4, true);
  if (gotIndex !== index >>> 0 || gotWriter !== writer >>> 0) {
    throw new Error(`${what} returned page ${gotIndex} by writer ${gotWriter}, not page ${index} by writer ${writer}`);
  }
}

/** Writes pages [from, to) of the reservation at `base`, stamped by `writer`, in batches. */
async function writePages(c: MangroveClient, base: bigint, from: number, to: number, writer: number): Promise<void> {
  for (let i = from; i < to; i += WRITE_BATCH_PAGES) {
    const n = Math.min(WRITE_BATCH_PAGES, to - i);
    const data = new Uint8Array(n * PAGE_BYTES).fill(0x5a);
    for (let k = 0; k < n; k++) stampedPage(i + k, writer, data.subarray(k * PAGE_BYTES, (k + 1) * PAGE_BYTES));
    const versions = await c.write(base + BigInt(i) * PAGE, data);
    if (versions.length !== n) throw new Error(`a write of ${n} pages answered ${versions.length} versions`);
  }
}

const addr = (base: bigint, i: number): bigint => base + BigInt(i) * PAGE;

// ---------------------------------------------------------------- Mangrove

/** Core holders a flush answer names for its first page, when it names them. */
function flushHolders(result: { holders?: unknown }): number | undefined {
  const holders = result?.holders;
  if (!Array.isArray(holders) || !Array.isArray(holders[0])) return undefined;
  return (holders[0] as unknown[]).length;
}

/** Checks, outside any measured window, that a page is where the workload needs it; a surprise is reported, the run goes on. */
async function expectPlace(c: MangroveClient, what: string, a: bigint, owner: string, notReader?: string): Promise<void> {
  try {
    const s = await c.stat(a);
    if (s.owner !== owner) error(`${what}: page ${a.toString(16)} is owned by ${String(s.owner)}, not ${owner}`);
    if (notReader !== undefined && (s.readers.includes(notReader) || s.owner === notReader)) {
      error(`${what}: ${notReader} already holds page ${a.toString(16)} before the first read`);
    }
  } catch (err) {
    error(`${what}: cannot stat page ${a.toString(16)}: ${message(err)}`);
  }
}

async function mangrove(p: NonNullable<Plan['mangrove']>): Promise<void> {
  const C = plan.concurrency;
  const wanted = (w: Workload): boolean => p.workloads === undefined || p.workloads.includes(w);
  const tag = p.tag ?? '';
  const workload = (name: string, w: Workload, fn: () => Promise<void>): Promise<boolean> => (wanted(w) ? run(name, fn) : Promise.resolve(true));
  const report = (prefix: string, m: Measured): void => reportAs(`${prefix}${tag}`, m);
  const loop = (name: string, op: (worker: number) => Promise<boolean>): Promise<Measured> => closedLoop(name, op, p.node0Pid);
  let c0: MangroveClient | undefined;
  let c1: MangroveClient | undefined;
  try {
    let connect: PageClientModule['connect'];
    try {
      connect = ((await import(PAGE_CLIENT_MODULE)) as PageClientModule).connect;
    } catch (err) {
      error(`mangrove: cannot load the page client (runtime/client/pages.ts): ${message(err)}`);
      return;
    }
    c0 = await connect(p.node0, { timeoutMs: plan.opTimeoutMs, clientId: `bench-engine-0${tag}`, key: p.key });
    c1 = await connect(p.node1, { timeoutMs: plan.opTimeoutMs, clientId: `bench-engine-1${tag}`, key: p.key });
    const n0 = c0;
    const n1 = c1;

    // One request first: a node without the engine fails here, once, not four times.
    try {
      await n0.reserve(1);
    } catch (err) {
      error(`mangrove: node 0 does not serve client.page (reserve 1 page): ${message(err)}`);
      return;
    }
    const [id0, id1] = await Promise.all([n0.status(), n1.status()]).then((s) => s.map((x) => x.self));

    // Local-hit read: node 0 wrote the pages, so it owns them; every read is served from its RAM.
    let localOps = 0;
    await workload('mangrove local-hit read', 'localRead', async () => {
      const base = await n0.reserve(p.localPages);
      await n0.alloc(base, p.localPages, { copies: p.copies });
      await writePages(n0, base, 0, p.localPages, 0);
      await expectPlace(n0, 'local-hit read', base, id0);
      let next = 0;
      const m = await loop('local-hit read', async () => {
        const i = next++ % p.localPages;
        checkStamp('a local-hit read', await n0.read(addr(base, i), 1), i, 0);
        return true;
      });
      localOps = m.opsPerSec;
      report('mangroveLocalRead', m);
    });

    // Remote-miss read: distinct pages, each written through node 1 (which then
    // owns the only copy in RAM), each read exactly once through node 0: node 0
    // has never held any of them, so every read misses and fetches node 1's copy.
    await workload('mangrove remote-miss read', 'remoteRead', async () => {
      const wanted = Math.ceil((localOps * (plan.warmupMs + plan.measureMs)) / 1000 / WRITE_BATCH_PAGES) * WRITE_BATCH_PAGES;
      const pool = Math.min(p.remotePagesMax, Math.max(p.remotePagesMin, wanted));
      const base = await n0.reserve(pool);
      await n0.alloc(base, pool, { copies: p.copies });
      const setupStart = performance.now();
      let written = 0;
      while (written < pool && (written < p.remotePagesMin || performance.now() - setupStart < p.remoteSetupMs)) {
        const to = Math.min(pool, written + WRITE_BATCH_PAGES);
        await writePages(n1, base, written, to, 1);
        written = to;
      }
      progress(`remote-miss read: ${written} pages written through node 1 in ${Math.round(performance.now() - setupStart)} ms`);
      figure({ mangroveRemoteReadPages: written });
      for (const i of [0, written >> 1, written - 1]) await expectPlace(n0, 'remote-miss read', addr(base, i), id1, id0);
      let next = 0;
      const m = await loop('remote-miss read', async () => {
        const i = next++;
        if (i >= written) return false;
        checkStamp('a remote-miss read', await n0.read(addr(base, i), 1), i, 1);
        return true;
      });
      if (next >= written) progress(`remote-miss read: all ${written} pages were read before the window closed`);
      report('mangroveRemoteRead', m);
    });

    // Write: each worker rewrites pages of its own, which node 0 already owns.
    const slots = 16;
    await workload('mangrove write', 'write', async () => {
      const pages = C * slots;
      const base = await n0.reserve(pages);
      await n0.alloc(base, pages, { copies: p.copies });
      await writePages(n0, base, 0, pages, 0);
      const round = new Array<number>(C).fill(0);
      const m = await loop('write', async (w) => {
        const i = w + C * (round[w]++ % slots);
        const versions = await n0.write(addr(base, i), stampedPage(i, round[w]));
        if (versions.length !== 1) throw new Error(`a one-page write answered ${versions.length} versions`);
        return true;
      });
      report('mangroveWrite', m);
    });

    // Write + flush: as above, then flush the page; the flush answers once both core holders committed it.
    await workload('mangrove write+flush', 'writeFlush', async () => {
      const pages = C * slots;
      const base = await n0.reserve(pages);
      await n0.alloc(base, pages, { copies: p.copies });
      await writePages(n0, base, 0, pages, 0);
      const round = new Array<number>(C).fill(0);
      let holdersMin = Number.POSITIVE_INFINITY;
      let holdersUnknown = 0;
      const m = await loop('write+flush', async (w) => {
        const i = w + C * (round[w]++ % slots);
        const a = addr(base, i);
        await n0.write(a, stampedPage(i, round[w]));
        const holders = flushHolders(await n0.flush(a, 1));
        if (holders === undefined) holdersUnknown++;
        else {
          if (holders < p.copies) throw new Error(`a flush was committed by ${holders} core holders, not ${p.copies}`);
          holdersMin = Math.min(holdersMin, holders);
        }
        return true;
      });
      if (holdersUnknown > 0) progress(`write+flush: ${holdersUnknown} flush answers named no core holders; durability on ${p.copies} holders taken on trust`);
      else figure({ [`mangroveFlushHoldersMin${tag}`]: holdersMin });
      report('mangroveWriteFlush', m);
    });
  } catch (err) {
    error(`mangrove: ${message(err)}`);
  } finally {
    await Promise.all([c0, c1].map((c) => (c ? withTimeout(c.close(), 3_000).catch(() => undefined) : undefined)));
  }
}

// ---------------------------------------------------------------- an embedded node

async function embedded(e: NonNullable<Plan['embedded']>): Promise<void> {
  const { startNode } = (await import('../runtime/node/embedded.js')) as typeof import('../runtime/node/embedded.js');
  const node = await startNode({ listen: e.listen, dataDir: e.dataDir, anchors: [e.listen], anchor: true, logLevel: 'warn', insecure: true });
  const c = node.client();
  try {
    await node.ready(e.formMs);
    const base = await c.reserve(e.localPages);
    await c.alloc(base, e.localPages, { copies: 1 });
    await writePages(c, base, 0, e.localPages, 0);
    let next = 0;
    const m = await closedLoop('embedded local-hit read', async () => {
      const i = next++ % e.localPages;
      checkStamp('an embedded local-hit read', await c.read(addr(base, i), 1), i, 0);
      return true;
    });
    reportAs('embeddedLocalRead', m);
  } finally {
    await c.close();
    await node.stop();
  }
}

// ---------------------------------------------------------------- Redis

async function connections(port: number): Promise<RespClient[]> {
  return Promise.all([...Array(plan.concurrency)].map(() => RespClient.connect(port, plan.opTimeoutMs)));
}

function expectOk(what: string, v: RespValue): void {
  if (v !== 'OK') throw new Error(`${what} answered ${String(v)}, not OK`);
}

async function redis(r: NonNullable<Plan['redis']>): Promise<void> {
  const C = plan.concurrency;
  const keys = 256;
  const slots = 16;
  // One connection per worker: each has one request outstanding, as a Mangrove worker does.
  await run('redis GET', async () => {
    const conns = await connections(r.plain);
    try {
      for (let i = 0; i < keys; i++) expectOk('SET', await conns[0].command('SET', `page:${i}`, stampedPage(i, 0)));
      let next = 0;
      reportAs(
        'redisGet',
        await closedLoop('GET', async (w) => {
          const i = next++ % keys;
          const v = await conns[w].command('GET', `page:${i}`);
          if (!Buffer.isBuffer(v)) throw new Error(`GET answered ${String(v)}`);
          checkStamp('GET', v, i, 0);
          return true;
        }),
      );
    } finally {
      for (const c of conns) c.close();
    }
  });

  await run('redis SET', async () => {
    const conns = await connections(r.plain);
    try {
      const round = new Array<number>(C).fill(0);
      reportAs(
        'redisSet',
        await closedLoop('SET', async (w) => {
          const i = w + C * (round[w]++ % slots);
          expectOk('SET', await conns[w].command('SET', `w:${i}`, stampedPage(i, round[w])));
          return true;
        }),
      );
    } finally {
      for (const c of conns) c.close();
    }
  });

  if (r.durable === undefined) return;
  const durable = r.durable;
  await run('redis SET+WAIT', async () => {
    const conns = await connections(durable);
    try {
      const round = new Array<number>(C).fill(0);
      reportAs(
        'redisSetWait',
        await closedLoop('SET+WAIT', async (w) => {
          const i = w + C * (round[w]++ % slots);
          expectOk('SET', await conns[w].command('SET', `d:${i}`, stampedPage(i, round[w])));
          const acked = await conns[w].command('WAIT', '1', '0');
          if (typeof acked !== 'number' || acked < 1) throw new Error(`WAIT 1 0 answered ${String(acked)}`);
          return true;
        }),
      );
    } finally {
      for (const c of conns) c.close();
    }
  });
}

// ---------------------------------------------------------------- main

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e: unknown) => (clearTimeout(t), reject(e)),
    );
  });
}

process.on('SIGTERM', () => process.exit(143));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

try {
  if (plan.mangrove) await mangrove(plan.mangrove);
  if (plan.embedded) await run('embedded local-hit read', () => embedded(plan.embedded!));
  if (plan.redis) await redis(plan.redis);
} catch (err) {
  error(message(err));
}
process.stdout.write('DONE\n', () => process.exit(0));
