/**
 * Prometheus metrics of one node, on a registry of its own (never prom-client's
 * global one), so several nodes can live in one process, as they do in specs.
 *
 * Two sources. What the transport and the node already count (messages by
 * kind, rejections, quorum, node-db version) is read when Prometheus scrapes,
 * so there is one count, not two that can drift apart. What only the node's
 * news tells (failures detected, role changes) is counted as the news arrives.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Observable, Subscription } from 'rxjs';
import type { NodeStatus } from '../../actors/status.js';
import type { TransportStats } from '../../bus/transport/transport.js';
import type { MountReport } from '../../bus/messages/fs.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import { registerRequestMetrics, type RequestLatencies } from './request-metrics.js';

/** The loose shape of the node's news, enough to count it. */
export interface NewsLike {
  type: string;
}

/** What metrics need of a node (MangroveNode satisfies it; specs pass fakes). */
export interface MetricsNode {
  status(): NodeStatus;
  readonly news$: Observable<NewsLike>;
}

export interface MetricsTransport {
  readonly self: string;
  stats(): TransportStats;
}

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event-loop lag, GC). They observe the whole
   * process and cannot be stopped, so in-process specs turn them off. */
  processMetrics?: boolean;
  /** The engine's request latencies (its FlowScheduler's `latencies`), read at scrape time; none: no request metrics. */
  requests?: RequestLatencies;
}

export interface NodeMetrics {
  registry: Registry;
  stop(): void;
}

export const metricsLimits = {
  /** How long one status() read serves the gauges of one scrape. */
  statusReuseMs: 100,
  /** News types counted by label; anything beyond counts as 'other'. */
  newsTypesMax: 64,
} as const;

/** Pulses are `hb.*_pulse`; `hb.claim` (a monitor claiming its slot) is not one. */
const isPulse = (kind: string): boolean => kind.startsWith('hb.') && kind.endsWith('_pulse');

export function createMetrics(node: MetricsNode, transport: MetricsTransport, opts: MetricsOptions = {}): NodeMetrics {
  const registry = new Registry();
  const status = memo(() => node.status(), metricsLimits.statusReuseMs);
  registry.setDefaultLabels({ node: transport.self });
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  registerTransportCounters(registry, () => transport.stats());
  registerStatusGauges(registry, status);
  registerRecoveryMetrics(registry, status);
  if (opts.requests) registerRequestMetrics(registry, opts.requests);
  const subscription = countNews(registry, node.news$);

  return {
    registry,
    stop() {
      subscription.unsubscribe();
      registry.clear();
    },
  };
}

/** Counters read from the transport's own counts at scrape time. */
function registerTransportCounters(registry: Registry, stats: () => TransportStats): void {
  const counterFromStats = (name: string, help: string, label: string, read: (s: TransportStats) => Record<string, number>) =>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset();
        for (const [value, n] of Object.entries(read(stats()))) this.inc({ [label]: value }, n);
      },
    });
  const totalFromStats = (name: string, help: string, read: (s: TransportStats) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read(stats()));
      },
    });

  counterFromStats('mangrove_heartbeat_pulses_sent_total', 'Heartbeat pulses sent, by kind.', 'kind', (s) => only(s.sentByKind, isPulse));
  counterFromStats('mangrove_heartbeat_pulses_received_total', 'Heartbeat pulses accepted, by kind.', 'kind', (s) =>
    only(s.receivedByKind, isPulse),
  );
  counterFromStats('mangrove_messages_sent_total', 'Envelopes sent, by kind.', 'kind', (s) => s.sentByKind);
  counterFromStats('mangrove_messages_received_total', 'Envelopes accepted, by kind.', 'kind', (s) => s.receivedByKind);
  counterFromStats('mangrove_messages_rejected_total', 'Inbound frames refused by validation, by reason.', 'reason', (s) => s.rejectedByReason);
  totalFromStats('mangrove_messages_unsent_total', 'Envelopes not sent: unknown or dead peer, full queue, or the fault filter.', (s) => s.unsent);
  totalFromStats('mangrove_messages_filtered_total', 'Inbound envelopes dropped by the fault filter.', (s) => s.filtered);
  totalFromStats('mangrove_wire_messages_sent_total', 'Transport messages sent; each carries the envelopes one link got in one turn (bus/transport/turn-batches.ts).', (s) => s.wire?.messages ?? s.sent);
}

/** A gauge read from the node's status at scrape time. */
function gaugeFromStatus(registry: Registry, status: () => NodeStatus, name: string, help: string, read: (s: NodeStatus) => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read(status()));
    },
  });
}

/** A counter whose total the node's status keeps, read at scrape time. */
function totalFromStatus(registry: Registry, status: () => NodeStatus, name: string, help: string, read: (s: NodeStatus) => number): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read(status()));
    },
  });
}

/** Gauges read from the node's status at scrape time (one status() a scrape, see memo). */
function registerStatusGauges(registry: Registry, status: () => NodeStatus): void {
  const gauge = (name: string, help: string, read: (s: NodeStatus) => number) => gaugeFromStatus(registry, status, name, help, read);

  gauge('mangrove_quorum', '1 when this node sees a quorum of anchor votes, else 0.', (s) => (s.quorum ? 1 : 0));
  gauge('mangrove_nodedb_version', 'Version of the node database this node holds.', (s) => s.version);
  gauge('mangrove_nodes_alive', 'Nodes of the node database this node sees alive.', (s) => s.nodes.filter((n) => n.alive).length);
  gauge('mangrove_nodes', 'Nodes in the node database.', (s) => s.nodes.length);
  gauge('mangrove_monitor', '1 when this node is a heartbeat monitor (of any level), else 0.', (s) => (isMonitor(s) ? 1 : 0));
  gauge('mangrove_epoch', 'Incarnation of this node, bumped on every start.', (s) => s.epoch);
  new Gauge({
    name: 'mangrove_node_info',
    help: 'Always 1; the labels describe the node.',
    labelNames: ['software', 'anchor', 'group'],
    registers: [registry],
    collect() {
      const s = status();
      this.reset();
      this.set({ software: s.software, anchor: String(s.anchor), group: String(s.group) }, 1);
    },
  });
}

/** The rebuild (M14) and re-replication (M15) as this node sees them, read from its status at scrape time. */
function registerRecoveryMetrics(registry: Registry, status: () => NodeStatus): void {
  const gauge = (name: string, help: string, read: (s: NodeStatus) => number) => gaugeFromStatus(registry, status, name, help, read);
  const total = (name: string, help: string, read: (s: NodeStatus) => number) => totalFromStatus(registry, status, name, help, read);
  gauge('mangrove_pages_under_replicated', 'Persistent pages of the arenas this node serves with fewer live core holders than their copies (M15).', (s) => s.replication.pagesUnderReplicated);
  gauge('mangrove_arenas_under_replicated', 'Arenas this node serves whose directory lacks replicas (M15).', (s) => s.replication.arenasUnderReplicated);
  total('mangrove_pages_rereplicated_total', 'Pages this node, as a home, had copied to new core holders (M15).', (s) => s.replication.reReplicatedPages);
  total('mangrove_rereplicated_bytes_total', 'Bytes of the pages this node had copied to new core holders (M15).', (s) => s.replication.reReplicatedPages * PAGE_BYTES);
  total('mangrove_copies_collected_total', 'Copies on this node\'s disk dropped because nothing names it for them any more (M15).', (s) => s.replication.collectedCopies);
  gauge('mangrove_rebuild_round', 'The last RAM-directory rebuild round this node finished (M14).', (s) => s.recovery.completed);
  total('mangrove_fs_calls_total', 'File-system calls this node ran (M18-M22).', (s) => s.fs?.calls ?? 0);
  total('mangrove_fs_calls_failed_total', 'File-system calls this node answered with an error.', (s) => s.fs?.failed ?? 0);
  gauge('mangrove_fs_handles_open', 'File handles open on this node.', (s) => s.fs?.handles ?? 0);
  total('mangrove_fs_recoveries_total', 'Directories this node found half updated by an update that died, and recovered (M22).', (s) => s.fs?.recoveries ?? 0);
  registerMountMetrics(registry, status);
  new Gauge({
    name: 'mangrove_node_state',
    help: '1 for this node\'s recovery state (M6): normal, notified, quiescent or rebuilding; 0 for the others.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const s = status();
      for (const state of ['normal', 'notified', 'quiescent', 'rebuilding']) this.set({ state }, s.recovery.state === state ? 1 : 0);
    },
  });
  new Counter({
    name: 'mangrove_recovery_messages_dropped_total',
    help: 'Rebuild messages dropped as bad input, by reason (M14).',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(status().recovery.dropped)) this.inc({ reason }, n);
    },
  });
}

/** Counters only the node's news can tell, counted as the news arrives; the caller unsubscribes. */
function countNews(registry: Registry, news$: Observable<NewsLike>): Subscription {
  const failures = new Counter({
    name: 'mangrove_failures_detected_total',
    help: 'Members this node reported failed (as a heartbeat monitor or from pulses it heard).',
    registers: [registry],
  });
  const news = new Counter({
    name: 'mangrove_news_total',
    help: 'Events the node reported, by type (member_failed, member_alive, quorum, role, monitor, pan, db...).',
    labelNames: ['type'],
    registers: [registry],
  });
  const types = new Set<string>();
  return news$.subscribe((n) => {
    if (n.type === 'member_failed') failures.inc();
    if (!types.has(n.type) && types.size < metricsLimits.newsTypesMax) types.add(n.type);
    news.inc({ type: types.has(n.type) ? n.type : 'other' });
  });
}

function isMonitor(s: NodeStatus): boolean {
  const self = s.nodes.find((n) => n.id === s.self);
  return self ? self.role === 'monitor' : s.monitors.includes(s.self);
}

function only(byKind: Record<string, number>, keep: (kind: string) => boolean): Record<string, number> {
  return Object.fromEntries(Object.entries(byKind).filter(([kind]) => keep(kind)));
}

/** One status() serves every gauge of a scrape instead of one call per gauge. */
function memo<T>(read: () => T, reuseMs: number): () => T {
  let value: T | undefined;
  let atMs = -Infinity;
  return () => {
    const now = performance.now();
    if (value === undefined || now - atMs > reuseMs) {
      value = read();
      atMs = now;
    }
    return value;
  };
}

/** The POSIX mounts (runtime/mount/) using this node, one series each, labelled with the mount's id and directory, from their last reports. */
function registerMountMetrics(registry: Registry, status: () => NodeStatus): void {
  gaugeFromStatus(registry, status, 'mangrove_mounts', 'POSIX mounts using this node (reported in the last 30 s).', (s) => s.fs?.mounts.length ?? 0);
  const perMount = (name: string, help: string, read: (m: MountReport) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['mount', 'dir', 'host'],
      registers: [registry],
      collect() {
        this.reset();
        for (const m of status().fs?.mounts ?? []) this.set({ mount: m.id, dir: m.dir, host: m.host }, read(m));
      },
    });
  perMount('mangrove_mount_ops', 'Operations a mount has served since it started.', (m) => m.ops);
  perMount('mangrove_mount_errors', 'Operations a mount answered with an error since it started.', (m) => m.errors);
  perMount('mangrove_mount_read_bytes', 'Bytes programs read through a mount since it started.', (m) => m.bytesRead);
  perMount('mangrove_mount_written_bytes', 'Bytes programs wrote through a mount since it started.', (m) => m.bytesWritten);
  perMount('mangrove_mount_failovers', 'Times a mount moved to another node since it started.', (m) => m.failovers);
  perMount('mangrove_mount_latency_p50_ms', 'Median latency of a mount\'s operations in its last report period.', (m) => m.latencyMsP50);
  perMount('mangrove_mount_latency_p99_ms', '99th-percentile latency of a mount\'s operations in its last report period.', (m) => m.latencyMsP99);
}
