/**
 * The applets of the directory's replicas (M8, M15, M16;
 * actors/pages/directory-replicas.ts): as a replica, store an arena's
 * directory pages (`peer.dir_store`) and read them back whole
 * (`peer.dir_check`); as the PAN, name an arena's replicas in the arena
 * table (`peer.dir_replicas`).
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
import type { PeerCall } from '../../../bus/messages/page.js';
import { addressFromKey, formatAddress } from '../../../machines/memory/address.js';
import { arenaEntryOf } from '../../../machines/membership/node-db.js';
import { FS_ATTR_BYTES } from '../../storage/page-store.js';
import { arenaBase, arenaOf, DATA_OFFSET } from '../../pages/page-space.js';
import type { EngineParts } from '../engine-parts.js';

type Call<O extends PeerCall['op']> = Extract<PeerCall, { op: O }>;

export function registerDirectoryApplets(engine: EngineParts): void {
  engine.scheduler.register('peer.dir_store', { applet: async (input, ctx) => storeDirectory(engine, input as Call<'dir_store'>, ctx.origin) });
  engine.scheduler.register('peer.dir_check', { applet: async (input) => engine.space.check(BigInt((input as Call<'dir_check'>).arena)) });
  engine.scheduler.register('peer.dir_replicas', { applet: async (input) => nameReplicas(engine, input as Call<'dir_replicas'>) });
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
