/**
 * Core holders (M11): which nodes keep a persistent page on disk, and
 * keeping that many alive. A range's holders are distinct nodes, the home
 * (the primary core holder) first, then live nodes of other groups before
 * its own, so one group's failure takes as few copies as possible, and
 * among those the policy element's choice: the emptier disks, never a full
 * one (M12).
 *
 * Demand-driven reduplexing: when a page is activated (its home takes it
 * up) or flushed, and a core holder is counted failed, the home appoints a
 * live node in its place and copies to it, from its own disk, each page of
 * the range that has ever been flushed; only then does the directory name
 * the new holder. A crash half-way leaves the old holders named: the copy is
 * redone at the next activation.
 */
import { MangroveError } from '../../bus/errors.js';
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import type { PeerCall } from '../../bus/messages/page.js';
import { addressKey, PAGE_BYTES, pageRange } from '../../machines/memory/address.js';
import type { DirectoryEntry } from '../../machines/memory/directory.js';
import type { PageStore } from '../storage/page-store.js';

export interface CoreHolderDeps {
  self: string;
  db(): NodeDbSnapshot;
  isAlive(id: string): boolean;
  store: PageStore;
  call(to: string, req: PeerCall): Promise<unknown>;
  /** The generation of `addr`'s arena as this node knows it (M16): what its stores carry. */
  genOf(addr: bigint): number;
  /** The policy element's order of candidates by free space (M12): nodes with a full disk left out. */
  rank<T extends { id: string }>(candidates: readonly T[]): T[];
}

/** Pages copied to a new holder at a time. */
const COPY_CONCURRENCY = 16;

/**
 * `copies` distinct holders: this node first, then live nodes of other
 * groups, then of its own. Too few live nodes: E_TOO_FEW_NODES, or with
 * `partial`, as many as there are.
 */
export function chooseHolders(deps: CoreHolderDeps, copies: number, exclude: readonly string[] = [], partial = false): string[] {
  const { self } = deps;
  const nodes = deps.db().nodes;
  const myGroup = nodes.find((n) => n.id === self)?.group;
  const live = nodes.filter((n) => n.id !== self && !exclude.includes(n.id) && deps.isAlive(n.id)).sort((a, b) => a.shortId - b.shortId);
  // Other groups first (a group's failure takes fewer copies), and within that the emptier disks.
  const others = deps.rank(live).sort((a, b) => Number(a.group === myGroup) - Number(b.group === myGroup));
  const holders = [self, ...others.map((n) => n.id)].slice(0, copies);
  if (holders.length < copies && !partial) {
    throw new MangroveError('E_TOO_FEW_NODES', `${copies} core copies need ${copies} live nodes; ${holders.length} are live. Ask for fewer copies or start more nodes`);
  }
  return holders;
}

/** Holders of `entry` the membership counts failed (never this node). */
export function failedHolders(deps: CoreHolderDeps, entry: DirectoryEntry): string[] {
  return entry.holders.filter((h) => h !== deps.self && !deps.isAlive(h));
}

/**
 * The holders `entry` should have now: each failed one replaced by a live
 * node that has been given every flushed page of the range, from a
 * surviving holder's disk (this node's when it holds the range, as a home
 * normally does; after a failover the new home may hold none of it).
 * Returns the entry's holders unchanged when none failed, no live node is
 * free, or no holder survives to copy from; `copied` counts the pages sent.
 */
export async function reduplex(deps: CoreHolderDeps, entry: DirectoryEntry): Promise<{ holders: string[]; copied: number }> {
  const failed = failedHolders(deps, entry);
  if (failed.length === 0 || entry.volatile) return { holders: entry.holders, copied: 0 };
  const source = entry.holders.includes(deps.self) ? deps.self : entry.holders.find((h) => deps.isAlive(h));
  if (source === undefined) return { holders: entry.holders, copied: 0 };
  const spare = deps.rank(deps.db().nodes.filter((n) => !entry.holders.includes(n.id) && deps.isAlive(n.id))).map((n) => n.id);
  const holders = [...entry.holders];
  let copied = 0;
  for (const dead of failed) {
    const next = spare.shift();
    if (next === undefined) break;
    copied +=
      source === deps.self
        ? await copyRange(deps, entry.start, entry.pages, next)
        : ((await deps.call(source, { op: 'copy_range', addr: addressKey(entry.start), pages: entry.pages, to: next })) as { copied: number }).copied;
    holders[holders.indexOf(dead)] = next;
  }
  return { holders, copied };
}

/** Every page of [start, start + pages) this node holds on disk, stored durably on `to`; how many. */
export async function copyRange(deps: CoreHolderDeps, start: bigint, pages: number, to: string): Promise<number> {
  const range = pageRange(start, pages);
  let copied = 0;
  for (let from = range.first; ; ) {
    const batch = deps.store.scan(from).filter((e) => e.addr <= range.last);
    if (batch.length === 0) return copied;
    for (let i = 0; i < batch.length; i += COPY_CONCURRENCY) {
      await Promise.all(
        batch
          .slice(i, i + COPY_CONCURRENCY)
          .map(({ addr, page }) => deps.call(to, { op: 'store', addr: addressKey(addr), version: page.version, data: page.data, attrs: page.attrs, gen: deps.genOf(addr) })),
      );
    }
    copied += batch.length;
    from = batch[batch.length - 1].addr + BigInt(PAGE_BYTES);
  }
}
