/**
 * Group commit (actors/pages/group-commit.ts): concurrent durable writes share one
 * store commit, each caller learns the version now durable, a newer stored
 * version is never overwritten, and a refused commit fails every caller in
 * it and changes nothing.
 */
import { expect } from 'chai';
import { GROUP_COMMIT_WAITING_MAX, GroupCommit } from '../../../../actors/pages/group-commit.js';
import { FS_ATTR_BYTES, type PageEntry } from '../../../../actors/storage/page-store.js';
import { MemoryPageStore } from '../../../../runtime/storage/memory-pages.js';
import { PAGE_BYTES } from '../../../../machines/memory/address.js';
import { MangroveError } from '../../../../bus/errors.js';

const page = (fill: number, version: number, attr = 0) => ({ data: new Uint8Array(PAGE_BYTES).fill(fill), version, attrs: new Uint8Array(FS_ATTR_BYTES).fill(attr) });
const at = (i: number) => BigInt(i) * BigInt(PAGE_BYTES);

/** A memory store that counts its commits. */
class CountingStore extends MemoryPageStore {
  commits = 0;
  override putMany(entries: readonly PageEntry[]): void {
    this.commits++;
    super.putMany(entries);
  }
}

/** A store that commits off the event loop, each commit finishing only when the spec says. */
class SlowDiskStore extends MemoryPageStore {
  readonly commitsOffLoop: PageEntry[][] = [];
  private finishers: (() => void)[] = [];
  putManyDurably(entries: readonly PageEntry[]): Promise<void> {
    this.commitsOffLoop.push([...entries]);
    return new Promise((resolve, reject) => {
      this.finishers.push(() => {
        try {
          this.putMany(entries);
          resolve();
        } catch (err) {
          reject(err);
        }
      });
    });
  }
  /** The disk finishes the commit in flight. */
  finish(): void {
    this.finishers.shift()?.();
  }
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('actors/pages/group-commit', () => {
  it('off the event loop: one commit in flight, the writes that come meanwhile (over several turns) make the next one, each answered when its own is durable', async () => {
    const store = new SlowDiskStore();
    const gc = new GroupCommit(store);
    const answered: number[] = [];
    const first = gc.put(at(1), page(1, 1)).then((v) => answered.push(v));
    await turn();
    expect(store.commitsOffLoop.length, 'the first commit started').to.equal(1);
    const later = [2, 3, 4].map((i) => gc.put(at(i), page(i, 2)).then((v) => answered.push(v * 10)));
    await turn();
    const last = gc.put(at(5), page(5, 3)).then((v) => answered.push(v * 100));
    await turn();
    expect(store.commitsOffLoop.length, 'nothing more starts while one commit is in flight').to.equal(1);
    expect(answered, 'nobody is answered before the disk is done').to.deep.equal([]);
    store.finish();
    await first;
    // The next commit starts on the turn after the first one finished.
    await turn();
    await turn();
    expect(answered).to.deep.equal([1]);
    expect(store.commitsOffLoop.length).to.equal(2);
    expect(store.commitsOffLoop[1].map((e) => e.addr)).to.deep.equal([at(2), at(3), at(4), at(5)]);
    store.finish();
    await Promise.all([...later, last]);
    expect(answered).to.deep.equal([1, 20, 20, 20, 300]);
    expect(gc.commits).to.equal(2);
    expect(store.get(at(5))!.version).to.equal(3);
  });

  it('off the event loop: a refused commit fails its callers, and the next batch still commits', async () => {
    const store = new SlowDiskStore({ pagesMax: 1 });
    const gc = new GroupCommit(store);
    const refused = gc.put(at(1), page(1, 1)).then(() => 'ok', (err: MangroveError) => err.code);
    const refused2 = gc.put(at(2), page(2, 1)).then(() => 'ok', (err: MangroveError) => err.code);
    await turn();
    store.finish();
    expect(await refused).to.equal('E_FULL');
    expect(await refused2).to.equal('E_FULL');
    const ok = gc.put(at(3), page(3, 1));
    await turn();
    store.finish();
    expect(await ok).to.equal(1);
  });

  it('commits the writes of one turn together, and answers each with its durable version', async () => {
    const store = new CountingStore();
    const gc = new GroupCommit(store);
    const versions = await Promise.all([1, 2, 3, 4, 5].map((i) => gc.put(at(i), page(i, 7))));
    expect(versions).to.deep.equal([7, 7, 7, 7, 7]);
    expect(store.commits).to.equal(1);
    expect(gc.commits).to.equal(1);
    expect(gc.pages).to.equal(5);
    expect(store.get(at(3))!.data[0]).to.equal(3);
  });

  it('keeps the stored attribute when a write offers none (zeros for a page not stored yet)', async () => {
    const store = new CountingStore();
    store.put(at(1), page(9, 1, 0xcd));
    const gc = new GroupCommit(store);
    const { attrs: _a, ...bare } = page(1, 2);
    const { attrs: _b, ...fresh } = page(2, 1);
    expect(await Promise.all([gc.put(at(1), bare), gc.put(at(2), fresh)])).to.deep.equal([2, 1]);
    expect(store.get(at(1))!.attrs[0]).to.equal(0xcd);
    expect(store.get(at(1))!.data[0]).to.equal(1);
    expect(store.get(at(2))!.attrs.every((b) => b === 0)).to.equal(true);
    expect(store.commits).to.equal(2);
  });

  it('keeps the newest of several writes to one page in a batch', async () => {
    const store = new CountingStore();
    const gc = new GroupCommit(store);
    const answers = await Promise.all([gc.put(at(1), page(1, 3)), gc.put(at(1), page(2, 5)), gc.put(at(1), page(3, 4))]);
    expect(answers).to.deep.equal([5, 5, 5]);
    expect(store.get(at(1))).to.deep.include({ version: 5 });
    expect(store.get(at(1))!.data[0]).to.equal(2);
  });

  it('never goes back: a newer stored version stays, taking only the new attributes', async () => {
    const store = new CountingStore();
    store.put(at(1), page(9, 10));
    const gc = new GroupCommit(store);
    expect(await gc.put(at(1), page(1, 4, 0xab))).to.equal(10);
    const stored = store.get(at(1))!;
    expect(stored.version).to.equal(10);
    expect(stored.data[0]).to.equal(9);
    expect(stored.attrs[0]).to.equal(0xab);
  });

  it('fails every caller of a refused commit and changes nothing', async () => {
    const store = new CountingStore({ pagesMax: 2 });
    const gc = new GroupCommit(store);
    const outcomes = await Promise.all([1, 2, 3].map((i) => gc.put(at(i), page(i, 1)).catch((e: unknown) => e)));
    for (const err of outcomes) expect((err as MangroveError).code).to.equal('E_FULL');
    expect(store.count()).to.equal(0);
    // The next batch is independent of the failed one.
    expect(await gc.put(at(1), page(1, 1))).to.equal(1);
  });

  it(`holds at most ${GROUP_COMMIT_WAITING_MAX} writes in one batch: the next is refused with E_BUSY at once, and the batch commits whole`, async () => {
    const store = new CountingStore({ pagesMax: GROUP_COMMIT_WAITING_MAX });
    const gc = new GroupCommit(store);
    const accepted = Array.from({ length: GROUP_COMMIT_WAITING_MAX }, (_, i) => gc.put(at(i), page(1, 1)));
    const refused = await gc.put(at(GROUP_COMMIT_WAITING_MAX), page(2, 1)).catch((e: unknown) => e);
    expect((refused as MangroveError).code).to.equal('E_BUSY');
    expect(await Promise.all(accepted)).to.have.length(GROUP_COMMIT_WAITING_MAX);
    expect(store.count()).to.equal(GROUP_COMMIT_WAITING_MAX);
    expect(store.has(at(GROUP_COMMIT_WAITING_MAX))).to.equal(false);
    // The bound is per batch: the next turn takes writes again.
    expect(await gc.put(at(0), page(3, 2))).to.equal(2);
  });
});
