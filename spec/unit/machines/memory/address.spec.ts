import { expect } from 'chai';
import {
  addressFromKey,
  addressKey,
  formatAddress,
  isPageAligned,
  MAX_ADDRESS,
  PAGE_BYTES,
  pageOf,
  pageRange,
  pagesOf,
  parseAddress,
  parsePageAddress,
} from '../../../../machines/memory/address.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { errorOf as codeOf } from '../../../helpers/error-of.js';

const SEED = 20_250_611;

/** A random address of 1 to 128 bits, so small and large values both occur. */
function randomAddress(rng: SeededRandom): bigint {
  const bits = 1 + rng.int(128);
  let a = 0n;
  for (const b of rng.bytes(16)) a = (a << 8n) | BigInt(b);
  return a & ((1n << BigInt(bits)) - 1n);
}

function compareBytes(x: Uint8Array, y: Uint8Array): number {
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

describe('machines/memory/address', () => {
  it('parses 0x hex of 1 to 32 digits, either case, with _ between digits', () => {
    expect(parseAddress('0x0')).to.equal(0n);
    expect(parseAddress('0x1000')).to.equal(4096n);
    expect(parseAddress('0xDeadBeef')).to.equal(0xdeadbeefn);
    expect(parseAddress('0X10')).to.equal(16n);
    expect(parseAddress('0x1_0000_0000')).to.equal(1n << 32n);
    expect(parseAddress(`0x${'f'.repeat(32)}`)).to.equal(MAX_ADDRESS);
    expect(parseAddress(`0x${'0'.repeat(31)}1`)).to.equal(1n);
  });

  it('refuses bad text with E_BAD_ADDRESS, quoting it', () => {
    const bad = ['', '0x', '1000', '4096', 'x10', '-0x10', '0x-10', ' 0x10', '0x10 ', '0x1g', '0x_10', '0x10_', '0x1__0', '0b101', `0x1${'0'.repeat(32)}`];
    for (const text of bad) {
      const got = codeOf(() => parseAddress(text));
      expect(got, JSON.stringify(text)).to.match(/^E_BAD_ADDRESS: /);
      expect(got, JSON.stringify(text)).to.include(JSON.stringify(text));
    }
    expect(codeOf(() => parseAddress(`0x${'1'.repeat(33)}`))).to.match(/^E_BAD_ADDRESS: .*33 hex digits/);
    expect(codeOf(() => parseAddress(`0x${'1'.repeat(500)}`))).to.match(/^E_BAD_ADDRESS: .*…/);
  });

  it('requires a page start where one is required', () => {
    expect(parsePageAddress('0x2000')).to.equal(8192n);
    expect(codeOf(() => parsePageAddress('0x2001'))).to.match(/^E_BAD_ADDRESS: "0x2001" is not the start of a page/);
    expect(isPageAligned(0n)).to.equal(true);
    expect(isPageAligned(4096n)).to.equal(true);
    expect(isPageAligned(4095n)).to.equal(false);
    expect(isPageAligned(-4096n)).to.equal(false);
    expect(isPageAligned(1n << 128n)).to.equal(false);
  });

  it('finds the page of any address and refuses one outside the space', () => {
    expect(pageOf(0n)).to.equal(0n);
    expect(pageOf(4095n)).to.equal(0n);
    expect(pageOf(4096n + 17n)).to.equal(4096n);
    expect(pageOf(MAX_ADDRESS)).to.equal(MAX_ADDRESS - BigInt(PAGE_BYTES) + 1n);
    expect(codeOf(() => pageOf(-1n))).to.match(/^E_BAD_ADDRESS: -0x1 is outside/);
    expect(codeOf(() => pageOf(1n << 128n))).to.match(/^E_BAD_ADDRESS: /);
  });

  it('formats as 0x and 32 lowercase digits, and parses back (seeded)', () => {
    expect(formatAddress(0n)).to.equal(`0x${'0'.repeat(32)}`);
    expect(formatAddress(0xabcn)).to.equal(`0x${'0'.repeat(29)}abc`);
    expect(codeOf(() => formatAddress(-5n))).to.match(/^E_BAD_ADDRESS: /);
    const rng = new SeededRandom(SEED);
    for (let i = 0; i < 500; i++) {
      const a = randomAddress(rng);
      const text = formatAddress(a);
      expect(text, `seed ${SEED}, step ${i}`).to.match(/^0x[0-9a-f]{32}$/);
      expect(parseAddress(text), `seed ${SEED}, ${text}`).to.equal(a);
      expect(parseAddress(text.toUpperCase().replace('0X', '0x')), `seed ${SEED}, ${text}`).to.equal(a);
    }
  });

  it('keys are 16 bytes big-endian and sort as the addresses do (seeded)', () => {
    expect([...addressKey(1n)]).to.deep.equal([...new Array(15).fill(0), 1]);
    expect([...addressKey(1n << 120n)]).to.deep.equal([1, ...new Array(15).fill(0)]);
    expect(addressFromKey(addressKey(MAX_ADDRESS))).to.equal(MAX_ADDRESS);
    const rng = new SeededRandom(SEED + 1);
    const addrs = Array.from({ length: 400 }, () => randomAddress(rng));
    addrs.push(0n, MAX_ADDRESS, 1n << 64n, (1n << 64n) - 1n);
    for (const a of addrs) expect(addressFromKey(addressKey(a)), `seed ${SEED + 1}, ${a}`).to.equal(a);
    const byNumber = [...addrs].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    const byKey = [...addrs].sort((x, y) => compareBytes(addressKey(x), addressKey(y)));
    expect(byKey, `seed ${SEED + 1}`).to.deep.equal(byNumber);
  });

  it('reads a key from inside a larger buffer and refuses a wrong length', () => {
    const buf = new Uint8Array(20);
    buf.set(addressKey(0x1234n), 4);
    expect(addressFromKey(buf.subarray(4, 20))).to.equal(0x1234n);
    expect(codeOf(() => addressFromKey(new Uint8Array(15)))).to.match(/^E_BAD_ADDRESS: .*16 bytes, not 15/);
    expect(codeOf(() => addressKey(1n << 128n))).to.match(/^E_BAD_ADDRESS: /);
  });

  it('builds page ranges up to the very end of the space, and no further', () => {
    const page = BigInt(PAGE_BYTES);
    expect(pageRange(0x10000n, 3)).to.deep.equal({ first: 0x10000n, last: 0x12000n, pages: 3 });
    expect([...pagesOf(pageRange(0x10000n, 3))]).to.deep.equal([0x10000n, 0x11000n, 0x12000n]);
    const lastPage = MAX_ADDRESS + 1n - page;
    expect(pageRange(lastPage, 1).last).to.equal(lastPage);
    expect(pageRange(lastPage - page, 2).last).to.equal(lastPage);
    expect(codeOf(() => pageRange(lastPage, 2))).to.match(/^E_BAD_ADDRESS: 2 pages from 0xf{28}f000 run past the end/);
    expect(codeOf(() => pageRange(0n, Number.MAX_SAFE_INTEGER))).to.equal('no error');
    expect(codeOf(() => pageRange(lastPage - page * 10n, 12))).to.match(/^E_BAD_ADDRESS: /);
  });

  it('refuses a range with a bad start or page count', () => {
    expect(codeOf(() => pageRange(0x1001n, 1))).to.match(/^E_BAD_ADDRESS: .*not the start of a page/);
    expect(codeOf(() => pageRange(-4096n, 1))).to.match(/^E_BAD_ADDRESS: /);
    for (const n of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 53]) {
      expect(codeOf(() => pageRange(0n, n)), String(n)).to.match(/^E_BAD_ARGUMENT: /);
    }
  });
});
