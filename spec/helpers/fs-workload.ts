/**
 * What the file system's simulated specs share (spec/sim/fs*.sim.spec.ts):
 * calls through a node's file system as a client of that node makes them,
 * whole-file helpers, and a crash armed to strike after the k-th page write
 * or flush a node's file system makes (the crash points of SPEC.md M22).
 */
import type { Applet, AppletContext } from '../../actors/engine/flow-scheduler.js';
import { MangroveError } from '../../bus/errors.js';
import type { ClientFsOp, FsDirEntry } from '../../bus/messages/fs.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';
import { eventually } from './sim-calls.js';

/** One file-system call on node `i`, as client `client`; the cluster runs until it settles. */
export function fsCall<T = unknown>(c: SimCluster, i: number, op: ClientFsOp, client = 'spec', maxMs = 60_000): Promise<T> {
  return c.settle(c.node(i)!.fs.call(op, client) as Promise<T>, maxMs);
}

/** As fsCall, made again while the cluster rebuilds (as the client library does). */
export function fsSoon<T = unknown>(c: SimCluster, i: number, op: ClientFsOp, client = 'spec', maxMs = 60_000): Promise<T> {
  return eventually(c, () => c.node(i)!.fs.call(op, client) as Promise<T>, maxMs);
}

/** How a call ends: 'ok', or the code it was refused with. */
export const fsCode = (c: SimCluster, i: number, op: ClientFsOp, client = 'spec'): Promise<string> =>
  fsCall(c, i, op, client).then(
    () => 'ok',
    (err: MangroveError) => err.code,
  );

export async function putFile(c: SimCluster, i: number, path: string, data: Uint8Array, client = 'spec', fileset = 'default'): Promise<void> {
  const { handle } = await fsSoon<{ handle: string }>(c, i, { op: 'open', fs: fileset, path, create: true, write: true, truncate: true }, client);
  await fsSoon(c, i, { op: 'write', handle, offset: 0, data }, client);
  await fsSoon(c, i, { op: 'fsync', handle }, client);
  await fsSoon(c, i, { op: 'close', handle }, client);
}

export async function getFile(c: SimCluster, i: number, path: string, client = 'spec'): Promise<Uint8Array> {
  const { handle } = await fsSoon<{ handle: string }>(c, i, { op: 'open', fs: 'default', path }, client);
  const { data } = await fsSoon<{ data: Uint8Array }>(c, i, { op: 'read', handle, offset: 0, length: 1 << 20 }, client);
  await fsSoon(c, i, { op: 'close', handle }, client);
  return data;
}

export async function names(c: SimCluster, i: number, path: string, client = 'spec'): Promise<string[]> {
  const r = await fsSoon<{ entries: FsDirEntry[] }>(c, i, { op: 'readdir', fs: 'default', path }, client);
  return r.entries.map((e) => e.name).sort();
}

/**
 * Arms node `i` to crash right after its file system's `k`-th page write or
 * flush (counting from the call): that call is made, its answer never comes
 * back, and the node crashes a moment later. The node's engine must run
 * without its fast path, so every write goes through the scheduler.
 * Resolves how many writes and flushes were counted (to learn an
 * operation's k when it is not armed to crash, pass k = Infinity).
 */
export function crashAfterWrites(c: SimCluster, i: number, k: number): { count: () => number; crashed: () => boolean; disarm: () => void } {
  const node = c.node(i)!;
  const client = `fs@${node.settings.id}`;
  let count = 0;
  let crashed = false;
  const olds = new Map<string, Applet>();
  for (const op of ['client.write', 'client.flush']) {
    const old: Applet = node.engine.scheduler.replace(op, async (input: unknown, ctx: AppletContext): Promise<unknown> => {
      const result: unknown = await old(input, ctx);
      if (ctx.origin !== client || crashed) return result;
      count++;
      if (count < k) return result;
      crashed = true;
      c.clock.setTimeout(() => c.crash(i), 1);
      return new Promise<never>(() => undefined);
    });
    olds.set(op, old);
  }
  return {
    count: () => count,
    crashed: () => crashed,
    disarm: () => {
      for (const [op, old] of olds) node.engine.scheduler.replace(op, old);
    },
  };
}

/**
 * Arms node `i` to refuse its file system's `k`-th page write or flush
 * (counting from the call) with E_RECOVERING, once, as a rebuild refuses
 * one: the update stops there with its mark left, the node lives on. The
 * engine must run without its fast path, as for crashAfterWrites.
 */
export function refuseAfterWrites(c: SimCluster, i: number, k: number): { count: () => number; refused: () => boolean; disarm: () => void } {
  const node = c.node(i)!;
  const client = `fs@${node.settings.id}`;
  let count = 0;
  let refused = false;
  const olds = new Map<string, Applet>();
  for (const op of ['client.write', 'client.flush']) {
    const old: Applet = node.engine.scheduler.replace(op, async (input: unknown, ctx: AppletContext): Promise<unknown> => {
      if (ctx.origin !== client || refused) return old(input, ctx);
      if (++count < k) return old(input, ctx);
      refused = true;
      throw new MangroveError('E_RECOVERING', `refused by the spec: write or flush ${k} of the update`);
    });
    olds.set(op, old);
  }
  return {
    count: () => count,
    refused: () => refused,
    disarm: () => {
      for (const [op, old] of olds) node.engine.scheduler.replace(op, old);
    },
  };
}
