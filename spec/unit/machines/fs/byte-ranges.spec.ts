/**
 * The byte-range lock table (M21): which locks conflict, which accesses a
 * lock forbids, and the lock page's layout, hostile pages included.
 */
import { expect } from 'chai';
import { encode } from 'cbor-x';
import { MangroveError } from '../../../../bus/errors.js';
import { PAGE_BYTES } from '../../../../machines/memory/address.js';
import {
  accessAllowed,
  checkRange,
  checkRangeLock,
  conflicts,
  decodeRangeLocks,
  encodeRangeLocks,
  RANGE_LOCK_ID_BYTES_MAX,
  RANGE_LOCKS_HEADER_BYTES,
  RANGE_LOCKS_MAX,
  withLock,
  withoutLock,
  withoutNodes,
  withoutOwner,
  type RangeLock,
  type RangeLockMode,
} from '../../../../machines/fs/byte-ranges.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { forSeeds } from '../../../helpers/sim-checks.js';

const EOF_AND_BEYOND = Number.MAX_SAFE_INTEGER;

const lock = (owner: string, start: number, end: number, mode: RangeLockMode = 'exclusive', extra: Partial<RangeLock> = {}): RangeLock => ({
  start,
  end,
  mode,
  owner,
  node: 'n1',
  epoch: 1,
  key: 0,
  ...extra,
});

/** A page with a good header around any CBOR body, as a buggy or hostile writer might leave it. */
function pageOf(body: unknown): Uint8Array {
  const bytes = encode(body);
  const page = new Uint8Array(PAGE_BYTES);
  page.set([0x4d, 0x47, 0x42, 0x52, bytes.length >> 8, bytes.length & 0xff]);
  page.set(bytes, RANGE_LOCKS_HEADER_BYTES);
  return page;
}

/** The code of the MangroveError `f` throws; any other outcome fails the test. */
function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(MangroveError);
    return (e as MangroveError).code;
  }
  expect.fail('expected a MangroveError');
}

describe('byte-range lock table', () => {
  describe('conflicts (patent (d), (e); Win32 LockFileEx)', () => {
    it('lets shared locks of different owners share a range', () => {
      expect(conflicts([lock('a', 0, 10, 'shared')], lock('b', 5, 15, 'shared'))).to.deep.equal([]);
    });

    it('refuses an exclusive lock over another owner’s shared one, and a shared one over an exclusive', () => {
      const shared = lock('a', 0, 10, 'shared');
      const exclusive = lock('a', 0, 10, 'exclusive');
      expect(conflicts([shared], lock('b', 9, 20, 'exclusive'))).to.deep.equal([shared]);
      expect(conflicts([exclusive], lock('b', 0, 1, 'shared'))).to.deep.equal([exclusive]);
      expect(conflicts([exclusive], lock('b', 2, 3, 'exclusive'))).to.deep.equal([exclusive]);
    });

    it('applies the same rules to one owner: its shared locks may overlap, nothing overlaps its exclusive lock', () => {
      expect(conflicts([lock('a', 0, 10, 'shared')], lock('a', 0, 10, 'shared'))).to.deep.equal([]);
      expect(conflicts([lock('a', 0, 10, 'shared')], lock('a', 5, 6, 'exclusive'))).to.have.length(1);
      expect(conflicts([lock('a', 0, 10, 'exclusive')], lock('a', 5, 6, 'shared'))).to.have.length(1);
      expect(conflicts([lock('a', 0, 10, 'exclusive')], lock('a', 0, 10, 'exclusive'))).to.have.length(1);
    });

    it('never lets adjacent ranges conflict', () => {
      const table = [lock('a', 10, 20), lock('b', 30, 40)];
      expect(conflicts(table, lock('c', 0, 10))).to.deep.equal([]);
      expect(conflicts(table, lock('c', 20, 30))).to.deep.equal([]);
      expect(conflicts(table, lock('c', 40, 41))).to.deep.equal([]);
      expect(conflicts(table, lock('c', 19, 31))).to.deep.equal(table);
    });

    it('locks beyond the end of the file like anywhere else (patent (b))', () => {
      const toEof = lock('a', 1 << 20, EOF_AND_BEYOND);
      expect(conflicts([toEof], lock('b', 2 ** 40, 2 ** 40 + 1))).to.deep.equal([toEof]);
      expect(conflicts([toEof], lock('b', 0, 1 << 20))).to.deep.equal([]);
      expect(conflicts([lock('a', 2 ** 50, 2 ** 50 + 4096)], lock('b', 0, EOF_AND_BEYOND, 'shared'))).to.have.length(1);
    });

    it('refuses empty, reversed, negative and fractional ranges E_BAD_ARGUMENT', () => {
      for (const [s, e] of [[5, 5], [6, 5], [-1, 5], [0.5, 2], [0, 2.5], [0, Infinity], [0, NaN], [0, 2 ** 53]]) {
        expect(codeOf(() => checkRange(s, e)), `[${s}, ${e})`).to.equal('E_BAD_ARGUMENT');
      }
      expect(codeOf(() => conflicts([], lock('a', 3, 3)))).to.equal('E_BAD_ARGUMENT');
      expect(() => checkRange(0, 1)).not.to.throw();
      expect(() => checkRange(0, EOF_AND_BEYOND)).not.to.throw();
    });

    it('refuses a record with an overlong id, a bad key or epoch E_BAD_ARGUMENT', () => {
      const long = 'x'.repeat(RANGE_LOCK_ID_BYTES_MAX + 1);
      for (const extra of [{ owner: long }, { node: long }, { owner: '' }, { owner: 'é'.repeat(33) }, { key: -1 }, { key: 2 ** 32 }, { epoch: 0.5 }]) {
        expect(codeOf(() => checkRangeLock(lock('a', 0, 1, 'shared', extra))), JSON.stringify(extra)).to.equal('E_BAD_ARGUMENT');
      }
      expect(() => checkRangeLock(lock('x'.repeat(64), 0, 1, 'shared', { key: 2 ** 32 - 1 }))).not.to.throw();
    });
  });

  describe('access checks (patent (c), on every read and write)', () => {
    const table = [lock('x', 0, 100, 'exclusive'), lock('s', 200, 300, 'shared')];

    it('forbids other owners reading or writing under an exclusive lock, and allows its owner both', () => {
      expect(accessAllowed(table, 'b', 50, 51, 'read')).to.equal(table[0]);
      expect(accessAllowed(table, 'b', 99, 150, 'write')).to.equal(table[0]);
      expect(accessAllowed(table, 'x', 0, 100, 'read')).to.equal(undefined);
      expect(accessAllowed(table, 'x', 0, 100, 'write')).to.equal(undefined);
    });

    it('lets other owners read under a shared lock but not write', () => {
      expect(accessAllowed(table, 'b', 250, 260, 'read')).to.equal(undefined);
      expect(accessAllowed(table, 'b', 250, 260, 'write')).to.equal(table[1]);
      expect(accessAllowed(table, 's', 250, 260, 'write')).to.equal(undefined);
    });

    it('lets an advisory (POSIX) lock forbid no access, though it conflicts with locks as any does', () => {
      const advisory = [lock('p', 0, 100, 'exclusive', { advisory: true }), lock('q', 200, 300, 'shared', { advisory: true })];
      expect(accessAllowed(advisory, 'b', 50, 51, 'read')).to.equal(undefined);
      expect(accessAllowed(advisory, 'b', 0, 300, 'write')).to.equal(undefined);
      expect(conflicts(advisory, lock('b', 50, 60, 'shared'))).to.deep.equal([advisory[0]]);
      expect(conflicts(advisory, lock('b', 250, 260, 'exclusive', { advisory: true }))).to.deep.equal([advisory[1]]);
      expect(conflicts(advisory, lock('b', 250, 260, 'shared', { advisory: true }))).to.deep.equal([]);
    });

    it('allows accesses beside the locks, and empty ones anywhere', () => {
      expect(accessAllowed(table, 'b', 100, 200, 'write')).to.equal(undefined);
      expect(accessAllowed(table, 'b', 300, EOF_AND_BEYOND, 'write')).to.equal(undefined);
      expect(accessAllowed(table, 'b', 50, 50, 'write')).to.equal(undefined);
      expect(codeOf(() => accessAllowed(table, 'b', 50, 40, 'read'))).to.equal('E_BAD_ARGUMENT');
    });
  });

  describe('changes', () => {
    it('adds a compatible lock, and calls adding a conflicting one a bug', () => {
      const t = withLock([lock('a', 0, 10, 'shared')], lock('b', 5, 15, 'shared'));
      expect(t.map((l) => l.owner)).to.deep.equal(['a', 'b']);
      expect(codeOf(() => withLock(t, lock('c', 0, 1)))).to.equal('E_INTERNAL');
    });

    it('refuses the lock past RANGE_LOCKS_MAX E_BUSY', () => {
      const full = Array.from({ length: RANGE_LOCKS_MAX }, (_, i) => lock(`h${i}`, i * 10, i * 10 + 10));
      expect(codeOf(() => withLock(full, lock('late', 1e6, 1e6 + 1)))).to.equal('E_BUSY');
    });

    it('removes exactly the named range of the named owner, once', () => {
      const table = [lock('a', 0, 10, 'shared'), lock('a', 0, 10, 'shared'), lock('b', 0, 10, 'shared'), lock('a', 20, 30)];
      const once = withoutLock(table, 'a', 0, 10);
      expect(once.removed).to.equal(true);
      expect(once.table).to.deep.equal([table[1], table[2], table[3]]);
      expect(withoutLock(table, 'a', 0, 9)).to.deep.equal({ table, removed: false });
      expect(withoutLock(table, 'c', 0, 10).removed).to.equal(false);
      expect(withoutOwner(table, 'a')).to.deep.equal([table[2]]);
    });

    it('drops the records of nodes that failed or restarted', () => {
      const table = [lock('a', 0, 1, 'shared', { node: 'n1', epoch: 1 }), lock('b', 0, 1, 'shared', { node: 'n2', epoch: 1 }), lock('c', 0, 1, 'shared', { node: 'n3', epoch: 7 })];
      const live = new Map([['n1', 1], ['n3', 8]]);
      const { table: kept, dropped } = withoutNodes(table, (node, epoch) => live.get(node) === epoch);
      expect(kept).to.deep.equal([table[0]]);
      expect(dropped).to.equal(2);
      expect(withoutNodes(table, () => true)).to.deep.equal({ table, dropped: 0 });
    });
  });

  describe('the lock page', () => {
    it('round-trips a table, and reads an all-zero page as empty', () => {
      const table = [
        lock('h-1', 0, 4096, 'shared', { key: 7, epoch: 3 }),
        lock('h-2', 0, 4096, 'shared'),
        lock('h-3', 2 ** 40, EOF_AND_BEYOND, 'exclusive', { node: 'node-b', key: 2 ** 32 - 1, epoch: 2 ** 40 }),
        lock('h-4', 8192, 8193, 'exclusive', { advisory: true }),
      ];
      const page = encodeRangeLocks(table);
      expect(page.length).to.equal(PAGE_BYTES);
      expect(decodeRangeLocks(page)).to.deep.equal(table);
      expect(decodeRangeLocks(encodeRangeLocks([]))).to.deep.equal([]);
      expect(decodeRangeLocks(pageOf([[0, 10, 1, 'a', 'n1', 1, 0]]))).to.deep.equal([lock('a', 0, 10)]);
      expect(decodeRangeLocks(pageOf([[0, 10, 1, 'a', 'n1', 1, 0, 1]]))).to.deep.equal([lock('a', 0, 10, 'exclusive', { advisory: true })]);
      expect(decodeRangeLocks(new Uint8Array(PAGE_BYTES))).to.deep.equal([]);
    });

    it('fits RANGE_LOCKS_MAX records of the largest size, and refuses one more E_BUSY', () => {
      expect(RANGE_LOCKS_MAX).to.equal(24);
      const id = (i: number) => `${i}`.padStart(RANGE_LOCK_ID_BYTES_MAX, 'z');
      const worst = (i: number) => lock(id(i), EOF_AND_BEYOND - 2 * (i + 1), EOF_AND_BEYOND - 2 * i, 'exclusive', { node: id(i), epoch: EOF_AND_BEYOND, key: 2 ** 32 - 1, advisory: true });
      const table = Array.from({ length: RANGE_LOCKS_MAX }, (_, i) => worst(i));
      expect(decodeRangeLocks(encodeRangeLocks(table))).to.deep.equal(table);
      const err = (() => {
        try {
          encodeRangeLocks([...table, worst(RANGE_LOCKS_MAX)]);
        } catch (e) {
          return e as MangroveError;
        }
        return undefined;
      })();
      expect(err?.code).to.equal('E_BUSY');
      expect(err?.message).to.match(/too many byte-range locks on one file/);
    });

    it('refuses a malformed record E_BAD_ARGUMENT rather than writing it', () => {
      expect(codeOf(() => encodeRangeLocks([lock('a', 5, 5)]))).to.equal('E_BAD_ARGUMENT');
    });

    it('calls a page that is not a lock table E_CORRUPT', () => {
      const good = encodeRangeLocks([lock('a', 0, 10), lock('b', 10, 20)]);
      const damaged = (f: (p: Uint8Array) => void) => {
        const p = good.slice();
        f(p);
        return p;
      };
      const cases: [string, Uint8Array][] = [
        ['bad magic', damaged((p) => (p[0] = 0x4e))],
        ['zero length', damaged((p) => (p[4] = p[5] = 0))],
        ['length past the page', damaged((p) => (p[4] = 0xff))],
        ['torn body', damaged((p) => (p[5] -= 1))],
        ['data past the body', damaged((p) => (p[PAGE_BYTES - 1] = 1))],
        ['short page', good.subarray(0, 100)],
        ['not a list', pageOf({ a: 1 })],
        ['not a record', pageOf([[0, 10, 1, 'a', 'n1', 1]])],
        ['a bad advisory mark', pageOf([[0, 10, 1, 'a', 'n1', 1, 0, 0]])],
        ['a record too long', pageOf([[0, 10, 1, 'a', 'n1', 1, 0, 1, 1]])],
        ['a bad mode', pageOf([[0, 10, 2, 'a', 'n1', 1, 0]])],
        ['an empty range', pageOf([[10, 10, 1, 'a', 'n1', 1, 0]])],
        ['a number for an id', pageOf([[0, 10, 1, 7, 'n1', 1, 0]])],
        ['a fractional start', pageOf([[0.5, 10, 1, 'a', 'n1', 1, 0]])],
        ['conflicting records', pageOf([[0, 10, 1, 'a', 'n1', 1, 0], [5, 20, 0, 'b', 'n1', 1, 0]])],
      ];
      for (const [why, page] of cases) expect(codeOf(() => decodeRangeLocks(page)), why).to.equal('E_CORRUPT');
    });

    it('survives 1,000 random pages: a table or E_CORRUPT, never another exception', () => {
      forSeeds([0x5eed], fuzz);
    });
  });
});

/** 1,000 pages: random, random CBOR behind a good header, and real tables with bits flipped. */
function fuzz(seed: number): void {
  const rnd = new SeededRandom(seed);
  const template = encodeRangeLocks([lock('a', 0, 10, 'shared'), lock('b', 5, 15, 'shared'), lock('c', 20, EOF_AND_BEYOND)]);
  const length = new DataView(template.buffer).getUint16(4);
  let decoded = 0;
  for (let i = 0; i < 1000; i++) {
    let page: Uint8Array;
    const kind = i % 4;
    if (kind === 0) {
      page = rnd.bytes(PAGE_BYTES);
    } else if (kind === 1) {
      // Magic and a plausible length, random body: reaches the CBOR decoder.
      page = new Uint8Array(PAGE_BYTES);
      const n = 1 + rnd.int(200);
      page.set(template.subarray(0, 4));
      new DataView(page.buffer).setUint16(4, n);
      page.set(rnd.bytes(n), RANGE_LOCKS_HEADER_BYTES);
    } else {
      // A real table with a few bytes flipped.
      page = template.slice();
      for (let f = 0; f < 1 + rnd.int(3); f++) page[rnd.int(RANGE_LOCKS_HEADER_BYTES + length)] ^= 1 << rnd.int(8);
    }
    try {
      const table = decodeRangeLocks(page);
      decoded++;
      for (const l of table) checkRangeLock(l);
      expect(decodeRangeLocks(encodeRangeLocks(table))).to.deep.equal(table);
    } catch (e) {
      if (!(e instanceof MangroveError && e.code === 'E_CORRUPT')) {
        throw new Error(`page ${i} threw ${String(e)}`);
      }
    }
  }
  // Both outcomes happen: a flipped key or epoch still reads as a table.
  expect(decoded).to.be.within(1, 999);
}
