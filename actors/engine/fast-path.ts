/**
 * The fast path of a program's reads and writes (docs/engine.md, "Fast
 * path"): the common case, pages this node already holds in the mode the
 * call needs with nothing queued for them, done in the turn the call
 * arrives, without the flow scheduler's lanes, promises or timers.
 *
 * It is the full path (applets/local.ts `client.read`, `client.write`) with
 * the waits taken out, and it is taken only where none of them would wait:
 * - a read: every page's lane is idle and the holder can read it now
 *   (`readOne` then answers at once; it also needs the node to stand in its
 *   group, checked first here);
 * - a write: the node has quorum, every page's lane is idle and the holder
 *   may write it now (`acquire` then returns at once and `writeOne` writes in
 *   place).
 * Anything else, a refusal included, gives `undefined` and the caller runs
 * the full path, which meets the same state and says why. The full path is
 * the only one that waits, asks another node or fails, so both give the
 * same answers in the same order (spec/sim/fast-path.sim.spec.ts compares
 * their histories).
 */
import type { ClientPageOp, ReadResult, WriteResult } from '../../bus/messages/page.js';
import { addressFromKey, PAGE_BYTES, pageRange } from '../../machines/memory/address.js';
import type { CachedPage } from '../pages/ram-cache.js';
import { pageKey, type EngineParts } from './engine-parts.js';

/**
 * The answer to `op` if the fast path can give it, else undefined. A read's
 * data is a view of the cached page when it is one page: the caller encodes
 * or copies it before anything else runs.
 */
export function fastCall(engine: EngineParts, op: ClientPageOp): ReadResult | WriteResult | undefined {
  if (op.op === 'read') return fastRead(engine, op.addr, op.pages);
  if (op.op === 'write') return fastWrite(engine, op.addr, op.data);
  return undefined;
}

function fastRead(engine: EngineParts, addr: Uint8Array, pages: number): ReadResult | undefined {
  if (!engine.deps.standing()) return undefined;
  const held = heldPages(engine, addr, pages, (a) => engine.holder.readable(a));
  if (held === undefined) return undefined;
  if (held.length === 1) return { data: held[0].data, versions: [held[0].version] };
  const data = new Uint8Array(pages * PAGE_BYTES);
  held.forEach((page, i) => data.set(page.data, i * PAGE_BYTES));
  return { data, versions: held.map((page) => page.version) };
}

function fastWrite(engine: EngineParts, addr: Uint8Array, data: Uint8Array): WriteResult | undefined {
  if (!engine.deps.quorate()) return undefined;
  const pages = data.byteLength / PAGE_BYTES;
  const held = heldPages(engine, addr, pages, (a) => engine.holder.writable(a));
  if (held === undefined) return undefined;
  const first = addressFromKey(addr);
  const versions = held.map((page, i) => {
    page.data.set(data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES));
    return engine.holder.wrote(first + BigInt(i * PAGE_BYTES));
  });
  return { versions };
}

/** Every page of the range as `usable` gives it, if each has an idle lane and a copy usable now; else undefined. */
function heldPages(engine: EngineParts, addr: Uint8Array, pages: number, usable: (a: bigint) => CachedPage | undefined): CachedPage[] | undefined {
  let first: bigint;
  try {
    first = addressFromKey(addr);
    pageRange(first, pages);
  } catch {
    // The full path refuses it, with the reason.
    return undefined;
  }
  const held: CachedPage[] = [];
  for (let i = 0; i < pages; i++) {
    const a = pages === 1 ? first : first + BigInt(i * PAGE_BYTES);
    if (!engine.scheduler.idle(pageKey(a))) return undefined;
    const page = usable(a);
    if (page === undefined) return undefined;
    held.push(page);
  }
  return held;
}
