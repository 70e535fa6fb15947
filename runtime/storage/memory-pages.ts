/**
 * The simulator's disk cache: a Map, sorted on scan. The twin of
 * lmdb-pages.ts; both run one compliance suite
 * (spec/unit/runtime/storage/page-store.spec.ts).
 */
import { MangroveError } from '../../bus/errors.js';
import { checkAddress, checkPageAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import { checkBatch, checkPagesMax, checkScanLimit, copyPage, fullError, SCAN_PAGES_MAX, staleError, STORE_PAGES_MAX_DEFAULT } from '../../actors/storage/page-store.js';
import type { PageEntry, PageStore, PageStoreOptions, StoredPage } from '../../actors/storage/page-store.js';

export class MemoryPageStore implements PageStore {
  private readonly pages = new Map<bigint, StoredPage>();
  private readonly pagesMax: number;
  private closed = false;

  constructor(options: PageStoreOptions = {}) {
    this.pagesMax = checkPagesMax(options.pagesMax ?? STORE_PAGES_MAX_DEFAULT);
  }

  get(addr: bigint): StoredPage | undefined {
    this.checkOpen();
    const page = this.pages.get(checkPageAddress(addr));
    return page && copyPage(page);
  }

  has(addr: bigint): boolean {
    this.checkOpen();
    return this.pages.has(checkPageAddress(addr));
  }

  put(addr: bigint, page: StoredPage): void {
    this.putMany([{ addr, page }]);
  }

  putMany(entries: readonly PageEntry[]): void {
    this.checkOpen();
    checkBatch(entries);
    let added = 0;
    for (const { addr, page } of entries) {
      const stored = this.pages.get(addr);
      if (stored === undefined) added++;
      else if (page.version < stored.version) throw staleError(addr, page.version, stored.version);
    }
    if (added > 0 && this.pages.size + added > this.pagesMax) throw fullError(this.pagesMax);
    for (const { addr, page } of entries) this.pages.set(addr, copyPage(page));
  }

  delete(addr: bigint): boolean {
    this.checkOpen();
    return this.pages.delete(checkPageAddress(addr));
  }

  capacity(): number {
    return this.pagesMax;
  }

  count(): number {
    this.checkOpen();
    return this.pages.size;
  }

  bytesUsed(): number {
    return this.count() * PAGE_BYTES;
  }

  scan(from = 0n, limit = SCAN_PAGES_MAX): PageEntry[] {
    this.checkOpen();
    checkAddress(from);
    checkScanLimit(limit);
    const addrs = [...this.pages.keys()].filter((a) => a >= from).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return addrs.slice(0, limit).map((addr) => ({ addr, page: copyPage(this.pages.get(addr) as StoredPage) }));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new MangroveError('E_CLOSED', 'the page store is closed');
  }
}
