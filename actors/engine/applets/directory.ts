/**
 * The applets of the directory's replicas (M8, M15, M16;
 * actors/pages/directory-replicas.ts): as a replica, store an arena's
 * directory pages (`peer.dir_store`) and read them back whole
 * (`peer.dir_check`); as the PAN, name an arena's replicas in the arena
 * table (`peer.dir_replicas`); and, for browsing (the dashboard, `page dir`),
 * one page of an arena's directory as its home has it (`client.dir_page`,
 * asked of the home as `peer.dir_page`; it only reads).
 *
 * Fencing (M16): a replica takes directory pages only from the arena's home
 * at the arena's current generation, as its copy of the arena table has
 * them; a home of an older generation is refused (E_STALE_GEN), so an old
 * home cut off by a partition can never overwrite what its successor wrote.
 * A generation newer than this node knows is taken: its copy of the table
 * is behind. Writing a directory page needs quorum (M17).
 */
import { MangroveError } from '../../../bus/errors.js';
import type { NdbOp } from '../../../bus/messages/index.js';
import type { ClientPageOp, DirectoryPageView, PeerCall } from '../../../bus/messages/page.js';
import { addressFromKey, formatAddress } from '../../../machines/memory/address.js';
import type { DirectoryPage } from '../../../machines/memory/directory-page.js';
import { arenaEntryOf } from '../../../machines/membership/node-db.js';
import { FS_ATTR_BYTES } from '../../storage/page-store.js';
import { arenaBase, arenaOf, DATA_OFFSET } from '../../pages/page-space.js';
import type { EngineParts } from '../engine-parts.js';
import { mustBeHome } from './home.js';

type Call<O extends PeerCall['op']> = Extract<PeerCall, { op: O }>;

export function registerDirectoryApplets(engine: EngineParts): void {
  engine.scheduler.register('peer.dir_store', { applet: async (input, ctx) => storeDirectory(engine, input as Call<'dir_store'>, ctx.origin) });
  engine.scheduler.register('peer.dir_check', { applet: async (input) => engine.space.check(BigInt((input as Call<'dir_check'>).arena)) });
  engine.scheduler.register('peer.dir_replicas', { applet: async (input) => nameReplicas(engine, input as Call<'dir_replicas'>) });
  engine.scheduler.register('peer.dir_page', { applet: async (input) => pageAtHome(engine, input as Call<'dir_page'>) });
  engine.scheduler.register('client.dir_page', {
    applet: async (input) => {
      const { arena, page } = input as Extract<ClientPageOp, { op: 'dir_page' }>;
      return engine.calls.call<DirectoryPageView>(engine.homeOf(arenaBase(BigInt(arena))), { op: 'dir_page', arena, page });
    },
  });
}

/** As the arena's home: one page of its directory, decoded, read from this node's disk (the root without `page`). */
function pageAtHome(engine: EngineParts, req: Call<'dir_page'>): DirectoryPageView {
  const arena = BigInt(req.arena);
  const base = arenaBase(arena);
  // Another node's arena (the asker's arena table is behind or ahead) is refused E_RECOVERING, and asked again.
  mustBeHome(engine, base);
  const addr = req.page === undefined ? base : addressFromKey(req.page);
  // Nothing was reserved in the arena yet: its directory is not written, and reads as an empty root (reading creates nothing).
  if (addr === base && !engine.space.hasDirectory(arena)) {
    return { arena: req.arena, home: engine.deps.self, address: formatAddress(base), version: 0, kind: 'leaf', level: 0, root: { highWater: formatAddress(base + DATA_OFFSET), superRoot: null, entries: 0, pages: 0, depth: 1 }, children: [], entries: [] };
  }
  const found = engine.space.directoryPage(arena, addr);
  if (!found) throw new MangroveError('E_NOT_FOUND', `${formatAddress(addr)} is no page of arena ${req.arena}'s directory (a page is released when a split or a merge replaces it)`);
  return viewOf(engine, req.arena, addr, found.page, found.version);
}

function viewOf(engine: EngineParts, arena: number, addr: bigint, page: DirectoryPage, version: number): DirectoryPageView {
  const isRoot = addr === arenaBase(BigInt(arena));
  let root: DirectoryPageView['root'] = null;
  if (isRoot) {
    const dir = engine.space.directory(BigInt(arena));
    const meta = dir.meta();
    const shape = dir.shape();
    root = { highWater: formatAddress(arenaBase(BigInt(arena)) + meta.highWater), superRoot: meta.superRoot === null ? null : formatAddress(meta.superRoot), entries: dir.count(), pages: shape.pages, depth: shape.depth };
  }
  const common = { arena, home: engine.deps.self, address: formatAddress(addr), version, level: page.level, root };
  if (page.kind === 'inner') {
    const children = page.children.map((child, i) => ({ address: formatAddress(child), from: i === 0 ? null : formatAddress(page.keys[i]) }));
    return { ...common, kind: 'inner', children, entries: [] };
  }
  const entries = page.entries.map((e) => ({ start: formatAddress(e.start), pages: e.pages, state: e.state, copies: e.copies, volatile: e.volatile, holders: [...e.holders], cacheInRam: e.cacheInRam }));
  return { ...common, kind: 'leaf', children: [], entries };
}

function storeDirectory(engine: EngineParts, req: Call<'dir_store'>, from: string): { stored: number } {
  engine.needQuorum('storing directory pages');
  const entry = arenaEntryOf(engine.deps.db(), req.arena);
  if (entry && (req.gen < entry.gen || (req.gen === entry.gen && from !== entry.home))) {
    throw new MangroveError('E_STALE_GEN', `arena ${req.arena} is at generation ${entry.gen}, served by ${entry.home}: directory pages from ${from} at generation ${req.gen} are refused`);
  }
  if (entry?.home === engine.deps.self) throw new MangroveError('E_STALE_GEN', `this node serves arena ${req.arena} itself now`);
  const arena = BigInt(req.arena);
  const pages = req.pages.map((p) => ({ addr: addressFromKey(p.addr), page: { data: p.data, version: p.version, attrs: new Uint8Array(FS_ATTR_BYTES) } }));
  for (const { addr } of pages) {
    if (arenaOf(addr) !== arena || addr >= arenaBase(arena) + DATA_OFFSET) throw new MangroveError('E_BAD_ARGUMENT', `${formatAddress(addr)} is no directory page of arena ${req.arena}`);
  }
  if (req.replace) engine.space.dropDirectory(arena);
  else engine.space.forget(arena);
  engine.deps.store.putMany(pages);
  return { stored: pages.length };
}

async function nameReplicas(engine: EngineParts, req: Call<'dir_replicas'>): Promise<{ version: number }> {
  const update = engine.deps.updateNodeDb;
  if (!engine.deps.isPan() || !update) throw new MangroveError('E_NOT_PAN', `this node is not the primary anchor node; the PAN is ${engine.deps.pan() ?? 'unknown'}`);
  engine.needQuorum('naming directory replicas');
  const change: NdbOp = { op: 'arena_replicas', arena: req.arena, gen: req.gen, replicas: req.replicas };
  return { version: await update(change) };
}
