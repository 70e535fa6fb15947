/**
 * How every file-system page is laid out in its 4096 bytes (SPEC.md M18-M22;
 * docs/fs.md): a 12-byte header, a CBOR body, zeros. Pure: no I/O.
 *
 * Header: the magic 'MGFS' (4 bytes), the page's kind (1 byte), the layout's
 * format (1 byte), the body's length (16 bits big-endian), a CRC-32 over the
 * first eight header bytes and the body (4 bytes). An all-zero page is a page
 * the file system allocated (the engine zero-fills, M20) and has not written
 * yet: it decodes as `null`, never as an error.
 *
 * Decoding trusts nothing (a torn write, a bit flip, a page read from the
 * wrong place): anything but a page this file wrote, of the kind asked for,
 * is E_CORRUPT naming the address; the caller's schema then checks the body's
 * shape, so no malformed page ever reaches the file system's logic.
 */
import { Encoder } from 'cbor-x';
import type { z } from 'zod';
import { MangroveError } from '../../bus/errors.js';
import { formatAddress, PAGE_BYTES } from '../memory/address.js';
import { CRC_START, crcEnd, crcStep } from '../memory/crc32.js';

export const FS_PAGE_MAGIC = 0x4d474653;
/** Changes whenever a body's layout does. */
export const FS_PAGE_FORMAT = 1;
export const FS_HEADER_BYTES = 12;
export const FS_BODY_BYTES_MAX = PAGE_BYTES - FS_HEADER_BYTES;

export const FS_PAGE_KINDS = { super_root: 1, fileset: 2, inode_table: 3, inode: 4, entries: 5 } as const;
export type FsPageKind = keyof typeof FS_PAGE_KINDS;

// Addresses go in bodies as 16-byte strings (addressKey), never as CBOR bignums.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, copyBuffers: true });

/** The encoded body of `body`, to measure it before committing to a layout. */
export function bodyBytes(body: unknown): Uint8Array {
  return cbor.encode(body);
}

/**
 * A whole page holding `body` of `kind`; undefined if the body does not fit,
 * so a caller that can split (a directory's entries) learns it before writing.
 */
export function encodeFsPage(kind: FsPageKind, body: unknown): Uint8Array | undefined {
  const encoded = bodyBytes(body);
  if (encoded.length > FS_BODY_BYTES_MAX) return undefined;
  const page = new Uint8Array(PAGE_BYTES);
  const view = new DataView(page.buffer);
  view.setUint32(0, FS_PAGE_MAGIC);
  page[4] = FS_PAGE_KINDS[kind];
  page[5] = FS_PAGE_FORMAT;
  view.setUint16(6, encoded.length);
  page.set(encoded, FS_HEADER_BYTES);
  view.setUint32(8, checksum(page, encoded.length));
  return page;
}

/** As encodeFsPage, for bodies bounded so they always fit: a body that does not is a bug. */
export function sealFsPage(kind: FsPageKind, body: unknown, addr: bigint): Uint8Array {
  const page = encodeFsPage(kind, body);
  if (!page) throw new MangroveError('E_INTERNAL', `a ${kind} page for ${formatAddress(addr)} outgrew ${FS_BODY_BYTES_MAX} bytes`);
  return page;
}

/**
 * The body of a page of `kind` read from `addr`, checked by `schema`; null
 * for an all-zero page. Throws E_CORRUPT for anything else.
 */
export function decodeFsPage<T>(kind: FsPageKind, page: Uint8Array, addr: bigint, schema: z.ZodType<T>): T | null {
  if (page.length !== PAGE_BYTES) throw corrupt(kind, addr, `is ${page.length} bytes, not ${PAGE_BYTES}`);
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  if (view.getUint32(0) === 0 && isZero(page)) return null;
  if (view.getUint32(0) !== FS_PAGE_MAGIC) throw corrupt(kind, addr, 'is not a file-system page (bad magic)');
  if (page[4] !== FS_PAGE_KINDS[kind]) throw corrupt(kind, addr, `holds a page of kind ${page[4]}, not ${FS_PAGE_KINDS[kind]}`);
  if (page[5] !== FS_PAGE_FORMAT) throw corrupt(kind, addr, `has layout format ${page[5]}, this node reads ${FS_PAGE_FORMAT}`);
  const length = view.getUint16(6);
  if (length > FS_BODY_BYTES_MAX) throw corrupt(kind, addr, `claims a ${length}-byte body`);
  if (view.getUint32(8) !== checksum(page, length)) throw corrupt(kind, addr, 'fails its checksum (torn or damaged)');
  // The checksum covers the body only: the zeros after it are checked here, or a flipped bit there would pass.
  if (!isZero(page, FS_HEADER_BYTES + length)) throw corrupt(kind, addr, 'holds bytes past its body (damaged)');
  let raw: unknown;
  try {
    raw = cbor.decode(page.subarray(FS_HEADER_BYTES, FS_HEADER_BYTES + length));
  } catch (err) {
    throw corrupt(kind, addr, `has a body that is not CBOR (${String(err)})`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw corrupt(kind, addr, `has a malformed body: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

function checksum(page: Uint8Array, length: number): number {
  return crcEnd(crcStep(crcStep(CRC_START, page, 0, 8), page, FS_HEADER_BYTES, FS_HEADER_BYTES + length));
}

function isZero(page: Uint8Array, from = 0): boolean {
  for (let i = from; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}

function corrupt(kind: FsPageKind, addr: bigint, what: string): MangroveError {
  return new MangroveError('E_CORRUPT', `the ${kind.replace('_', ' ')} page at ${formatAddress(addr)} ${what}`);
}
