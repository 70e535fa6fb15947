/**
 * A stream's pages (machines/fs/stream.ts; SPEC M20): segments that double
 * (1, 2, 4, 8… pages), what a write must allocate, contiguous or sparse, what
 * a truncate frees, and the spans a stream refuses.
 */
import { expect } from 'chai';
import { PAGE_BYTES } from '../../../../machines/memory/address.js';
import {
  holdsPage,
  allocatedPages,
  checkSpan,
  emptyStream,
  isAllocated,
  pageAddress,
  SEGMENTS_MAX,
  segmentOf,
  segmentRange,
  segmentsBeyond,
  segmentsToAllocate,
  STREAM_BYTES_MAX,
  STREAM_RANGE_PAGES,
  type StreamDesc,
} from '../../../../machines/fs/stream.js';
import { errorOf } from '../../../helpers/error-of.js';

const P = PAGE_BYTES;
const BASE = (5n << 64n) + 0x10000000000n;
const withSegs = (segs: number, base: bigint | null = BASE): StreamDesc => ({ name: '', base, size: 0, segs });
const bits = (...segs: number[]) => segs.reduce((m, k) => m + 2 ** k, 0);

describe('machines/fs/stream', () => {
  it('puts page 0 in segment 0, pages 1-2 in segment 1, 3-6 in segment 2, 7-14 in 3', () => {
    const want = [0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4];
    expect(want.map((_, p) => segmentOf(p))).to.deep.equal(want);
    expect(segmentRange(0)).to.deep.equal({ first: 0, pages: 1 });
    expect(segmentRange(1)).to.deep.equal({ first: 1, pages: 2 });
    expect(segmentRange(2)).to.deep.equal({ first: 3, pages: 4 });
    expect(segmentRange(3)).to.deep.equal({ first: 7, pages: 8 });
  });

  it('agrees with segmentRange for every page of a stream, up to the last (integer arithmetic, no float edge)', () => {
    const lastPage = STREAM_BYTES_MAX / P - 1;
    let seg = 0;
    for (let p = 0; p <= lastPage; p++) {
      // Segment k starts at 2^k - 1: page p begins a segment exactly when p + 1 is a power of two.
      if (p > 0 && ((p + 1) & p) === 0) seg++;
      if (segmentOf(p) !== seg) expect.fail(`page ${p}: segment ${segmentOf(p)}, not ${seg}`);
    }
    expect(seg).to.equal(SEGMENTS_MAX - 1);
    const last = segmentRange(SEGMENTS_MAX - 1);
    expect(last.first + last.pages - 1).to.equal(lastPage);
    expect(last.first + last.pages).to.be.at.most(STREAM_RANGE_PAGES);
    expect(STREAM_BYTES_MAX).to.equal((2 ** SEGMENTS_MAX - 1) * P);
  });

  it('extends a stream written page by page with 1, 2, 4, 8… pages: the k-th extension allocates 2^(k-1)', () => {
    const s = emptyStream('');
    s.base = BASE;
    const extensions: { at: number; segs: number[] }[] = [];
    for (let page = 0; page < 1023; page++) {
      const want = segmentsToAllocate(s, page * P, (page + 1) * P);
      if (want.length === 0) {
        expect(isAllocated(s, page), `page ${page}`).to.equal(true);
        continue;
      }
      extensions.push({ at: page, segs: want });
      for (const k of want) s.segs |= 2 ** k;
      expect(isAllocated(s, page), `page ${page}`).to.equal(true);
    }
    expect(extensions.map((e) => e.segs)).to.deep.equal(Array.from({ length: 10 }, (_, k) => [k]));
    expect(extensions.map((e) => e.segs.reduce((n, k) => n + segmentRange(k).pages, 0))).to.deep.equal([1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
    expect(extensions.map((e) => e.at)).to.deep.equal([0, 1, 3, 7, 15, 31, 63, 127, 255, 511]);
    expect(allocatedPages(s)).to.equal(1023);
  });

  it('allocates, for a contiguous write, every missing segment from its first to the one it ends in', () => {
    const empty = withSegs(0);
    expect(segmentsToAllocate(empty, 0, 1)).to.deep.equal([0]);
    expect(segmentsToAllocate(empty, 0, P)).to.deep.equal([0]);
    expect(segmentsToAllocate(empty, 0, P + 1)).to.deep.equal([0, 1]);
    expect(segmentsToAllocate(empty, 0, 100 * P)).to.deep.equal([0, 1, 2, 3, 4, 5, 6]);
    // Pages 0-6 held: a write from page 5 to page 19 needs segments 3 (7-14) and 4 (15-30).
    expect(segmentsToAllocate(withSegs(bits(0, 1, 2)), 5 * P, 20 * P)).to.deep.equal([3, 4]);
    // Inside what is held: nothing; an empty write: nothing.
    expect(segmentsToAllocate(withSegs(bits(0, 1, 2)), 0, 7 * P)).to.deep.equal([]);
    expect(segmentsToAllocate(empty, 50 * P, 50 * P)).to.deep.equal([]);
  });

  it('allocates, for a sparse write far past the end, only the segments it lands in', () => {
    const one = withSegs(bits(0));
    // Page 1000 is in segment 9 (pages 511-1022).
    expect(segmentsToAllocate(one, 1000 * P, 1000 * P + 10)).to.deep.equal([9]);
    expect(segmentsToAllocate(one, 1000 * P, 1100 * P)).to.deep.equal([9, 10]);
    // The very last byte a stream may hold.
    expect(segmentsToAllocate(emptyStream(''), STREAM_BYTES_MAX - 1, STREAM_BYTES_MAX)).to.deep.equal([SEGMENTS_MAX - 1]);
    const sparse = withSegs(bits(0, 9));
    expect(isAllocated(sparse, 0)).to.equal(true);
    expect(isAllocated(sparse, 1)).to.equal(false);
    expect(isAllocated(sparse, 510)).to.equal(false);
    expect(isAllocated(sparse, 511)).to.equal(true);
    expect(isAllocated(sparse, 1022)).to.equal(true);
    expect(isAllocated(sparse, 1023)).to.equal(false);
    expect(allocatedPages(sparse)).to.equal(1 + 512);
  });

  it('frees on truncate the segments wholly past the new size, keeping a segment it cuts through', () => {
    const s = withSegs(bits(0, 1, 2, 3)); // pages 0-14
    expect(segmentsBeyond(s, 0)).to.deep.equal([0, 1, 2, 3]);
    expect(segmentsBeyond(s, 1)).to.deep.equal([1, 2, 3]);
    expect(segmentsBeyond(s, P)).to.deep.equal([1, 2, 3]);
    expect(segmentsBeyond(s, P + 1)).to.deep.equal([2, 3]);
    expect(segmentsBeyond(s, 3 * P)).to.deep.equal([2, 3]);
    expect(segmentsBeyond(s, 3 * P + 1)).to.deep.equal([3]);
    expect(segmentsBeyond(s, 15 * P)).to.deep.equal([]);
    expect(segmentsBeyond(s, 100 * P)).to.deep.equal([]);
    // Only allocated segments are freed.
    expect(segmentsBeyond(withSegs(bits(0, 3, 9)), 2 * P)).to.deep.equal([3, 9]);
    expect(segmentsBeyond(withSegs(0), 0)).to.deep.equal([]);
  });

  it('has no page allocated before the stream has a range; addresses pages from its base', () => {
    expect(isAllocated(withSegs(bits(0, 1), null), 0)).to.equal(false);
    expect(isAllocated(withSegs(0), 0)).to.equal(false);
    const s = withSegs(bits(0, 2));
    expect([0, 1, 2, 3, 6, 7].map((p) => isAllocated(s, p))).to.deep.equal([true, false, false, true, true, false]);
    expect(pageAddress(s, 0)).to.equal(BASE);
    expect(pageAddress(s, 5)).to.equal(BASE + 5n * BigInt(P));
    expect(pageAddress(s, 2 ** 20 - 2)).to.equal(BASE + BigInt(2 ** 20 - 2) * BigInt(P));
    expect(errorOf(() => pageAddress(withSegs(0, null), 0))).to.match(/^E_INTERNAL: a stream without a range has no pages/);
    expect(allocatedPages(withSegs(2 ** SEGMENTS_MAX - 1))).to.equal(2 ** SEGMENTS_MAX - 1);
    expect(allocatedPages(withSegs(0))).to.equal(0);
    expect(emptyStream('acl')).to.deep.equal({ name: 'acl', base: null, size: 0, segs: 0 });
  });

  it('knows its own allocated pages by address: not a page of another range, a freed segment, or an address inside a page', () => {
    const s = withSegs(bits(0, 2));
    expect(holdsPage(s, BASE)).to.equal(true);
    expect(holdsPage(s, BASE + 3n * BigInt(P))).to.equal(true);
    expect(holdsPage(s, BASE + 1n * BigInt(P)), 'segment 1 is not allocated').to.equal(false);
    expect(holdsPage(s, BASE + 7n * BigInt(P)), 'past the last segment').to.equal(false);
    expect(holdsPage(s, BASE + 1n), 'inside page 0').to.equal(false);
    expect(holdsPage(s, BASE - BigInt(P)), 'before the range').to.equal(false);
    expect(holdsPage(s, BASE + BigInt(2 ** 20) * BigInt(P)), 'the next range').to.equal(false);
    expect(holdsPage(withSegs(bits(0), null), BASE)).to.equal(false);
  });

  it('refuses a negative or fractional offset or length E_BAD_ARGUMENT and a span past the largest stream E_FILE_TOO_BIG', () => {
    expect(errorOf(() => checkSpan(0, 0))).to.equal('no error');
    expect(errorOf(() => checkSpan(0, STREAM_BYTES_MAX))).to.equal('no error');
    expect(errorOf(() => checkSpan(-1, 10))).to.match(/^E_BAD_ARGUMENT: an offset must be a whole number of bytes, 0 or more \(-1 given\)/);
    expect(errorOf(() => checkSpan(0.5, 10))).to.match(/^E_BAD_ARGUMENT: an offset /);
    expect(errorOf(() => checkSpan(NaN, 10))).to.match(/^E_BAD_ARGUMENT: an offset /);
    expect(errorOf(() => checkSpan(10, 5))).to.match(/^E_BAD_ARGUMENT: a length must be a whole number of bytes, 0 or more \(-5 given\)/);
    expect(errorOf(() => checkSpan(10, 10.5))).to.match(/^E_BAD_ARGUMENT: a length /);
    expect(errorOf(() => checkSpan(0, Infinity))).to.match(/^E_BAD_ARGUMENT: a length /);
    expect(errorOf(() => checkSpan(0, STREAM_BYTES_MAX + 1))).to.equal(
      `E_FILE_TOO_BIG: a stream holds at most ${STREAM_BYTES_MAX} bytes; byte ${STREAM_BYTES_MAX} is past that`,
    );
    expect(errorOf(() => checkSpan(STREAM_BYTES_MAX, STREAM_BYTES_MAX + 1))).to.match(/^E_FILE_TOO_BIG: /);
    // segmentsToAllocate checks first.
    expect(errorOf(() => segmentsToAllocate(emptyStream(''), -4096, 0))).to.match(/^E_BAD_ARGUMENT: /);
    expect(errorOf(() => segmentsToAllocate(emptyStream(''), 0, STREAM_BYTES_MAX + P))).to.match(/^E_FILE_TOO_BIG: /);
  });
});
