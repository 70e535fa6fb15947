import { expect } from 'chai';
import { PAGE_BYTES } from '../../../../machines/memory/address.js';
import { RamCache, type NewPage } from '../../../../actors/pages/ram-cache.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { errorOf } from '../../../helpers/error-of.js';

const SEED = 1_997_0613;
const P = BigInt(PAGE_BYTES);
const at = (i: number) => BigInt(i) * P;

function newPage(version: number, extra: Partial<NewPage> = {}): NewPage {
  return { data: new Uint8Array(PAGE_BYTES).fill(version & 0xff), version, ...extra };
}

describe('actors/pages/ram-cache', () => {
  it('takes a budget of whole pages only', () => {
    for (const b of [0, PAGE_BYTES - 1, PAGE_BYTES + 1, -PAGE_BYTES, 1.5 * PAGE_BYTES, Number.NaN]) {
      expect(errorOf(() => new RamCache(b)), String(b)).to.match(/^E_BAD_ARGUMENT: /);
    }
    expect(new RamCache(PAGE_BYTES).stats().budgetBytes).to.equal(PAGE_BYTES);
  });

  it('holds a page with its version, dirty and volatile bits', () => {
    const c = new RamCache(4 * PAGE_BYTES);
    c.put(at(1), newPage(3, { dirty: true }));
    c.put(at(2), newPage(1, { volatile: true }));
    expect(c.get(at(1))).to.deep.include({ version: 3, dirty: true, volatile: false, pins: 0 });
    expect(c.get(at(1))?.data[0]).to.equal(3);
    expect(c.peek(at(2))).to.deep.include({ version: 1, dirty: false, volatile: true });
    expect(c.has(at(3))).to.equal(false);
    expect(c.get(at(3))).to.equal(undefined);
    expect(c.stats()).to.deep.equal({ pages: 2, bytes: 2 * PAGE_BYTES, dirty: 1, volatile: 1, pinned: 0, budgetBytes: 4 * PAGE_BYTES });
  });

  it('refuses wrong sizes, versions and unaligned addresses', () => {
    const c = new RamCache(4 * PAGE_BYTES);
    expect(errorOf(() => c.put(at(1), { data: new Uint8Array(PAGE_BYTES - 1), version: 1 }))).to.match(/^E_BAD_ARGUMENT: .*not 4095/);
    expect(errorOf(() => c.put(at(1), newPage(-1)))).to.match(/^E_BAD_ARGUMENT: /);
    expect(errorOf(() => c.put(at(1) + 1n, newPage(1)))).to.match(/^E_BAD_ADDRESS: /);
    expect(errorOf(() => c.markDirty(at(1), 1))).to.match(/^E_NOT_FOUND: /);
    expect(c.stats().pages).to.equal(0);
  });

  it('refuses a new page past the budget, and changes nothing', () => {
    const c = new RamCache(2 * PAGE_BYTES);
    c.put(at(1), newPage(1));
    c.put(at(2), newPage(1));
    expect(errorOf(() => c.put(at(3), newPage(1)))).to.match(/^E_FULL: the RAM cache is full \(8192 bytes\)/);
    c.put(at(2), newPage(2));
    expect(c.addresses()).to.deep.equal([at(1), at(2)]);
    expect(c.stats().bytes).to.equal(2 * PAGE_BYTES);
  });

  it('keeps least-recently-used order: get and put touch, peek does not', () => {
    const c = new RamCache(8 * PAGE_BYTES);
    for (const i of [1, 2, 3, 4]) c.put(at(i), newPage(1));
    c.get(at(2));
    c.peek(at(1));
    c.put(at(3), newPage(2));
    expect(c.addresses()).to.deep.equal([at(1), at(4), at(2), at(3)]);
  });

  it('moves a hit page to the newest end wherever it stood, and keeps the order of the rest', () => {
    const c = new RamCache(8 * PAGE_BYTES);
    for (const i of [1, 2, 3, 4, 5]) c.put(at(i), newPage(1));
    c.get(at(5)); // already the newest
    expect(c.addresses()).to.deep.equal([at(1), at(2), at(3), at(4), at(5)]);
    c.get(at(1)); // the oldest
    c.get(at(3)); // one in the middle
    expect(c.addresses()).to.deep.equal([at(2), at(4), at(5), at(1), at(3)]);
    c.remove(at(2));
    c.remove(at(3));
    c.remove(at(5));
    expect(c.addresses()).to.deep.equal([at(4), at(1)]);
    c.remove(at(4));
    c.remove(at(1));
    expect(c.addresses()).to.deep.equal([]);
    c.put(at(6), newPage(1));
    c.get(at(6));
    expect(c.addresses()).to.deep.equal([at(6)]);
  });

  it('walks its addresses in place, oldest first, the walker taking out the page it is at; pages added meanwhile wait for the next walk', () => {
    const c = new RamCache(8 * PAGE_BYTES);
    for (const i of [1, 2, 3, 4, 5]) c.put(at(i), newPage(1));
    c.get(at(2));
    expect([...c.oldestFirst()]).to.deep.equal(c.addresses());
    const seen: bigint[] = [];
    for (const a of c.oldestFirst()) {
      seen.push(a);
      if (a !== at(4)) c.remove(a);
      if (a === at(1)) c.put(at(6), newPage(1));
    }
    expect(seen).to.deep.equal([at(1), at(3), at(4), at(5), at(2)]);
    expect(c.addresses()).to.deep.equal([at(4), at(6)]);
    // A walk left early leaves the cache as it was.
    for (const a of c.oldestFirst()) if (a === at(4)) break;
    expect(c.addresses()).to.deep.equal([at(4), at(6)]);
    expect([...new RamCache(PAGE_BYTES).oldestFirst()]).to.deep.equal([]);
  });

  it('hands out a removed page that still reads as it was', () => {
    const c = new RamCache(4 * PAGE_BYTES);
    c.put(at(1), newPage(7, { dirty: true, volatile: true }));
    c.put(at(2), newPage(1));
    const gone = c.remove(at(1));
    expect(gone).to.deep.include({ version: 7, dirty: true, volatile: true, pins: 0 });
    expect(gone?.data[0]).to.equal(7);
    expect(c.stats()).to.deep.include({ pages: 1, dirty: 0, volatile: 0 });
  });

  it('makes room by dropping the least recently used clean pages, naming them', () => {
    const c = new RamCache(4 * PAGE_BYTES);
    for (const i of [1, 2, 3, 4]) c.put(at(i), newPage(1));
    c.get(at(1));
    expect(c.makeRoom(0)).to.deep.equal({ dropped: [], pageOut: [], shortBytes: 0 });
    expect(c.makeRoom(2 * PAGE_BYTES)).to.deep.equal({ dropped: [at(2), at(3)], pageOut: [], shortBytes: 0 });
    expect(c.addresses()).to.deep.equal([at(4), at(1)]);
    c.put(at(5), newPage(1));
    c.put(at(6), newPage(1));
    expect(c.stats().bytes).to.equal(4 * PAGE_BYTES);
  });

  it('hands dirty persistent pages out for page-out instead of dropping them', () => {
    const c = new RamCache(3 * PAGE_BYTES);
    c.put(at(1), newPage(1, { dirty: true }));
    c.put(at(2), newPage(1));
    c.put(at(3), newPage(4, { dirty: true }));
    expect(c.makeRoom(2 * PAGE_BYTES)).to.deep.equal({ dropped: [at(2)], pageOut: [at(1)], shortBytes: 0 });
    expect(c.peek(at(1))).to.deep.include({ dirty: true, version: 1 });
    // Written to disk at version 1; the next makeRoom may drop it.
    expect(c.markClean(at(1), 1)).to.equal(true);
    expect(c.makeRoom(2 * PAGE_BYTES)).to.deep.equal({ dropped: [at(1)], pageOut: [], shortBytes: 0 });
    // A write during the page-out: the written version is no longer the page's.
    c.markDirty(at(3), 5);
    expect(c.markClean(at(3), 4)).to.equal(false);
    expect(c.peek(at(3))).to.deep.include({ dirty: true, version: 5 });
    expect(c.makeRoom(3 * PAGE_BYTES)).to.deep.equal({ dropped: [], pageOut: [at(3)], shortBytes: 0 });
    expect(c.stats()).to.deep.include({ pages: 1, dirty: 1 });
    expect(c.markClean(at(9), 1)).to.equal(false);
  });

  it('never drops a volatile page to make room, and says how much it cannot free', () => {
    const c = new RamCache(3 * PAGE_BYTES);
    c.put(at(1), newPage(1, { volatile: true }));
    c.put(at(2), newPage(1, { volatile: true, dirty: true }));
    c.put(at(3), newPage(1));
    expect(c.makeRoom(2 * PAGE_BYTES)).to.deep.equal({ dropped: [at(3)], pageOut: [], shortBytes: PAGE_BYTES });
    expect(c.addresses()).to.deep.equal([at(1), at(2)]);
    expect(c.remove(at(1))).to.deep.include({ volatile: true, version: 1 });
    expect(c.makeRoom(2 * PAGE_BYTES)).to.deep.equal({ dropped: [], pageOut: [], shortBytes: 0 });
    expect(c.stats()).to.deep.include({ pages: 1, volatile: 1, dirty: 1 });
  });

  it('never drops or replaces a pinned page', () => {
    const c = new RamCache(2 * PAGE_BYTES);
    c.put(at(1), newPage(1));
    c.put(at(2), newPage(1, { dirty: true }));
    c.pin(at(1));
    c.pin(at(1));
    c.pin(at(2));
    expect(c.stats().pinned).to.equal(2);
    expect(c.makeRoom(PAGE_BYTES)).to.deep.equal({ dropped: [], pageOut: [], shortBytes: PAGE_BYTES });
    expect(errorOf(() => c.remove(at(1)))).to.match(/^E_BUSY: .*2 pins/);
    expect(errorOf(() => c.put(at(1), newPage(2)))).to.match(/^E_BUSY: /);
    c.unpin(at(1));
    c.unpin(at(1));
    expect(errorOf(() => c.unpin(at(1)))).to.match(/^E_BAD_ARGUMENT: .*not pinned/);
    expect(c.makeRoom(PAGE_BYTES)).to.deep.equal({ dropped: [at(1)], pageOut: [], shortBytes: 0 });
    expect(c.stats()).to.deep.include({ pages: 1, pinned: 1 });
  });

  it('never takes an older version; the same version keeps a dirty bit, a newer one replaces it', () => {
    const c = new RamCache(2 * PAGE_BYTES);
    c.put(at(1), newPage(5, { dirty: true }));
    expect(errorOf(() => c.put(at(1), newPage(4)))).to.match(/^E_STALE: .*cached at version 5; version 4 is older/);
    expect(errorOf(() => c.markDirty(at(1), 4))).to.match(/^E_STALE: /);
    c.put(at(1), newPage(5));
    expect(c.peek(at(1))).to.deep.include({ version: 5, dirty: true });
    c.put(at(1), newPage(6));
    expect(c.peek(at(1))).to.deep.include({ version: 6, dirty: false });
    expect(c.stats().dirty).to.equal(0);
  });

  it('comes back within a lowered budget once its page-outs are done', () => {
    const c = new RamCache(6 * PAGE_BYTES);
    for (const i of [1, 2, 3, 4, 5, 6]) c.put(at(i), newPage(1, { dirty: i % 2 === 0 }));
    c.setBudget(2 * PAGE_BYTES);
    const room = c.makeRoom(0);
    expect(room).to.deep.equal({ dropped: [at(1), at(3)], pageOut: [at(2), at(4)], shortBytes: 0 });
    for (const a of room.pageOut) c.markClean(a, 1);
    expect(c.makeRoom(0).dropped).to.deep.equal([at(2), at(4)]);
    expect(c.stats()).to.deep.equal({ pages: 2, bytes: 2 * PAGE_BYTES, dirty: 1, volatile: 0, pinned: 0, budgetBytes: 2 * PAGE_BYTES });
    expect(c.dirtyPages()).to.deep.equal([at(6)]);
  });

  it('under a random workload loses no dirty or volatile page and keeps its budget (seeded)', () => {
    const rng = new SeededRandom(SEED);
    const budgetPages = 16;
    const c = new RamCache(budgetPages * PAGE_BYTES);
    /** What the caller knows it must still find in the cache: dirty or volatile pages it did not remove. */
    const mustKeep = new Set<bigint>();
    const disk = new Map<bigint, number>();
    for (let step = 0; step < 5000; step++) {
      const where = `seed ${SEED}, step ${step}`;
      const addr = at(rng.int(40));
      const held = c.peek(addr);
      const op = rng.int(6);
      if (op === 0 && held === undefined) {
        const room = c.makeRoom(PAGE_BYTES);
        for (const a of room.pageOut) {
          expect(c.peek(a), `${where}: page-out of ${a}`).to.deep.include({ dirty: true, volatile: false, pins: 0 });
          const v = c.peek(a)?.version ?? -1;
          disk.set(a, v);
          expect(c.markClean(a, v), where).to.equal(true);
          mustKeep.delete(a);
        }
        if (room.pageOut.length > 0) c.makeRoom(PAGE_BYTES);
        const volatile = rng.int(5) === 0;
        if (room.shortBytes > 0) {
          expect(errorOf(() => c.put(addr, newPage(1, { volatile }))), where).to.match(/^E_FULL: /);
        } else {
          c.put(addr, newPage((disk.get(addr) ?? 0) + 1, { volatile, dirty: volatile && rng.int(2) === 0 }));
          if (volatile) mustKeep.add(addr);
        }
      } else if (op === 1 && held !== undefined) {
        c.markDirty(addr, held.version + 1);
        mustKeep.add(addr);
      } else if (op === 2 && held !== undefined && held.pins < 3) {
        c.pin(addr);
      } else if (op === 3 && held !== undefined && held.pins > 0) {
        c.unpin(addr);
      } else if (op === 4 && held !== undefined && held.pins === 0 && rng.int(4) === 0) {
        c.remove(addr);
        mustKeep.delete(addr);
      } else if (op === 5) {
        c.get(addr);
      }
      const stats = c.stats();
      expect(stats.bytes, where).to.be.at.most(budgetPages * PAGE_BYTES);
      for (const a of mustKeep) expect(c.has(a), `${where}: ${a} was lost`).to.equal(true);
      const entries = c.addresses().map((a) => c.peek(a));
      expect(stats.dirty, where).to.equal(entries.filter((e) => e?.dirty).length);
      expect(stats.volatile, where).to.equal(entries.filter((e) => e?.volatile).length);
      expect(stats.pinned, where).to.equal(entries.filter((e) => (e?.pins ?? 0) > 0).length);
    }
  });

  it('under a random workload keeps exactly the order a plain list of uses gives (seeded)', () => {
    const rng = new SeededRandom(SEED + 1);
    const c = new RamCache(12 * PAGE_BYTES);
    /** Addresses, least recently used first: a page moves to the end when put or got, and leaves when removed or dropped. */
    let order: bigint[] = [];
    const use = (a: bigint) => (order = [...order.filter((x) => x !== a), a]);
    const leave = (gone: bigint[]) => (order = order.filter((x) => !gone.includes(x)));
    for (let step = 0; step < 5000; step++) {
      const where = `seed ${SEED + 1}, step ${step}`;
      const addr = at(rng.int(24));
      const held = c.peek(addr);
      const op = rng.int(7);
      if (op === 0 && (held?.pins ?? 0) === 0) {
        if (held === undefined) leave(c.makeRoom(PAGE_BYTES).dropped);
        const { bytes, budgetBytes } = c.stats();
        if (held !== undefined || bytes < budgetBytes) {
          c.put(addr, newPage((held?.version ?? 0) + 1, { dirty: rng.int(3) === 0, volatile: rng.int(8) === 0 }));
          use(addr);
        }
      } else if (op === 1 && held !== undefined) {
        c.get(addr);
        use(addr);
      } else if (op === 2 && held !== undefined && held.pins === 0) {
        c.remove(addr);
        leave([addr]);
      } else if (op === 3 && held !== undefined) {
        if (held.pins < 2) c.pin(addr);
        else c.unpin(addr);
      } else if (op === 4 && held !== undefined) {
        c.markClean(addr, held.version);
      } else if (op === 5) {
        leave(c.makeRoom(rng.int(4) * PAGE_BYTES).dropped);
      } else if (op === 6) {
        c.peek(at(rng.int(24)));
      }
      expect(c.addresses(), where).to.deep.equal(order);
      expect([...c.oldestFirst()], where).to.deep.equal(order);
      expect(c.dirtyPages(), where).to.deep.equal(order.filter((a) => c.peek(a)?.dirty));
    }
  });
});
