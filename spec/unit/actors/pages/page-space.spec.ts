/**
 * A node's part of the address space (actors/pages/page-space.ts): reservations
 * in its arena never hand an address out twice, also after a restart (the
 * high-water mark is in the directory's root page, on disk); carving a range
 * splits entries around it, spans entries without gaps, refuses holes and
 * checks every piece before changing anything.
 */
import { expect } from 'chai';
import { MemoryPageStore } from '../../../../runtime/storage/memory-pages.js';
import { arenaBase, arenaOf, DATA_OFFSET, PageSpace } from '../../../../actors/pages/page-space.js';
import { MangroveError } from '../../../../bus/errors.js';
import { PAGE_BYTES } from '../../../../machines/memory/address.js';
import type { DirectoryEntry } from '../../../../machines/memory/directory.js';

const P = BigInt(PAGE_BYTES);
const ARENA = 3n;
const materialize = (old: DirectoryEntry): DirectoryEntry => ({ ...old, state: 'materialized', copies: 2, holders: ['n1', 'n2'] });
const shape = (space: PageSpace) => [...space.directory(ARENA).entries()].map((e) => [(e.start - arenaBase(ARENA) - DATA_OFFSET) / P, e.pages, e.state]);

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof MangroveError) return err.code;
    throw err;
  }
  return 'no error';
}

describe('actors/pages/page-space', () => {
  it('reserves fresh ranges in the arena, above the directory\'s own pages', () => {
    const space = new PageSpace(new MemoryPageStore());
    const a = space.reserve(ARENA, 4);
    const b = space.reserve(ARENA, 2);
    expect(arenaOf(a.first)).to.equal(ARENA);
    expect(a.first).to.equal(arenaBase(ARENA) + DATA_OFFSET);
    expect(b.first).to.equal(a.first + 4n * P);
    expect(space.lookup(a.first + P)).to.deep.include({ start: a.first, pages: 4, state: 'reserved' });
  });

  it('never reuses an address after a restart: the high-water mark is on disk', () => {
    const store = new MemoryPageStore();
    const first = new PageSpace(store).reserve(ARENA, 8);
    const again = new PageSpace(store);
    const next = again.reserve(ARENA, 1);
    expect(next.first).to.equal(first.first + 8n * P);
    expect(again.lookup(first.first)).to.deep.include({ pages: 8 });
  });

  it('carves a range out of a reservation, splitting it around the range', () => {
    const space = new PageSpace(new MemoryPageStore());
    const r = space.reserve(ARENA, 10);
    space.carve(r.first + 3n * P, 4, materialize);
    expect(shape(space)).to.deep.equal([
      [0n, 3, 'reserved'],
      [3n, 4, 'materialized'],
      [7n, 3, 'reserved'],
    ]);
    expect(space.materializedPages()).to.equal(4);
    // A range across several entries, without a gap, is carved as one.
    space.carve(r.first + P, 8, (old) => (old.state === 'materialized' ? { ...old, state: 'reserved', copies: 0, holders: [] } : old));
    expect(shape(space).map(([, pages]) => pages).reduce((a, b) => (a as number) + (b as number))).to.equal(10);
    expect(space.materializedPages()).to.equal(0);
  });

  it('refuses a range outside reservations or with a hole, changing nothing', () => {
    const space = new PageSpace(new MemoryPageStore());
    const a = space.reserve(ARENA, 2);
    const b = space.reserve(ARENA, 2);
    space.carve(b.first, 2, () => null); // unreserve b: a hole after a
    const before = shape(space);
    expect(codeOf(() => space.carve(a.first, 3, materialize))).to.equal('E_NOT_RESERVED');
    expect(codeOf(() => space.carve(b.first, 1, materialize))).to.equal('E_NOT_RESERVED');
    // A piece refused by the change itself: nothing is carved.
    expect(
      codeOf(() =>
        space.carve(a.first, 2, () => {
          throw new MangroveError('E_EXISTS', 'already allocated');
        }),
      ),
    ).to.equal('E_EXISTS');
    expect(shape(space)).to.deep.equal(before);
  });
});
