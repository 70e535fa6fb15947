/**
 * The file system's view of the memory engine (SPEC.md M7, M18-M22): the
 * engine calls it makes, on the node it runs on, as one named client (its
 * page locks are the file system's), with bigint addresses, and the typed
 * pages of the file system read and written through them. Every page goes
 * through the engine, so what the file system sees is coherent across nodes
 * (M10) and it keeps no page of its own: a read of a page this node holds is
 * answered from its cache.
 *
 * An `Update` collects the pages one step of a multi-page operation writes,
 * so they are flushed together (M22: the mark, then the update, then the
 * mark cleared, each flushed before the next step).
 */
import type { ClientPageOp, FlushResult, PageStat, ReadResult, SpaceReport } from '../../bus/messages/page.js';
import { assert } from '../../bus/assert.js';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import { addressKey, formatAddress, PAGE_BYTES, parseAddress } from '../../machines/memory/address.js';
import { decodeEntryPage, encodeEntryPage, type EntryPage } from '../../machines/fs/entry-page.js';
import { decodeFileset, decodeSuperRoot, encodeFileset, encodeSuperRoot, type Fileset, type SuperRoot } from '../../machines/fs/fileset.js';
import { decodeInode, encodeInode, type Inode } from '../../machines/fs/inode.js';
import { decodeTablePage, encodeTablePage, type TablePage } from '../../machines/fs/inode-table.js';

/** The engine as the file system calls it: PageEngine.call. */
export interface EngineCalls {
  call(op: ClientPageOp, client?: string): Promise<unknown>;
}

/** Pages one engine read or write carries (PAGES_PER_REQUEST_MAX). */
export const IO_PAGES_MAX = 256;
/** Flush calls one fsync keeps in flight: 4,096 pages, well under a node's disk-commit queue (16,384). */
export const FLUSH_CALLS_IN_FLIGHT = 16;

export class FsPages {
  constructor(
    private readonly engine: EngineCalls,
    /** The client the file system's page locks belong to. */
    readonly client: string,
  ) {}

  async read(addr: bigint, pages = 1): Promise<Uint8Array> {
    const r = (await this.engine.call({ op: 'read', addr: addressKey(addr), pages }, this.client)) as ReadResult;
    return r.data;
  }

  /** A page and its version (M10): a version unchanged between two reads means no write came between. */
  async readVersioned(addr: bigint): Promise<{ data: Uint8Array; version: number }> {
    const r = (await this.engine.call({ op: 'read', addr: addressKey(addr), pages: 1 }, this.client)) as ReadResult;
    return { data: r.data, version: r.versions[0] };
  }

  async write(addr: bigint, data: Uint8Array): Promise<void> {
    assert(data.length > 0 && data.length % PAGE_BYTES === 0, 'writes are of whole pages');
    await this.engine.call({ op: 'write', addr: addressKey(addr), data }, this.client);
  }

  /**
   * Makes pages durable on every core holder (M11), contiguous runs in one
   * call each, FLUSH_CALLS_IN_FLIGHT at a time: a large file's fsync must not
   * ask more durable writes of a node's next disk commit than it queues.
   */
  async flush(addrs: Iterable<bigint>): Promise<void> {
    const runs = contiguousRuns([...addrs]);
    let next = 0;
    const worker = async () => {
      while (next < runs.length) {
        const [first, pages] = runs[next++];
        await (this.engine.call({ op: 'flush', addr: addressKey(first), pages }, this.client) as Promise<FlushResult>);
      }
    };
    await Promise.all(Array.from({ length: Math.min(FLUSH_CALLS_IN_FLIGHT, runs.length) }, worker));
  }

  async lock(addr: bigint, mode: 'shared' | 'exclusive', wait = true): Promise<void> {
    await this.engine.call({ op: 'lock', addr: addressKey(addr), mode, wait }, this.client);
  }

  async unlock(addr: bigint): Promise<void> {
    await this.engine.call({ op: 'unlock', addr: addressKey(addr) }, this.client);
  }

  async reserve(pages: number): Promise<bigint> {
    const r = (await this.engine.call({ op: 'reserve', pages }, this.client)) as { address: string };
    return parseAddress(r.address);
  }

  async alloc(addr: bigint, pages: number, volatile = false): Promise<void> {
    await this.engine.call({ op: 'alloc', addr: addressKey(addr), pages, volatile }, this.client);
  }

  /** Frees pages and their storage; the range stays reserved (no address is ever handed out twice). */
  async dealloc(addr: bigint, pages: number): Promise<void> {
    await this.engine.call({ op: 'unallocate', addr: addressKey(addr), pages }, this.client);
  }

  async unreserve(addr: bigint, pages: number): Promise<void> {
    await this.engine.call({ op: 'unreserve', addr: addressKey(addr), pages }, this.client);
  }

  /** The engine's super-root (M7), or null while none is set. */
  async superRoot(): Promise<bigint | null> {
    try {
      const r = (await this.engine.call({ op: 'super_root' }, this.client)) as { address: string };
      return parseAddress(r.address);
    } catch (err) {
      if (err instanceof MangroveError && err.code === 'E_NOT_FOUND') return null;
      throw err;
    }
  }

  /** Sets the super-root unless one is set already (compare-and-set); answers the one set now. */
  async setSuperRootIfNone(addr: bigint): Promise<bigint> {
    const r = (await this.engine.call({ op: 'set_super_root', addr: addressKey(addr), ifNone: true }, this.client)) as { address: string };
    return parseAddress(r.address);
  }

  /** Where a page stands (M7): its reservation, whether it is materialized, its home and holders. */
  async stat(addr: bigint): Promise<PageStat> {
    return (await this.engine.call({ op: 'stat', addr: addressKey(addr) }, this.client)) as PageStat;
  }

  async space(): Promise<SpaceReport> {
    return (await this.engine.call({ op: 'space' }, this.client)) as SpaceReport;
  }

  // ---- typed pages ----

  async inode(addr: bigint): Promise<Inode> {
    const i = decodeInode(await this.read(addr), addr);
    if (!i) throw new MangroveError('E_NOT_FOUND', `no inode at ${formatAddress(addr)} (it was freed)`);
    return i;
  }

  async inodeOrNull(addr: bigint): Promise<Inode | null> {
    return decodeInode(await this.read(addr), addr);
  }

  /** The inode at `addr`, or null for one never written or one that fails its checks: what recovery and `fs check` can count on. */
  async inodeIfWhole(addr: bigint): Promise<Inode | null> {
    try {
      return decodeInode(await this.read(addr), addr);
    } catch (err) {
      if (isMangroveError(err) && err.code === 'E_CORRUPT') return null;
      throw err;
    }
  }

  async entryPage(addr: bigint, page: number): Promise<EntryPage> {
    return decodeEntryPage(await this.read(addr), addr, page);
  }

  async tablePage(addr: bigint, page: number): Promise<TablePage> {
    return decodeTablePage(await this.read(addr), addr, page);
  }

  async fileset(addr: bigint): Promise<Fileset> {
    const f = decodeFileset(await this.read(addr), addr);
    if (!f) throw new MangroveError('E_NOT_FOUND', `no fileset at ${formatAddress(addr)}`);
    return f;
  }

  async superRootPage(addr: bigint): Promise<SuperRoot | null> {
    return decodeSuperRoot(await this.read(addr), addr);
  }
}

/** The pages one step of an update writes: written at once, flushed together. */
export class Update {
  private readonly dirty = new Set<bigint>();
  private readonly writes: Promise<void>[] = [];

  constructor(private readonly pages: FsPages) {}

  inode(addr: bigint, i: Inode): void {
    this.put(addr, encodeInode(i, addr));
  }

  entryPage(addr: bigint, p: EntryPage): void {
    this.put(addr, encodeEntryPage(p, addr));
  }

  tablePage(addr: bigint, t: TablePage): void {
    this.put(addr, encodeTablePage(t, addr));
  }

  fileset(addr: bigint, f: Fileset): void {
    this.put(addr, encodeFileset(f, addr));
  }

  superRoot(addr: bigint, s: SuperRoot): void {
    this.put(addr, encodeSuperRoot(s, addr));
  }

  put(addr: bigint, data: Uint8Array): void {
    this.dirty.add(addr);
    this.writes.push(this.pages.write(addr, data));
  }

  /** Every page written (coherent everywhere at once, M10), not yet durable: what a write or a close leaves for fsync; a later `flush` still flushes them. */
  async apply(): Promise<void> {
    await Promise.all(this.writes.splice(0));
  }

  /** Every page written, then made durable. */
  async flush(): Promise<void> {
    await Promise.all(this.writes.splice(0));
    await this.pages.flush(this.dirty);
    this.dirty.clear();
  }
}

/** Sorted addresses as [first, pages] runs of contiguous pages, each at most IO_PAGES_MAX. */
export function contiguousRuns(addrs: bigint[]): [bigint, number][] {
  const sorted = [...new Set(addrs)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const runs: [bigint, number][] = [];
  for (const a of sorted) {
    const last = runs[runs.length - 1];
    if (last && last[0] + BigInt(last[1] * PAGE_BYTES) === a && last[1] < IO_PAGES_MAX) last[1]++;
    else runs.push([a, 1]);
  }
  return runs;
}
