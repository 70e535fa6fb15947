/**
 * A node's local RAM cache (SPEC M9; the patent's "index from global address
 * to buffer, version tag, dirty bit, volatile bit"), with a byte budget and
 * least-recently-used order. Pure bookkeeping, no I/O: the memory engine
 * decides, this keeps the index honest.
 *
 * Making room never loses data. `makeRoom` drops least-recently-used pages
 * that are clean, persistent and unpinned (a copy exists on disk or with
 * their owner) and returns their addresses, so the caller can tell their
 * responsible nodes. A dirty persistent page is never dropped here: it is
 * returned as a page-out, the caller writes it to the disk cache, calls
 * `markClean` with the version it wrote, and the next `makeRoom` drops it.
 * A volatile page has no backing store, so only `remove` (deallocate,
 * invalidate) takes it out; when pinned or volatile pages alone fill the
 * budget, `makeRoom` reports the bytes it cannot free (`shortBytes`), the
 * E_FULL condition the caller surfaces (it still drops what it can: dropping
 * a clean page is always safe).
 *
 * `put` never makes room itself: a new page that does not fit is refused
 * with E_FULL, so the cache stays within its budget except after the budget
 * is lowered (`setBudget`), until `makeRoom(0)` has been acted on.
 *
 * Recency is a doubly linked list threaded through the entries (oldest to
 * newest), beside a Map that only finds them: a hit relinks a few pointers
 * and allocates nothing. (A Map's insertion order, deleted and re-inserted
 * on every hit, left holes that made V8 rebuild the whole table, megabytes
 * at 100,000 pages, every few ten thousand hits: a `get` cost over 1 µs,
 * mostly collecting those tables, against about 130 ns now;
 * bench/cache-memory.ts.) A CLOCK would cost a hit even less but would lose
 * the exact order `makeRoom`, `dirtyPages` and the address walks promise.
 */
import { MangroveError } from '../../bus/errors.js';
import { checkPageAddress, formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';

/** Most pins one page may hold (each access, lock or transfer in progress holds one). */
export const PINS_PER_PAGE_MAX = 1 << 16;

export interface CachedPage {
  /** The page's buffer, PAGE_BYTES; the cache owns it and the engine reads and writes it in place. */
  readonly data: Uint8Array;
  readonly version: number;
  readonly dirty: boolean;
  /** No backing store: never dropped to make room. */
  readonly volatile: boolean;
  readonly pins: number;
}

export interface NewPage {
  /** Handed over: the caller must not reuse the buffer. */
  data: Uint8Array;
  version: number;
  dirty?: boolean;
  volatile?: boolean;
}

export interface Room {
  /** Clean pages dropped now, least recently used first. */
  dropped: bigint[];
  /** Dirty persistent pages to write to the disk cache and mark clean, least recently used first. */
  pageOut: bigint[];
  /** Bytes still missing once every page-out is done: more than 0 means the cache is full. */
  shortBytes: number;
}

export interface RamCacheStats {
  pages: number;
  bytes: number;
  dirty: number;
  volatile: number;
  pinned: number;
  budgetBytes: number;
}

const DIRTY = 1;
const VOLATILE = 2;
/** One pin, counted above the two flags: `pins` is `bits >>> 2`. */
const PIN = 4;

/**
 * A cached page, and the live view `get` and `peek` hand out. A node keeps
 * one for every page in RAM, at 8 bytes a field (V8 as Node ships it has no
 * pointer compression), so the dirty and volatile bits and the pin count
 * share one small integer: with the two list links and the address, that is
 * 72 bytes an entry rather than 88.
 */
class Entry implements CachedPage {
  /** The entry used just before this one; undefined for the least recently used, or once out of the cache. */
  older: Entry | undefined = undefined;
  /** The entry used just after this one; undefined for the most recently used, or once out of the cache. */
  newer: Entry | undefined = undefined;

  constructor(
    /** The Map's own key: the list walks in `makeRoom` and `addresses` name pages by it. */
    readonly addr: bigint,
    readonly data: Uint8Array,
    public version: number,
    public bits: number,
  ) {}

  get dirty(): boolean {
    return (this.bits & DIRTY) !== 0;
  }

  get volatile(): boolean {
    return (this.bits & VOLATILE) !== 0;
  }

  get pins(): number {
    return this.bits >>> 2;
  }
}

export class RamCache {
  private readonly entries = new Map<bigint, Entry>();
  /** The least recently used entry: where `makeRoom` starts. */
  private oldest: Entry | undefined = undefined;
  /** The most recently used entry: where a touch moves an entry to. */
  private newest: Entry | undefined = undefined;
  private budgetBytes: number;
  private dirtyCount = 0;
  private volatileCount = 0;
  private pinnedCount = 0;

  constructor(budgetBytes: number) {
    this.budgetBytes = checkBudget(budgetBytes);
  }

  /** The page, now the most recently used; a live view of the cache's entry. */
  get(addr: bigint): CachedPage | undefined {
    const e = this.find(addr);
    if (e !== undefined && e !== this.newest) {
      this.unlink(e);
      this.append(e);
    }
    return e;
  }

  /** The page, without changing its recency. */
  peek(addr: bigint): CachedPage | undefined {
    return this.find(addr);
  }

  has(addr: bigint): boolean {
    return this.find(addr) !== undefined;
  }

  /**
   * Installs a copy as the most recently used. Refuses an older version than
   * the one held (E_STALE); the same version is the same content, so a dirty
   * bit already set stays set. Refuses a new page that does not fit (E_FULL)
   * and a pinned page, whose buffer is in use (E_BUSY).
   */
  put(addr: bigint, page: NewPage): void {
    checkPageAddress(addr);
    if (!(page.data instanceof Uint8Array) || page.data.byteLength !== PAGE_BYTES) {
      throw new MangroveError('E_BAD_ARGUMENT', `a cached page has ${PAGE_BYTES} bytes, not ${page.data?.byteLength}`);
    }
    checkVersion(addr, page.version);
    const old = this.entries.get(addr);
    if (old !== undefined && page.version < old.version) throw stale(addr, page.version, old.version);
    if (old !== undefined && old.pins > 0) throw busy(addr, old.pins);
    if (old === undefined && this.bytes() + PAGE_BYTES > this.budgetBytes) {
      throw new MangroveError('E_FULL', `the RAM cache is full (${this.budgetBytes} bytes); make room before caching ${formatAddress(addr)}`);
    }
    const keepDirty = old !== undefined && old.dirty && old.version === page.version;
    const bits = (page.dirty || keepDirty ? DIRTY : 0) | (page.volatile ? VOLATILE : 0);
    if (old !== undefined) this.forget(old);
    this.remember(new Entry(addr, page.data, page.version, bits));
  }

  /** Records a write: the page is dirty at `version` (not lower than it was). */
  markDirty(addr: bigint, version: number): void {
    const e = this.must(addr);
    checkVersion(addr, version);
    if (version < e.version) throw stale(addr, version, e.version);
    e.version = version;
    if (!e.dirty) this.dirtyCount++;
    e.bits |= DIRTY;
  }

  /**
   * Records that `version` is on disk. True if the page is now clean; false
   * if it changed since (a newer version is still dirty) or is gone.
   */
  markClean(addr: bigint, version: number): boolean {
    const e = this.find(addr);
    if (e === undefined || e.version !== version) return false;
    if (e.dirty) this.dirtyCount--;
    e.bits &= ~DIRTY;
    return true;
  }

  pin(addr: bigint): void {
    const e = this.must(addr);
    if (e.pins >= PINS_PER_PAGE_MAX) throw new MangroveError('E_FULL', `page ${formatAddress(addr)} already holds ${PINS_PER_PAGE_MAX} pins`);
    if (e.pins === 0) this.pinnedCount++;
    e.bits += PIN;
  }

  unpin(addr: bigint): void {
    const e = this.must(addr);
    if (e.pins === 0) throw new MangroveError('E_BAD_ARGUMENT', `page ${formatAddress(addr)} is not pinned`);
    e.bits -= PIN;
    if (e.pins === 0) this.pinnedCount--;
  }

  /** Takes a page out on purpose (deallocate, invalidate), whatever its bits; refused while pinned (E_BUSY). */
  remove(addr: bigint): CachedPage | undefined {
    const e = this.find(addr);
    if (e === undefined) return undefined;
    if (e.pins > 0) throw busy(addr, e.pins);
    this.forget(e);
    return e;
  }

  /** Frees room for `bytes` more within the budget, as the top comment describes. */
  makeRoom(bytes = 0): Room {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new MangroveError('E_BAD_ARGUMENT', `makeRoom needs a byte count, 0 or more, not ${bytes}`);
    const room: Room = { dropped: [], pageOut: [], shortBytes: 0 };
    let need = this.bytes() + bytes - this.budgetBytes;
    for (let e = this.oldest; e !== undefined && need > 0; ) {
      const next = e.newer;
      if (e.pins === 0 && !e.volatile) {
        if (e.dirty) room.pageOut.push(e.addr);
        else {
          room.dropped.push(e.addr);
          this.forget(e);
        }
        need -= PAGE_BYTES;
      }
      e = next;
    }
    room.shortBytes = Math.max(0, need);
    return room;
  }

  /** Dirty pages, least recently used first: what a flush writes (M7). */
  dirtyPages(): bigint[] {
    const out: bigint[] = [];
    for (let e = this.oldest; e !== undefined; e = e.newer) if (e.dirty) out.push(e.addr);
    return out;
  }

  /** Addresses, least recently used first. */
  addresses(): bigint[] {
    const out: bigint[] = [];
    for (let e = this.oldest; e !== undefined; e = e.newer) out.push(e.addr);
    return out;
  }

  /**
   * `addresses` walked in place rather than copied: a caller that needs only
   * the first few (making room) stops there, having allocated nothing per
   * page. While the walk is under way the cache may lose the page it is at
   * (`remove`) and gain new ones (not visited), and must not change otherwise.
   */
  *oldestFirst(): Generator<bigint, void, undefined> {
    const last = this.newest;
    for (let e = this.oldest; e !== undefined; ) {
      // Read before handing the page out: taking it out clears its links.
      const next = e === last ? undefined : e.newer;
      yield e.addr;
      e = next;
    }
  }

  /** Changes the budget (memory pressure, M12); call makeRoom(0) after lowering it. */
  setBudget(budgetBytes: number): void {
    this.budgetBytes = checkBudget(budgetBytes);
  }

  stats(): RamCacheStats {
    return {
      pages: this.entries.size,
      bytes: this.bytes(),
      dirty: this.dirtyCount,
      volatile: this.volatileCount,
      pinned: this.pinnedCount,
      budgetBytes: this.budgetBytes,
    };
  }

  private bytes(): number {
    return this.entries.size * PAGE_BYTES;
  }

  /**
   * The entry at `addr`. Only a miss checks the address: every key passed
   * the check when it was put, and the check builds a bigint (the alignment
   * mask) that a hit should not pay for.
   */
  private find(addr: bigint): Entry | undefined {
    const e = this.entries.get(addr);
    if (e === undefined) checkPageAddress(addr);
    return e;
  }

  /** Adds a new entry as the most recently used; it holds no pins yet. */
  private remember(e: Entry): void {
    this.entries.set(e.addr, e);
    this.append(e);
    if (e.dirty) this.dirtyCount++;
    if (e.volatile) this.volatileCount++;
  }

  /** Takes an entry out; every caller has refused or skipped a pinned one. */
  private forget(e: Entry): void {
    this.entries.delete(e.addr);
    this.unlink(e);
    if (e.dirty) this.dirtyCount--;
    if (e.volatile) this.volatileCount--;
  }

  private append(e: Entry): void {
    e.older = this.newest;
    if (this.newest === undefined) this.oldest = e;
    else this.newest.newer = e;
    this.newest = e;
  }

  /** Out of the list, its links cleared: an entry `remove` handed out keeps no neighbour alive. */
  private unlink(e: Entry): void {
    if (e.older === undefined) this.oldest = e.newer;
    else e.older.newer = e.newer;
    if (e.newer === undefined) this.newest = e.older;
    else e.newer.older = e.older;
    e.older = undefined;
    e.newer = undefined;
  }

  private must(addr: bigint): Entry {
    const e = this.find(addr);
    if (e === undefined) throw new MangroveError('E_NOT_FOUND', `page ${formatAddress(addr)} is not in the RAM cache`);
    return e;
  }
}

function checkBudget(budgetBytes: number): number {
  if (!Number.isSafeInteger(budgetBytes) || budgetBytes < PAGE_BYTES || budgetBytes % PAGE_BYTES !== 0) {
    throw new MangroveError('E_BAD_ARGUMENT', `a RAM cache budget is a whole number of pages (multiple of ${PAGE_BYTES} bytes), at least one, not ${budgetBytes}`);
  }
  return budgetBytes;
}

function checkVersion(addr: bigint, version: number): void {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new MangroveError('E_BAD_ARGUMENT', `page ${formatAddress(addr)} cannot take version ${String(version)}; a version is a whole number, 0 or more`);
  }
}

function busy(addr: bigint, pins: number): MangroveError {
  return new MangroveError('E_BUSY', `page ${formatAddress(addr)} is in use (${pins} pins)`);
}

function stale(addr: bigint, offered: number, held: number): MangroveError {
  return new MangroveError('E_STALE', `page ${formatAddress(addr)} is cached at version ${held}; version ${offered} is older`);
}
