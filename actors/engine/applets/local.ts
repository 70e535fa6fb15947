/**
 * The applets a program's calls run on the node it talks to (M7, M13):
 * reserve in this node's arena; read, write, flush, access and unreference
 * pages here, one page at a time per page (`page.read1`…, keyed by page);
 * everything the page's home decides (allocation, locks, attributes, the
 * super-root) is a call to that home; and the transaction log (M7), which
 * is this node's own.
 */
import { isMangroveError, MangroveError } from '../../../bus/errors.js';
import type { ClientPageOp, FlushResult, PageAttrs, PageStat, ReadResult, SpaceReport, TxnRecord, WriteResult } from '../../../bus/messages/page.js';
import { addressFromKey, addressKey, formatAddress, PAGE_BYTES, pageRange } from '../../../machines/memory/address.js';
import { pageKey, type EngineParts } from '../engine-parts.js';

type Op<O extends ClientPageOp['op']> = Extract<ClientPageOp, { op: O }>;

/** Most record bytes one `txn_read` of the whole log answers with (a reply frame holds 4 MiB). */
const TXN_READ_BYTES_MAX = 2 * 1024 * 1024;

function txnBytes(records: readonly TxnRecord[], txn: number): number {
  return records.reduce((n, r) => (r.txn === txn ? n + r.data.byteLength : n), 0);
}

type ClientApplet<O extends ClientPageOp['op']> = (input: Op<O>, origin: string) => Promise<unknown>;

/** Registers `client.<op>`: what a program's request with that op-code runs. */
function clientApplet<O extends ClientPageOp['op']>(engine: EngineParts, op: O, applet: ClientApplet<O>): void {
  engine.scheduler.register(`client.${op}`, { applet: (input, ctx) => applet(input as Op<O>, ctx.origin) });
}

/** The pages of [addr, addr + pages), each through the one-page applet `op`, concurrently. */
function eachPage<R>(engine: EngineParts, addr: Uint8Array, pages: number, op: string, input: (page: bigint, i: number) => unknown): Promise<R[]> {
  const first = addressFromKey(addr);
  pageRange(first, pages);
  return Promise.all(Array.from({ length: pages }, (_, i) => engine.scheduler.dispatch<R>(op, input(first + BigInt(i * PAGE_BYTES), i))));
}

function homeOfKey(engine: EngineParts, addr: Uint8Array): string {
  return engine.homeOf(addressFromKey(addr));
}

export function registerLocalApplets(engine: EngineParts, localSpace: () => SpaceReport): void {
  registerPageSteps(engine);
  registerRangeApplets(engine);
  registerPageIo(engine);
  registerHomeDecisions(engine);
  clientApplet(engine, 'space', async () => wholeSpace(engine, localSpace));
  registerTxnApplets(engine);
}

/** One page at a time per page: the steps the range applets fan out to, keyed by page. */
function registerPageSteps(engine: EngineParts): void {
  const { scheduler } = engine;
  scheduler.register<bigint, ReadResult>('page.read1', { key: pageKey, applet: (addr) => readOne(engine, addr) });
  scheduler.register<{ addr: bigint; data: Uint8Array }, number>('page.write1', { key: (i) => pageKey(i.addr), applet: (i) => writeOne(engine, i.addr, i.data) });
  scheduler.register<bigint, string[]>('page.flush1', { key: pageKey, applet: (addr) => flushOne(engine, addr) });
  scheduler.register<{ addr: bigint; mode: 'read' | 'write' }, number>('page.access1', {
    key: (i) => pageKey(i.addr),
    applet: async ({ addr, mode }) => {
      if (mode === 'write') await acquireWrite(engine, addr, `write access to ${formatAddress(addr)}`);
      else await engine.within(engine.holder.acquire(addr, mode), `read access to ${formatAddress(addr)}`);
      return engine.cache.peek(addr)?.version ?? 0;
    },
  });
  scheduler.register<bigint, boolean>('page.release1', { key: pageKey, applet: (addr) => releaseOne(engine, addr) });
}

/** Reservations in this node's arena; allocation and freeing at the range's home. */
function registerRangeApplets(engine: EngineParts): void {
  clientApplet(engine, 'reserve', async ({ pages }) => {
    engine.needQuorum('reserving pages');
    const range = engine.space.reserve(engine.ownArena(), pages);
    await engine.syncDirectory();
    return { address: formatAddress(range.first), pages };
  });
  clientApplet(engine, 'alloc', async ({ addr, pages, copies, volatile }) => {
    pageRange(addressFromKey(addr), pages);
    const call = { op: 'alloc', addr, pages, copies: copies ?? engine.deps.settings.copies, volatile: volatile ?? false } as const;
    return engine.calls.call(homeOfKey(engine, addr), call);
  });
  const free = (unreserve: boolean) => async ({ addr, pages }: { addr: Uint8Array; pages: number }) =>
    engine.calls.call(homeOfKey(engine, addr), { op: 'free', addr, pages, unreserve });
  clientApplet(engine, 'unallocate', free(false));
  clientApplet(engine, 'dealloc', free(true));
  clientApplet(engine, 'unreserve', free(true));
}

/** Reads, writes, flushes, access and unreference of a range, page by page here. */
function registerPageIo(engine: EngineParts): void {
  clientApplet(engine, 'read', async ({ addr, pages }) => {
    const parts = await eachPage<ReadResult>(engine, addr, pages, 'page.read1', (page) => page);
    const data = new Uint8Array(pages * PAGE_BYTES);
    parts.forEach((part, i) => data.set(part.data, i * PAGE_BYTES));
    return { data, versions: parts.map((part) => part.versions[0]) } satisfies ReadResult;
  });
  clientApplet(engine, 'write', async ({ addr, data }) => {
    engine.needQuorum('writing');
    const pages = data.byteLength / PAGE_BYTES;
    const versions = await eachPage<number>(engine, addr, pages, 'page.write1', (page, i) => ({ addr: page, data: data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES) }));
    return { versions } satisfies WriteResult;
  });
  clientApplet(engine, 'flush', async ({ addr, pages }) => ({ pages, holders: await eachPage<string[]>(engine, addr, pages, 'page.flush1', (page) => page) }) satisfies FlushResult);
  clientApplet(engine, 'access', async ({ addr, pages, mode }) => {
    if (mode === 'write') engine.needQuorum('write access');
    return { pages, versions: await eachPage<number>(engine, addr, pages, 'page.access1', (page) => ({ addr: page, mode })) };
  });
  clientApplet(engine, 'unreference', async ({ addr, pages }) => {
    const released = await eachPage<boolean>(engine, addr, pages, 'page.release1', (page) => page);
    return { pages, dropped: released.filter(Boolean).length };
  });
}

/** What the page's home decides: locks, stat, attributes, and (arena 0's home) the super-root. */
function registerHomeDecisions(engine: EngineParts): void {
  clientApplet(engine, 'lock', async ({ addr, mode, wait, leaseMs }, origin) => {
    engine.needQuorum('locking');
    if (leaseMs !== undefined) engine.leases.mayLock(origin);
    const home = homeOfKey(engine, addr);
    const locked = await engine.calls.call(home, { op: 'lock', addr, mode, client: origin, wait });
    if (leaseMs !== undefined) engine.leases.locked(origin, leaseMs, home);
    return locked;
  });
  clientApplet(engine, 'unlock', async ({ addr }, origin) => engine.calls.call(homeOfKey(engine, addr), { op: 'unlock', addr, client: origin }));
  const statOf = (addr: Uint8Array) => engine.calls.call<PageStat & { attrs: PageAttrs }>(homeOfKey(engine, addr), { op: 'stat', addr });
  clientApplet(engine, 'stat', async ({ addr }) => {
    const { attrs: _attrs, ...stat } = await statOf(addr);
    return stat;
  });
  clientApplet(engine, 'get_attrs', async ({ addr }) => (await statOf(addr)).attrs);
  clientApplet(engine, 'set_attrs', async ({ addr, fs, cacheInRam }) => {
    engine.needQuorum('setting attributes');
    return engine.calls.call(homeOfKey(engine, addr), { op: 'set_attrs', addr, fs, cacheInRam });
  });
  clientApplet(engine, 'super_root', async () => engine.calls.call(engine.homeOf(0n), { op: 'super_root' }));
  clientApplet(engine, 'set_super_root', async ({ addr, ifNone }) => {
    engine.needQuorum('setting the super-root');
    return engine.calls.call(engine.homeOf(0n), { op: 'super_root', set: addr, ifNone });
  });
}

/** The whole space (M7): this node's report, plus every live node's that answers. */
async function wholeSpace(engine: EngineParts, localSpace: () => SpaceReport): Promise<SpaceReport> {
  const { deps } = engine;
  const live = deps.db().nodes.filter((n) => n.id === deps.self || deps.isAlive(n.id));
  const reports = await Promise.all(live.map((n) => engine.calls.call<SpaceReport>(n.id, { op: 'space' }).catch(() => null)));
  const got = reports.filter((r): r is SpaceReport => r !== null);
  for (const report of got) engine.policy.note(report);
  const sum = (field: (r: SpaceReport) => number) => got.reduce((n, r) => n + field(r), 0);
  const cluster = {
    nodes: got.length,
    totalRamBytes: sum((r) => r.ram.budgetBytes),
    freeRamBytes: sum((r) => Math.max(0, r.ram.budgetBytes - r.ram.usedBytes)),
    totalDiskPages: sum((r) => r.disk.pagesMax),
    freeDiskPages: sum((r) => r.disk.freePages),
  };
  return { ...localSpace(), cluster } satisfies SpaceReport;
}

/** The transaction log (M7): this node's, durable at commit. */
function registerTxnApplets(engine: EngineParts): void {
  const log = engine.deps.txnLog;
  clientApplet(engine, 'txn_begin', async () => {
    engine.needQuorum('beginning a transaction');
    return log.begin();
  });
  clientApplet(engine, 'txn_log', async ({ txn, record }) => log.log(txn, record));
  clientApplet(engine, 'txn_commit', async ({ txn }) => {
    engine.needQuorum('committing a transaction');
    return log.commit(txn);
  });
  clientApplet(engine, 'txn_abort', async ({ txn }) => log.abort(txn));
  clientApplet(engine, 'txn_end', async ({ txn }) => log.end(txn));
  clientApplet(engine, 'txn_read', async ({ txn }) => {
    const { records } = log.read(txn);
    if (txn !== undefined) return { records, more: false };
    return wholeLog(records);
  });
}

/**
 * Every committed transaction's records: whole transactions while they fit
 * one reply; `more` says to read the rest transaction by transaction
 * (`txns` names them all).
 */
function wholeLog(records: readonly TxnRecord[]): { records: TxnRecord[]; more: boolean; txns: number[] } {
  const txns = [...new Set(records.map((r) => r.txn))];
  const out: TxnRecord[] = [];
  let bytes = 0;
  for (const record of records) {
    const first = out.length === 0 || out[out.length - 1].txn !== record.txn;
    if (first && bytes + txnBytes(records, record.txn) > TXN_READ_BYTES_MAX) return { records: out, more: true, txns };
    out.push(record);
    bytes += record.data.byteLength;
  }
  return { records: out, more: false, txns };
}

async function readOne(engine: EngineParts, addr: bigint): Promise<ReadResult> {
  const held = engine.holder.readable(addr);
  if (held) {
    if (!engine.deps.standing()) throw outOfTouch();
    return { data: held.data.slice(), versions: [held.version] };
  }
  await engine.within(engine.holder.acquire(addr, 'read'), `reading ${formatAddress(addr)}`);
  const page = engine.holder.readable(addr);
  if (!page) return readOne(engine, addr);
  return { data: page.data.slice(), versions: [page.version] };
}

/** A held copy that may be stale: this node's group has not counted it in lately (engine-parts.ts `standing`). */
function outOfTouch(): MangroveError {
  return new MangroveError('E_RECOVERING', 'this node has not heard its group count it in lately, so a copy it holds may be stale; try again in a moment');
}

/**
 * Write access to `addr`. An owner that shares its newest version with
 * readers makes it durable first: the write invalidates their copies, and
 * should this node die before its own write is flushed, the version they
 * read (perhaps after the death, before it was noticed) must outlive it
 * (docs/recovery.md). Another node's write needs nothing of the kind: the
 * old owner keeps its copy until the next write.
 */
async function acquireWrite(engine: EngineParts, addr: bigint, what: string): Promise<void> {
  await engine.within(engine.holder.acquire(addr, 'write', () => flushOwn(engine, addr)), what);
}

async function writeOne(engine: EngineParts, addr: bigint, data: Uint8Array): Promise<number> {
  await acquireWrite(engine, addr, `writing ${formatAddress(addr)}`);
  const page = engine.holder.writable(addr);
  if (!page) return writeOne(engine, addr, data);
  // M17: an owner writes in place only with quorum, however long it has held the page.
  engine.needQuorum('writing');
  page.data.set(data);
  return engine.holder.wrote(addr);
}

/**
 * Makes the newest copy durable on every core holder: this node's if it may
 * write the page, else through the home, which knows the owner (a copy kept
 * here after handing the page on may be older than the new owner's).
 */
async function flushOne(engine: EngineParts, addr: bigint): Promise<string[]> {
  if (engine.holder.modeOf(addr) === 'write') return flushOwn(engine, addr);
  const reading = engine.holder.unflushedReader(addr);
  const holders = await engine.calls.call<string[]>(engine.homeOf(addr), { op: 'flush', addr: addressKey(addr) });
  if (reading !== undefined) engine.holder.flushed(addr, reading);
  return holders;
}

/**
 * Lets a copy leave RAM if it may (page-holder.ts `release`). A reader's
 * copy of a version not known durable is flushed through the home first:
 * its owner may die, and the version was perhaps read here after that, so
 * this copy must not be the last one to go. If the flush fails (the owner
 * is down), the copy stays, for the rebuild to find.
 */
async function releaseOne(engine: EngineParts, addr: bigint): Promise<boolean> {
  if (engine.holder.unflushedReader(addr) !== undefined) {
    try {
      await flushOne(engine, addr);
    } catch {
      return false;
    }
  }
  return engine.holder.release(addr);
}

/** This node's copy, if newer than what the core holders have, stored durably on each of them. */
export async function flushOwn(engine: EngineParts, addr: bigint): Promise<string[]> {
  const page = engine.cache.peek(addr);
  const facts = engine.holder.factsOf(addr);
  if (!page || facts?.volatile) return facts?.holders ?? [];
  if (!facts) {
    // The copy arrived for a request the home has not answered yet: its core holders come with the answer.
    if (engine.holder.inFlight(addr)) {
      await engine.holder.settled(addr);
      return flushOwn(engine, addr);
    }
    // Its core holders are not known here (the copy outlived a rebuild unregistered): it cannot be made durable yet.
    throw new MangroveError('E_RECOVERING', `${formatAddress(addr)} waits for its home to be rebuilt before it can be flushed; try again in a moment`);
  }
  if (!page.dirty) return facts.holders;
  // M17: a copy is made durable only with quorum (the core holders check it too, and the arena's generation).
  engine.needQuorum('flushing');
  const version = page.version;
  const data = page.data.slice();
  let holders = facts.holders;
  // A core holder counted failed is replaced first (M11): a flush is durable on every live one.
  if (holders.some((h) => h !== engine.deps.self && !engine.deps.isAlive(h))) {
    holders = await engine.calls.call<string[]>(engine.homeOf(addr), { op: 'reduplex', addr: addressKey(addr) });
    engine.holder.setHolders(addr, holders);
  }
  await Promise.all(holders.map((h) => engine.calls.call(h, { op: 'store', addr: addressKey(addr), version, data, gen: facts.gen }))).catch((err: unknown) => {
    // The arena moved since this copy's core holders were learned: the round that follows a hand-over registers it with the new home.
    if (isMangroveError(err) && err.code === 'E_STALE_GEN') throw new MangroveError('E_RECOVERING', `${formatAddress(addr)}'s arena has moved to a new home, which this copy is registered with in a moment; try again (${err.message})`);
    throw err;
  });
  engine.cache.markClean(addr, version);
  return holders;
}

/**
 * Memory pressure (M12): an owner's copy goes to its core holders' disks,
 * then out of RAM. A node that keeps no disk copy of the page hands it to
 * the page's home instead (the RAM directory hands it to the disk
 * directory): the home takes it for writing, which moves the copy there.
 */
export async function pageOut(engine: EngineParts, addr: bigint): Promise<void> {
  try {
    await engine.scheduler.dispatch('page.flush1', addr);
    if (await engine.scheduler.dispatch<boolean>('page.release1', addr)) return;
    const home = engine.homeOf(addr);
    if (home !== engine.deps.self && engine.holder.modeOf(addr) !== undefined) await engine.calls.call(home, { op: 'reclaim', addr: addressKey(addr) });
  } catch (err) {
    engine.deps.log.warn({ addr: formatAddress(addr), err: String(err) }, 'page-out failed; the page stays in RAM');
  }
}
