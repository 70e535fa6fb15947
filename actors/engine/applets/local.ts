/**
 * The applets a program's calls run on the node it talks to (M7, M13):
 * reserve in this node's arena; read, write, flush, access and unreference
 * pages here, one page at a time per page (`page.read1`…, keyed by page);
 * everything the page's home decides (allocation, locks, attributes, the
 * super-root) is a call to that home; and the transaction log (M7), which
 * is this node's own.
 */
import { MangroveError } from '../../../bus/errors.js';
import type { ClientPageOp, FlushResult, PageAttrs, PageStat, ReadResult, SpaceReport, TxnRecord, WriteResult } from '../../../bus/messages/page.js';
import { addressFromKey, addressKey, formatAddress, PAGE_BYTES, pageRange } from '../../../machines/memory/address.js';
import { pageKey, type EngineParts } from '../engine-parts.js';

type Op<O extends ClientPageOp['op']> = Extract<ClientPageOp, { op: O }>;

/** Most record bytes one `txn_read` of the whole log answers with (a reply frame holds 4 MiB). */
const TXN_READ_BYTES_MAX = 2 * 1024 * 1024;

function txnBytes(records: readonly TxnRecord[], txn: number): number {
  return records.reduce((n, r) => (r.txn === txn ? n + r.data.byteLength : n), 0);
}

export function registerLocalApplets(e: EngineParts, localSpace: () => SpaceReport): void {
  const s = e.scheduler;
  const { deps } = e;
  const client = <O extends ClientPageOp['op']>(op: O, applet: (input: Op<O>, origin: string) => Promise<unknown>) =>
    s.register(`client.${op}`, { applet: (input, ctx) => applet(input as Op<O>, ctx.origin) });
  /** The pages of [addr, addr + pages), each through `op`, concurrently. */
  const each = <R>(addr: Uint8Array, pages: number, op: string, input: (page: bigint, i: number) => unknown): Promise<R[]> => {
    const first = addressFromKey(addr);
    pageRange(first, pages);
    return Promise.all(Array.from({ length: pages }, (_, i) => s.dispatch<R>(op, input(first + BigInt(i * PAGE_BYTES), i))));
  };
  const atHome = (addr: Uint8Array) => e.homeOf(addressFromKey(addr));

  s.register<bigint, ReadResult>('page.read1', { key: pageKey, applet: (addr) => readOne(e, addr) });
  s.register<{ addr: bigint; data: Uint8Array }, number>('page.write1', { key: (i) => pageKey(i.addr), applet: (i) => writeOne(e, i.addr, i.data) });
  s.register<bigint, string[]>('page.flush1', { key: pageKey, applet: (addr) => flushOne(e, addr) });
  s.register<{ addr: bigint; mode: 'read' | 'write' }, number>('page.access1', {
    key: (i) => pageKey(i.addr),
    applet: async ({ addr, mode }) => {
      await e.within(e.holder.acquire(addr, mode), `${mode} access to ${formatAddress(addr)}`);
      return e.cache.peek(addr)?.version ?? 0;
    },
  });
  s.register<bigint, boolean>('page.release1', { key: pageKey, applet: async (addr) => e.holder.release(addr) });

  client('reserve', async ({ pages }) => {
    e.needQuorum('reserving pages');
    const range = e.space.reserve(e.ownArena(), pages);
    await e.syncDirectory();
    return { address: formatAddress(range.first), pages };
  });
  client('alloc', async ({ addr, pages, copies, volatile }) => {
    pageRange(addressFromKey(addr), pages);
    return e.calls.call(atHome(addr), { op: 'alloc', addr, pages, copies: copies ?? deps.settings.copies, volatile: volatile ?? false });
  });
  const free = (unreserve: boolean) => async ({ addr, pages }: { addr: Uint8Array; pages: number }) => e.calls.call(atHome(addr), { op: 'free', addr, pages, unreserve });
  client('unallocate', free(false));
  client('dealloc', free(true));
  client('unreserve', free(true));

  client('read', async ({ addr, pages }) => {
    const parts = await each<ReadResult>(addr, pages, 'page.read1', (page) => page);
    const data = new Uint8Array(pages * PAGE_BYTES);
    parts.forEach((p, i) => data.set(p.data, i * PAGE_BYTES));
    return { data, versions: parts.map((p) => p.versions[0]) } satisfies ReadResult;
  });
  client('write', async ({ addr, data }) => {
    e.needQuorum('writing');
    const pages = data.byteLength / PAGE_BYTES;
    const versions = await each<number>(addr, pages, 'page.write1', (page, i) => ({ addr: page, data: data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES) }));
    return { versions } satisfies WriteResult;
  });
  client('flush', async ({ addr, pages }) => ({ pages, holders: await each<string[]>(addr, pages, 'page.flush1', (page) => page) }) satisfies FlushResult);
  client('access', async ({ addr, pages, mode }) => {
    if (mode === 'write') e.needQuorum('write access');
    return { pages, versions: await each<number>(addr, pages, 'page.access1', (page) => ({ addr: page, mode })) };
  });
  client('unreference', async ({ addr, pages }) => ({ pages, dropped: (await each<boolean>(addr, pages, 'page.release1', (page) => page)).filter(Boolean).length }));

  client('lock', async ({ addr, mode }, origin) => {
    e.needQuorum('locking');
    return e.calls.call(atHome(addr), { op: 'lock', addr, mode, client: origin });
  });
  client('unlock', async ({ addr }, origin) => e.calls.call(atHome(addr), { op: 'unlock', addr, client: origin }));
  const statOf = (addr: Uint8Array) => e.calls.call<PageStat & { attrs: PageAttrs }>(atHome(addr), { op: 'stat', addr });
  client('stat', async ({ addr }) => {
    const { attrs: _attrs, ...stat } = await statOf(addr);
    return stat;
  });
  client('get_attrs', async ({ addr }) => (await statOf(addr)).attrs);
  client('set_attrs', async ({ addr, fs, cacheInRam }) => {
    e.needQuorum('setting attributes');
    return e.calls.call(atHome(addr), { op: 'set_attrs', addr, fs, cacheInRam });
  });
  client('super_root', async () => e.calls.call(e.homeOf(0n), { op: 'super_root' }));
  client('set_super_root', async ({ addr }) => {
    e.needQuorum('setting the super-root');
    return e.calls.call(e.homeOf(0n), { op: 'super_root', set: addr });
  });

  client('space', async () => {
    // The whole space (M7): this node's report, plus every live node's that answers.
    const live = deps.db().nodes.filter((n) => n.id === deps.self || deps.isAlive(n.id));
    const reports = await Promise.all(live.map((n) => e.calls.call<SpaceReport>(n.id, { op: 'space' }).catch(() => null)));
    const got = reports.filter((r): r is SpaceReport => r !== null);
    for (const r of got) e.policy.note(r);
    const sum = (f: (r: SpaceReport) => number) => got.reduce((n, r) => n + f(r), 0);
    const cluster = {
      nodes: got.length,
      totalRamBytes: sum((r) => r.ram.budgetBytes),
      freeRamBytes: sum((r) => Math.max(0, r.ram.budgetBytes - r.ram.usedBytes)),
      totalDiskPages: sum((r) => r.disk.pagesMax),
      freeDiskPages: sum((r) => r.disk.freePages),
    };
    return { ...localSpace(), cluster } satisfies SpaceReport;
  });

  // The transaction log (M7): this node's, durable at commit.
  const log = deps.txnLog;
  client('txn_begin', async () => {
    e.needQuorum('beginning a transaction');
    return log.begin();
  });
  client('txn_log', async ({ txn, record }) => log.log(txn, record));
  client('txn_commit', async ({ txn }) => {
    e.needQuorum('committing a transaction');
    return log.commit(txn);
  });
  client('txn_abort', async ({ txn }) => log.abort(txn));
  client('txn_end', async ({ txn }) => log.end(txn));
  client('txn_read', async ({ txn }) => {
    const { records } = log.read(txn);
    if (txn !== undefined) return { records, more: false };
    // Every committed transaction's records: whole transactions while they fit one reply; `more`
    // says to read the rest transaction by transaction (`txns` names them all).
    const txns = [...new Set(records.map((r) => r.txn))];
    const out: TxnRecord[] = [];
    let bytes = 0;
    for (const r of records) {
      const first = out.length === 0 || out[out.length - 1].txn !== r.txn;
      if (first && bytes + txnBytes(records, r.txn) > TXN_READ_BYTES_MAX) return { records: out, more: true, txns };
      out.push(r);
      bytes += r.data.byteLength;
    }
    return { records: out, more: false, txns };
  });
}

async function readOne(e: EngineParts, addr: bigint): Promise<ReadResult> {
  const held = e.holder.readable(addr);
  if (held) return { data: held.data.slice(), versions: [held.version] };
  const home = e.homeOf(addr);
  const access = e.holder.acquire(addr, 'read');
  if (home !== e.deps.self) {
    // A home that answers is always asked; one silent for homeWaitMs and counted failed is not waited for.
    const answered = await e.within(access.then(() => true), '', e.deps.settings.homeWaitMs).catch(() => false);
    if (!answered && !e.deps.isAlive(home)) return readFromHolders(e, addr, home);
  }
  await e.within(access, `reading ${formatAddress(addr)}`);
  const page = e.holder.readable(addr);
  if (!page) return readOne(e, addr);
  return { data: page.data.slice(), versions: [page.version] };
}

/**
 * The home is counted failed: the freshest durable copy any live node
 * holds (M11). Flushed data survives; a write the home's owner acknowledged
 * but never flushed is not seen (recovery, M15, decides its fate).
 */
async function readFromHolders(e: EngineParts, addr: bigint, home: string): Promise<ReadResult> {
  e.stats.readsFromHolders++;
  const { deps } = e;
  const nodes = deps.db().nodes.filter((n) => n.id === deps.self || deps.isAlive(n.id));
  const copies = await Promise.all(
    nodes.map((n) => e.calls.call<{ version: number; data: Uint8Array } | null>(n.id, { op: 'fetch', addr: addressKey(addr) }).catch(() => null)),
  );
  let best: { version: number; data: Uint8Array } | null = null;
  for (const c of copies) if (c && (!best || c.version > best.version)) best = c;
  if (!best) throw new MangroveError('E_UNREACHABLE', `${formatAddress(addr)}'s home ${home} is down and no live node holds a durable copy`);
  return { data: new Uint8Array(best.data), versions: [best.version] };
}

async function writeOne(e: EngineParts, addr: bigint, data: Uint8Array): Promise<number> {
  await e.within(e.holder.acquire(addr, 'write'), `writing ${formatAddress(addr)}`);
  const page = e.holder.writable(addr);
  if (!page) return writeOne(e, addr, data);
  page.data.set(data);
  return e.holder.wrote(addr);
}

/** Makes the newest copy durable on every core holder: this node's if it owns the page, else through the home. */
async function flushOne(e: EngineParts, addr: bigint): Promise<string[]> {
  const mode = e.holder.modeOf(addr);
  if (mode === 'write' || mode === 'kept') return flushOwn(e, addr);
  return e.calls.call<string[]>(e.homeOf(addr), { op: 'flush', addr: addressKey(addr) });
}

/** This node's copy, if newer than what the core holders have, stored durably on each of them. */
export async function flushOwn(e: EngineParts, addr: bigint): Promise<string[]> {
  const page = e.cache.peek(addr);
  const facts = e.holder.factsOf(addr);
  if (!page || !facts || facts.volatile) return facts?.holders ?? [];
  if (!page.dirty) return facts.holders;
  const version = page.version;
  const data = page.data.slice();
  let holders = facts.holders;
  // A core holder counted failed is replaced first (M11): a flush is durable on every live one.
  if (holders.some((h) => h !== e.deps.self && !e.deps.isAlive(h))) {
    holders = await e.calls.call<string[]>(e.homeOf(addr), { op: 'reduplex', addr: addressKey(addr) });
    e.holder.setHolders(addr, holders);
  }
  await Promise.all(holders.map((h) => e.calls.call(h, { op: 'store', addr: addressKey(addr), version, data })));
  e.cache.markClean(addr, version);
  return holders;
}

/**
 * Memory pressure (M12): an owner's copy goes to its core holders' disks,
 * then out of RAM. A node that keeps no disk copy of the page hands it to
 * the page's home instead (the RAM directory hands it to the disk
 * directory): the home takes it for writing, which moves the copy there.
 */
export async function pageOut(e: EngineParts, addr: bigint): Promise<void> {
  try {
    await e.scheduler.dispatch('page.flush1', addr);
    if (await e.scheduler.dispatch<boolean>('page.release1', addr)) return;
    const home = e.homeOf(addr);
    if (home !== e.deps.self && e.holder.modeOf(addr) !== undefined) await e.calls.call(home, { op: 'reclaim', addr: addressKey(addr) });
  } catch (err) {
    e.deps.log.warn({ addr: formatAddress(addr), err: String(err) }, 'page-out failed; the page stays in RAM');
  }
}
