/**
 * `npm run bench -- recovery` (issue 10): what a kill -9 of a page's home
 * costs, on a 5-node cluster of real node processes on 127.0.0.1
 * (spec/helpers/process-cluster.ts; 3 anchors, the heartbeat period and
 * quorum timeout of `mangrove local`), clients in this process.
 *
 * Set-up: the victim (node 4, not an anchor, so the PAN and the rebuild's
 * coordinator stay where they are) reserves and allocates PAGES pages in
 * ranges of RANGE_PAGES, 2 copies, so it is their home and one of each
 * range's core holders; clients on every node (range r through node r mod 5)
 * write and flush them. Then, one client on node 0 with 8 requests in flight
 * writes and flushes single pages of its own: the cluster's durable write
 * rate, the peer the re-replication rate is held against. Then one writer
 * per survivor starts (write + flush of pages of the set, one at a time,
 * the client library's default recoveryWaitMs), and the victim is killed.
 *
 * Measured from the kill (status polled every timing.pollMs, so each time
 * is late by up to that much):
 *  - writableAfterMs (and in periods): a probe on node 0 writes a page of
 *    the set that the victim owned (range 4 was written through it), so the
 *    write needs the page's home: tries with a short timeout and no
 *    recovery wait of their own, one after another, until one is answered;
 *  - redundancyRestoredMs: the arena has moved to a survivor, every
 *    survivor serves again, and the survivors' status counts no page and no
 *    arena under-replicated;
 *  - reReplicationPagesPerS: pages re-replicated (reReplicatedPages summed
 *    over the survivors) over the time from the end of the hand-over (the
 *    first poll at which every survivor knows the new home and serves) to
 *    redundancy restored; ratio reReplicationVsDurableWrite against the
 *    durable write rate. The scan is paced (engine scanIntervalMs, a few
 *    ranges a step), so this rate depends on RANGE_PAGES;
 *  - rebuildPauseMs, recoveryRetries: the writers' client.stats(); and
 *    writersResumedMs: until every writer has made a durable write begun
 *    after the kill (they run on until then, within writersResumeMaxMs);
 *  - readBackMismatches: every page read through node 1 after the recovery,
 *    compared with the last write answered for it (or one whose call
 *    failed, which may have taken effect): a figure, 0 expected, not an
 *    abort.
 * Also the timeline: failure counted, arena moved, hand-over ended, rounds.
 * Figures the run could not reach are left out and named in `errors`.
 *
 * Last stdout line:
 * {"bench":"recovery","figures":{...},"ratios":{...},"errors":[...]}
 * (`errors` only when something failed). Progress on stderr. Builds dist/
 * first when a source is newer than it. Every node is stopped by pid, also
 * on failure, and the cluster's folder is removed.
 */
import type { NodeStatus } from '../actors/status.js';
import { isMangroveError } from '../bus/errors.js';
import { PAGE_BYTES } from '../machines/memory/address.js';
import { connect, type MangroveClient } from '../runtime/client/pages.js';
import { ProcessCluster } from '../spec/helpers/process-cluster.js';
import { ensureBuild, root } from './shared/build.js';

process.chdir(root);

const NODES = 5;
const ANCHORS = 3;
/** `mangrove local`'s heartbeat period (cliDefaults.periodMs, runtime/cli/main.ts); its quorumTimeoutMs is the config's default, 8 periods, as ProcessCluster's. */
const PERIOD_MS = 250;
const VICTIM = 4;
const SURVIVORS = [...Array(NODES).keys()].filter((i) => i !== VICTIM);
const PAGES = 1_000;
const RANGE_PAGES = 50;
const COPIES = 2;
/** The page the probe writes, the first of the range written through the victim (see load); no writer touches it. */
const PROBE_PAGE = VICTIM * RANGE_PAGES;
const DURABLE_CONCURRENCY = 8;
const DURABLE_SLOTS = 16;
const PAGE = BigInt(PAGE_BYTES);

const timing = {
  clusterFormMs: 30_000,
  opTimeoutMs: 10_000,
  durableWarmupMs: 1_000,
  durableMeasureMs: 3_000,
  /** Writers run this long before the kill, so they are mid-stream when it comes. */
  writersLeadMs: 1_000,
  /** A probe try's timeout, and the gap after a refused try. */
  probeTryMs: 250,
  probeGapMs: 5,
  /** After a failed write or flush, a writer waits this long before its next page. */
  writerGapMs: 20,
  pollMs: 50,
  /** Longest the recovery may take before the bench gives up on it. */
  recoveryMaxMs: 120_000,
  /** Longest, from the kill, the writers may take to make a durable write again. */
  writersResumeMaxMs: 30_000,
};

const figures: Record<string, number> = {};
const errors: string[] = [];
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const codeOf = (err: unknown): string => (isMangroveError(err) ? err.code : 'E_OTHER');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round1 = (x: number): number => Math.round(x * 10) / 10;

function fail(part: string, text: string): void {
  const line = `${part}: ${text}`.replace(/\s+/g, ' ').trim();
  errors.push(line);
  console.error(`bench recovery: ${line}`);
}

function progress(text: string): void {
  console.error(`bench recovery: ${text}`);
}

// ------------------------------------------------------------ clean-up

let cluster: ProcessCluster | undefined;
const clients: MangroveClient[] = [];
const writers: Writer[] = [];

async function stopAll(): Promise<void> {
  for (const w of writers.splice(0)) w.halt();
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await cluster?.stop();
  cluster = undefined;
}

/** The last resort: SIGKILL by pid whatever is still running. */
process.on('exit', () => {
  for (let i = 0; i < NODES; i++) {
    const pid = cluster?.isRunning(i) ? cluster.pid(i) : undefined;
    if (pid === undefined) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    progress(`${sig}, stopping what it started`);
    void stopAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

// ------------------------------------------------------------ page contents

/** Page `index` as written at generation `gen`: a pattern no other (index, gen) gives. */
function content(index: number, gen: number, into = new Uint8Array(PAGE_BYTES)): Uint8Array {
  const words = new Uint32Array(into.buffer, into.byteOffset, PAGE_BYTES / 4);
  let x = (Math.imul(index + 1, 0x9e3779b1) ^ Math.imul(gen + 1, 0x85ebca6b)) >>> 0 || 1;
  words[0] = index;
  words[1] = gen;
  for (let k = 2; k < words.length; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[k] = x >>> 0;
  }
  return into;
}

/**
 * What each page may read back as: the last generation whose write was
 * answered, or any whose write failed: a refusal did nothing, but a call
 * whose answer never came (the client's timeout) may still take effect at
 * any time, even after a later write, so every failed one is allowed.
 * One writer a page.
 */
class Book {
  private readonly acked = new Array<number>(PAGES).fill(0);
  private readonly maybe = [...Array(PAGES)].map(() => new Set<number>());
  private readonly nextGen = new Array<number>(PAGES).fill(0);

  next(i: number): number {
    return ++this.nextGen[i];
  }

  answered(i: number, gen: number): void {
    this.acked[i] = Math.max(this.acked[i], gen);
  }

  failed(i: number, gen: number): void {
    this.maybe[i].add(gen);
  }

  /** Whether `data` is what page i may hold. */
  matches(i: number, data: Uint8Array): boolean {
    const words = new Uint32Array(data.buffer, data.byteOffset, 2);
    const gen = words[1];
    if (words[0] !== i || (gen !== this.acked[i] && !this.maybe[i].has(gen))) return false;
    return Buffer.from(data).equals(Buffer.from(content(i, gen)));
  }

  expected(i: number): string {
    return [this.acked[i], ...this.maybe[i]].join(' or ');
  }
}

const addr = (base: bigint, i: number): bigint => base + BigInt(i) * PAGE;

// ------------------------------------------------------------ the set-up

interface PageSet {
  /** Base address of each range; page i is in range floor(i / RANGE_PAGES). */
  bases: bigint[];
  book: Book;
}

const pageAddr = (set: PageSet, i: number): bigint => addr(set.bases[Math.floor(i / RANGE_PAGES)], i % RANGE_PAGES);

/** Reserves and allocates on the victim; range r written and flushed through node r mod NODES. */
async function load(c: MangroveClient[], ids: string[]): Promise<PageSet> {
  const book = new Book();
  const bases: bigint[] = [];
  let victimHeld = 0;
  for (let r = 0; r * RANGE_PAGES < PAGES; r++) {
    const base = await c[VICTIM].reserve(RANGE_PAGES);
    await c[VICTIM].alloc(base, RANGE_PAGES, { copies: COPIES });
    bases.push(base);
    const data = new Uint8Array(RANGE_PAGES * PAGE_BYTES);
    const gens = [...Array(RANGE_PAGES).keys()].map((k) => book.next(r * RANGE_PAGES + k));
    for (const [k, gen] of gens.entries()) content(r * RANGE_PAGES + k, gen, data.subarray(k * PAGE_BYTES, (k + 1) * PAGE_BYTES));
    const writer = c[r % NODES];
    await writer.write(base, data);
    const flushed = await writer.flush(base, RANGE_PAGES);
    for (const [k, gen] of gens.entries()) book.answered(r * RANGE_PAGES + k, gen);
    if (flushed.holders.every((h) => h.length >= COPIES && h.includes(ids[VICTIM]))) victimHeld++;
    else fail('set-up', `range ${r} was flushed to ${JSON.stringify(flushed.holders[0])}, not ${COPIES} holders with the victim ${ids[VICTIM]}`);
  }
  const stat = await c[0].stat(bases[0]);
  if (stat.home !== ids[VICTIM]) fail('set-up', `the pages' home is ${stat.home}, not the victim ${ids[VICTIM]}`);
  figures.rangesHeldByVictim = victimHeld;
  return { bases, book };
}

// ------------------------------------------------------------ durable write rate

/** Write + flush of single pages by one client on node 0, DURABLE_CONCURRENCY in flight: pages/s. */
async function durableWriteRate(c: MangroveClient): Promise<number> {
  const pages = DURABLE_CONCURRENCY * DURABLE_SLOTS;
  const base = await c.reserve(pages);
  await c.alloc(base, pages, { copies: COPIES });
  const t0 = performance.now();
  const from = t0 + timing.durableWarmupMs;
  const to = from + timing.durableMeasureMs;
  let done = 0;
  let lastEnd = from;
  const page = new Uint8Array(PAGE_BYTES);
  const worker = async (w: number): Promise<void> => {
    for (let n = 0; ; n++) {
      const start = performance.now();
      if (start >= to) return;
      const a = addr(base, w + DURABLE_CONCURRENCY * (n % DURABLE_SLOTS));
      await c.write(a, content(w, n, page));
      await c.flush(a, 1);
      const end = performance.now();
      if (start >= from) {
        done++;
        lastEnd = Math.max(lastEnd, end);
      }
    }
  };
  await Promise.all([...Array(DURABLE_CONCURRENCY).keys()].map(worker));
  return Math.round((done * 1000) / (lastEnd - from));
}

// ------------------------------------------------------------ across the kill

/** One writer per survivor: write + flush pages of the set (its own share), one at a time, until stopped. */
class Writer {
  ok = 0;
  killedAt = Number.POSITIVE_INFINITY;
  /** The answer to its first write + flush started after the kill. */
  resumedAt: number | undefined;
  readonly failures: Record<string, number> = {};
  private stopped = false;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly c: MangroveClient,
    private readonly set: PageSet,
    private readonly pages: number[],
  ) {}

  start(): void {
    this.done = this.run();
  }

  stats(): ReturnType<MangroveClient['stats']> {
    return this.c.stats();
  }

  /** No next page; the one in flight ends with its answer (or its timeout, or the client's close). */
  halt(): void {
    this.stopped = true;
  }

  async stop(): Promise<void> {
    this.halt();
    await this.done;
  }

  private async run(): Promise<void> {
    const data = new Uint8Array(PAGE_BYTES);
    for (let n = 0; !this.stopped; n++) {
      const i = this.pages[n % this.pages.length];
      const gen = this.set.book.next(i);
      const a = pageAddr(this.set, i);
      let op = 'write';
      const start = performance.now();
      try {
        await this.c.write(a, content(i, gen, data));
        this.set.book.answered(i, gen);
        op = 'flush';
        await this.c.flush(a, 1);
        this.ok++;
        if (start >= this.killedAt) this.resumedAt ??= performance.now();
      } catch (err) {
        if (op === 'write') this.set.book.failed(i, gen);
        const code = codeOf(err);
        this.failures[code] = (this.failures[code] ?? 0) + 1;
        progress(`writer: ${op} of page ${i} failed after ${Math.round(performance.now() - start)} ms, at +${Math.round(performance.now() - this.killedAt)} ms: ${code} ${message(err)}`);
        await sleep(timing.writerGapMs);
      }
    }
  }
}

/** Tries to write the probe page until one try is answered; resolves with the time of that answer. */
async function probe(c: MangroveClient, set: PageSet, over: () => boolean, tries: Record<string, number>): Promise<number | undefined> {
  const data = new Uint8Array(PAGE_BYTES);
  while (!over()) {
    const gen = set.book.next(PROBE_PAGE);
    try {
      await c.write(pageAddr(set, PROBE_PAGE), content(PROBE_PAGE, gen, data));
      set.book.answered(PROBE_PAGE, gen);
      return performance.now();
    } catch (err) {
      set.book.failed(PROBE_PAGE, gen);
      const code = codeOf(err);
      tries[code] = (tries[code] ?? 0) + 1;
      if (code !== 'E_TIMEOUT' && code !== 'E_UNREACHABLE') await sleep(timing.probeGapMs);
    }
  }
  return undefined;
}

interface Sums {
  under: number;
  arenas: number;
  reReplicated: number;
  homePages: number[];
  versions: number[];
  /** Rounds finished, as each survivor last saw them. */
  completed: number[];
  serving: boolean;
  victimCounted: number;
  partial: boolean;
}

function sums(statuses: (NodeStatus | undefined)[], victimId: string): Sums | undefined {
  const live = SURVIVORS.map((i) => statuses[i]);
  if (live.some((s) => s === undefined)) return undefined;
  const ss = live as NodeStatus[];
  return {
    under: ss.reduce((n, s) => n + s.replication.pagesUnderReplicated, 0),
    arenas: ss.reduce((n, s) => n + s.replication.arenasUnderReplicated, 0),
    reReplicated: ss.reduce((n, s) => n + s.replication.reReplicatedPages, 0),
    homePages: ss.map((s) => s.pages.homePages),
    versions: ss.map((s) => s.version),
    completed: ss.map((s) => s.recovery.completed),
    serving: ss.every((s) => s.recovery.state === 'normal' && s.recovery.network === 'normal'),
    victimCounted: ss.filter((s) => s.nodes.find((n) => n.id === victimId)?.alive === false).length,
    partial: ss.some((s) => s.replication.partial),
  };
}

/** One line a status change, for the log on stderr: state and network state, victim counted failed (x), last round, database version, home pages, under-replicated pages/arenas, re-replicated pages. */
function describeStatuses(statuses: (NodeStatus | undefined)[], victimId: string): string {
  return SURVIVORS.map((i) => {
    const s = statuses[i];
    if (!s) return `n${i}:-`;
    const r = s.replication;
    const dead = s.nodes.find((n) => n.id === victimId)?.alive === false ? 'x' : '';
    return `n${i}:${s.recovery.state[0]}${s.recovery.network[0]}${dead} r${s.recovery.completed} v${s.version} h${s.pages.homePages} u${r.pagesUnderReplicated}/${r.arenasUnderReplicated} rr${r.reReplicatedPages}`;
  }).join(' ');
}

interface Timeline {
  detectedMs?: number;
  allDetectedMs?: number;
  /** A survivor serves the arena: it counts the pages as its own, or some of them under-replicated. */
  movedMs?: number;
  /** Every survivor knows the new home (its database is at least the new home's when the move was seen) and serves. */
  handoverEndMs?: number;
  restoredMs?: number;
  reReplicatedAtHandover?: number;
  reReplicatedAtRestore?: number;
  underMax: number;
  /** Distinct rounds seen finished, over the survivors, after the kill. */
  rounds: number;
}

/** Polls the survivors from the kill (t0) until redundancy is restored or the limit passes. */
async function watch(c: ProcessCluster, t0: number, victimId: string, before: Sums): Promise<Timeline> {
  const t: Timeline = { underMax: 0, rounds: 0 };
  const rounds = new Set<number>();
  let movedVersion = Number.POSITIVE_INFINITY;
  let last = '';
  while (performance.now() - t0 < timing.recoveryMaxMs) {
    const statuses = await c.statuses(SURVIVORS);
    const at = Math.round(performance.now() - t0);
    const s = sums(statuses, victimId);
    const line = describeStatuses(statuses, victimId);
    if (line !== last) progress(`+${at} ms ${line}`);
    last = line;
    if (s) {
      for (const [k, r] of s.completed.entries()) if (r !== before.completed[k]) rounds.add(r);
      t.rounds = rounds.size;
      t.underMax = Math.max(t.underMax, s.under);
      if (s.victimCounted > 0) t.detectedMs ??= at;
      if (s.victimCounted === SURVIVORS.length) t.allDetectedMs ??= at;
      const home = s.homePages.findIndex((h, k) => h >= before.homePages[k] + PAGES || statuses[SURVIVORS[k]]!.replication.pagesUnderReplicated > 0);
      if (home >= 0 && t.movedMs === undefined) {
        t.movedMs = at;
        movedVersion = s.versions[home];
      }
      if (t.handoverEndMs === undefined && s.serving && s.versions.every((v) => v >= movedVersion)) {
        t.handoverEndMs = at;
        t.reReplicatedAtHandover = s.reReplicated - before.reReplicated;
      }
      if (t.handoverEndMs !== undefined && s.serving && s.under === 0 && s.arenas === 0 && !s.partial) {
        t.restoredMs = at;
        t.reReplicatedAtRestore = s.reReplicated - before.reReplicated;
        return t;
      }
    }
    await sleep(timing.pollMs);
  }
  return t;
}

/** Reads every page through `c`; counts pages that are not what the book allows. */
async function readBack(c: MangroveClient, set: PageSet): Promise<{ mismatches: number; unreadable: number }> {
  let mismatches = 0;
  let unreadable = 0;
  for (const [r, base] of set.bases.entries()) {
    let data: Uint8Array;
    try {
      data = await c.read(base, RANGE_PAGES);
    } catch (err) {
      unreadable += RANGE_PAGES;
      fail('read-back', `range ${r} (${base.toString(16)}) cannot be read: ${codeOf(err)} ${message(err)}`);
      continue;
    }
    for (let k = 0; k < RANGE_PAGES; k++) {
      const i = r * RANGE_PAGES + k;
      const page = data.subarray(k * PAGE_BYTES, (k + 1) * PAGE_BYTES);
      if (set.book.matches(i, page)) continue;
      if (mismatches++ < 5) {
        const w = new Uint32Array(page.buffer, page.byteOffset, 2);
        fail('read-back', `page ${i} reads as page ${w[0]} generation ${w[1]}, expected generation ${set.book.expected(i)}`);
      }
    }
  }
  return { mismatches, unreadable };
}

// ------------------------------------------------------------ the run

/** Forms the cluster, loads the page set on the victim, measures the durable write rate. */
async function setUp(): Promise<{ c: ProcessCluster; ids: string[]; set: PageSet }> {
  const started = performance.now();
  cluster = await ProcessCluster.start({ nodes: NODES, anchors: ANCHORS, periodMs: PERIOD_MS });
  const c = cluster;
  if ((await c.waitFor(() => c.converged(), timing.clusterFormMs, 100)) < 0) {
    throw new Error(`the ${NODES}-node cluster did not form within ${timing.clusterFormMs / 1000} s. ${c.died().join(' ')}`);
  }
  progress(`${NODES}-node cluster formed in ${Math.round(performance.now() - started)} ms (${c.dir})`);
  const ids = (await c.statuses()).map((s) => s!.self);
  for (let i = 0; i < NODES; i++) clients.push(await connect(c.endpoints[i], { timeoutMs: timing.opTimeoutMs, clientId: `bench-recovery-${i}` }));

  const loadStart = performance.now();
  const set = await load(clients, ids);
  progress(`${PAGES} pages in ${set.bases.length} ranges, home ${ids[VICTIM]}, written and flushed in ${Math.round(performance.now() - loadStart)} ms`);

  figures.durableWritePagesPerS = await durableWriteRate(clients[0]);
  progress(`durable write (write + flush, 1 page, ${DURABLE_CONCURRENCY} in flight): ${figures.durableWritePagesPerS} pages/s`);
  return { c, ids, set };
}

/** Starts the writers and the probe, kills the victim, watches until redundancy is restored; the writers are stopped after. */
async function acrossTheKill(c: ProcessCluster, ids: string[], set: PageSet): Promise<{ t0: number; writableAt?: number; probeTries: Record<string, number>; timeline: Timeline }> {
  const before = sums(await c.statuses(SURVIVORS), ids[VICTIM]);
  if (!before) throw new Error('a survivor does not answer status before the kill');
  // A writer on every survivor, each with pages of its own (the probe's page is no one's).
  for (const [w, i] of SURVIVORS.entries()) {
    const wc = await connect(c.endpoints[i], { timeoutMs: timing.opTimeoutMs, clientId: `bench-recovery-writer-${i}` });
    clients.push(wc);
    writers.push(new Writer(wc, set, [...Array(PAGES).keys()].filter((p) => p !== PROBE_PAGE && p % SURVIVORS.length === w)));
  }
  // The probe's page was written through the victim, so no survivor owns it: its write needs the page's home.
  const probeClient = await connect(c.endpoints[0], { timeoutMs: timing.probeTryMs, recoveryWaitMs: 0, clientId: 'bench-recovery-probe' });
  clients.push(probeClient);
  writers.forEach((w) => w.start());
  await sleep(timing.writersLeadMs);
  figures.writerDurableWritesBeforeKill = writers.reduce((n, w) => n + w.ok, 0);

  progress(`kill -9 node ${VICTIM} (${ids[VICTIM]}, pid ${c.pid(VICTIM)})`);
  const t0 = performance.now();
  for (const w of writers) w.killedAt = t0;
  const killed = c.kill(VICTIM);
  let watching = true;
  const probeTries: Record<string, number> = {};
  const [writableAt, timeline] = await Promise.all([
    probe(probeClient, set, () => !watching, probeTries),
    watch(c, t0, ids[VICTIM], before).finally(() => (watching = false)),
    killed,
  ]);
  // The writers go on until each has made a durable write begun after the kill: how long the kill held a writing program up.
  while (writers.some((w) => w.resumedAt === undefined) && performance.now() - t0 < timing.writersResumeMaxMs) await sleep(timing.pollMs);
  await Promise.all(writers.map((w) => w.stop()));
  return { t0, writableAt, probeTries, timeline };
}

function reportTimeline(t: Timeline): void {
  if (t.detectedMs !== undefined) figures.failureDetectedMs = t.detectedMs;
  if (t.allDetectedMs !== undefined) figures.failureDetectedAllMs = t.allDetectedMs;
  figures.pagesUnderReplicatedMax = t.underMax;
  figures.rebuildRounds = t.rounds;
  if (t.movedMs !== undefined) figures.arenaMovedMs = t.movedMs;
  if (t.handoverEndMs === undefined) {
    fail('handover', `the victim's arena was not served by a survivor known to all, every survivor serving, within ${timing.recoveryMaxMs / 1000} s`);
    return;
  }
  figures.handoverEndMs = t.handoverEndMs;
  if (t.restoredMs === undefined) {
    fail('re-replication', `redundancy was not restored within ${timing.recoveryMaxMs / 1000} s of the kill; the last status polled is in the log above`);
    return;
  }
  figures.redundancyRestoredMs = t.restoredMs;
  figures.redundancyRestoredPeriods = round1(t.restoredMs / PERIOD_MS);
  figures.reReplicatedPages = t.reReplicatedAtRestore!;
  figures.reReplicatedBeforeHandoverEnd = t.reReplicatedAtHandover!;
  const copied = t.reReplicatedAtRestore! - t.reReplicatedAtHandover!;
  const spanMs = t.restoredMs - t.handoverEndMs;
  if (spanMs > 0 && copied > 0) figures.reReplicationPagesPerS = Math.round((copied * 1000) / spanMs);
  else fail('re-replication', `${copied} pages re-replicated in the ${spanMs} ms from the end of the hand-over to redundancy restored: no rate (the polls are ${timing.pollMs} ms apart)`);
}

function reportClients(t0: number, writableAt: number | undefined, probeTries: Record<string, number>): void {
  if (writableAt !== undefined) {
    figures.writableAfterMs = Math.round(writableAt - t0);
    figures.writableAfterPeriods = round1((writableAt - t0) / PERIOD_MS);
  } else fail('probe', `no write of page ${PROBE_PAGE} through node 0 was answered within ${timing.recoveryMaxMs / 1000} s of the kill`);
  // A try the node did not answer within probeTryMs shows as E_UNREACHABLE; any other code is the node's refusal.
  figures.probeTriesUnanswered = probeTries.E_UNREACHABLE ?? 0;
  figures.probeTriesRefused = Object.entries(probeTries).reduce((n, [code, k]) => (code === 'E_UNREACHABLE' ? n : n + k), 0);
  progress(`probe: failed tries by code ${JSON.stringify(probeTries)} before its first answered write`);

  const stats = writers.map((w) => w.stats());
  figures.rebuildPauseMs = Math.round(Math.max(...stats.map((s) => s.recoveryPauseMsMax)));
  figures.recoveryRetries = stats.reduce((n, s) => n + s.recoveryRetries, 0);
  figures.recoveryGiveUps = stats.reduce((n, s) => n + s.recoveryGiveUps, 0);
  figures.writerDurableWritesAfterKill = writers.reduce((n, w) => n + w.ok, 0) - figures.writerDurableWritesBeforeKill;
  const resumed = writers.filter((w) => w.resumedAt !== undefined).map((w) => w.resumedAt! - t0);
  figures.writersNotResumed = writers.length - resumed.length;
  if (resumed.length === writers.length) figures.writersResumedMs = Math.round(Math.max(...resumed));
  const failures: Record<string, number> = {};
  for (const w of writers) for (const [code, n] of Object.entries(w.failures)) failures[code] = (failures[code] ?? 0) + n;
  figures.writerFailures = Object.values(failures).reduce((a, b) => a + b, 0);
  if (figures.writerFailures > 0) progress(`writers: failures by code ${JSON.stringify(failures)}`);
}

async function run(): Promise<void> {
  ensureBuild(progress, (why) => fail('build', why));
  const { c, ids, set } = await setUp();
  const { t0, writableAt, probeTries, timeline } = await acrossTheKill(c, ids, set);
  reportClients(t0, writableAt, probeTries);
  reportTimeline(timeline);

  const readStart = performance.now();
  const { mismatches, unreadable } = await readBack(clients[1], set);
  figures.readBackMismatches = mismatches;
  figures.readBackUnreadable = unreadable;
  progress(`read back ${PAGES} pages through node 1 in ${Math.round(performance.now() - readStart)} ms: ${mismatches} mismatches, ${unreadable} unreadable`);
  const died = c.died();
  if (died.length > 0) fail('cluster', `nodes died during the run: ${died.join(' ')}`);
}

async function main(): Promise<number> {
  Object.assign(figures, { nodes: NODES, periodMs: PERIOD_MS, pages: PAGES, rangePages: RANGE_PAGES, copies: COPIES });
  try {
    await run();
  } catch (err) {
    fail('run', message(err));
  } finally {
    await stopAll().catch((err: unknown) => fail('cluster', `stopping: ${message(err)}`));
  }
  const ratios: Record<string, number> = {};
  if (figures.reReplicationPagesPerS > 0 && figures.durableWritePagesPerS > 0) {
    ratios.reReplicationVsDurableWrite = Number((figures.reReplicationPagesPerS / figures.durableWritePagesPerS).toPrecision(3));
  }
  console.log(JSON.stringify({ bench: 'recovery', figures, ratios, ...(errors.length > 0 ? { errors } : {}) }));
  const required = ['writableAfterMs', 'redundancyRestoredMs', 'reReplicationPagesPerS', 'durableWritePagesPerS', 'readBackMismatches'];
  const missing = required.filter((k) => figures[k] === undefined);
  if (missing.length > 0) progress(`no figure for ${missing.join(', ')}`);
  return missing.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    progress(`failed: ${message(err)}`);
    await stopAll();
    process.exit(1);
  },
);
