/**
 * The super-root and fileset pages (machines/fs/fileset.ts; SPEC M18): their
 * layouts round-trip at 128-bit addresses, a super-root page holds
 * FILESETS_PER_PAGE filesets of the longest names, and malformed pages are
 * E_CORRUPT.
 */
import { expect } from 'chai';
import { formatAddress, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { encodeFsPage } from '../../../../machines/fs/fs-page.js';
import {
  COMMENT_CHARS_MAX,
  decodeFileset,
  decodeSuperRoot,
  encodeFileset,
  encodeSuperRoot,
  FILESETS_PER_PAGE,
  type Fileset,
  type FilesetRecord,
  type SuperRoot, superRootFits } from '../../../../machines/fs/fileset.js';
import { FILESET_NAME_CHARS_MAX } from '../../../../machines/fs/names.js';
import { errorOf } from '../../../helpers/error-of.js';

const A = (page: number) => (5n << 64n) + 0x10000000000n + BigInt(page) * 4096n;
const ADDR = A(1);

const record = (id: number, name: string, state: FilesetRecord['state'] = 'online'): FilesetRecord => ({ id, name, addr: A(100 + id), state });

function fileset(extra: Partial<Fileset> = {}): Fileset {
  return {
    id: 2,
    name: 'home',
    state: 'online',
    createdMs: 1_700_000_000_000,
    rootAddr: A(7),
    tableBase: (9n << 100n) + 4096n,
    tablePages: 3,
    tableFree: 1,
    attrs: { readOnly: false, comment: '' },
    ...extra,
  };
}

describe('machines/fs/fileset', () => {
  it('round-trips a super-root page with filesets in every state, alone and chained', () => {
    const s: SuperRoot = { nextId: 4, filesets: [record(1, 'default'), record(2, 'home', 'offline'), record(3, 'scratch', 'deleting')], next: null };
    expect(decodeSuperRoot(encodeSuperRoot(s, ADDR), ADDR)).to.deep.equal(s);
    const chained: SuperRoot = { ...s, next: (1n << 127n) + 4096n };
    const back = decodeSuperRoot(encodeSuperRoot(chained, ADDR), ADDR)!;
    expect(back).to.deep.equal(chained);
    expect(back.filesets[2].addr).to.equal(A(103));
    expect(decodeSuperRoot(encodeSuperRoot({ nextId: 0, filesets: [], next: null }, ADDR), ADDR)).to.deep.equal({ nextId: 0, filesets: [], next: null });
  });

  it(`holds ${FILESETS_PER_PAGE} filesets of ${FILESET_NAME_CHARS_MAX}-character names, every number and address at its largest, and refuses one more E_INTERNAL`, () => {
    const longest = (i: number) => String(i).padStart(FILESET_NAME_CHARS_MAX, 'f');
    const filesets = Array.from({ length: FILESETS_PER_PAGE }, (_, i): FilesetRecord => ({ id: 2 ** 32 - 1 - i, name: longest(i), addr: (1n << 128n) - BigInt((i + 1) * 4096), state: 'deleting' }));
    const s: SuperRoot = { nextId: 2 ** 32 - 1, filesets, next: (1n << 128n) - 4096n };
    const page = encodeSuperRoot(s, ADDR);
    expect(page.length).to.equal(PAGE_BYTES);
    expect(decodeSuperRoot(page, ADDR)).to.deep.equal(s);
    const more = { ...s, filesets: [...filesets, record(1, 'one-more')] };
    expect(errorOf(() => encodeSuperRoot(more, ADDR))).to.equal(`E_INTERNAL: a super-root page holds at most ${FILESETS_PER_PAGE} filesets`);
  });

  it('says when names of wide characters make fewer filesets fit a page (the file system then starts another)', () => {
    const wide = (n: number) => Array.from({ length: n }, (_, i) => record(i, String(i).padStart(FILESET_NAME_CHARS_MAX, 'é')));
    const fits = (n: number) => superRootFits({ nextId: n, filesets: wide(n), next: null });
    expect(fits(1)).to.equal(true);
    expect(fits(FILESETS_PER_PAGE)).to.equal(false);
    let most = 1;
    while (fits(most + 1)) most++;
    const s: SuperRoot = { nextId: most, filesets: wide(most), next: null };
    expect(decodeSuperRoot(encodeSuperRoot(s, ADDR), ADDR)).to.deep.equal(s);
    const ascii = Array.from({ length: FILESETS_PER_PAGE }, (_, i) => record(i, String(i).padStart(FILESET_NAME_CHARS_MAX, 'a')));
    expect(superRootFits({ nextId: 0, filesets: ascii, next: null })).to.equal(true);
  });

  it('round-trips a fileset page: state, attributes, root and table at 128-bit addresses', () => {
    for (const f of [
      fileset(),
      fileset({ state: 'offline', attrs: { readOnly: true, comment: 'c'.repeat(COMMENT_CHARS_MAX) } }),
      fileset({ id: 2 ** 32 - 1, name: 'ü'.repeat(FILESET_NAME_CHARS_MAX), state: 'deleting', createdMs: 8.64e15, tablePages: 4096, tableFree: 4095 }),
    ]) {
      const back = decodeFileset(encodeFileset(f, ADDR), ADDR);
      expect(back).to.deep.equal(f);
      expect(back!.tableBase >> 100n).to.equal(9n);
    }
  });

  it('reads pages never written as null', () => {
    expect(decodeSuperRoot(new Uint8Array(PAGE_BYTES), ADDR)).to.equal(null);
    expect(decodeFileset(new Uint8Array(PAGE_BYTES), ADDR)).to.equal(null);
  });

  it('calls malformed or misplaced pages E_CORRUPT, naming the address', () => {
    const where = formatAddress(ADDR);
    // Each read as the other's kind.
    expect(errorOf(() => decodeFileset(encodeSuperRoot({ nextId: 1, filesets: [], next: null }, ADDR), ADDR))).to.match(new RegExp(`^E_CORRUPT: the fileset page at ${where} holds a page of kind 1, not 2`));
    expect(errorOf(() => decodeSuperRoot(encodeFileset(fileset(), ADDR), ADDR))).to.match(new RegExp(`^E_CORRUPT: the super root page at ${where} holds a page of kind 2, not 1`));
    const badFilesets: [string, Fileset][] = [
      ['a name too long', fileset({ name: 'x'.repeat(FILESET_NAME_CHARS_MAX + 1) })],
      ['an empty name', fileset({ name: '' })],
      ['a comment too long', fileset({ attrs: { readOnly: false, comment: 'c'.repeat(COMMENT_CHARS_MAX + 1) } })],
      ['an unknown state', fileset({ state: 'mounted' as Fileset['state'] })],
      ['a negative table size', fileset({ tablePages: -1 })],
    ];
    for (const [why, f] of badFilesets) {
      expect(errorOf(() => decodeFileset(encodeFileset(f, ADDR), ADDR)), why).to.match(new RegExp(`^E_CORRUPT: the fileset page at ${where} has a malformed body`));
    }
    const badRoots: [string, unknown][] = [
      ['too many filesets', { nextId: 1, filesets: Array.from({ length: FILESETS_PER_PAGE + 1 }, (_, i) => ({ id: i, name: `f${i}`, addr: new Uint8Array(16), state: 'online' })), next: null }],
      ['a short address', { nextId: 1, filesets: [{ id: 1, name: 'a', addr: new Uint8Array(8), state: 'online' }], next: null }],
      ['a bignum next', { nextId: 1, filesets: [], next: 5n }],
      ['no nextId', { filesets: [], next: null }],
    ];
    for (const [why, body] of badRoots) {
      expect(errorOf(() => decodeSuperRoot(encodeFsPage('super_root', body)!, ADDR)), why).to.match(new RegExp(`^E_CORRUPT: the super root page at ${where} has a malformed body`));
    }
  });
});
