/**
 * The 128-bit global address space (SPEC M7): page size, parsing and
 * printing (`0x` hex in JSON and the CLI), the 16-byte big-endian form used
 * on the wire and as LMDB keys (so byte order is address order), and page
 * ranges checked against the end of the space. Pure: no I/O.
 *
 * It imports the error class from bus/errors.ts, a leaf module with no
 * imports of its own, so that a bad address typed by a user reaches the CLI
 * with a stable code (E_BAD_ADDRESS) and a sentence naming what was typed.
 */
import { MangroveError } from '../../bus/errors.js';
import { PAGE_SIZE } from '../../bus/messages/page-limits.js';

/** The page, the unit of the space (M7): the wire's page size, named for the byte counts it multiplies. */
export const PAGE_BYTES = PAGE_SIZE;
export const ADDRESS_BITS = 128;
export const ADDRESS_BYTES = ADDRESS_BITS / 8;
export const MAX_ADDRESS = (1n << BigInt(ADDRESS_BITS)) - 1n;

const PAGE_MASK = BigInt(PAGE_BYTES - 1);
const HEX_DIGITS_MAX = ADDRESS_BITS / 4;
/** Longest text worth matching: `0x`, 32 digits and a `_` between each pair. */
const ADDRESS_CHARS_MAX = 2 + HEX_DIGITS_MAX * 2 - 1;
/** How much of a bad input an error message quotes. */
const QUOTE_CHARS_MAX = 80;
const HEX_TEXT = /^0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*$/;
const U64_MASK = (1n << 64n) - 1n;

/** A contiguous run of pages; `last` is the base of the last page. */
export interface PageRange {
  readonly first: bigint;
  readonly last: bigint;
  readonly pages: number;
}

/** True for an integer in 0 .. 2^128-1. */
export function isAddress(addr: bigint): boolean {
  return typeof addr === 'bigint' && addr >= 0n && addr <= MAX_ADDRESS;
}

/** True for an address in the space whose low 12 bits are zero. */
export function isPageAligned(addr: bigint): boolean {
  return isAddress(addr) && (addr & PAGE_MASK) === 0n;
}

/** The base of the page holding `addr`. */
export function pageOf(addr: bigint): bigint {
  checkAddress(addr);
  return addr & ~PAGE_MASK;
}

/** Returns `addr` if it is in the space, else throws E_BAD_ADDRESS. */
export function checkAddress(addr: bigint): bigint {
  if (!isAddress(addr)) throw new MangroveError('E_BAD_ADDRESS', `${describe(addr)} is outside the 128-bit address space`);
  return addr;
}

/** Returns `addr` if it is a page base in the space, else throws E_BAD_ADDRESS. */
export function checkPageAddress(addr: bigint): bigint {
  checkAddress(addr);
  if ((addr & PAGE_MASK) !== 0n) {
    throw new MangroveError('E_BAD_ADDRESS', `${formatAddress(addr)} is not the start of a page (a multiple of ${PAGE_BYTES})`);
  }
  return addr;
}

/** `0x` then 1 to 32 hex digits, either case, `_` allowed between digits. */
export function parseAddress(text: string): bigint {
  if (typeof text !== 'string' || text.length > ADDRESS_CHARS_MAX || !HEX_TEXT.test(text)) {
    throw new MangroveError('E_BAD_ADDRESS', `${quote(text)} is not an address: write 0x and 1 to ${HEX_DIGITS_MAX} hex digits`);
  }
  const digits = text.slice(2).replaceAll('_', '');
  if (digits.length > HEX_DIGITS_MAX) {
    throw new MangroveError('E_BAD_ADDRESS', `${quote(text)} has ${digits.length} hex digits; an address has at most ${HEX_DIGITS_MAX}`);
  }
  return BigInt(`0x${digits}`);
}

/** Like parseAddress, and the address must start a page. */
export function parsePageAddress(text: string): bigint {
  const addr = parseAddress(text);
  if ((addr & PAGE_MASK) !== 0n) {
    throw new MangroveError('E_BAD_ADDRESS', `${quote(text)} is not the start of a page (a multiple of 0x${PAGE_BYTES.toString(16)})`);
  }
  return addr;
}

/** `0x` and 32 lowercase hex digits: fixed width, so text order is address order. */
export function formatAddress(addr: bigint): string {
  checkAddress(addr);
  return `0x${addr.toString(16).padStart(HEX_DIGITS_MAX, '0')}`;
}

/** The 16-byte big-endian form. */
export function addressKey(addr: bigint): Uint8Array {
  checkAddress(addr);
  const key = new Uint8Array(ADDRESS_BYTES);
  const view = new DataView(key.buffer);
  view.setBigUint64(0, addr >> 64n);
  view.setBigUint64(8, addr & U64_MASK);
  return key;
}

export function addressFromKey(key: Uint8Array): bigint {
  if (!(key instanceof Uint8Array) || key.byteLength !== ADDRESS_BYTES) {
    throw new MangroveError('E_BAD_ADDRESS', `an address key has ${ADDRESS_BYTES} bytes, not ${key instanceof Uint8Array ? key.byteLength : typeof key}`);
  }
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return (view.getBigUint64(0) << 64n) | view.getBigUint64(8);
}

/** `pages` pages from the page base `start`, all inside the space. */
export function pageRange(start: bigint, pages: number): PageRange {
  checkPageAddress(start);
  if (!Number.isSafeInteger(pages) || pages < 1) {
    throw new MangroveError('E_BAD_ARGUMENT', `a range has a whole number of pages, at least 1, not ${String(pages)}`);
  }
  const last = start + BigInt(pages - 1) * BigInt(PAGE_BYTES);
  if (last > MAX_ADDRESS) {
    throw new MangroveError('E_BAD_ADDRESS', `${pages} pages from ${formatAddress(start)} run past the end of the 128-bit address space`);
  }
  return { first: start, last, pages };
}

/** The page bases of a range, in order. */
export function* pagesOf(range: PageRange): Generator<bigint> {
  for (let a = range.first; a <= range.last; a += BigInt(PAGE_BYTES)) yield a;
}

function describe(addr: unknown): string {
  if (typeof addr !== 'bigint') return `a ${typeof addr} (${String(addr)})`;
  return addr < 0n ? `-0x${(-addr).toString(16)}` : `0x${addr.toString(16)}`;
}

function quote(text: unknown): string {
  if (typeof text !== 'string') return `a ${typeof text}`;
  const cut = text.length > QUOTE_CHARS_MAX ? `${text.slice(0, QUOTE_CHARS_MAX)}…` : text;
  return JSON.stringify(cut);
}
