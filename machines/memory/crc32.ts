/**
 * CRC-32 (IEEE 802.3), the checksum every self-describing page carries (the
 * disk directory's pages, the file system's): computed in steps over the
 * parts of a page, so a header and a body need no copy into one buffer.
 *
 *     let crc = CRC_START;
 *     crc = crcStep(crc, page, 0, 3);
 *     crc = crcStep(crc, page, HEADER, HEADER + length);
 *     const sum = crcEnd(crc);
 */
export const CRC_START = -1;

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** Folds bytes [from, to) of `data` into a running CRC. */
export function crcStep(crc: number, data: Uint8Array, from: number, to: number): number {
  const table = CRC_TABLE;
  for (let i = from; i < to; i++) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return crc;
}

/** The finished checksum, an unsigned 32-bit number. */
export function crcEnd(crc: number): number {
  return ~crc >>> 0;
}
