/**
 * A simulated cluster whose whole trace is kept, for the specs that check
 * or replay traces (spec/conformance, spec/sim). The world is built and
 * driven one way here; each spec writes only its scenario, the faults and
 * the steps that make its run, and gets back every entry in the order the
 * nodes recorded it.
 */
import type { LinkFaults } from '../../bus/transport/sim-network.js';
import { isEnvelopeRecord, type TraceEntry, type TraceRecord } from '../../bus/transport/transport.js';
import { SimCluster, type SimClusterOptions } from '../../runtime/sim/cluster.js';

export interface TracedSimOptions extends Omit<SimClusterOptions, 'trace'> {
  /** Network faults from the start (loss, duplication, delay, reordering). */
  faults?: Partial<LinkFaults>;
}

export interface TracedRun {
  cluster: SimCluster;
  /** Everything traced, in order: each incarnation's start, its timers, its envelopes. */
  entries: TraceEntry[];
  /** The envelopes alone (what the trace rules check). */
  records: TraceRecord[];
  /** Simulated time when the nodes were started. */
  startAt: number;
}

/**
 * Builds the cluster, sets the faults, starts every node, runs `scenario`,
 * stops every node. What the scenario returns (the times it marked, the
 * nodes it chose) comes back beside the trace.
 */
export async function tracedSim<T extends object = Record<never, never>>(
  options: TracedSimOptions,
  scenario: (c: SimCluster) => T | void | Promise<T | void>,
): Promise<TracedRun & T> {
  const { faults, ...cluster } = options;
  const entries: TraceEntry[] = [];
  const c = new SimCluster({ ...cluster, trace: { record: (r) => entries.push(r), note: (m) => entries.push(m) } });
  if (faults) c.network.configure(faults);
  const startAt = c.clock.now();
  c.startAll();
  const marks = (await scenario(c)) ?? ({} as T);
  await c.stopAll();
  return { ...marks, cluster: c, entries, records: entries.filter(isEnvelopeRecord), startAt };
}
