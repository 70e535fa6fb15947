/**
 * Group commit for the disk cache (M11): the durable page writes that
 * arrive while one commit is being prepared go to disk in one synchronous
 * `putMany`, so N concurrent flushes cost one disk sync, not N. Each caller
 * is answered only once its page is durable, with the version the store now
 * holds (a newer one already there wins: versions never go back).
 *
 * A batch is cut at the end of the current turn of the event loop
 * (`setImmediate`), which in the simulator is a deterministic point too.
 * Where the store commits off the event loop (`putManyDurably`: LMDB's
 * write thread), one commit is in flight at a time and the node serves on
 * while the disk syncs: the flushes that arrive meanwhile, from any client
 * and for any page, make the next batch. So a sync costs its time once for
 * as many pages as came during the last one (pipelined group commit), and a
 * durable write no longer stops the node's other work for a disk sync.
 */
import { present } from '../../bus/assert.js';
import { MangroveError } from '../../bus/errors.js';
import { FS_ATTR_BYTES, PUT_MANY_PAGES_MAX, type PageEntry, type PageStore, type StoredPage } from '../storage/page-store.js';

/**
 * Durable writes one batch holds before `put` refuses more (E_BUSY): about
 * 64 MiB of page data waiting for one turn of the event loop. A batch is cut
 * every turn, so only a flood within one turn reaches it.
 */
export const GROUP_COMMIT_WAITING_MAX = 16_384;

/** A page offered for the disk: without `attrs`, it keeps the attribute stored (zeros for a page not yet stored). */
export type OfferedPage = Omit<StoredPage, 'attrs'> & { attrs?: Uint8Array };

const ZERO_ATTRS = new Uint8Array(FS_ATTR_BYTES);

interface Waiting {
  page: OfferedPage;
  resolve(version: number): void;
  reject(err: unknown): void;
}

export class GroupCommit {
  private batch = new Map<bigint, Waiting[]>();
  /** Puts in `batch`, over every address. */
  private waiting = 0;
  private scheduled = false;
  /** A commit made off the event loop that has not finished: the next batch waits for it. */
  private committing = false;
  /** Commits made and pages written, for status and benchmarks. */
  commits = 0;
  pages = 0;

  constructor(private readonly store: PageStore) {}

  /** Resolves with the version durable for `addr` once it is on disk. */
  put(addr: bigint, page: OfferedPage): Promise<number> {
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
    if (this.scheduled || this.committing) return;
    this.scheduled = true;
    setImmediate(() => this.commit());
  }

  private commit(): void {
    this.scheduled = false;
    const all = [...this.batch.entries()];
    this.batch = new Map();
    this.waiting = 0;
    const parts: [bigint, Waiting[]][][] = [];
    for (let i = 0; i < all.length; i += PUT_MANY_PAGES_MAX) parts.push(all.slice(i, i + PUT_MANY_PAGES_MAX));
    if (!this.store.putManyDurably) {
      for (const items of parts) this.commitSome(items);
      return;
    }
    this.committing = true;
    const done = (): void => {
      this.committing = false;
      if (this.waiting > 0) this.schedule();
    };
    // The parts one after another: each is prepared against what the one before made durable.
    parts.reduce((before, items) => before.then(() => this.commitSomeDurably(items)), Promise.resolve()).then(done, done);
  }

  /** Commits one part on the event loop (putMany). */
  private commitSome(items: [bigint, Waiting[]][]): void {
    const entries = this.prepare(items);
    try {
      this.store.putMany(entries.map(([entry]) => entry));
    } catch (err) {
      return this.refuse(items, entries.length, err);
    }
    this.answer(items, entries);
  }

  /** Commits one part off the event loop (putManyDurably); never rejects: each waiter hears how it went. */
  private async commitSomeDurably(items: [bigint, Waiting[]][]): Promise<void> {
    const entries = this.prepare(items);
    try {
      await present(this.store.putManyDurably, 'a store that commits off the event loop').call(this.store, entries.map(([entry]) => entry));
    } catch (err) {
      return this.refuse(items, entries.length, err);
    }
    this.answer(items, entries);
  }

  /** What to write for each address, with the version that will then be durable: the newest offered, unless newer is stored. */
  private prepare(items: [bigint, Waiting[]][]): [PageEntry, number][] {
    const entries: [PageEntry, number][] = [];
    for (const [addr, waiting] of items) {
      const newest = waiting.reduce((a, b) => (b.page.version >= a.page.version ? b : a));
      // The one read of what is stored: its version decides, and it gives the attribute when none was offered.
      const stored = this.store.get(addr);
      const attrs = waiting[waiting.length - 1].page.attrs ?? stored?.attrs ?? ZERO_ATTRS;
      if (stored && stored.version > newest.page.version) {
        // Newer data is already durable: keep it, with the newest attributes offered.
        entries.push([{ addr, page: { ...stored, attrs } }, stored.version]);
      } else {
        entries.push([{ addr, page: { data: newest.page.data, version: newest.page.version, attrs: newest.page.attrs ?? attrs } }, newest.page.version]);
      }
    }
    return entries;
  }

  private answer(items: [bigint, Waiting[]][], entries: [PageEntry, number][]): void {
    this.commits++;
    this.pages += entries.length;
    items.forEach(([, waiting], i) => {
      for (const w of waiting) w.resolve(entries[i][1]);
    });
  }

  private refuse(items: [bigint, Waiting[]][], pages: number, err: unknown): void {
    const refused = err instanceof MangroveError ? err : new MangroveError('E_STORAGE', `the disk cache refused a commit of ${pages} pages: ${String(err)}`);
    for (const [, waiting] of items) for (const w of waiting) w.reject(refused);
  }
}
