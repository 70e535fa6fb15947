/**
 * What the memory engine's simulated specs share (spec/sim/engine.sim.spec.ts,
 * spec/sim/recovery.sim.spec.ts): a formed cluster, shared pages homed on
 * nodes 0 and 1, and page values a torn read cannot pass for.
 */
import type { MangroveError } from '../../bus/errors.js';
import { addressKey, PAGE_BYTES, parseAddress } from '../../machines/memory/address.js';
import { SimCluster, type SimClusterOptions } from '../../runtime/sim/cluster.js';
import { convergence } from './sim-checks.js';

/** The heartbeat period of the engine's simulated clusters. */
export const PERIOD_MS = 100;

/** A page whose every 8-byte word is the writer's token: a torn page cannot pass as a value. */
export function pageOf(token: number): Uint8Array {
  const data = new Uint8Array(PAGE_BYTES);
  const view = new DataView(data.buffer);
  for (let i = 0; i < PAGE_BYTES; i += 8) view.setFloat64(i, token);
  return data;
}

export function isWhole(data: Uint8Array): boolean {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const first = view.getFloat64(0);
  for (let i = 8; i < PAGE_BYTES; i += 8) if (view.getFloat64(i) !== first && !(Number.isNaN(first) && Number.isNaN(view.getFloat64(i)))) return false;
  return true;
}

export interface FormedClusterOptions {
  /** Each node's RAM cache budget in pages (M12). */
  ramPages?: number;
  /** The engine's call timeout. */
  timeoutMs?: number;
  onNews?: SimClusterOptions['onNews'];
  /** Each node's log (silent by default): for looking into one seed. */
  log?: SimClusterOptions['log'];
  /** The engine's fast path (actors/engine/fast-path.ts); on by default, as in a node. */
  fastPath?: boolean;
}

/** A cluster of `nodes` (3 anchors), started and converged. */
export async function formedCluster(seed: number, nodes: number, opts: FormedClusterOptions = {}): Promise<SimCluster> {
  const { ramPages = 1024, timeoutMs = 60_000, onNews, log, fastPath = true } = opts;
  const c = new SimCluster({ seed, nodes, anchors: 3, periodMs: PERIOD_MS, onNews, log, engine: { retryMs: 40, timeoutMs, ramBytes: ramPages * PAGE_BYTES, fastPath } });
  c.startAll();
  c.runUntil(() => convergence(c).length === 0, 30_000, () => `the cluster to form (still: ${convergence(c).slice(0, 3).join('; ')})`);
  return c;
}

/** Reserves `pages` pages on node `i`: the reservation's base address. */
export async function reserved(c: SimCluster, i: number, pages: number): Promise<bigint> {
  const { address } = (await c.settle(c.node(i)!.engine.call({ op: 'reserve', pages }))) as { address: string };
  return parseAddress(address);
}

/** How a call ends: 'ok', or the code it was refused with. */
export const codeOf = (c: SimCluster, call: Promise<unknown>): Promise<string> => c.settle(call).then(() => 'ok', (err: MangroveError) => err.code);

/** Pages materialized with 2 core copies, `perHome` homed on node 0, then as many on node 1. */
export async function sharedPages(c: SimCluster, perHome: number): Promise<bigint[]> {
  const pages: bigint[] = [];
  for (const home of [0, 1]) {
    const e = c.node(home)!.engine;
    const base = await reserved(c, home, perHome);
    await c.settle(e.call({ op: 'alloc', addr: addressKey(base), pages: perHome, copies: 2 }));
    for (let i = 0; i < perHome; i++) pages.push(base + BigInt(i * PAGE_BYTES));
  }
  return pages;
}
