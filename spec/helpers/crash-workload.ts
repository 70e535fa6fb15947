/**
 * A page workload under node crashes (spec/sim/recovery.sim.spec.ts):
 * clients on several nodes read, write and flush shared pages while
 * messages are dropped, duplicated and reordered and nodes crash and
 * restart one at a time; the history is kept by a Recorder
 * (durable-recorder.ts) for the durable page register's checker.
 */
import { formatAddress } from '../../machines/memory/address.js';
import { coordinatorFor } from '../../machines/recovery/rebuild-round.js';
import type { PageEngine } from '../../actors/engine/page-engine.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';
import { SeededRandom } from '../../runtime/world/random.js';
import { convergence } from './sim-checks.js';
import { formedCluster, type FormedClusterOptions, pageOf, PERIOD_MS, sharedPages } from './page-workload.js';
import { allNodes, checkDurable, CRASH_TIMEOUT_MS, EXPECTED_FAILURES, HUNG_MS, Recorder, retrying } from './durable-recorder.js';

/** A run must return more writes and reads than this, and see at least CRASHES_MIN crashes. */
const PROGRESS_MIN = 50;
const CRASHES_MIN = 3;

export interface Crash {
  node: number;
  at: number;
  downMs: number;
  home: boolean;
  coordinator: boolean;
  /** Pages it owned unflushed, and copies it held as a reader, when it crashed. */
  dirtyOwned: number;
  readerCopies: number;
}

export interface CrashRun {
  c: SimCluster;
  rec: Recorder;
  crashes: Crash[];
  /** Rebuild rounds coordinators finished (`rebuild` news, phase `done`). */
  rounds: number;
  /** Per client, calls that succeeded once every node served again after the last crash. */
  lateSuccesses: number[];
  /** Live nodes that dropped their copies, the cluster having counted them failed: crashes to the durability rule. */
  resets: { node: number; at: number }[];
  /** Live nodes that dropped their copies though no node had counted them failed: their unflushed writes went too. */
  unexplainedResets: { node: number; at: number }[];
}

export interface CrashWorkloadOptions {
  clients: number;
  /** How long nodes crash and restart, in simulated ms; the clients run on until every node serves again, and 2 s more. */
  faultMs: number;
  plant?: (e: PageEngine) => void;
  /** Called every simulated period while the workload runs (a stall watchdog's beat). */
  progress?: () => void;
  /** Each node's log (silent by default): for looking into one seed. */
  log?: FormedClusterOptions['log'];
}

/** What the workload's parts share while it runs. */
interface Running {
  c: SimCluster;
  rec: Recorder;
  run: CrashRun;
  r: SeededRandom;
  sleep(ms: number): Promise<void>;
  /** Writes number their values; each client adds its own fraction. */
  token: number;
  crashing: boolean;
  stopped: boolean;
  /** When every node served again after the last crash. */
  lateFrom: number;
  clients: number;
}

/**
 * 4 to 6 nodes (3 anchors), 4 pages with 2 core copies homed on nodes 0
 * and 1, a lossy network; every 300-900 ms a random node (homes and the
 * coordinator included) crashes and restarts 50-3000 ms later, one at a
 * time. A client whose node is down or not serving waits for it; one whose
 * call failed backs off and tries it again. Then every node serves again
 * (liveness), the clients run 2 s more, and every node reads every page.
 */
export async function crashWorkload(seed: number, opts: CrashWorkloadOptions): Promise<CrashRun> {
  const r = new SeededRandom(seed);
  let rounds = 0;
  /** Per node id, when a monitor first counted it failed (member_failed news), for watchResets. */
  const countedFailed = new Map<string, number>();
  const c: SimCluster = await formedCluster(seed, 4 + r.int(3), {
    timeoutMs: CRASH_TIMEOUT_MS,
    log: opts.log,
    onNews: (_i, n) => {
      if (n.type === 'rebuild' && n.phase === 'done') rounds++;
      if (n.type === 'member_failed' && n.id !== null && !countedFailed.has(n.id)) countedFailed.set(n.id, c.clock.now());
    },
  });
  const rec = new Recorder(c, await sharedPages(c, 2), opts.plant);
  c.network.configure({ drop: 0.05, duplicate: 0.05, delayMs: [1, 25], reorder: true });
  const run: CrashRun = { c, rec, crashes: [], rounds: 0, lateSuccesses: Array<number>(opts.clients).fill(0), resets: [], unexplainedResets: [] };
  const sleep = (ms: number) => new Promise<void>((res) => c.clock.setTimeout(res, ms));
  const x: Running = { c, rec, run, r, sleep, token: 0, crashing: true, stopped: false, lateFrom: Infinity, clients: opts.clients };
  let ended = false;
  const beat = () => {
    opts.progress?.();
    if (!ended) c.clock.setTimeout(beat, PERIOD_MS);
  };
  beat();
  void watchResets(x, countedFailed, () => ended);
  void crashes(x, c.clock.now() + opts.faultMs);
  for (let k = 0; k < opts.clients; k++) void client(x, k);
  await c.runUntilAsync(() => !x.crashing, opts.faultMs + 10_000, 'the crashes to end');
  // Liveness: with every node back (the network still lossy), the cluster rebuilds and every node serves.
  await c.runUntilAsync(
    () => allNodes(c).every((i) => rec.serving(i)) && convergence(c).length === 0,
    30_000,
    () => `every node to serve again (not serving: ${allNodes(c).filter((i) => !rec.serving(i)).join(', ') || 'none'}; ${convergence(c).slice(0, 3).join('; ')})`,
  );
  x.lateFrom = c.clock.now();
  await c.runAsync(2000);
  x.stopped = true;
  await c.runUntilAsync(() => x.clients === 0, 2 * HUNG_MS, () => `every client to finish (${x.clients} still running)`);
  c.network.heal();
  for (const i of allNodes(c)) for (const page of rec.pages) await retrying(c, () => rec.read(i, `final@n${i}`, page), `node ${i}'s final read of ${formatAddress(page)}`, 5000);
  ended = true;
  run.rounds = rounds;
  return run;
}

/** How often the workload looks for nodes counted failed and nodes that dropped their copies: under a heartbeat period. */
const RESET_POLL_MS = 50;

/**
 * A live node drops every copy it holds when a round finds it missed one
 * (docs/recovery.md: a node counted failed is a crash). Each such reset
 * goes into the history as a crash when some node had counted it failed
 * since it (re)started; otherwise it is unexplained, a loss the contract
 * does not allow. The crash is placed when it was first counted failed if
 * it had served by then (from then on a round may leave it out, its read
 * lease over; a count that lasted less than a poll is seen in the monitors'
 * `member_failed` news), else at the reset itself (it served after the
 * count, counted in again). A restarted node's own reset, before it first
 * serves, is its crash's.
 */
async function watchResets(x: Running, countedFailed: Map<string, number>, ended: () => boolean): Promise<void> {
  const { c, rec, run } = x;
  const engines = allNodes(c).map((i) => c.node(i)?.engine);
  const seen = allNodes(c).map(() => 0);
  /** Per node, when this incarnation first served (null: not yet). */
  const servedAt: (number | null)[] = allNodes(c).map(() => null);
  /** Per node, when it was first counted failed since it started or last reset (null: not since). */
  const countedOut: (number | null)[] = allNodes(c).map(() => null);
  const since = allNodes(c).map(() => c.clock.now());
  while (!ended()) {
    await x.sleep(RESET_POLL_MS);
    for (const i of allNodes(c)) {
      const engine = c.node(i)?.engine;
      if (engine !== engines[i]) [engines[i], seen[i], servedAt[i], countedOut[i], since[i]] = [engine, 0, null, null, c.clock.now()];
      if (!engine) continue;
      const others = allNodes(c).filter((j) => j !== i && servedAt[j] !== null);
      const news = countedFailed.get(c.id(i));
      if (news !== undefined && news >= since[i]) countedOut[i] = Math.min(countedOut[i] ?? news, news);
      if (others.some((j) => c.status(j)?.nodes.find((n) => n.id === c.id(i))?.alive === false)) countedOut[i] ??= c.clock.now();
      countedFailed.delete(c.id(i));
      const { resets, lastResetAt, serving } = engine.recoveryState();
      const served = servedAt[i];
      if (resets > seen[i] && served !== null && lastResetAt !== null) {
        const out = countedOut[i];
        if (out !== null) {
          const at = out >= served ? out : lastResetAt;
          run.resets.push({ node: i, at });
          rec.reset(i, at);
        } else run.unexplainedResets.push({ node: i, at: lastResetAt });
        countedOut[i] = null;
        since[i] = c.clock.now();
      }
      seen[i] = resets;
      if (serving && served === null) servedAt[i] = c.clock.now();
    }
  }
}

/** Client k: on one node, reads, writes, flushes and unreferences random pages until stopped. */
async function client(x: Running, k: number): Promise<void> {
  const { c, rec, sleep } = x;
  const cr = x.r.derive(`client-${k}`);
  const i = cr.int(c.size);
  const name = `c${k}@n${i}`;
  /** A refused call, tried again (the client library's retry); a write with a value of its own each time. */
  let again: { page: bigint; roll: number } | undefined;
  while (!x.stopped) {
    await sleep(cr.int(30));
    // Down, or restarted and not yet included in a rebuild: a program on that host waits.
    if (!rec.serving(i)) {
      await sleep(20);
      continue;
    }
    const page = again?.page ?? rec.pages[cr.int(rec.pages.length)];
    const roll = again?.roll ?? cr.next();
    const out =
      roll < 0.45
        ? await rec.read(i, name, page)
        : roll < 0.85
          ? await rec.write(i, name, page, pageOf(++x.token + k / 100))
          : roll < 0.95
            ? await rec.flush(i, name, page)
            : await rec.unreference(i, name, page);
    if (out.ok && c.clock.now() >= x.lateFrom) x.run.lateSuccesses[k]++;
    again = out.ok ? undefined : { page, roll };
    if (!out.ok) await sleep(20 + cr.int(40));
  }
  x.clients--;
}

/** Until `faultEnd`: every 300-900 ms a random node crashes, and restarts 50-3000 ms later. */
async function crashes(x: Running, faultEnd: number): Promise<void> {
  const { c, rec, sleep } = x;
  const fr = x.r.derive('crashes');
  for (;;) {
    await sleep(300 + fr.int(600));
    // The fault window ends, but not before the run has had the crashes it is judged on.
    if (c.clock.now() >= faultEnd && x.run.crashes.length >= CRASHES_MIN) break;
    const victim = fr.int(c.size);
    // Some come back before the failure is detected (3-4 periods), most after.
    const downMs = 50 + fr.int(2950);
    const copies = c.node(victim)!.engine.holder.copies();
    const liveAnchors = [0, 1, 2].filter((a) => c.isUp(a)).map((a) => c.id(a));
    x.run.crashes.push({
      node: victim,
      at: c.clock.now(),
      downMs,
      home: victim < 2,
      coordinator: coordinatorFor(liveAnchors) === c.id(victim),
      dirtyOwned: copies.filter((p) => p.owner && p.dirty).length,
      readerCopies: copies.filter((p) => !p.owner).length,
    });
    rec.crash(victim);
    await sleep(downMs);
    rec.start(victim);
  }
  x.crashing = false;
}

/**
 * What a crash run broke, in words (none: it passed): torn pages, a node
 * that dropped its copies though no node had counted it failed, a history
 * the durable page register cannot explain, calls failing for another
 * reason than a crash or a rebuild, too little progress, a node that never
 * finished a rebuild, a client that never got through once every node
 * served again. The recovery spec and `npm run soak` both judge by it.
 */
export function crashRunProblems(run: CrashRun): string[] {
  const { c, rec } = run;
  const problems: string[] = [];
  if (rec.torn.length > 0) problems.push(`torn pages read: ${rec.torn.length}`);
  for (const r of run.unexplainedResets) problems.push(`node ${r.node} dropped its copies (and its unflushed writes) at ${r.at} though no node had counted it failed`);
  const result = checkDurable(rec.history);
  if (result.ok === false) problems.push(result.explanation);
  if (result.ok === 'unknown') problems.push(`the checker gave up: ${result.explanation}`);
  const unexpected = Object.entries(rec.failures).filter(([code]) => !EXPECTED_FAILURES.has(code));
  if (unexpected.length > 0) problems.push(`calls failed other than while a node was down or the cluster rebuilt: ${unexpected.map(([code, n]) => `${code} ×${n}`).join(', ')}`);
  const returned = (kind: string) => rec.history.filter((o) => o.input.kind === kind && o.ret !== undefined).length;
  for (const kind of ['write', 'read']) if (returned(kind) <= PROGRESS_MIN) problems.push(`only ${returned(kind)} ${kind}s returned (more than ${PROGRESS_MIN} expected)`);
  if (run.crashes.length < CRASHES_MIN) problems.push(`only ${run.crashes.length} crashes (at least ${CRASHES_MIN} expected)`);
  if (run.rounds === 0) problems.push('no rebuild round finished');
  for (const i of allNodes(c)) if (!(c.status(i)!.recovery.completed > 0)) problems.push(`node ${i} never finished a rebuild`);
  const stuck = run.lateSuccesses.flatMap((n, k) => (n === 0 ? [k] : []));
  if (stuck.length > 0) problems.push(`clients ${stuck.join(', ')} never got through once every node served again`);
  return problems;
}
