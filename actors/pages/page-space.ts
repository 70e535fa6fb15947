/**
 * This node's part of the address space (M7, M8; docs/engine.md): its arena,
 * the reservations and materialized ranges it is responsible for, kept in
 * the GDD, a tree of directory pages stored in the shared space itself.
 *
 * Arenas: the high 64 bits of an address. Arena 0 is the system's (its
 * directory root at 0x0 holds the super-root address); arena `shortId + 1`
 * is the node's with that short id, so any node finds a page's responsible
 * node from its address and the node database, without a lookup. In each
 * arena, offsets below 2^40 are the directory's own pages (its root at
 * offset 0, the arena's well-known address), and reservations start at 2^40.
 * The reservation high-water mark lives in the root page's header: it is
 * advanced durably before an address is handed out, so a crash may waste
 * addresses, never give one out twice; it never goes back.
 *
 * The directory pages live in this node's disk cache (the page store), and
 * every change is copied to the disk caches of `copies` other live nodes
 * before it is acknowledged (actors/engine/applets/home.ts), so the directory survives
 * the loss of its home's disk as data pages do.
 */
import { MangroveError } from '../../bus/errors.js';
import { checkPageAddress, formatAddress, PAGE_BYTES, pageRange, type PageRange } from '../../machines/memory/address.js';
import { Directory, type DirectoryEntry, type DirectoryPages } from '../../machines/memory/directory.js';
import { decodeDirectoryPage, type DirectoryPage } from '../../machines/memory/directory-page.js';
import { FS_ATTR_BYTES, type PageStore } from '../storage/page-store.js';

const ARENA_SHIFT = 64n;
/** Offsets below this hold directory pages; reservations start here. */
export const DATA_OFFSET = 1n << 40n;
const OFFSET_MAX = (1n << 64n) - 1n;
const PAGE = BigInt(PAGE_BYTES);

export function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

export function arenaOf(addr: bigint): bigint {
  return addr >> ARENA_SHIFT;
}

export function arenaBase(arena: bigint): bigint {
  return arena << ARENA_SHIFT;
}

/** Directory pages of one arena, kept in the page store. */
function directoryPages(store: PageStore, arena: bigint, written: (addr: bigint) => void): DirectoryPages {
  const base = arenaBase(arena);
  let next = base + BigInt(PAGE_BYTES);
  for (let from = base; ; ) {
    const batch = store.scan(from);
    const inRegion = batch.filter((e) => e.addr < base + DATA_OFFSET);
    for (const e of inRegion) if (e.addr >= next) next = e.addr + BigInt(PAGE_BYTES);
    if (inRegion.length < batch.length || batch.length === 0) break;
    from = batch[batch.length - 1].addr + 1n;
  }
  return {
    read: (addr) => store.get(addr)?.data,
    write: (addr, data) => {
      store.put(addr, { data, version: (store.get(addr)?.version ?? 0) + 1, attrs: new Uint8Array(FS_ATTR_BYTES) });
      written(addr);
    },
    allocate: () => {
      if (next >= base + DATA_OFFSET) throw new MangroveError('E_FULL', `the directory of arena ${arena} has no page addresses left`);
      const addr = next;
      next += BigInt(PAGE_BYTES);
      return addr;
    },
    release: (addr) => void store.delete(addr),
  };
}

export class PageSpace {
  private readonly directories = new Map<bigint, Directory>();
  /** Directory pages written since `takeWritten` last ran: what must be copied to the replicas. */
  private written = new Set<bigint>();

  constructor(private readonly store: PageStore) {}

  /** The directory pages written since the last call, as stored now (released ones left out). */
  takeWritten(): { addr: bigint; version: number; data: Uint8Array }[] {
    const addrs = [...this.written];
    this.written = new Set();
    return addrs.flatMap((addr) => {
      const page = this.store.get(addr);
      return page ? [{ addr, version: page.version, data: page.data }] : [];
    });
  }

  /** Forgets the decoded directory of `arena`: its home changed, and what is on disk is what counts. */
  forget(arena: bigint): void {
    this.directories.delete(arena);
  }

  /** The arena's directory pages on this node's disk, in address order, `SCAN_PAGES_MAX` at most from `from`. */
  directoryPagesOf(arena: bigint, from = arenaBase(arena)): { addr: bigint; version: number; data: Uint8Array }[] {
    const end = arenaBase(arena) + DATA_OFFSET;
    return this.store
      .scan(from)
      .filter((e) => e.addr < end)
      .map((e) => ({ addr: e.addr, version: e.page.version, data: e.page.data }));
  }

  /** Deletes every directory page of `arena` held here (a full copy is about to replace them). */
  dropDirectory(arena: bigint): void {
    this.forget(arena);
    for (let batch = this.directoryPagesOf(arena); batch.length > 0; batch = this.directoryPagesOf(arena, batch[batch.length - 1].addr + PAGE)) {
      for (const p of batch) this.store.delete(p.addr);
    }
  }

  /**
   * Reads the arena's whole directory from this node's disk, every page
   * decoded (M15: a copy recovery may read must be complete): what it holds,
   * or null when there is none. Throws when a page is missing or damaged.
   * Reading writes nothing.
   */
  check(arena: bigint): { entries: number; pages: number; rootVersion: number } | null {
    const root = arenaBase(arena);
    const stored = this.store.get(root);
    if (!stored) return null;
    const readOnly: DirectoryPages = {
      read: (addr) => this.store.get(addr)?.data,
      write: () => {
        throw new MangroveError('E_INTERNAL', 'checking a directory writes nothing');
      },
      allocate: () => {
        throw new MangroveError('E_INTERNAL', 'checking a directory allocates nothing');
      },
      release: () => {},
    };
    const dir = Directory.open(readOnly, root);
    return { entries: dir.count(), pages: dir.shape().pages, rootVersion: stored.version };
  }

  /**
   * One page of `arena`'s directory as this node's disk has it, decoded
   * (E_STORAGE if damaged), with its version; undefined if there is none.
   * `addr` must be a page of the arena's directory region. Reading writes nothing.
   */
  directoryPage(arena: bigint, addr: bigint): { page: DirectoryPage; version: number } | undefined {
    const base = arenaBase(arena);
    checkPageAddress(addr);
    if (addr < base || addr >= base + DATA_OFFSET) {
      throw new MangroveError('E_BAD_ARGUMENT', `${formatAddress(addr)} is no page of arena ${arena}'s directory (${formatAddress(base)} up to ${formatAddress(base + DATA_OFFSET)})`);
    }
    const stored = this.store.get(addr);
    return stored && { page: decodeDirectoryPage(addr, stored.data), version: stored.version };
  }

  /** Whether `arena`'s directory exists here (reading one never creates it). */
  hasDirectory(arena: bigint): boolean {
    return this.directories.has(arena) || this.store.has(arenaBase(arena));
  }

  /** The directory of `arena` (this node must be responsible for it), created if it has none yet. */
  directory(arena: bigint): Directory {
    let dir = this.directories.get(arena);
    if (!dir) {
      dir = Directory.open(directoryPages(this.store, arena, (a) => this.written.add(a)), arenaBase(arena));
      const meta = dir.meta();
      if (meta.highWater < DATA_OFFSET) dir.setMeta({ ...meta, highWater: DATA_OFFSET });
      this.directories.set(arena, dir);
    }
    return dir;
  }

  /** Reserves `pages` fresh pages in `arena`; the addresses are never handed out again. */
  reserve(arena: bigint, pages: number): PageRange {
    const dir = this.directory(arena);
    const meta = dir.meta();
    const bytes = BigInt(pages) * BigInt(PAGE_BYTES);
    if (meta.highWater + bytes - 1n > OFFSET_MAX) throw new MangroveError('E_FULL', `arena ${arena} has no room for ${pages} more pages`);
    const range = pageRange(arenaBase(arena) + meta.highWater, pages);
    dir.setMeta({ ...meta, highWater: meta.highWater + bytes });
    dir.insert({ start: range.first, pages, state: 'reserved', copies: 0, volatile: false, holders: [], cacheInRam: false });
    return range;
  }

  /** The directory entry holding `addr`, if any (this node must be responsible for its arena). */
  lookup(addr: bigint): DirectoryEntry | undefined {
    const arena = arenaOf(addr);
    return this.hasDirectory(arena) ? this.directory(arena).lookup(addr) : undefined;
  }

  /**
   * Replaces the range [first, first + pages) with what `changed` makes of
   * each entry it overlaps (null: the piece leaves the directory); the
   * parts of those entries outside the range stay as they were. The range
   * must lie wholly in reservations, without gaps. Every piece is checked
   * (by `changed`, which may throw) before anything changes. Returns the
   * old entries.
   */
  carve(first: bigint, pages: number, changed: (old: DirectoryEntry) => DirectoryEntry | null): DirectoryEntry[] {
    const range = pageRange(first, pages);
    const end = range.last + PAGE;
    const dir = this.directory(arenaOf(first));
    const olds: DirectoryEntry[] = [];
    let at = first;
    for (const e of dir.entries(first)) {
      if (e.start >= end) break;
      if (e.start > at) break;
      olds.push(e);
      at = e.start + BigInt(e.pages) * PAGE;
      if (at >= end) break;
    }
    if (olds.length === 0) throw new MangroveError('E_NOT_RESERVED', `${formatAddress(first)} is in no reservation; reserve pages first (page reserve)`);
    if (at < end) throw new MangroveError('E_NOT_RESERVED', `${formatAddress(at)}, inside ${formatAddress(first)} + ${plural(pages, 'page')}, is in no reservation`);
    const pieces: DirectoryEntry[] = [];
    for (const old of olds) {
      const oldEnd = old.start + BigInt(old.pages) * PAGE;
      const from = old.start > first ? old.start : first;
      const to = oldEnd < end ? oldEnd : end;
      if (old.start < from) pieces.push({ ...old, pages: Number((from - old.start) / PAGE) });
      const next = changed(old);
      if (next) pieces.push({ ...next, start: from, pages: Number((to - from) / PAGE) });
      if (to < oldEnd) pieces.push({ ...old, start: to, pages: Number((oldEnd - to) / PAGE) });
    }
    try {
      for (const old of olds) dir.remove(old.start);
      for (const piece of pieces) dir.insert(piece);
    } catch (err) {
      throw new MangroveError('E_STORAGE', `the directory change at ${formatAddress(first)} failed half-way: ${String(err)}`);
    }
    return olds;
  }

  /** Materialized pages this node is responsible for. */
  materializedPages(): number {
    let n = 0;
    for (const dir of this.directories.values()) for (const e of dir.entries()) if (e.state === 'materialized') n += e.pages;
    return n;
  }
}
