/**
 * How long a program's requests took on this node (`client.*` page calls,
 * `fs.*` file-system calls), for /metrics: read from the flow scheduler's
 * latency histograms (actors/engine/op-latency.ts) when Prometheus scrapes,
 * like the transport's counters (metrics.ts), so there is one count, not
 * two. The engine's own steps and other nodes' calls are left out; a read
 * or write answered on the fast path is not timed (it never reaches the
 * scheduler).
 *
 *   mangrove_request_duration_seconds_bucket{le="0.0001",op="client.read"} N   (cumulative, as Prometheus wants)
 *   mangrove_request_duration_seconds_sum{op="client.read"} S
 *   mangrove_request_duration_seconds_count{op="client.read"} N
 *   mangrove_requests_failed_total{op="client.read"} N
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { clientLatencies, LATENCY_BOUNDS_MS, type LatencySnapshot } from '../../actors/engine/op-latency.js';

/** Per op-code, its requests' latencies (FlowScheduler.latencies). */
export type RequestLatencies = () => Record<string, LatencySnapshot>;

const NAME = 'mangrove_request_duration_seconds';
const HELP = 'How long a program\'s requests to this node took, from dispatch to answer (queueing included), by op-code: client.* page calls and fs.* file-system calls. Fast-path reads and writes are not counted.';
const BOUNDS_S = LATENCY_BOUNDS_MS.map((ms) => ms / 1000);

/** One sample line as prom-client's registry reads it: `sharedLabels` (the op) follow `labels` (le). */
interface Sample {
  metricName: string;
  labels: { le?: number | string };
  sharedLabels: { op: string };
  value: number;
}

/**
 * A histogram whose buckets are the scheduler's, not observed here. The
 * registry renders a histogram from `getForPromString` (and `get` from it),
 * so that is the one method replaced; the metrics spec would see it stop.
 */
class ScrapedHistogram extends Histogram<'op'> {
  constructor(
    registry: Registry,
    private readonly read: RequestLatencies,
  ) {
    super({ name: NAME, help: HELP, labelNames: ['op'], buckets: BOUNDS_S, registers: [registry] });
  }

  async getForPromString(): Promise<{ name: string; help: string; type: string; values: Sample[]; aggregator: string }> {
    const values: Sample[] = [];
    for (const [op, l] of Object.entries(clientLatencies(this.read()))) {
      const sharedLabels = { op };
      let cumulative = 0;
      BOUNDS_S.forEach((le, i) => {
        cumulative += l.buckets[i] ?? 0;
        values.push({ metricName: `${NAME}_bucket`, labels: { le }, sharedLabels, value: cumulative });
      });
      values.push({ metricName: `${NAME}_bucket`, labels: { le: '+Inf' }, sharedLabels, value: l.n });
      values.push({ metricName: `${NAME}_sum`, labels: {}, sharedLabels, value: l.sumMs / 1000 });
      values.push({ metricName: `${NAME}_count`, labels: {}, sharedLabels, value: l.n });
    }
    return { name: NAME, help: HELP, type: 'histogram', values, aggregator: 'sum' };
  }
}

export function registerRequestMetrics(registry: Registry, read: RequestLatencies): void {
  new ScrapedHistogram(registry, read);
  new Counter({
    name: 'mangrove_requests_failed_total',
    help: 'A program\'s requests to this node answered with an error (a refusal included), by op-code: client.* and fs.*.',
    labelNames: ['op'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [op, l] of Object.entries(clientLatencies(read()))) this.inc({ op }, l.failed);
    },
  });
}
