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

export function runSim(options: SimRunOptions): SimReport {
  const run = startRun(options);
  const formedAfterMs = formCluster(run);
  const measured = runMeasuredPhase(run);
  return finishRun(run, formedAfterMs, measured);
}

/** What the phases of one run share. */
interface SimRun {
  readonly options: SimRunOptions;
  readonly cluster: SimCluster;
  /** The scenario's randomness: the formation sample, then the victims, then the partition sides. */
  readonly plan: SeededRandom;
  readonly startedWallMs: number;
  /** Simulated time when every node had started. */
  readonly startMs: number;
  /** Quorum news is counted only while the measured phase runs. */
  readonly quorum: { measuring: boolean; changes: number };
  progress(phase: SimProgress['phase'], simulatedS: number, totalS: number, detected: number): void;
}

/** What the measured phase saw. */
interface MeasuredPhase {
  victims: number[];
  /** Per crashed node, how long after its crash every running node counted it failed. */
  detectedAfterMs: Map<number, number>;
  sent: number;
  busiestSent: number;
}

function startRun(options: SimRunOptions): SimRun {
  const startedWallMs = performance.now();
  const quorum = { measuring: false, changes: 0 };
  const cluster = new SimCluster({
    seed: options.seed,
    nodes: options.nodes,
    anchors: options.anchors,
    groups: options.groups,
    periodMs: options.periodMs,
    preformed: true,
    trace: options.trace,
    onNews: (_i: number, news: NodeNews) => {
      if (quorum.measuring && news.type === 'quorum') quorum.changes++;
    },
  });
  const plan = new SeededRandom(options.seed).derive('scenario');
  cluster.startAll();
  let lastProgressMs = performance.now();
  const startMs = cluster.clock.now();
  const progress = (phase: SimProgress['phase'], simulatedS: number, totalS: number, detected: number) => {
    const now = performance.now();
    if (!options.progress || now - lastProgressMs < 2000) return;
    lastProgressMs = now;
    const wallS = (now - startedWallMs) / 1000;
    const simulatedSecondsPerSecond = (cluster.clock.now() - startMs) / 1000 / wallS;
    options.progress({ simulatedS, totalS, phase, detected, crashes: options.crash, simulatedSecondsPerSecond });
  };
  return { options, cluster, plan, startedWallMs, startMs, quorum, progress };
}

/** Forming: until a sample of nodes sees every node alive, with quorum. Returns when it formed, or -1. */
function formCluster(run: SimRun): number {
  const { options, cluster, plan } = run;
  const sample = Array.from({ length: Math.min(FORM_SAMPLE, options.nodes) }, () => plan.int(options.nodes));
  const formed = () => sample.every((i) => cluster.node(i)!.hasFullView());
  for (let elapsedMs = 0; elapsedMs <= FORM_PERIODS_MAX * options.periodMs; elapsedMs += options.periodMs) {
    if (formed()) return elapsedMs;
    cluster.run(options.periodMs);
    run.progress('forming', (cluster.clock.now() - run.startMs) / 1000, FORM_PERIODS_MAX * (options.periodMs / 1000), 0);
  }
  return -1;
}

/** The measured phase: crashes over its first half, the partition over its middle half, loss throughout. */
function runMeasuredPhase(run: SimRun): MeasuredPhase {
  const { options, cluster, plan } = run;
  const durationMs = options.durationS * 1000;
  const victims = pick(plan, options.nodes, options.anchors, options.crash);
  const crashAt = victims.map((_, index) => Math.floor(((index + 1) * durationMs) / (2 * (victims.length + 1))));
  const crashedAt = new Map<number, number>();
  const detectedAfterMs = new Map<number, number>();
  if (options.loss > 0) cluster.network.configure({ drop: options.loss });
  const sides = options.partition ? partitionSides(options.partition, options.nodes, plan) : undefined;
  const sentBefore = cluster.network.stats().sent;
  const sentByBefore = Array.from({ length: options.nodes }, (_, i) => cluster.sentBy(i));
  run.quorum.measuring = true;
  const phaseStartMs = cluster.clock.now();
  for (let elapsedMs = 0; elapsedMs < durationMs; elapsedMs += STEP_MS) {
    victims.forEach((victim, index) => {
      if (elapsedMs === crashAt[index] - (crashAt[index] % STEP_MS)) {
        cluster.crash(victim);
        crashedAt.set(victim, cluster.clock.now());
      }
    });
    if (sides && elapsedMs === Math.floor(durationMs / 4 / STEP_MS) * STEP_MS) cluster.partition(sides);
    if (sides && elapsedMs === Math.floor((3 * durationMs) / 4 / STEP_MS) * STEP_MS) cluster.heal();
    cluster.run(STEP_MS);
    for (const [victim, at] of crashedAt) {
      if (!detectedAfterMs.has(victim) && everyoneCountsFailed(cluster, victim)) detectedAfterMs.set(victim, cluster.clock.now() - at);
    }
    run.progress('running', (cluster.clock.now() - run.startMs) / 1000, (phaseStartMs - run.startMs + durationMs) / 1000, detectedAfterMs.size);
  }
  run.quorum.measuring = false;
  const sent = cluster.network.stats().sent - sentBefore;
  let busiestSent = 0;
  for (let i = 0; i < options.nodes; i++) if (cluster.isUp(i)) busiestSent = Math.max(busiestSent, cluster.sentBy(i) - sentByBefore[i]);
  return { victims, detectedAfterMs, sent, busiestSent };
}

function finishRun(run: SimRun, formedAfterMs: number, measured: MeasuredPhase): SimReport {
  const { options, cluster } = run;
  const wallS = (performance.now() - run.startedWallMs) / 1000;
  const crashes = measured.victims.map((victim) => ({ id: cluster.id(victim), detectedAfterMs: measured.detectedAfterMs.get(victim) ?? null }));
  void cluster.stopAll();
  return {
    nodes: options.nodes,
    groups: options.groups,
    anchors: options.anchors,
    seed: options.seed,
    durationS: options.durationS,
    formedAfterMs,
    crashes,
    undetected: crashes.filter((crash) => crash.detectedAfterMs === null).length,
    messagesPerNodePerSecond: round3(measured.sent / (options.nodes - measured.victims.length / 2) / options.durationS),
    busiestNodeMessagesPerSecond: round3(measured.busiestSent / options.durationS),
    quorumChanges: run.quorum.changes,
    simulatedSecondsPerSecond: round3((cluster.clock.now() - run.startMs) / 1000 / wallS),
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
