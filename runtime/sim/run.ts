/**
 * One `mangrove sim` run (M29): a whole cluster of the real node code on
 * virtual time, a scripted set of faults, and a report. Everything but the
 * speed figure is a pure function of the options and the seed.
 *
 * Timeline, in simulated time: the cluster starts with every node already in
 * the node database and runs until the heartbeat hierarchy has formed (a
 * sample of nodes sees every node alive and has quorum); then the measured
 * phase of `durationS` seconds: crashes spread evenly over its first half,
 * the partition (if any) from a quarter to three quarters of it, message
 * loss throughout. A crash counts as detected when every running node counts
 * the crashed one failed.
 */
import type { TraceSink } from '../../bus/transport/transport.js';
import type { NodeNews } from '../../actors/node.js';
import { SeededRandom } from '../world/random.js';
import { SimCluster } from './cluster.js';

/** A run as `mangrove sim` plans it and hands it to its worker process (JSON). */
export interface SimPlan {
  nodes: number;
  groups: number;
  anchors: number;
  seed: number;
  duration: number;
  crash: number;
  partition?: number[];
  loss: number;
  period: number;
  trace?: string;
}

export interface SimRunOptions {
  nodes: number;
  groups: number;
  anchors: number;
  seed: number;
  durationS: number;
  crash: number;
  /** Side sizes, e.g. [3, 2] or [0.6, 0.4] (fractions of the nodes). */
  partition?: number[];
  loss: number;
  periodMs: number;
  trace?: TraceSink;
  /** Called about every two seconds of wall time. */
  progress?: (p: SimProgress) => void;
}

export interface SimProgress {
  simulatedS: number;
  totalS: number;
  phase: 'forming' | 'running';
  detected: number;
  crashes: number;
  simulatedSecondsPerSecond: number;
}

export interface SimReport {
  nodes: number;
  groups: number;
  anchors: number;
  seed: number;
  durationS: number;
  formedAfterMs: number;
  crashes: { id: string; detectedAfterMs: number | null }[];
  undetected: number;
  messagesPerNodePerSecond: number;
  /** The busiest node's sends per simulated second: the monitors carry the most. */
  busiestNodeMessagesPerSecond: number;
  quorumChanges: number;
  simulatedSecondsPerSecond: number;
}

/** Nodes sampled to decide that the cluster has formed. */
const FORM_SAMPLE = 24;
/** The hierarchy must form within this many periods, or the run reports it did not. */
const FORM_PERIODS_MAX = 200;
const STEP_MS = 50;

export function runSim(o: SimRunOptions): SimReport {
  const started = performance.now();
  let quorumChanges = 0;
  let measuring = false;
  const c = new SimCluster({
    seed: o.seed,
    nodes: o.nodes,
    anchors: o.anchors,
    groups: o.groups,
    periodMs: o.periodMs,
    preformed: true,
    trace: o.trace,
    onNews: (_i: number, n: NodeNews) => {
      if (measuring && n.type === 'quorum') quorumChanges++;
    },
  });
  const plan = new SeededRandom(o.seed).derive('scenario');
  c.startAll();
  let lastProgress = performance.now();
  const progress = (phase: SimProgress['phase'], simulatedS: number, totalS: number, detected: number) => {
    const now = performance.now();
    if (!o.progress || now - lastProgress < 2000) return;
    lastProgress = now;
    const wallS = (now - started) / 1000;
    o.progress({ simulatedS, totalS, phase, detected, crashes: o.crash, simulatedSecondsPerSecond: (c.clock.now() - t0) / 1000 / wallS });
  };
  const t0 = c.clock.now();

  // Forming: until a sample of nodes sees every node alive, with quorum.
  const sample = Array.from({ length: Math.min(FORM_SAMPLE, o.nodes) }, () => plan.int(o.nodes));
  const formed = () => sample.every((i) => c.node(i)!.hasFullView());
  let formedAfterMs = -1;
  for (let t = 0; t <= FORM_PERIODS_MAX * o.periodMs; t += o.periodMs) {
    if (formed()) {
      formedAfterMs = t;
      break;
    }
    c.run(o.periodMs);
    progress('forming', (c.clock.now() - t0) / 1000, FORM_PERIODS_MAX * (o.periodMs / 1000), 0);
  }

  // The measured phase.
  const durationMs = o.durationS * 1000;
  const victims = pick(plan, o.nodes, o.anchors, o.crash);
  const crashAt = victims.map((_, k) => Math.floor(((k + 1) * durationMs) / (2 * (victims.length + 1))));
  const crashedAt = new Map<number, number>();
  const detected = new Map<number, number>();
  if (o.loss > 0) c.network.configure({ drop: o.loss });
  const sides = o.partition ? partitionSides(o.partition, o.nodes, plan) : undefined;
  const sentBefore = c.network.stats().sent;
  const sentByBefore = Array.from({ length: o.nodes }, (_, i) => c.sentBy(i));
  measuring = true;
  const start = c.clock.now();
  for (let t = 0; t < durationMs; t += STEP_MS) {
    victims.forEach((v, k) => {
      if (t === crashAt[k] - (crashAt[k] % STEP_MS)) {
        c.crash(v);
        crashedAt.set(v, c.clock.now());
      }
    });
    if (sides && t === Math.floor(durationMs / 4 / STEP_MS) * STEP_MS) c.partition(sides);
    if (sides && t === Math.floor((3 * durationMs) / 4 / STEP_MS) * STEP_MS) c.heal();
    c.run(STEP_MS);
    for (const [v, at] of crashedAt) {
      if (!detected.has(v) && everyoneCountsFailed(c, v)) detected.set(v, c.clock.now() - at);
    }
    progress('running', (c.clock.now() - t0) / 1000, (start - t0 + durationMs) / 1000, detected.size);
  }
  measuring = false;
  const sent = c.network.stats().sent - sentBefore;
  let busiest = 0;
  for (let i = 0; i < o.nodes; i++) if (c.isUp(i)) busiest = Math.max(busiest, c.sentBy(i) - sentByBefore[i]);
  const wallS = (performance.now() - started) / 1000;
  const crashes = victims.map((v) => ({ id: c.id(v), detectedAfterMs: detected.get(v) ?? null }));
  void c.stopAll();
  return {
    nodes: o.nodes,
    groups: o.groups,
    anchors: o.anchors,
    seed: o.seed,
    durationS: o.durationS,
    formedAfterMs,
    crashes,
    undetected: crashes.filter((x) => x.detectedAfterMs === null).length,
    messagesPerNodePerSecond: round3(sent / (o.nodes - victims.length / 2) / o.durationS),
    busiestNodeMessagesPerSecond: round3(busiest / o.durationS),
    quorumChanges,
    simulatedSecondsPerSecond: round3((c.clock.now() - t0) / 1000 / wallS),
  };
}

/** Distinct non-anchor nodes to crash (anchors are nodes 0..anchors-1). */
function pick(r: SeededRandom, nodes: number, anchors: number, k: number): number[] {
  const out = new Set<number>();
  const pool = nodes - anchors;
  while (out.size < Math.min(k, pool)) out.add(anchors + r.int(pool));
  return [...out];
}

/** Sizes as counts (3,2) or fractions (0.6,0.4) of the nodes; nodes are dealt to sides at random. */
export function partitionSides(sizes: number[], nodes: number, r: SeededRandom): number[][] {
  const fractions = sizes.every((s) => s < 1);
  const counts = sizes.map((s) => (fractions ? Math.round(s * nodes) : s));
  const order = Array.from({ length: nodes }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const sides: number[][] = [];
  let at = 0;
  for (const n of counts) {
    sides.push(order.slice(at, at + n));
    at += n;
  }
  return sides;
}

function everyoneCountsFailed(c: SimCluster, victim: number): boolean {
  const id = c.id(victim);
  for (let i = 0; i < c.size; i++) {
    if (i === victim || !c.isUp(i)) continue;
    if (c.node(i)!.countsAlive(id)) return false;
  }
  return true;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;
