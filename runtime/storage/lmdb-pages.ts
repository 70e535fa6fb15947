/**
 * The node's disk cache in production (SPEC M9): persistent pages in LMDB,
 * the `pages` database of its own environment, `pages.mdb`, in the node's
 * data directory. The simulator's twin is MemoryPageStore
 * (actors/storage/page-store.ts).
 *
 * Why an environment of its own rather than a database in `node.mdb`
 * (runtime/storage/lmdb-node-store.ts): LMDB has one writer per environment, so page
 * flushes, the busiest writes a node makes, never queue behind or ahead of
 * a node-database commit; the cache may grow to gigabytes, and can be sized,
 * copied or discarded (replicas hold the pages, M11) without touching the
 * node's identity and epoch. The disk directory (M8) can open its own
 * database beside `pages` here when it needs to commit with the pages.
 *
 * Keys are the 16-byte big-endian address, so LMDB's byte order is address
 * order and a scan is a cursor walk. A value is one binary record:
 *
 *   0     format (1)      1..7  zero
 *   8..15 version, u64 big-endian
 *   16..31 file-system attribute
 *   32..  page data (PAGE_BYTES)
 *
 * Durability as in lmdb-node-store.ts: transactions with overlappingSync
 * off, so a write has been flushed when the call returns (putMany) or its
 * promise resolves (putManyDurably, committed by LMDB's write thread).
 */
import type { Database, RootDatabase } from 'lmdb';
import { LmdbFile, storageError } from './lmdb-file.js';
import { MangroveError } from '../../bus/errors.js';
import { addressFromKey, addressKey, checkAddress, checkPageAddress, formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import { checkBatch, checkPagesMax, checkScanLimit, FS_ATTR_BYTES, fullError, SCAN_PAGES_MAX, staleError, STORE_PAGES_MAX_DEFAULT } from '../../actors/storage/page-store.js';
import type { PageEntry, PageStore, PageStoreOptions, StoredPage } from '../../actors/storage/page-store.js';

/** The environment file inside the data directory (lmdb adds `-lock` beside it). */
export const PAGES_FILE = 'pages.mdb';

const RECORD_FORMAT = 1;
const VERSION_AT = 8;
const ATTRS_AT = 16;
const DATA_AT = ATTRS_AT + FS_ATTR_BYTES;
export const RECORD_BYTES = DATA_AT + PAGE_BYTES;

type PageDb = Database<Buffer, Uint8Array>;

export class LmdbPageStore extends LmdbFile implements PageStore {
  private constructor(
    dir: string,
    env: RootDatabase,
    private readonly db: PageDb,
    private readonly pagesMax: number,
  ) {
    super(dir, env, 'the page store');
  }

  /** Opens (creating if needed) the disk cache in the data directory `dir`. */
  static open(dir: string, options: PageStoreOptions = {}): LmdbPageStore {
    const pagesMax = checkPagesMax(options.pagesMax ?? STORE_PAGES_MAX_DEFAULT);
    return this.openIn(dir, PAGES_FILE, 'the page store', 4, (env) => new LmdbPageStore(dir, env, env.openDB<Buffer, Uint8Array>({ name: 'pages', keyEncoding: 'binary', encoding: 'binary' }), pagesMax));
  }

  get(addr: bigint): StoredPage | undefined {
    const key = addressKey(checkPageAddress(addr));
    const raw = this.attempt(`cannot read page ${formatAddress(addr)} from`, () => this.db.getBinary(key));
    return raw === undefined ? undefined : this.decode(addr, raw);
  }

  has(addr: bigint): boolean {
    const key = addressKey(checkPageAddress(addr));
    return this.attempt(`cannot read page ${formatAddress(addr)} from`, () => this.db.doesExist(key));
  }

  put(addr: bigint, page: StoredPage): void {
    this.putMany([{ addr, page }]);
  }

  putMany(entries: readonly PageEntry[]): void {
    checkBatch(entries);
    this.checkOpen();
    if (entries.length === 0) return;
    this.attempt('cannot write pages to', () => this.env.transactionSync(() => this.write(entries)));
  }

  /** LMDB's asynchronous transaction: its write thread commits and syncs (overlappingSync off) before the promise resolves. */
  async putManyDurably(entries: readonly PageEntry[]): Promise<void> {
    checkBatch(entries);
    this.checkOpen();
    if (entries.length === 0) return;
    try {
      await this.env.transaction(() => this.write(entries));
    } catch (err) {
      throw storageError(this.dir, 'cannot write pages to', err);
    }
  }

  /** The writes of one commit, inside its transaction. */
  private write(entries: readonly PageEntry[]): void {
    // Every check before the first write; a throw aborts the transaction anyway.
    let added = 0;
    for (const { addr, page } of entries) {
      const stored = this.storedVersion(addr);
      if (stored === undefined) added++;
      else if (page.version < stored) throw staleError(addr, page.version, stored);
    }
    if (added > 0 && this.entryCount() + added > this.pagesMax) throw fullError(this.pagesMax);
    for (const { addr, page } of entries) this.db.putSync(addressKey(addr), encode(page));
  }

  delete(addr: bigint): boolean {
    const key = addressKey(checkPageAddress(addr));
    return this.attempt(`cannot delete page ${formatAddress(addr)} from`, () => this.db.removeSync(key));
  }

  capacity(): number {
    return this.pagesMax;
  }

  count(): number {
    return this.attempt('cannot count the pages in', () => this.entryCount());
  }

  bytesUsed(): number {
    return this.count() * PAGE_BYTES;
  }

  scan(from = 0n, limit = SCAN_PAGES_MAX): PageEntry[] {
    const start = addressKey(checkAddress(from));
    checkScanLimit(limit);
    return this.attempt('cannot scan the pages in', () => {
      const out: PageEntry[] = [];
      for (const { key, value } of this.db.getRange({ start, limit })) {
        const addr = addressFromKey(key);
        out.push({ addr, page: this.decode(addr, value) });
      }
      return out;
    });
  }

  private storedVersion(addr: bigint): number | undefined {
    const raw = this.db.getBinary(addressKey(addr));
    return raw === undefined ? undefined : this.decode(addr, raw).version;
  }

  private entryCount(): number {
    const stats = this.db.getStats() as { entryCount?: unknown };
    if (typeof stats.entryCount !== 'number') throw new MangroveError('E_STORAGE', `LMDB gave no page count for ${this.dir}`);
    return stats.entryCount;
  }

  private decode(addr: bigint, raw: Uint8Array): StoredPage {
    const damaged = (why: string) =>
      new MangroveError('E_STORAGE', `page ${formatAddress(addr)} in the page store in ${this.dir} is damaged (${why}); delete it and fetch it from a replica`);
    if (raw.byteLength !== RECORD_BYTES) throw damaged(`${raw.byteLength} bytes, not ${RECORD_BYTES}`);
    if (raw[0] !== RECORD_FORMAT) throw damaged(`record format ${raw[0]}`);
    const version = new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getBigUint64(VERSION_AT);
    if (version > BigInt(Number.MAX_SAFE_INTEGER)) throw damaged(`version ${version}`);
    // Copies into plain arrays (a Buffer's slice would share memory): the caller owns them.
    return {
      data: new Uint8Array(raw.subarray(DATA_AT, DATA_AT + PAGE_BYTES)),
      version: Number(version),
      attrs: new Uint8Array(raw.subarray(ATTRS_AT, DATA_AT)),
    };
  }
}

function encode(page: StoredPage): Buffer {
  const record = Buffer.alloc(RECORD_BYTES);
  record[0] = RECORD_FORMAT;
  record.writeBigUInt64BE(BigInt(page.version), VERSION_AT);
  record.set(page.attrs, ATTRS_AT);
  record.set(page.data, DATA_AT);
  return record;
}
