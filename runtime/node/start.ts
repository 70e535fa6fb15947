/**
 * A node process (`mangrove start`): config → store → identity and epoch →
 * ZeroMQ transport → node → metrics and HTTP, and the way back down on
 * SIGINT/SIGTERM. Anything that fails half-way closes what was opened
 * before it, so a failed start never leaves a bound port or an open store.
 *
 * `openNode` does the wiring and touches nothing process-wide (specs can run
 * several in one process); `runNodeProcess` adds the signal and crash
 * handling a real node process needs, and embedded.ts's `startNode` runs a
 * node inside a program's own process.
 */
import { randomBytes } from 'node:crypto';
import type { Log } from '../../actors/log.js';
import { MangroveNode, type NodeNews } from '../../actors/node.js';
import type { NodeSettings } from '../../actors/settings.js';
import type { StoredIdentity } from '../../actors/storage/node-store.js';
import { nativeDecoder } from '../../bus/codec.js';
import { MangroveError } from '../../bus/errors.js';
import { TraceWriter } from '../../bus/trace/trace.js';
import { ZmqTransport } from '../../bus/transport/zmq.js';
import { makePermanentId } from '../../machines/membership/identity.js';
import { WallClock } from '../world/clock.js';
import { loadConfig, type NodeConfig } from './config.js';
import { nodeCurve } from './node-keys.js';
import type { MemberKey } from '../../bus/messages/index.js';
import { keysOf } from '../../machines/membership/node-db.js';
import { registerSecurityMetrics } from './security-metrics.js';
import { startHttp, type HttpServer } from '../http/server.js';
import { dashboardRoutes } from '../http/dashboard/routes.js';
import { HttpAccess } from '../http/access.js';
import type { CurveOptions } from '../../bus/transport/curve.js';
import { LmdbNodeStore } from '../storage/lmdb-node-store.js';
import { LmdbPageStore } from '../storage/lmdb-pages.js';
import { LmdbTxnLogStore } from '../storage/lmdb-txn-log.js';
import { createLogger, throttledLog, type Logger } from './logger.js';
import { MachineWatch } from '../inspect/watch.js';
import { machineRoutes } from '../http/machines.js';
import { createMetrics, type NodeMetrics } from '../http/metrics.js';
import { traceNode } from '../trace/node-trace.js';
import { CryptoRandom, SeededRandom } from '../world/random.js';
import { packageVersion } from './version.js';

export const startLimits = {
  /** A clean stop taking longer than this is given up and the process exits 1. */
  shutdownMs: 10_000,
  /** A repeated transport complaint (bad frames, a dead peer) is logged once per this. */
  complaintIntervalMs: 10_000,
} as const;

/**
 * The exit status of a node process the cluster removed (`mangrove node
 * remove`): not 1, so a supervisor can tell it from a crash and leave it
 * stopped (systemd: `RestartPreventExitStatus=3`); a restart would add the
 * node again as a new member.
 */
export const EXIT_REMOVED = 3;

export interface RunningNode {
  config: NodeConfig;
  id: string;
  epoch: number;
  node: MangroveNode;
  transport: ZmqTransport;
  metrics: NodeMetrics;
  http?: HttpServer;
  trace?: TraceWriter;
  log: Logger;
  /** Resolves with the node-database version that removed this node from the cluster, if one ever does; it must then stop. */
  removed: Promise<number>;
  /** Stops everything, in order; safe to call twice. */
  stop(): Promise<void>;
}

export interface OpenOptions {
  /** Overrides config.trace (`mangrove start --trace`). */
  trace?: string;
  /** Process metrics on /metrics (off for several nodes in one process). */
  processMetrics?: boolean;
}

/** Wires a node from a validated config. Throws MangroveError with nothing left open. */
export async function openNode(config: NodeConfig, baseLog: Logger, opts: OpenOptions = {}): Promise<RunningNode> {
  const undo: UndoSteps = [];
  try {
    const stores = openStores(config, undo);
    const identity = stores.store.loadIdentity() ?? createIdentity(stores.store);
    const epoch = stores.store.nextEpoch();
    const log = baseLog.child({ node: identity.id });
    const clock = new WallClock();

    // The node database's member keys, once the node (started below, on this transport) has its database.
    const savedKeys = stores.store.loadNodeDb()?.keys ?? [];
    let memberKeys: () => readonly MemberKey[] = () => savedKeys;
    const curve = nodeCurve(config, () => memberKeys());
    const transport = await ZmqTransport.open({ self: identity.id, endpoint: config.listen, clock, curve, flood: { perSecond: config.floodPerSecond }, ...transportComplaints(log) });
    undo.push(() => transport.close());
    const tracePath = opts.trace ?? config.trace;
    const trace = tracePath === undefined ? undefined : attachTrace(transport, tracePath, undo);

    const { node, settings, watch, removed } = startMangroveNode({ config, id: identity.id, epoch, log, clock, transport, trace, stores }, undo);
    memberKeys = () => keysOf(node.database());
    const metrics = createMetrics(node, transport, { processMetrics: opts.processMetrics, requests: () => node.engine.scheduler.latencies() });
    registerSecurityMetrics(metrics.registry, () => node.status());
    undo.push(() => metrics.stop());
    const http = await serveHttp(config, node, transport, curve, metrics, watch, settings, undo);
    logReady(log, config, epoch, transport, http, tracePath);

    let stopping: Promise<void> | undefined;
    return {
      config,
      id: identity.id,
      epoch,
      node,
      transport,
      metrics,
      http,
      trace,
      log,
      removed,
      stop() {
        stopping ??= unwind(undo, log);
        return stopping;
      },
    };
  } catch (err) {
    await unwind(undo, baseLog);
    throw err;
  }
}

/** How to close what has been opened so far, oldest first (`unwind` runs them newest first). */
type UndoSteps = (() => unknown)[];

interface NodeStores {
  store: LmdbNodeStore;
  pages: LmdbPageStore;
  txnLog: LmdbTxnLogStore;
}

/** What the node is built from, all opened before it. */
interface NodeParts {
  config: NodeConfig;
  id: string;
  epoch: number;
  log: Logger;
  clock: WallClock;
  transport: ZmqTransport;
  trace: TraceWriter | undefined;
  stores: NodeStores;
}

function openStores(config: NodeConfig, undo: UndoSteps): NodeStores {
  const store = LmdbNodeStore.open(config.dataDir);
  undo.push(() => store.close());
  const pages = LmdbPageStore.open(config.dataDir, { pagesMax: config.diskPages });
  undo.push(() => pages.close());
  const txnLog = LmdbTxnLogStore.open(config.dataDir);
  undo.push(() => txnLog.close());
  return { store, pages, txnLog };
}

function attachTrace(transport: ZmqTransport, path: string, undo: UndoSteps): TraceWriter {
  const trace = openTrace(path);
  transport.setTrace(trace);
  undo.push(() => {
    transport.setTrace(null);
    trace.close();
  });
  return trace;
}

function startMangroveNode(parts: NodeParts, undo: UndoSteps): { node: MangroveNode; settings: NodeSettings; watch: MachineWatch | undefined; removed: Promise<number> } {
  const { config, id, epoch, log, clock, transport, trace } = parts;
  const { store, pages, txnLog } = parts.stores;
  // Machines can be watched only through the HTTP port, so only a node with one pays for inspection.
  const watch = config.httpPort === undefined ? undefined : new MachineWatch({ node: id, now: () => clock.now() });
  const settings = settingsFrom(config, id, epoch);
  // Seeded from the OS, and the seed is traced, so replay draws what the node drew.
  const seed = new CryptoRandom().int(2 ** 32);
  const traced = trace ? traceNode(trace, clock, settings, seed, store) : undefined;
  // The node's clock stands still while it handles an input, as replay's does (bus/trace/traced-clock.ts).
  if (trace && traced) transport.setTrace(traced.inputs(trace));
  const nodeClock = traced ?? clock;
  const node = new MangroveNode({ settings, transport, clock: nodeClock, random: new SeededRandom(seed), store, pages, txnLog, engineClock: clock, engine: { ramBytes: config.ramMiB * 1024 * 1024, copies: config.copies }, log, inspect: watch?.inspect, machines: watch ? (after) => watch.snapshot(after) : undefined });
  // Subscribed before the node starts, so a removal is never missed, however early.
  let tellRemoved: (version: number) => void = () => {};
  const removed = new Promise<number>((resolve) => (tellRemoved = resolve));
  const newsLog = logNews(node, log, tellRemoved);
  node.start();
  undo.push(() => node.stop(), () => newsLog.unsubscribe());
  return { node, settings, watch, removed };
}

async function serveHttp(
  config: NodeConfig,
  node: MangroveNode,
  transport: ZmqTransport,
  curve: CurveOptions | undefined,
  metrics: NodeMetrics,
  watch: MachineWatch | undefined,
  settings: NodeSettings,
  undo: UndoSteps,
): Promise<HttpServer | undefined> {
  if (config.httpPort === undefined || !watch) return undefined;
  const dashboard = dashboardRoutes({
    status: () => node.status(),
    transport: () => transport.stats(),
    requests: () => node.engine.scheduler.latencies(),
    engine: (op, client) => node.engine.call(op, client),
    fs: (op, client) => node.fs.call(op, client),
    heartbeatMs: settings.periodMs,
    machines: (after) => watch.snapshot(after),
    // Other nodes are asked with this node's own pair, which they let in as a node's.
    curveFor: (endpoint) => {
      const serverKey = curve?.serverKeyOf(endpoint);
      return curve && serverKey ? { keys: curve.keys, serverKey } : undefined;
    },
  });
  undo.push(() => dashboard.close());
  const access = new HttpAccess({ host: config.httpHost, token: config.httpToken });
  const sources = { status: () => node.status(), registry: metrics.registry, routes: { ...machineRoutes(watch), ...dashboard.routes }, postRoutes: dashboard.postRoutes };
  const http = await startHttp(config.httpPort, sources, access);
  undo.push(() => http.close());
  // Known only once bound ("httpPort": 0 lets the OS pick); `machines watch` finds it in the status.
  settings.httpPort = http.port;
  return http;
}

function logReady(log: Logger, config: NodeConfig, epoch: number, transport: ZmqTransport, http: HttpServer | undefined, tracePath: string | undefined): void {
  const native = nativeDecoder();
  log.info(
    { epoch, listen: transport.endpoint, anchors: config.anchors, anchor: config.anchor, dataDir: config.dataDir, httpPort: http?.port, trace: tracePath, codecNative: native, secure: !config.insecure },
    'node process ready',
  );
  if (config.insecure) log.info({}, 'running without keys ("insecure": true): every process that reaches this node\'s port is let in, with every right');
  if (!native) log.warn({}, 'the native CBOR decoder is not loaded: decoding runs in JavaScript, slower (is cbor-extract installed?)');
}

/**
 * Runs a node as this process: SIGINT/SIGTERM stop it cleanly and exit 0;
 * removal from the cluster stops it cleanly, says so on stderr and exits
 * EXIT_REMOVED; a second signal, a stop that hangs, or an unexpected
 * exception exits 1.
 * Logs go to stdout; nothing else is written there.
 */
export async function runNodeProcess(configPath: string, opts: OpenOptions = {}): Promise<RunningNode> {
  const config = loadConfig(configPath);
  const log = createLogger({ level: config.logLevel });
  const running = await openNode(config, log, opts);

  let stopping = false;
  /** Stops the node cleanly, then exits with `code` (1 if the stop fails or hangs). */
  const stopAndExit = (code: number, why: Record<string, unknown>): void => {
    stopping = true;
    running.log.info(why, 'stopping');
    const timer = setTimeout(() => {
      running.log.error({ afterMs: startLimits.shutdownMs }, 'stopping took too long: exiting');
      process.exit(1);
    }, startLimits.shutdownMs);
    timer.unref();
    running.stop().then(
      () => {
        running.log.info({}, 'stopped');
        process.exit(code);
      },
      (err: unknown) => {
        running.log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      running.log.warn({ signal }, 'second signal while stopping: exiting now');
      process.exit(1);
    }
    stopAndExit(0, { signal });
  };
  // Removed from the cluster: joining again would undo the operator's decision, so the process ends, saying why.
  void running.removed.then((version) => {
    if (stopping) return;
    process.stderr.write(`this node was removed from the cluster (node database version ${version}); it stops\n`);
    stopAndExit(EXIT_REMOVED, { removed: version });
  });
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);

  // A node in an unknown state must not linger half-working: record why and
  // exit, so the supervisor (or `mangrove local`) sees it die. LMDB commits
  // are atomic, so there is nothing to repair on the next start.
  const crash = (err: unknown, origin: string): void => {
    running.log.fatal({ err, origin }, 'unexpected exception: exiting');
    try {
      running.trace?.close();
    } catch {
      // Exiting anyway; the trace reader keeps every whole record.
    }
    process.exit(1);
  };
  process.on('uncaughtException', (err, origin) => crash(err, origin));
  process.on('unhandledRejection', (reason) => crash(reason, 'unhandledRejection'));
  return running;
}

export function settingsFrom(config: NodeConfig, id: string, epoch: number): NodeSettings {
  return {
    id,
    epoch,
    endpoint: config.listen,
    pid: process.pid,
    anchor: config.anchor,
    votes: config.votes,
    group: config.group,
    seeds: config.anchors,
    periodMs: config.periodMs,
    quorumTimeoutMs: config.quorumTimeoutMs,
    monitorPreference: config.monitorPreference,
    panPreference: config.panPreference,
    faultInjection: config.faultInjection,
    software: packageVersion(),
    secure: !config.insecure,
  };
}

function createIdentity(store: LmdbNodeStore): StoredIdentity {
  const createdMs = Date.now();
  const identity = { id: makePermanentId(new Uint8Array(randomBytes(6)), createdMs), createdMs };
  store.saveIdentity(identity);
  return identity;
}

function openTrace(path: string): TraceWriter {
  try {
    return new TraceWriter(path);
  } catch (err) {
    throw new MangroveError('E_BAD_CONFIG', `cannot open the trace file ${path}: ${(err as Error).message}`);
  }
}

/** Transport complaints repeat (every pulse to a dead peer is unsendable), so
 * each kind is logged once per interval with a count of the ones left out. */
function transportComplaints(log: Log) {
  const rejected = throttledLog(log, 'warn', startLimits.complaintIntervalMs);
  const unsent = throttledLog(log, 'debug', startLimits.complaintIntervalMs);
  const failed = throttledLog(log, 'warn', startLimits.complaintIntervalMs);
  return {
    onReject: (reason: string, detail: string) => rejected(reason, { reason, detail }, 'inbound frame rejected'),
    onError: (source: string, detail: string) =>
      source === 'unsent' ? unsent(source, { detail }, 'envelope not sent') : failed(source, { source, detail }, 'transport error contained'),
  };
}

/** News the node does not log itself; member failures, recoveries and monitor
 * changes it logs where it learns them (actors/node.ts). */
function logNews(node: MangroveNode, log: Log, removed: (version: number) => void) {
  return node.news$.subscribe((n: NodeNews) => {
    switch (n.type) {
      case 'removed':
        // The node logs it; the process stops on it (runNodeProcess).
        removed(n.version);
        break;
      case 'quorum':
        if (n.has) log.info({ quorum: true }, 'quorum gained');
        else log.warn({ quorum: false }, 'quorum lost');
        break;
      case 'pan':
        log.info({ pan: n.id, term: n.term }, 'primary anchor node');
        break;
      case 'db':
        log.info({ version: n.version, nodes: n.nodes }, 'node database version');
        break;
      case 'role':
        log.info({ level: n.level, role: n.role }, 'heartbeat role');
        break;
      case 'included':
        log.info({ level: n.level }, 'the monitor counts this node in');
        break;
      default:
        log.debug({ news: n }, n.type);
    }
  });
}

/** Runs the undo steps newest first; every step runs even if one fails. */
async function unwind(undo: UndoSteps, log: Log): Promise<void> {
  for (const step of undo.splice(0).reverse()) {
    try {
      await step();
    } catch (err) {
      log.error({ err: String(err) }, 'error while stopping');
    }
  }
}
