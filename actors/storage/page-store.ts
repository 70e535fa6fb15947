/**
 * A node's local disk cache (SPEC M9): persistent pages by global address,
 * each with its version tag and its 16-byte file-system attribute (M7).
 * LMDB in production (runtime/storage/lmdb-pages.ts), a Map in the simulator
 * (MemoryPageStore, here); one interface, one compliance suite
 * (spec/unit/runtime/storage/page-store.spec.ts).
 *
 * Synchronous like NodeStore (actors/storage/node-store.ts): a write is durable when the
 * call returns, which is what lets a flush be acknowledged (M11), and a
 * simulated run stays a pure function of its seed.
 *
 * Only persistent pages come here: a volatile page has no backing store, so
 * the record carries no persistent/volatile flag.
 *
 * Versions: a page's version never goes down. `put` with a version below the
 * stored one is refused (E_STALE) and changes nothing, so a late or repeated
 * flush cannot overwrite newer data; the same version may be written again
 * (a retried flush, or new attributes without a new version).
 */
import { MangroveError } from '../../bus/errors.js';
import { FS_ATTR_BYTES } from '../../bus/messages/page-limits.js';
import { checkPageAddress, formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';

/** Bytes of the file-system attribute a page carries (M7): the wire's size, so what the store keeps is what travels. */
export { FS_ATTR_BYTES };
/** Most pages one putMany may commit. */
export const PUT_MANY_PAGES_MAX = 1024;
/** Most pages one scan returns (4 MiB of data). */
export const SCAN_PAGES_MAX = 1024;
/** Default capacity of a store: 2^20 pages, 4 GiB of page data. */
export const STORE_PAGES_MAX_DEFAULT = 1 << 20;

export interface StoredPage {
  /** Exactly PAGE_BYTES. */
  readonly data: Uint8Array;
  /** A safe integer, 0 or more; never goes down for one address. */
  readonly version: number;
  /** Exactly FS_ATTR_BYTES. */
  readonly attrs: Uint8Array;
}

export interface PageEntry {
  readonly addr: bigint;
  readonly page: StoredPage;
}

export interface PageStoreOptions {
  /** Most pages the store holds; a put of one more is refused with E_FULL. */
  pagesMax?: number;
}

export interface PageStore {
  /** A copy of the page: changing it changes nothing stored. */
  get(addr: bigint): StoredPage | undefined;
  has(addr: bigint): boolean;
  /** Durable when it returns. Refuses a lower version (E_STALE), wrong sizes (E_BAD_ARGUMENT), a full store (E_FULL). */
  put(addr: bigint, page: StoredPage): void;
  /** All or nothing, in one durable commit; the same checks as put, and each address at most once. */
  putMany(entries: readonly PageEntry[]): void;
  /**
   * putMany made off the event loop: resolves once the commit is durable
   * (rejects with what putMany would throw), and the node serves on while
   * the disk syncs, so the next group commit gathers what comes meanwhile
   * (group-commit.ts). A store without it (the simulator's, whose commits
   * cost nothing) is committed with putMany.
   */
  putManyDurably?(entries: readonly PageEntry[]): Promise<void>;
  /** Durable when it returns; false if the page was not there. */
  delete(addr: bigint): boolean;
  count(): number;
  /** Most pages the store holds (its `pagesMax`). */
  capacity(): number;
  /** Bytes of page data held (count × PAGE_BYTES), what the policy element counts (M12). */
  bytesUsed(): number;
  /** Pages at address `from` (default 0, need not be a page base) and above, in address order, at most `limit` (default and most SCAN_PAGES_MAX). */
  scan(from?: bigint, limit?: number): PageEntry[];
  close(): Promise<void>;
}

/** Checks one entry's shape; every store calls this before it changes anything. */
export function checkStoredPage(addr: bigint, page: StoredPage): void {
  checkPageAddress(addr);
  const where = formatAddress(addr);
  if (!(page.data instanceof Uint8Array) || page.data.byteLength !== PAGE_BYTES) {
    throw new MangroveError('E_BAD_ARGUMENT', `page ${where} must have ${PAGE_BYTES} bytes of data, not ${sizeOf(page.data)}`);
  }
  if (!(page.attrs instanceof Uint8Array) || page.attrs.byteLength !== FS_ATTR_BYTES) {
    throw new MangroveError('E_BAD_ARGUMENT', `page ${where} must have a ${FS_ATTR_BYTES}-byte attribute, not ${sizeOf(page.attrs)}`);
  }
  if (!Number.isSafeInteger(page.version) || page.version < 0) {
    throw new MangroveError('E_BAD_ARGUMENT', `page ${where} has version ${String(page.version)}; a version is a whole number, 0 or more`);
  }
}

/** Checks a putMany batch: its size, each entry, and no address twice. */
export function checkBatch(entries: readonly PageEntry[]): void {
  if (entries.length > PUT_MANY_PAGES_MAX) {
    throw new MangroveError('E_BAD_ARGUMENT', `a batch holds at most ${PUT_MANY_PAGES_MAX} pages, not ${entries.length}`);
  }
  const seen = new Set<bigint>();
  for (const { addr, page } of entries) {
    checkStoredPage(addr, page);
    if (seen.has(addr)) throw new MangroveError('E_BAD_ARGUMENT', `page ${formatAddress(addr)} appears twice in one batch`);
    seen.add(addr);
  }
}

export function staleError(addr: bigint, offered: number, stored: number): MangroveError {
  return new MangroveError('E_STALE', `page ${formatAddress(addr)} is at version ${stored}; version ${offered} is older and was not written`);
}

export function fullError(pagesMax: number): MangroveError {
  return new MangroveError('E_FULL', `the disk cache holds its maximum of ${pagesMax} pages; free or page out pages first`);
}

export function checkPagesMax(pagesMax: number): number {
  if (!Number.isSafeInteger(pagesMax) || pagesMax < 1) {
    throw new MangroveError('E_BAD_ARGUMENT', `pagesMax must be a whole number, at least 1, not ${String(pagesMax)}`);
  }
  return pagesMax;
}

export function checkScanLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > SCAN_PAGES_MAX) {
    throw new MangroveError('E_BAD_ARGUMENT', `a scan returns 1 to ${SCAN_PAGES_MAX} pages, not ${String(limit)}`);
  }
  return limit;
}

export function copyPage(page: StoredPage): StoredPage {
  return { data: page.data.slice(), version: page.version, attrs: page.attrs.slice() };
}

function sizeOf(bytes: unknown): string {
  return bytes instanceof Uint8Array ? `${bytes.byteLength}` : `a ${typeof bytes}`;
}
