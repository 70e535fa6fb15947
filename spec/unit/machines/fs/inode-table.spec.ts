/**
 * A fileset's inode table (machines/fs/inode-table.ts; SPEC M19, M22): free
 * inodes found at once through a free list of groups, a bitmap of those in
 * use, groups materialized whole, the page layout, and verify-and-repair of
 * the free list. A random run is checked against a Set model.
 */
import { expect } from 'chai';
import { formatAddress, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { encodeFsPage } from '../../../../machines/fs/fs-page.js';
import {
  decodeTablePage,
  emptyTablePage,
  encodeTablePage,
  GROUP_INODES,
  GROUPS_PER_PAGE,
  inodeAddress,
  INODES_PER_TABLE_PAGE,
  isUsed,
  locate,
  nextFree,
  rebuildFreeList,
  release,
  ROOT_INO,
  TABLE_PAGES_MAX,
  take,
  usedInodes,
  type TablePage,
} from '../../../../machines/fs/inode-table.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { errorOf } from '../../../helpers/error-of.js';
import { forSeeds } from '../../../helpers/sim-checks.js';

const ADDR = (5n << 64n) + 0x10000000000n;
/** Group g's reservation: 128-bit, one group's pages apart. */
const groupBase = (page: number, g: number) => (7n << 64n) + BigInt(page * GROUPS_PER_PAGE + g) * BigInt(GROUP_INODES * PAGE_BYTES);

/** The free list from its head, as group numbers (stops at a repeat). */
function freeList(t: TablePage): number[] {
  const out: number[] = [];
  for (let g = t.freeHead; g >= 0 && !out.includes(g); g = t.groups[g].nextFree) out.push(g);
  return out;
}

/** Hands out the next free inode as a caller does: materialize its group if needed, then take it. */
function allocate(t: TablePage): number {
  const free = nextFree(t);
  if (!free) throw new Error('the page is full');
  if (free.needsGroup) t.groups[free.group].base = groupBase(t.page, free.group);
  take(t, free.ino);
  return free.ino;
}

describe('machines/fs/inode-table', () => {
  it('never hands out inode 0: inode 1 (the root) comes first on page 0, in group 0, which needs a reservation', () => {
    const t = emptyTablePage(0);
    expect(ROOT_INO).to.equal(1);
    expect(nextFree(t)).to.deep.equal({ ino: 1, group: 0, needsGroup: true });
    take(t, 1);
    expect(nextFree(t)).to.deep.equal({ ino: 2, group: 0, needsGroup: true });
    t.groups[0].base = groupBase(0, 0);
    expect(nextFree(t)).to.deep.equal({ ino: 2, group: 0, needsGroup: false });
    expect(isUsed(t, 1)).to.equal(true);
    expect(isUsed(t, 2)).to.equal(false);
    expect(usedInodes(t)).to.deep.equal([1]);
    // Another page starts at its first inode.
    expect(nextFree(emptyTablePage(3))).to.deep.equal({ ino: 3 * INODES_PER_TABLE_PAGE, group: 0, needsGroup: true });
  });

  it('fills groups in order; a full group leaves the free list, and goes back to its head when one inode is released', () => {
    const t = emptyTablePage(0);
    expect(freeList(t)).to.deep.equal([...Array(GROUPS_PER_PAGE).keys()]);
    const first = Array.from({ length: GROUP_INODES - 1 }, () => allocate(t));
    expect(first).to.deep.equal(Array.from({ length: GROUP_INODES - 1 }, (_, i) => i + 1));
    expect(t.freeHead).to.equal(1);
    expect(t.groups[0].nextFree).to.equal(-1);
    expect(nextFree(t)).to.deep.equal({ ino: GROUP_INODES, group: 1, needsGroup: true });
    const second = Array.from({ length: GROUP_INODES }, () => allocate(t));
    expect(second[0]).to.equal(GROUP_INODES);
    expect(second[GROUP_INODES - 1]).to.equal(2 * GROUP_INODES - 1);
    expect(freeList(t)).to.deep.equal([...Array(GROUPS_PER_PAGE).keys()].slice(2));
    release(t, 5);
    expect(freeList(t).slice(0, 2)).to.deep.equal([0, 2]);
    expect(nextFree(t)).to.deep.equal({ ino: 5, group: 0, needsGroup: false });
    // Releasing in a group that was not full leaves the list as it is.
    release(t, 6);
    expect(freeList(t).slice(0, 2)).to.deep.equal([0, 2]);
    expect(allocate(t)).to.equal(5);
    expect(allocate(t)).to.equal(6);
    expect(freeList(t)[0]).to.equal(2);
    expect(rebuildFreeList(t, false)).to.deep.equal([]);
  });

  it('fills a whole page (6,143 inodes on page 0), then answers null; one release makes room again', () => {
    const t = emptyTablePage(0);
    for (let i = 1; i < INODES_PER_TABLE_PAGE; i++) expect(allocate(t)).to.equal(i);
    expect(nextFree(t)).to.equal(null);
    expect(t.freeHead).to.equal(-1);
    expect(usedInodes(t)).to.have.length(INODES_PER_TABLE_PAGE - 1);
    expect(rebuildFreeList(t, false)).to.deep.equal([]);
    const ino = 50 * GROUP_INODES + 7;
    release(t, ino);
    expect(t.freeHead).to.equal(50);
    expect(nextFree(t)).to.deep.equal({ ino, group: 50, needsGroup: false });
    // Page 1 holds inode 6144 (its first): all 6,144 of it are usable.
    const t1 = emptyTablePage(1);
    let n = 0;
    while (nextFree(t1)) (allocate(t1), n++);
    expect(n).to.equal(INODES_PER_TABLE_PAGE);
    expect(usedInodes(t1)[0]).to.equal(INODES_PER_TABLE_PAGE);
  });

  it('refuses to take an inode in use: E_CORRUPT', () => {
    const t = emptyTablePage(0);
    take(t, 1);
    expect(errorOf(() => take(t, 1))).to.equal('E_CORRUPT: inode 1 is in use already');
  });

  it('answers an inode address as its group base + slot * 4096, null before the group is reserved', () => {
    const t = emptyTablePage(2);
    const ino = 2 * INODES_PER_TABLE_PAGE + 5 * GROUP_INODES + 9;
    expect(inodeAddress(t, ino)).to.equal(null);
    t.groups[5].base = groupBase(2, 5);
    expect(inodeAddress(t, ino)).to.equal(groupBase(2, 5) + 9n * 4096n);
    expect(inodeAddress(t, ino - 9)).to.equal(groupBase(2, 5));
    expect(inodeAddress(t, ino + GROUP_INODES - 10)).to.equal(groupBase(2, 5) + BigInt((GROUP_INODES - 1) * PAGE_BYTES));
    expect(groupBase(2, 5) >> 64n).to.equal(7n);
  });

  it('locates inodes 1 to the last of the table, and refuses others E_BAD_ARGUMENT', () => {
    expect(locate(1)).to.deep.equal({ page: 0, group: 0, slot: 1 });
    expect(locate(GROUP_INODES)).to.deep.equal({ page: 0, group: 1, slot: 0 });
    expect(locate(INODES_PER_TABLE_PAGE - 1)).to.deep.equal({ page: 0, group: GROUPS_PER_PAGE - 1, slot: GROUP_INODES - 1 });
    expect(locate(INODES_PER_TABLE_PAGE)).to.deep.equal({ page: 1, group: 0, slot: 0 });
    const last = TABLE_PAGES_MAX * INODES_PER_TABLE_PAGE - 1;
    expect(locate(last)).to.deep.equal({ page: TABLE_PAGES_MAX - 1, group: GROUPS_PER_PAGE - 1, slot: GROUP_INODES - 1 });
    for (const bad of [0, -1, 1.5, NaN, Infinity, last + 1, 2 ** 53]) {
      expect(errorOf(() => locate(bad)), String(bad)).to.equal(`E_BAD_ARGUMENT: inode ${bad} is out of range`);
    }
    expect(errorOf(() => release(emptyTablePage(0), 0))).to.match(/^E_BAD_ARGUMENT: /);
  });

  it('round-trips a page through its layout; a page never written is a fresh one', () => {
    const t = emptyTablePage(9);
    for (let i = 0; i < 200; i++) allocate(t);
    release(t, 9 * INODES_PER_TABLE_PAGE + 70);
    const data = encodeTablePage(t, ADDR);
    expect(data.length).to.equal(PAGE_BYTES);
    expect(decodeTablePage(data, ADDR, 9)).to.deep.equal(t);
    expect(decodeTablePage(new Uint8Array(PAGE_BYTES), ADDR, 4)).to.deep.equal(emptyTablePage(4));
    // A page with every group reserved, at the largest addresses, still fits.
    const full = emptyTablePage(TABLE_PAGES_MAX - 1);
    full.groups.forEach((g, i) => ((g.base = (1n << 128n) - BigInt((i + 1) * GROUP_INODES * PAGE_BYTES)), g.used.fill(0xff), (g.nextFree = i === 0 ? -1 : GROUPS_PER_PAGE - 1)));
    expect(decodeTablePage(encodeTablePage(full, ADDR), ADDR, TABLE_PAGES_MAX - 1)).to.deep.equal(full);
  });

  it('calls a page that claims another index, or breaks the layout, E_CORRUPT', () => {
    const data = encodeTablePage(emptyTablePage(3), ADDR);
    expect(errorOf(() => decodeTablePage(data, ADDR, 4))).to.equal('E_CORRUPT: inode table page 4 says it is page 3');
    const wire = (t: TablePage) => [t.page, t.freeHead, t.groups.map((g) => [null, g.used, g.nextFree])] as [number, number, unknown[]];
    const bad: [string, unknown][] = [
      ['a free head past the groups', (() => { const w = wire(emptyTablePage(0)); w[1] = GROUPS_PER_PAGE; return w; })()],
      ['a group missing', (() => { const w = wire(emptyTablePage(0)); w[2].pop(); return w; })()],
      ['a short bitmap', (() => { const w = wire(emptyTablePage(0)); w[2][0] = [null, new Uint8Array(7), 1]; return w; })()],
      ['a 15-byte address', (() => { const w = wire(emptyTablePage(0)); w[2][0] = [new Uint8Array(15), new Uint8Array(8), 1]; return w; })()],
      ['a page index past the table', (() => { const w = wire(emptyTablePage(0)); w[0] = TABLE_PAGES_MAX; return w; })()],
    ];
    for (const [why, body] of bad) {
      expect(errorOf(() => decodeTablePage(encodeFsPage('inode_table', body)!, ADDR, 0)), why).to.match(new RegExp(`^E_CORRUPT: the inode table page at ${formatAddress(ADDR)} has a malformed body`));
    }
  });

  it('finds a free list that disagrees with the bitmap, repairs it, and hands inodes out again', () => {
    type Damage = (t: TablePage) => void;
    const damages: [string, Damage][] = [
      ['emptied', (t) => (t.freeHead = -1)],
      ['a group skipped', (t) => (t.groups[1].nextFree = 3)],
      ['a loop', (t) => (t.groups[3].nextFree = 1)],
      ['a full group on it', (t) => ((t.groups[0].nextFree = t.freeHead), (t.freeHead = 0))],
      ['a self-loop at the head', (t) => (t.groups[t.freeHead].nextFree = t.freeHead)],
    ];
    for (const [what, damage] of damages) {
      const t = emptyTablePage(0);
      // Group 0 full; others partly used.
      for (let i = 0; i < GROUP_INODES + 10; i++) allocate(t);
      const used = new Set(usedInodes(t));
      damage(t);
      expect(rebuildFreeList(t, false), what).to.deep.equal(['inode table page 0: the free-inode list did not match the bitmap']);
      expect(rebuildFreeList(t, true), what).to.have.length(1);
      expect(rebuildFreeList(t, false), `${what}, after repair`).to.deep.equal([]);
      expect(freeList(t), what).to.deep.equal([...Array(GROUPS_PER_PAGE).keys()].slice(1));
      // Handing out continues with inodes not in use, until the page is full.
      while (nextFree(t)) {
        const ino = allocate(t);
        expect(used.has(ino), `${what}: inode ${ino} handed out twice`).to.equal(false);
        used.add(ino);
      }
      expect(used.size, what).to.equal(INODES_PER_TABLE_PAGE - 1);
    }
    // A list whose head group is full cannot hand out: E_CORRUPT, not an inode in use.
    const t = emptyTablePage(0);
    for (let i = 1; i < GROUP_INODES; i++) allocate(t);
    t.freeHead = 0;
    expect(errorOf(() => nextFree(t))).to.equal('E_CORRUPT: inode table page 0 lists group 0 as free, and it is full');
  });

  it('agrees with a Set model over random takes and releases, the page full at times (seeded)', () => {
    forSeeds([0x1_40de, 2, 3], randomRun);
  });
});

function randomRun(seed: number): void {
  const rnd = new SeededRandom(seed);
  const page = rnd.int(3);
  let t = emptyTablePage(page);
  const model = new Set<number>();
  const usable = page === 0 ? INODES_PER_TABLE_PAGE - 1 : INODES_PER_TABLE_PAGE;
  let fullSeen = 0;
  for (let op = 0; op < 12_000; op++) {
    // Fill to the brim in the first third, then churn.
    const takeP = op < 7000 ? 0.97 : 0.5;
    if (model.size < usable && (model.size === 0 || rnd.next() < takeP)) {
      const free = nextFree(t)!;
      if (!free) expect.fail(`op ${op}: no free inode with ${model.size} of ${usable} in use`);
      if (model.has(free.ino)) expect.fail(`op ${op}: inode ${free.ino} handed out while in use`);
      expect(free.needsGroup, `op ${op}`).to.equal(t.groups[free.group].base === null);
      allocate(t);
      model.add(free.ino);
    } else {
      const inos = [...model];
      const ino = inos[rnd.int(inos.length)];
      release(t, ino);
      model.delete(ino);
    }
    if (model.size === usable) {
      fullSeen++;
      expect(nextFree(t), `op ${op}: a full page`).to.equal(null);
    }
    if (op % 500 === 0) {
      expect(usedInodes(t), `op ${op}`).to.deep.equal([...model].sort((a, b) => a - b));
      expect(rebuildFreeList(t, false), `op ${op}`).to.deep.equal([]);
      // What a node writes, it reads back.
      t = decodeTablePage(encodeTablePage(t, ADDR), ADDR, page);
      for (const ino of model) if (!isUsed(t, ino)) expect.fail(`op ${op}: inode ${ino} not marked in use`);
    }
  }
  expect(fullSeen, 'the page was full at some point').to.be.above(0);
  expect(usedInodes(t)).to.deep.equal([...model].sort((a, b) => a - b));
  expect(rebuildFreeList(t, false)).to.deep.equal([]);
}
