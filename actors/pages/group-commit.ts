/**
 * Group commit for the disk cache (M11): the durable page writes that
 * arrive while one commit is being prepared go to disk in one synchronous
 * `putMany`, so N concurrent flushes cost one disk sync, not N. Each caller
 * is answered only once its page is durable, with the version the store now
 * holds (a newer one already there wins: versions never go back).
 *
 * A batch is cut at the end of the current turn of the event loop
 * (`setImmediate`), which in the simulator is a deterministic point too.
 */
import { present } from '../../bus/assert.js';
import { MangroveError } from '../../bus/errors.js';
import { PUT_MANY_PAGES_MAX, type PageStore, type StoredPage } from '../storage/page-store.js';

/**
 * Durable writes one batch holds before `put` refuses more (E_BUSY): about
 * 64 MiB of page data waiting for one turn of the event loop. A batch is cut
 * every turn, so only a flood within one turn reaches it.
 */
export const GROUP_COMMIT_WAITING_MAX = 16_384;

interface Waiting {
  page: StoredPage;
  resolve(version: number): void;
  reject(err: unknown): void;
}

export class GroupCommit {
  private batch = new Map<bigint, Waiting[]>();
  /** Puts in `batch`, over every address. */
  private waiting = 0;
  private scheduled = false;
  /** Commits made and pages written, for status and benchmarks. */
  commits = 0;
  pages = 0;

  constructor(private readonly store: PageStore) {}

  /** Resolves with the version durable for `addr` once it is on disk. */
  put(addr: bigint, page: StoredPage): Promise<number> {
    if (this.waiting >= GROUP_COMMIT_WAITING_MAX) {
      return Promise.reject(new MangroveError('E_BUSY', `${GROUP_COMMIT_WAITING_MAX} durable writes already wait for this node's next disk commit; try again`));
    }
    this.waiting++;
    return new Promise<number>((resolve, reject) => {
      const list = this.batch.get(addr) ?? [];
      list.push({ page, resolve, reject });
      this.batch.set(addr, list);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.commit());
  }

  private commit(): void {
    this.scheduled = false;
    const all = [...this.batch.entries()];
    this.batch = new Map();
    this.waiting = 0;
    for (let i = 0; i < all.length; i += PUT_MANY_PAGES_MAX) this.commitSome(all.slice(i, i + PUT_MANY_PAGES_MAX));
  }

  private commitSome(items: [bigint, Waiting[]][]): void {
    const entries: { addr: bigint; page: StoredPage }[] = [];
    const outcome = new Map<bigint, number>();
    for (const [addr, waiting] of items) {
      const newest = waiting.reduce((a, b) => (b.page.version >= a.page.version ? b : a));
      const stored = this.store.get(addr);
      if (stored && stored.version > newest.page.version) {
        // Newer data is already durable: keep it, with the newest attributes offered.
        entries.push({ addr, page: { ...stored, attrs: waiting[waiting.length - 1].page.attrs } });
        outcome.set(addr, stored.version);
      } else {
        entries.push({ addr, page: newest.page });
        outcome.set(addr, newest.page.version);
      }
    }
    try {
      this.store.putMany(entries);
      this.commits++;
      this.pages += entries.length;
    } catch (err) {
      const refused = err instanceof MangroveError ? err : new MangroveError('E_STORAGE', `the disk cache refused a commit of ${entries.length} pages: ${String(err)}`);
      for (const [, waiting] of items) for (const w of waiting) w.reject(refused);
      return;
    }
    for (const [addr, waiting] of items) {
      const version = present(outcome.get(addr), 'every address of the batch has an outcome');
      for (const w of waiting) w.resolve(version);
    }
  }
}
