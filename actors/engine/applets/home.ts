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
import { chooseHolders, copyRange, failedHolders, reduplex } from '../../pages/core-holders.js';
import type { EngineParts } from '../engine-parts.js';
import type { PageFacts } from '../../pages/page-holder.js';
import { arenaOf, plural } from '../../pages/page-space.js';
import { arenaEntryOf, findNode } from '../../../machines/membership/node-db.js';
import { FS_ATTR_BYTES } from '../../storage/page-store.js';

type Call<O extends PeerCall['op']> = Extract<PeerCall, { op: O }>;

const ZERO_ATTRS = new Uint8Array(FS_ATTR_BYTES);

type PeerApplet<O extends PeerCall['op']> = (input: Call<O>) => Promise<unknown>;

/** Registers `peer.<op>`: what another engine's call with that op-code runs here. */
function peerApplet<O extends PeerCall['op']>(engine: EngineParts, op: O, applet: PeerApplet<O>, key?: (i: Call<O>) => string): void {
  engine.scheduler.register(`peer.${op}`, { applet: (input) => applet(input as Call<O>), key: key as ((i: unknown) => string) | undefined });
}

export function registerHomeApplets(engine: EngineParts, localSpace: () => SpaceReport): void {
  registerCoreHolderApplets(engine, localSpace);
  registerAsHome(engine);
}

/** As a core holder: store a page durably, fetch it, drop a range, report space. */
function registerCoreHolderApplets(engine: EngineParts, localSpace: () => SpaceReport): void {
  const { store } = engine.deps;
  peerApplet(engine, 'store', async ({ addr, version, data, attrs, gen }) => {
    // M17: a core holder commits a page only with quorum, so a flush on a side without it never completes.
    engine.needQuorum('storing a page');
    const page = addressFromKey(addr);
    const current = genOf(engine, page);
    if (gen < current) {
      throw new MangroveError('E_STALE_GEN', `${formatAddress(page)}'s arena is at generation ${current}: a copy whose core holders came from generation ${gen} is refused; its owner must learn the page's new home first`);
    }
    // Without attrs the stored attribute stays: the group commit reads it with the version it compares.
    return { version: await engine.commits.put(page, { data, version, attrs }) };
  });
  peerApplet(engine, 'fetch', async ({ addr }) => {
    const page = store.get(addressFromKey(addr));
    return page ? { version: page.version, data: page.data } : null;
  });
  peerApplet(engine, 'drop', async ({ addr, pages }) => ({ dropped: dropRange(engine, pageRange(addressFromKey(addr), pages)) }));
  peerApplet(engine, 'copy_range', async ({ addr, pages, to }) => {
    engine.needQuorum('copying pages to a new core holder');
    return { copied: await copyRange(engine.core, addressFromKey(addr), pages, to) };
  });
  peerApplet(engine, 'space', async () => localSpace());
}

/** Deletes the range's pages from this node's disk cache and forgets its RAM copies; how many were on disk. */
function dropRange(engine: EngineParts, range: { first: bigint; last: bigint }): number {
  const { store } = engine.deps;
  let dropped = 0;
  for (let from = range.first; ; ) {
    const batch = store.scan(from).filter((entry) => entry.addr <= range.last);
    for (const entry of batch) dropped += store.delete(entry.addr) ? 1 : 0;
    if (batch.length === 0) break;
    from = batch[batch.length - 1].addr + 1n;
  }
  for (const page of engine.cache.addresses()) if (page >= range.first && page <= range.last) engine.holder.forget(page);
  return dropped;
}

/** As a page's home: allocation, freeing, flushes, reduplexing, locks, hand-back, stat, attributes, the super-root. */
function registerAsHome(engine: EngineParts): void {
  peerApplet(engine, 'alloc', async (req) => allocAtHome(engine, req));
  peerApplet(engine, 'free', async (req) => freeAtHome(engine, req));
  // Not keyed: a node's flush1 holds its page's lane and may call its own engine here.
  peerApplet(engine, 'flush', async ({ addr }) => flushAtHome(engine, addressFromKey(addr)));
  peerApplet(engine, 'flush_owner', async ({ addr }) => flushAsOwner(engine, addressFromKey(addr)));
  // One reduplexing at a time per home, so two cannot appoint different replacements.
  peerApplet(engine, 'reduplex', async ({ addr }) => reduplexAtHome(engine, addressFromKey(addr)), () => 'reduplex');
  engine.scheduler.register('peer.lock', { applet: async (input, ctx) => lockAtHome(engine, input as Call<'lock'>, ctx.origin) });
  peerApplet(engine, 'unlock', async ({ addr, client }) => {
    const page = addressFromKey(addr);
    mustBeHome(engine, page);
    engine.locks.unlock(page, client);
    return { address: formatAddress(page), pages: 1 };
  });
  // The client's lease ran out at the node it called through (client-leases.ts): its locks and waits here go.
  peerApplet(engine, 'release_client', async ({ client }) => {
    engine.locks.releaseClient(client);
    return { released: true };
  });
  // An owner under memory pressure hands the page back: the home takes it for writing (M12).
  peerApplet(engine, 'reclaim', async ({ addr }) => {
    const page = addressFromKey(addr);
    mustBeHome(engine, page);
    const facts = homeFacts(engine, page);
    if (facts instanceof MangroveError) throw facts;
    return { version: await engine.scheduler.dispatch<number>('page.access1', { addr: page, mode: 'write' }) };
  });
  peerApplet(engine, 'stat', async ({ addr }) => statAtHome(engine, addressFromKey(addr)));
  peerApplet(engine, 'holders_of', async ({ addr }) => {
    const page = addressFromKey(addr);
    mustBeHome(engine, page);
    const entry = engine.space.lookup(page);
    return entry ? { start: formatAddress(entry.start), pages: entry.pages, state: entry.state, volatile: entry.volatile, holders: entry.holders } : null;
  });
  peerApplet(engine, 'set_attrs', async (req) => setAttrsAtHome(engine, req));
  peerApplet(engine, 'super_root', async ({ set, ifNone }) => superRootAtHome(engine, set, ifNone ?? false));
}

/**
 * A page lock at its home (page-locks.ts), for `client` calling through the
 * node `via` (the lock goes with that node's incarnation if it fails or
 * restarts, M14). A waiting lock waits at most half the access timeout, so
 * its answer reaches the caller before the caller's own call gives up; a
 * wait that times out is withdrawn, unless the grant raced it, and then the
 * grant stands and is answered.
 */
async function lockAtHome(engine: EngineParts, req: Call<'lock'>, via: string): Promise<{ address: string; pages: number }> {
  const page = addressFromKey(req.addr);
  entryAt(engine, page);
  const pending = engine.locks.lock(page, req.client, incarnationOf(engine, via), req.mode, req.wait ?? false);
  await engine.within(pending, `waiting for the lock of ${formatAddress(page)}`, engine.deps.settings.timeoutMs / 2).catch((err: unknown) => {
    if (pending.cancel() !== 'granted') throw err;
  });
  return { address: formatAddress(page), pages: 1 };
}

/** `node` as of its incarnation in the node database: what locks taken through it go with. */
export function incarnationOf(engine: EngineParts, node: string): string {
  return `${node}/${findNode(engine.deps.db(), node)?.epoch ?? 0}`;
}

/** Arena 0's home: the super-root address, set (durably in its directory; with `ifNone`, only if none is set yet) or read. */
async function superRootAtHome(engine: EngineParts, set: Uint8Array | undefined, ifNone: boolean): Promise<{ address: string }> {
  mustBeHome(engine, 0n);
  if (set) engine.needQuorum('setting the super-root');
  const none = () => new MangroveError('E_NOT_FOUND', 'no super-root has been set yet (page super-root --set ADDR)');
  if (!set && !engine.space.hasDirectory(0n)) throw none();
  const dir = engine.space.directory(0n);
  if (set && !(ifNone && dir.meta().superRoot !== null)) {
    dir.setMeta({ ...dir.meta(), superRoot: addressFromKey(set) });
    await engine.syncDirectory();
  }
  const root = dir.meta().superRoot;
  if (root === null) throw none();
  return { address: formatAddress(root) };
}

/** Refuses a request for a page this node is not responsible for: its directory has no say there. */
function notHome(engine: EngineParts, addr: bigint): MangroveError | undefined {
  let home: string;
  try {
    home = engine.homeOf(addr);
  } catch (err) {
    return err instanceof MangroveError ? err : new MangroveError('E_INTERNAL', String(err));
  }
  // The sender's arena table is behind this node's (or ahead): it catches up, as after any handover, and asks again.
  if (home !== engine.deps.self) return new MangroveError('E_RECOVERING', `${formatAddress(addr)} is not in this node's arena: its home is ${home} (the arena table changed; try again)`);
  return engine.arenaRefusal(arenaOf(addr));
}

export function mustBeHome(engine: EngineParts, addr: bigint): void {
  const refused = notHome(engine, addr);
  if (refused) throw refused;
}

/** What the home tells a requester about a page: its core holders, or why there is no such page. */
export function homeFacts(engine: EngineParts, addr: bigint): PageFacts | MangroveError {
  const refused = notHome(engine, addr);
  if (refused) return refused;
  const entry = engine.space.lookup(addr);
  if (!entry) return notReserved(addr);
  if (entry.state !== 'materialized') return new MangroveError('E_NOT_MATERIALIZED', `${formatAddress(addr)} is reserved but has no storage; allocate it first (page alloc)`);
  return { holders: entry.holders, volatile: entry.volatile, gen: genOf(engine, addr) };
}

/** The home starts as the page's owner: it holds the page, from its disk cache or zero filled. */
export function takeUp(engine: EngineParts, addr: bigint, facts: PageFacts): void {
  if (engine.holder.modeOf(addr) !== undefined) return;
  const stored = facts.volatile ? undefined : engine.deps.store.get(addr);
  installAtHome(engine, addr, stored, facts);
}

/**
 * The home's first take-up of a page since it became its home (a start, a
 * rebuild, an arena handed over): from the freshest durable copy of any live
 * core holder, not only its own disk, which may lack a flush that reached
 * the others or, for a new home, not hold the page at all (M11, M15).
 */
export async function activate(engine: EngineParts, addr: bigint, facts: PageFacts): Promise<void> {
  if (engine.holder.modeOf(addr) !== undefined) return;
  const freshest = facts.volatile ? undefined : await freshestDurable(engine, addr, facts.holders);
  if (engine.holder.modeOf(addr) !== undefined) return;
  installAtHome(engine, addr, freshest, facts);
}

function installAtHome(engine: EngineParts, addr: bigint, stored: { data: Uint8Array; version: number } | undefined, facts: PageFacts): void {
  engine.holder.installOwn(addr, stored?.data ?? new Uint8Array(PAGE_BYTES), stored?.version ?? 0, facts);
  // Activation (M11): a core holder counted failed is replaced, in the background.
  const entry = engine.space.lookup(addr);
  if (entry && failedHolders(engine.core, entry).length > 0) {
    engine.scheduler
      .dispatch('peer.reduplex', { op: 'reduplex', addr: addressKey(addr) })
      .catch((err: unknown) => engine.deps.log.warn({ addr: formatAddress(addr), err: String(err) }, 'reduplexing failed; retried at the next activation'));
  }
}

/**
 * The newest durable copy of `addr` among this node's disk and its live core
 * holders' (none: the page was never flushed). Every live core holder must
 * answer: one that does not (a rebuild failed the call, a timeout) may hold
 * the newest flushed version, so the take-up fails and its requesters ask
 * again; so it does when no core holder is live and this node is none.
 */
export async function freshestDurable(engine: EngineParts, addr: bigint, holders: readonly string[]): Promise<{ data: Uint8Array; version: number } | undefined> {
  const { deps } = engine;
  const others = holders.filter((h) => h !== deps.self && deps.isAlive(h));
  if (others.length === 0 && !holders.includes(deps.self)) {
    throw new MangroveError('E_UNREACHABLE', `every core holder of ${formatAddress(addr)} (${holders.join(', ')}) is down: its durable copy is out of reach until one is back`);
  }
  const copies = await Promise.all(
    others.map((h) =>
      engine.calls.call<{ version: number; data: Uint8Array } | null>(h, { op: 'fetch', addr: addressKey(addr) }).catch((err: unknown) => {
        throw new MangroveError('E_RECOVERING', `core holder ${h} of ${formatAddress(addr)} did not say which version it holds (${String(err)}); asked again with the next request`);
      }),
    ),
  );
  let best: { data: Uint8Array; version: number } | undefined = deps.store.get(addr);
  for (const c of copies) if (c && (!best || c.version > best.version)) best = { data: new Uint8Array(c.data), version: c.version };
  return best;
}

/** The generation of `addr`'s arena as this node's copy of the arena table has it (0: no such arena). */
export function genOf(engine: EngineParts, addr: bigint): number {
  return arenaEntryOf(engine.deps.db(), Number(arenaOf(addr)))?.gen ?? 0;
}

function notReserved(addr: bigint): MangroveError {
  return new MangroveError('E_NOT_RESERVED', `${formatAddress(addr)} is in no reservation; reserve pages first (page reserve)`);
}

function entryAt(engine: EngineParts, addr: bigint, state?: DirectoryEntry['state']): DirectoryEntry {
  mustBeHome(engine, addr);
  const facts = homeFacts(engine, addr);
  if (state === 'materialized' && facts instanceof MangroveError) throw facts;
  const entry = engine.space.lookup(addr);
  if (!entry) throw notReserved(addr);
  return entry;
}

/** Replaces failed core holders of the range holding `addr`; the directory names the new ones once they hold every flushed page. */
async function reduplexAtHome(engine: EngineParts, addr: bigint): Promise<string[]> {
  engine.needQuorum('replacing core holders');
  const entry = entryAt(engine, addr, 'materialized');
  const { holders, copied } = await reduplex(engine.core, entry);
  engine.stats.reReplicatedPages += copied;
  if (holders.some((h, i) => h !== entry.holders[i])) {
    engine.space.carve(entry.start, entry.pages, (old) => ({ ...old, holders }));
    await engine.syncDirectory();
    engine.deps.log.info({ range: formatAddress(entry.start), pages: entry.pages, was: entry.holders, now: holders }, 'core holders replaced');
    if (engine.holder.factsOf(addr)) engine.holder.setHolders(addr, holders);
  }
  return holders;
}

/**
 * At the home: the owner's copy made durable (the owner may be this node).
 * The page may change hands while the call is on its way, so an owner that
 * has handed it on says so (E_NOT_OWNER) and the home asks the owner it
 * knows now; only the owner's word that its copy is durable ends a flush.
 */
async function flushAtHome(engine: EngineParts, addr: bigint): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    const facts = homeFacts(engine, addr);
    if (facts instanceof MangroveError) throw facts;
    const owner = engine.homes.view(addr)?.owner ?? engine.deps.self;
    if (owner === engine.deps.self) return flushOwn(engine, addr);
    try {
      return await engine.calls.call<string[]>(owner, { op: 'flush_owner', addr: addressKey(addr) });
    } catch (err) {
      if (!(err instanceof MangroveError && err.code === 'E_NOT_OWNER')) throw err;
      if (attempt >= FLUSH_OWNER_ATTEMPTS) throw new MangroveError('E_BUSY', `${formatAddress(addr)} changed hands ${attempt} times while it was being flushed; try again`);
    }
    // The hand-over under way finishes meanwhile.
    await new Promise<void>((resolve) => engine.deps.clock.setTimeout(resolve, engine.deps.settings.retryMs));
  }
}

/** How often a home asks again, a retry period apart, for an owner that handed the page on meanwhile. */
const FLUSH_OWNER_ATTEMPTS = 8;

/** The home asked this node, as the page's owner, to flush it: it must still hold the owner's copy (or the one it kept handing it on). */
function flushAsOwner(engine: EngineParts, addr: bigint): Promise<string[]> {
  if (!engine.holder.ownsCopy(addr)) {
    return Promise.reject(new MangroveError('E_NOT_OWNER', `${formatAddress(addr)} is no longer owned here (it was handed on); its home asks the owner it knows now`));
  }
  return flushOwn(engine, addr);
}

async function allocAtHome(engine: EngineParts, req: Call<'alloc'>): Promise<unknown> {
  engine.needQuorum('allocating pages');
  const first = addressFromKey(req.addr);
  mustBeHome(engine, first);
  if (!req.volatile) {
    const live = engine.deps.db().nodes.filter((n) => n.id === engine.deps.self || engine.deps.isAlive(n.id));
    await engine.policy.refresh(live.map((n) => n.id), (id) => engine.calls.call<SpaceReport>(id, { op: 'space' }));
  }
  const holders = req.volatile ? [engine.deps.self] : chooseHolders(engine.core, req.copies);
  engine.space.carve(first, req.pages, (old) => {
    if (old.state === 'materialized') throw new MangroveError('E_EXISTS', `${formatAddress(first)} is already allocated (range ${formatAddress(old.start)}, ${plural(old.pages, 'page')})`);
    return { ...old, state: 'materialized', copies: req.volatile ? 1 : req.copies, volatile: req.volatile, holders };
  });
  await engine.syncDirectory();
  return { address: formatAddress(first), pages: req.pages, holders };
}

async function freeAtHome(engine: EngineParts, req: Call<'free'>): Promise<unknown> {
  engine.needQuorum('freeing pages');
  const first = addressFromKey(req.addr);
  mustBeHome(engine, first);
  const range = pageRange(first, req.pages);
  // Every other copy is invalidated first: the home takes each live page for writing.
  for (const a of engine.homes.within(range.first, range.last)) {
    await engine.scheduler.dispatch('page.access1', { addr: a, mode: 'write' });
    engine.holder.forget(a);
  }
  const olds = engine.space.carve(first, req.pages, (old) => (req.unreserve ? null : { ...old, state: 'reserved', copies: 0, volatile: false, holders: [] }));
  await engine.syncDirectory();
  engine.locks.dropRange(range.first, range.last);
  const holders = new Set(olds.flatMap((old) => (old.state === 'materialized' ? old.holders : [])));
  const drop = (h: string) => engine.calls.call(h, { op: 'drop', addr: req.addr, pages: req.pages });
  // The free is done once the directory says so. A holder counted failed is told too, unwaited (its
  // call times out only after a minute); one that comes back registers its copies again, and the
  // directory has none of them now.
  for (const h of holders) if (h !== engine.deps.self && !engine.deps.isAlive(h)) drop(h).catch(() => undefined);
  await Promise.all([...holders].filter((h) => h === engine.deps.self || engine.deps.isAlive(h)).map(drop));
  return { address: formatAddress(first), pages: req.pages };
}

async function statAtHome(engine: EngineParts, addr: bigint): Promise<PageStat & { attrs: PageAttrs }> {
  const entry = entryAt(engine, addr);
  const view = engine.homes.view(addr);
  const materialized = entry.state === 'materialized';
  const stored = materialized && !entry.volatile ? engine.deps.store.get(addr) : undefined;
  const held = engine.cache.peek(addr);
  const stat: PageStat = {
    address: formatAddress(addr),
    reservation: { address: formatAddress(entry.start), pages: entry.pages },
    state: entry.state,
    home: engine.deps.self,
    owner: materialized ? (view ? view.owner : engine.deps.self) : null,
    readers: view?.readers ?? [],
    coreHolders: entry.holders,
    copies: entry.copies,
    volatile: entry.volatile,
    version: Math.max(held?.version ?? 0, stored?.version ?? 0, view?.grants ?? 0),
    lock: engine.locks.lockOf(addr),
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

async function setAttrsAtHome(engine: EngineParts, req: Call<'set_attrs'>): Promise<PageAttrs> {
  engine.needQuorum('setting attributes');
  const addr = addressFromKey(req.addr);
  const entry = entryAt(engine, addr, 'materialized');
  if (req.cacheInRam !== undefined && req.cacheInRam !== entry.cacheInRam) {
    engine.space.carve(addr, 1, (old) => ({ ...old, cacheInRam: req.cacheInRam! }));
    await engine.syncDirectory();
  }
  if (req.fs) {
    if (entry.volatile) throw new MangroveError('E_BAD_ARGUMENT', `${formatAddress(addr)} is volatile: it has no file-system attribute on disk`);
    const stored = engine.deps.store.get(addr);
    const data = stored?.data ?? new Uint8Array(PAGE_BYTES);
    const version = stored?.version ?? 0;
    await Promise.all(entry.holders.map((h) => engine.calls.call(h, { op: 'store', addr: req.addr, version, data, attrs: req.fs, gen: genOf(engine, addr) })));
  }
  return (await statAtHome(engine, addr)).attrs;
}
