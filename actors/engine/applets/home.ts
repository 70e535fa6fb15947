/**
 * The applets other engines call on this one (`peer.<op>`, M13): as a page's
 * home (allocate, free, flush wherever the newest copy is, lock, stat,
 * attributes, replace failed core holders, the super-root of arena 0) and
 * as a core holder (store a page durably, fetch it, drop it, report space).
 * Also the home's view of a page that the page-home machines ask for.
 */
import { MangroveError } from '../../../bus/errors.js';
import type { PageAttrs, PageStat, PeerCall, SpaceReport } from '../../../bus/messages/page.js';
import { addressFromKey, addressKey, formatAddress, PAGE_BYTES, pageRange } from '../../../machines/memory/address.js';
import type { DirectoryEntry } from '../../../machines/memory/directory.js';
import { flushOwn } from './local.js';
import { chooseHolders, failedHolders, reduplex } from '../../pages/core-holders.js';
import type { EngineParts } from '../engine-parts.js';
import type { PageFacts } from '../../pages/page-holder.js';
import { plural } from '../../pages/page-space.js';
import { FS_ATTR_BYTES } from '../../storage/page-store.js';

type Call<O extends PeerCall['op']> = Extract<PeerCall, { op: O }>;

const ZERO_ATTRS = new Uint8Array(FS_ATTR_BYTES);

export function registerHomeApplets(e: EngineParts, localSpace: () => SpaceReport): void {
  const { deps } = e;
  const peer = <O extends PeerCall['op']>(op: O, applet: (input: Call<O>) => Promise<unknown>, key?: (i: Call<O>) => string) =>
    e.scheduler.register(`peer.${op}`, { applet: (input) => applet(input as Call<O>), key: key as ((i: unknown) => string) | undefined });

  // As a core holder.
  peer('store', async ({ addr, version, data, attrs }) => {
    const a = addressFromKey(addr);
    const kept = attrs ?? deps.store.get(a)?.attrs ?? ZERO_ATTRS;
    return { version: await e.commits.put(a, { data, version, attrs: kept }) };
  });
  peer('fetch', async ({ addr }) => {
    const page = deps.store.get(addressFromKey(addr));
    return page ? { version: page.version, data: page.data } : null;
  });
  peer('drop', async ({ addr, pages }) => {
    const range = pageRange(addressFromKey(addr), pages);
    let dropped = 0;
    for (let from = range.first; ; ) {
      const batch = deps.store.scan(from).filter((x) => x.addr <= range.last);
      for (const x of batch) dropped += deps.store.delete(x.addr) ? 1 : 0;
      if (batch.length === 0) break;
      from = batch[batch.length - 1].addr + 1n;
    }
    for (const a of e.cache.addresses()) if (a >= range.first && a <= range.last) e.holder.forget(a);
    return { dropped };
  });
  peer('space', async () => localSpace());

  // As a home.
  peer('alloc', async (req) => allocAtHome(e, req));
  peer('free', async (req) => freeAtHome(e, req));
  // Not keyed: a node's flush1 holds its page's lane and may call its own engine here.
  peer('flush', async ({ addr }) => flushAtHome(e, addressFromKey(addr)));
  // One reduplexing at a time per home, so two cannot appoint different replacements.
  peer('reduplex', async ({ addr }) => reduplexAtHome(e, addressFromKey(addr)), () => 'reduplex');
  peer('lock', async ({ addr, mode, client }) => {
    const a = addressFromKey(addr);
    entryAt(e, a);
    e.homes.lock(a, client, mode);
    return { address: formatAddress(a), pages: 1 };
  });
  peer('unlock', async ({ addr, client }) => {
    const a = addressFromKey(addr);
    mustBeHome(e, a);
    e.homes.unlock(a, client);
    return { address: formatAddress(a), pages: 1 };
  });
  // An owner under memory pressure hands the page back: the home takes it for writing (M12).
  peer('reclaim', async ({ addr }) => {
    const a = addressFromKey(addr);
    mustBeHome(e, a);
    const facts = homeFacts(e, a);
    if (facts instanceof MangroveError) throw facts;
    return { version: await e.scheduler.dispatch<number>('page.access1', { addr: a, mode: 'write' }) };
  });
  peer('stat', async ({ addr }) => statAtHome(e, addressFromKey(addr)));
  peer('set_attrs', async (req) => setAttrsAtHome(e, req));
  peer('super_root', async ({ set }) => {
    mustBeHome(e, 0n);
    if (!set && !e.space.hasDirectory(0n)) throw new MangroveError('E_NOT_FOUND', 'no super-root has been set yet (page super-root --set ADDR)');
    const dir = e.space.directory(0n);
    if (set) {
      dir.setMeta({ ...dir.meta(), superRoot: addressFromKey(set) });
      await e.syncDirectory();
    }
    const root = dir.meta().superRoot;
    if (root === null) throw new MangroveError('E_NOT_FOUND', 'no super-root has been set yet (page super-root --set ADDR)');
    return { address: formatAddress(root) };
  });
}

/** Refuses a request for a page this node is not responsible for: its directory has no say there. */
function notHome(e: EngineParts, addr: bigint): MangroveError | undefined {
  let home: string;
  try {
    home = e.homeOf(addr);
  } catch (err) {
    return err instanceof MangroveError ? err : new MangroveError('E_INTERNAL', String(err));
  }
  return home === e.deps.self ? undefined : new MangroveError('E_NOT_FOUND', `${formatAddress(addr)} is not in this node's arena: its home is ${home}`);
}

function mustBeHome(e: EngineParts, addr: bigint): void {
  const refused = notHome(e, addr);
  if (refused) throw refused;
}

/** What the home tells a requester about a page: its core holders, or why there is no such page. */
export function homeFacts(e: EngineParts, addr: bigint): PageFacts | MangroveError {
  const refused = notHome(e, addr);
  if (refused) return refused;
  const entry = e.space.lookup(addr);
  if (!entry) return notReserved(addr);
  if (entry.state !== 'materialized') return new MangroveError('E_NOT_MATERIALIZED', `${formatAddress(addr)} is reserved but has no storage; allocate it first (page alloc)`);
  return { holders: entry.holders, volatile: entry.volatile };
}

/** The home starts as the page's owner: it holds the page, from its disk cache or zero filled. */
export function takeUp(e: EngineParts, addr: bigint, facts: PageFacts): void {
  if (e.holder.modeOf(addr) !== undefined) return;
  const stored = facts.volatile ? undefined : e.deps.store.get(addr);
  e.holder.installOwn(addr, stored?.data ?? new Uint8Array(PAGE_BYTES), stored?.version ?? 0, facts);
  // Activation (M11): a core holder counted failed is replaced, in the background.
  const entry = e.space.lookup(addr);
  if (entry && failedHolders(e.core, entry).length > 0) {
    e.scheduler
      .dispatch('peer.reduplex', { op: 'reduplex', addr: addressKey(addr) })
      .catch((err: unknown) => e.deps.log.warn({ addr: formatAddress(addr), err: String(err) }, 'reduplexing failed; retried at the next activation'));
  }
}

function notReserved(addr: bigint): MangroveError {
  return new MangroveError('E_NOT_RESERVED', `${formatAddress(addr)} is in no reservation; reserve pages first (page reserve)`);
}

function entryAt(e: EngineParts, addr: bigint, state?: DirectoryEntry['state']): DirectoryEntry {
  mustBeHome(e, addr);
  const facts = homeFacts(e, addr);
  if (state === 'materialized' && facts instanceof MangroveError) throw facts;
  const entry = e.space.lookup(addr);
  if (!entry) throw notReserved(addr);
  return entry;
}

/** Replaces failed core holders of the range holding `addr`; the directory names the new ones once they hold every flushed page. */
async function reduplexAtHome(e: EngineParts, addr: bigint): Promise<string[]> {
  e.needQuorum('replacing core holders');
  const entry = entryAt(e, addr, 'materialized');
  const holders = await reduplex(e.core, entry);
  if (holders.some((h, i) => h !== entry.holders[i])) {
    e.space.carve(entry.start, entry.pages, (old) => ({ ...old, holders }));
    await e.syncDirectory();
    e.deps.log.info({ range: formatAddress(entry.start), pages: entry.pages, was: entry.holders, now: holders }, 'core holders replaced');
    if (e.holder.factsOf(addr)) e.holder.setHolders(addr, holders);
  }
  return holders;
}

/** At the home: the owner's copy made durable (the owner may be this node); elsewhere: this node's own copy. */
async function flushAtHome(e: EngineParts, addr: bigint): Promise<string[]> {
  if (e.homeOf(addr) !== e.deps.self) return flushOwn(e, addr);
  const facts = homeFacts(e, addr);
  if (facts instanceof MangroveError) throw facts;
  const owner = e.homes.view(addr)?.owner ?? e.deps.self;
  if (owner === e.deps.self) return flushOwn(e, addr);
  return e.calls.call<string[]>(owner, { op: 'flush', addr: addressKey(addr) });
}

async function allocAtHome(e: EngineParts, req: Call<'alloc'>): Promise<unknown> {
  e.needQuorum('allocating pages');
  const first = addressFromKey(req.addr);
  mustBeHome(e, first);
  if (!req.volatile) {
    const live = e.deps.db().nodes.filter((n) => n.id === e.deps.self || e.deps.isAlive(n.id));
    await e.policy.refresh(live.map((n) => n.id), (id) => e.calls.call<SpaceReport>(id, { op: 'space' }));
  }
  const holders = req.volatile ? [e.deps.self] : chooseHolders(e.core, req.copies);
  e.space.carve(first, req.pages, (old) => {
    if (old.state === 'materialized') throw new MangroveError('E_EXISTS', `${formatAddress(first)} is already allocated (range ${formatAddress(old.start)}, ${plural(old.pages, 'page')})`);
    return { ...old, state: 'materialized', copies: req.volatile ? 1 : req.copies, volatile: req.volatile, holders };
  });
  await e.syncDirectory();
  return { address: formatAddress(first), pages: req.pages, holders };
}

async function freeAtHome(e: EngineParts, req: Call<'free'>): Promise<unknown> {
  e.needQuorum('freeing pages');
  const first = addressFromKey(req.addr);
  mustBeHome(e, first);
  const range = pageRange(first, req.pages);
  // Every other copy is invalidated first: the home takes each live page for writing.
  for (const a of e.homes.within(range.first, range.last)) {
    await e.scheduler.dispatch('page.access1', { addr: a, mode: 'write' });
    e.holder.forget(a);
  }
  const olds = e.space.carve(first, req.pages, (old) => (req.unreserve ? null : { ...old, state: 'reserved', copies: 0, volatile: false, holders: [] }));
  await e.syncDirectory();
  e.homes.dropLocks(range.first, range.last);
  const holders = new Set(olds.flatMap((old) => (old.state === 'materialized' ? old.holders : [])));
  await Promise.all([...holders].map((h) => e.calls.call(h, { op: 'drop', addr: req.addr, pages: req.pages })));
  return { address: formatAddress(first), pages: req.pages };
}

async function statAtHome(e: EngineParts, addr: bigint): Promise<PageStat & { attrs: PageAttrs }> {
  const entry = entryAt(e, addr);
  const view = e.homes.view(addr);
  const materialized = entry.state === 'materialized';
  const stored = materialized && !entry.volatile ? e.deps.store.get(addr) : undefined;
  const held = e.cache.peek(addr);
  const stat: PageStat = {
    address: formatAddress(addr),
    reservation: { address: formatAddress(entry.start), pages: entry.pages },
    state: entry.state,
    home: e.deps.self,
    owner: materialized ? (view ? view.owner : e.deps.self) : null,
    readers: view?.readers ?? [],
    coreHolders: entry.holders,
    copies: entry.copies,
    volatile: entry.volatile,
    version: Math.max(held?.version ?? 0, stored?.version ?? 0),
    lock: e.homes.lockOf(addr),
  };
  const attrs: PageAttrs = {
    address: formatAddress(addr),
    coherency: 'invalidate',
    copies: entry.copies,
    volatile: entry.volatile,
    cacheInRam: entry.cacheInRam,
    fs: Buffer.from(stored?.attrs ?? ZERO_ATTRS).toString('hex'),
  };
  return { ...stat, attrs };
}

async function setAttrsAtHome(e: EngineParts, req: Call<'set_attrs'>): Promise<PageAttrs> {
  e.needQuorum('setting attributes');
  const addr = addressFromKey(req.addr);
  const entry = entryAt(e, addr, 'materialized');
  if (req.cacheInRam !== undefined && req.cacheInRam !== entry.cacheInRam) {
    e.space.carve(addr, 1, (old) => ({ ...old, cacheInRam: req.cacheInRam! }));
    await e.syncDirectory();
  }
  if (req.fs) {
    if (entry.volatile) throw new MangroveError('E_BAD_ARGUMENT', `${formatAddress(addr)} is volatile: it has no file-system attribute on disk`);
    const stored = e.deps.store.get(addr);
    const data = stored?.data ?? new Uint8Array(PAGE_BYTES);
    const version = stored?.version ?? 0;
    await Promise.all(entry.holders.map((h) => e.calls.call(h, { op: 'store', addr: req.addr, version, data, attrs: req.fs })));
  }
  return (await statAtHome(e, addr)).attrs;
}
