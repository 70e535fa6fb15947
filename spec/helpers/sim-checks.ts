/**
 * Invariants of the membership protocols, checked on a running simulated
 * cluster: safety at every step of a faulty run, convergence after it heals.
 */
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import { sameContents } from '../../machines/membership/node-db.js';
import { GROUP_DEADLINES_MAX } from '../../machines/membership/heartbeat-timing.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';

/** Records every node-database version any node ever held, and fails on two contents under one version. */
export class DbHistory {
  private readonly seen = new Map<number, { db: NodeDbSnapshot; by: string }>();

  observe(c: SimCluster): void {
    for (let i = 0; i < c.size; i++) {
      const db = c.node(i)?.database();
      if (!db || db.version === 0) continue;
      const first = this.seen.get(db.version);
      if (!first) this.seen.set(db.version, { db, by: c.id(i) });
      else if (first.db !== db && !sameContents(first.db, db)) {
        throw new Error(`node database version ${db.version}: ${first.by} and ${c.id(i)} hold different contents`);
      }
    }
  }
}

/** Election safety (M16): no two anchors are PAN in the same term. */
export function checkOnePanPerTerm(c: SimCluster): void {
  const byTerm = new Map<number, string>();
  for (let i = 0; i < c.size; i++) {
    const s = c.status(i);
    if (!s || s.panTerm === null) continue;
    const other = byTerm.get(s.panTerm);
    if (other && other !== s.self) throw new Error(`two PANs in term ${s.panTerm}: ${other} and ${s.self}`);
    byTerm.set(s.panTerm, s.self);
  }
}

/**
 * How long after a partition a node on a side without a majority may still
 * claim quorum: the heartbeat must first count the far anchors failed (4
 * periods in a group; with groups, a whole group only after the group
 * deadline), then the last quorum state heard runs out (the quorum timeout).
 */
export function quorumLossBoundMs(c: SimCluster): number {
  const period = c.options.periodMs ?? 1000;
  const timeout = c.options.quorumTimeoutMs ?? period * 8;
  const grouped = (c.options.groups ?? 1) > 1;
  return timeout + 4 * period + (grouped ? (GROUP_DEADLINES_MAX + 1) * period : 0);
}

/**
 * Quorum safety (M5, M17): once a partition has stood longer than
 * `quorumLossBoundMs`, no node on a side without a majority of anchor votes
 * claims quorum.
 */
export function checkQuorumSides(c: SimCluster, sides: readonly (readonly number[])[]): void {
  const votes = (side: readonly number[]) => side.filter((i) => i < (c.options.anchors ?? 3)).length;
  const total = Math.min(c.options.anchors ?? 3, c.size);
  for (const side of sides) {
    if (2 * votes(side) > total) continue;
    for (const i of side) {
      if (c.status(i)?.quorum) throw new Error(`node ${i} (${c.id(i)}) claims quorum on a side with ${votes(side)} of ${total} anchor votes`);
    }
  }
}

/** After healing: every node up, joined, quorate, at one database version, all alive in every view,
 * one level-0 monitor per group named by all its members, one PAN named by all. Returns what is wrong. */
export function convergence(c: SimCluster): string[] {
  const problems: string[] = [];
  const up = [...Array(c.size).keys()].filter((i) => c.isUp(i));
  const statuses = up.map((i) => c.status(i)!);
  const versions = new Set(statuses.map((s) => s.version));
  if (versions.size !== 1) problems.push(`database versions differ: ${[...versions].join(', ')}`);
  const pans = new Set(statuses.map((s) => s.pan));
  if (pans.size !== 1 || pans.has(null)) problems.push(`PANs named: ${[...pans].join(', ')}`);
  for (const s of statuses) {
    if (s.phase !== 'joined') problems.push(`${s.self} has not joined`);
    if (!s.quorum) problems.push(`${s.self} has no quorum`);
    const dead = s.nodes.filter((n) => !n.alive && up.some((i) => c.id(i) === n.id));
    if (dead.length) problems.push(`${s.self} counts ${dead.map((n) => n.id).join(', ')} failed`);
    if (s.nodes.length !== c.size) problems.push(`${s.self} knows ${s.nodes.length} of ${c.size} nodes`);
  }
  const monitorsByGroup = new Map<number, Set<string | null>>();
  for (const s of statuses) {
    const set = monitorsByGroup.get(s.group) ?? new Set();
    set.add(s.monitor);
    monitorsByGroup.set(s.group, set);
  }
  for (const [g, set] of monitorsByGroup) if (set.size !== 1) problems.push(`group ${g} names monitors ${[...set].join(', ')}`);
  return problems;
}

/** Runs `fn` for each seed; a failure names the seed so it can be replayed alone. */
export function forSeeds(seeds: readonly number[], fn: (seed: number) => void): void {
  for (const seed of seedsToRun(seeds)) {
    try {
      fn(seed);
    } catch (e) {
      throw withSeed(e, seed);
    }
  }
}

/** `forSeeds` for async checks (simulations that await the nodes' promises). */
export async function forSeedsAsync(seeds: readonly number[], fn: (seed: number) => Promise<void>): Promise<void> {
  for (const seed of seedsToRun(seeds)) {
    try {
      await fn(seed);
    } catch (e) {
      throw withSeed(e, seed);
    }
  }
}

function seedsToRun(seeds: readonly number[]): readonly number[] {
  const only = process.env.MANGROVE_SEED;
  return only ? [Number(only)] : seeds;
}

function withSeed(e: unknown, seed: number): Error {
  const err = e instanceof Error ? e : new Error(String(e));
  err.message = `seed ${seed}: ${err.message}\n    replay with MANGROVE_SEED=${seed}`;
  return err;
}
