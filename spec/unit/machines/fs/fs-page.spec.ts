/**
 * The file system's page frame (machines/fs/fs-page.ts): header, CBOR body,
 * zeros. A page round-trips for every kind; an all-zero page is null; every
 * other page that is not exactly what encodeFsPage wrote, for the kind
 * asked, is E_CORRUPT naming its address, hostile and random pages included.
 */
import { expect } from 'chai';
import { z } from 'zod';
import { isMangroveError } from '../../../../bus/errors.js';
import { formatAddress, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { CRC_START, crcEnd, crcStep } from '../../../../machines/memory/crc32.js';
import {
  bodyBytes,
  decodeFsPage,
  encodeFsPage,
  FS_BODY_BYTES_MAX,
  FS_HEADER_BYTES,
  FS_PAGE_FORMAT,
  FS_PAGE_KINDS,
  FS_PAGE_MAGIC,
  sealFsPage,
  type FsPageKind,
} from '../../../../machines/fs/fs-page.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { errorOf } from '../../../helpers/error-of.js';
import { forSeeds } from '../../../helpers/sim-checks.js';

/** A 128-bit address, so a message that truncated it would show. */
const ADDR = (5n << 64n) + 0x10000000000n + 7n * 4096n;
const KINDS = Object.keys(FS_PAGE_KINDS) as FsPageKind[];

const bodySchema = z.object({ n: z.number().int(), s: z.string(), b: z.instanceof(Uint8Array), list: z.array(z.number()) });
type Body = z.infer<typeof bodySchema>;
const BODY: Body = { n: 42, s: 'héllo, wörld', b: Uint8Array.from([0, 1, 2, 254, 255]), list: [1, -2, 3.5] };

/** A page with a header of our choosing and a checksum that matches it, as a buggy writer might leave it. */
function forge(kind: number, format: number, body: Uint8Array): Uint8Array {
  const page = new Uint8Array(PAGE_BYTES);
  const view = new DataView(page.buffer);
  view.setUint32(0, FS_PAGE_MAGIC);
  page[4] = kind;
  page[5] = format;
  view.setUint16(6, body.length);
  page.set(body, FS_HEADER_BYTES);
  view.setUint32(8, crcEnd(crcStep(crcStep(CRC_START, page, 0, 8), page, FS_HEADER_BYTES, FS_HEADER_BYTES + body.length)));
  return page;
}

function good(): Uint8Array {
  return encodeFsPage('inode', BODY)!;
}

function damaged(f: (p: Uint8Array, view: DataView) => void): Uint8Array {
  const p = good();
  f(p, new DataView(p.buffer));
  return p;
}

const decode = (page: Uint8Array, kind: FsPageKind = 'inode') => () => decodeFsPage(kind, page, ADDR, bodySchema);

describe('machines/fs/fs-page', () => {
  it('round-trips a body through a page of every kind, with the layout the header comment gives', () => {
    for (const kind of KINDS) {
      const page = encodeFsPage(kind, BODY)!;
      expect(page.length, kind).to.equal(PAGE_BYTES);
      const view = new DataView(page.buffer);
      expect(view.getUint32(0), kind).to.equal(FS_PAGE_MAGIC);
      expect(page[4], kind).to.equal(FS_PAGE_KINDS[kind]);
      expect(page[5], kind).to.equal(FS_PAGE_FORMAT);
      const length = view.getUint16(6);
      expect(length, kind).to.equal(bodyBytes(BODY).length);
      expect(page.subarray(FS_HEADER_BYTES + length).every((b) => b === 0), `${kind}: zeros after the body`).to.equal(true);
      expect(decodeFsPage(kind, page, ADDR, bodySchema), kind).to.deep.equal(BODY);
      expect(sealFsPage(kind, BODY, ADDR), kind).to.deep.equal(page);
    }
    // The kinds are distinct bytes, none zero (zero is an unwritten page's).
    expect(new Set(Object.values(FS_PAGE_KINDS)).size).to.equal(KINDS.length);
    expect(Object.values(FS_PAGE_KINDS)).to.not.include(0);
  });

  it('decodes a page inside a larger buffer (a subarray at an offset)', () => {
    const big = new Uint8Array(PAGE_BYTES * 3);
    big.set(good(), PAGE_BYTES);
    expect(decodeFsPage('inode', big.subarray(PAGE_BYTES, 2 * PAGE_BYTES), ADDR, bodySchema)).to.deep.equal(BODY);
  });

  it('reads an all-zero page as null (allocated, never written), for every kind', () => {
    for (const kind of KINDS) expect(decodeFsPage(kind, new Uint8Array(PAGE_BYTES), ADDR, bodySchema), kind).to.equal(null);
  });

  it('calls every damaged page E_CORRUPT, naming the address, the kind and what is wrong', () => {
    const where = formatAddress(ADDR);
    const cases: [string, Uint8Array, RegExp][] = [
      ['zero magic, data after it', (() => { const p = new Uint8Array(PAGE_BYTES); p[100] = 1; return p; })(), /bad magic/],
      ['bad magic', damaged((p) => (p[0] ^= 0x20)), /bad magic/],
      ['wrong kind', encodeFsPage('entries', BODY)!, /holds a page of kind 5, not 4/],
      ['kind byte 0', damaged((p) => (p[4] = 0)), /holds a page of kind 0/],
      ['wrong format byte', damaged((p) => (p[5] = FS_PAGE_FORMAT + 1)), new RegExp(`layout format ${FS_PAGE_FORMAT + 1}, this node reads ${FS_PAGE_FORMAT}`)],
      ['format byte 0', damaged((p) => (p[5] = 0)), /layout format 0/],
      ['length past the page', damaged((p, v) => v.setUint16(6, FS_BODY_BYTES_MAX + 1)), new RegExp(`claims a ${FS_BODY_BYTES_MAX + 1}-byte body`)],
      ['length 0xffff', damaged((p, v) => v.setUint16(6, 0xffff)), /claims a 65535-byte body/],
      ['length one short (torn)', damaged((p, v) => v.setUint16(6, v.getUint16(6) - 1)), /checksum|past its body/],
      ['length one long', damaged((p, v) => v.setUint16(6, v.getUint16(6) + 1)), /checksum/],
      ['flipped body byte', damaged((p) => (p[FS_HEADER_BYTES + 3] ^= 1)), /fails its checksum/],
      ['flipped checksum byte', damaged((p) => (p[11] ^= 0x80)), /fails its checksum/],
      ['short buffer', good().subarray(0, PAGE_BYTES - 1), /is 4095 bytes, not 4096/],
      ['long buffer', (() => { const p = new Uint8Array(PAGE_BYTES + 1); p.set(good()); return p; })(), /is 4097 bytes, not 4096/],
      ['empty body', forge(FS_PAGE_KINDS.inode, FS_PAGE_FORMAT, new Uint8Array(0)), /not CBOR/],
      ['truncated CBOR', forge(FS_PAGE_KINDS.inode, FS_PAGE_FORMAT, Uint8Array.from([0x82, 0x01])), /not CBOR/],
      ['two CBOR items', forge(FS_PAGE_KINDS.inode, FS_PAGE_FORMAT, Uint8Array.from([0x01, 0x02])), /not CBOR/],
      ['a body the schema refuses', forge(FS_PAGE_KINDS.inode, FS_PAGE_FORMAT, bodyBytes({ ...BODY, n: 'forty-two' })), /malformed body: n /],
      ['a body the schema refuses (nested)', forge(FS_PAGE_KINDS.inode, FS_PAGE_FORMAT, bodyBytes({ ...BODY, list: [1, 'x'] })), /malformed body: list\.1 /],
      ['a body that is not an object', forge(FS_PAGE_KINDS.inode, FS_PAGE_FORMAT, bodyBytes([1, 2, 3])), /malformed body/],
    ];
    for (const [why, page, reason] of cases) {
      const got = errorOf(decode(page));
      expect(got, why).to.match(/^E_CORRUPT: the inode page at /);
      expect(got, why).to.include(where);
      expect(got, why).to.match(reason);
    }
    // The kind's name is in the sentence, spaces for underscores.
    expect(errorOf(() => decodeFsPage('super_root', good(), ADDR, bodySchema))).to.match(/^E_CORRUPT: the super root page at /);
  });

  it('refuses a page whose body is intact but which holds bytes after it (not a page this file wrote)', () => {
    const p = good();
    p[PAGE_BYTES - 1] = 0x5a;
    expect(errorOf(decode(p))).to.match(/^E_CORRUPT: .*past its body/);
  });

  it('reads each page only as the kind it was written as', () => {
    for (const written of KINDS) {
      const page = encodeFsPage(written, BODY)!;
      for (const asked of KINDS) {
        if (asked === written) continue;
        expect(errorOf(() => decodeFsPage(asked, page, ADDR, bodySchema)), `${written} read as ${asked}`).to.match(/^E_CORRUPT: .*holds a page of kind/);
      }
    }
  });

  it('measures a body before committing: one that fits exactly is written, one byte more is undefined / E_INTERNAL', () => {
    // A byte string of n >= 256 bytes takes a 3-byte CBOR head.
    const fits = new Uint8Array(FS_BODY_BYTES_MAX - 3);
    expect(bodyBytes(fits).length).to.equal(FS_BODY_BYTES_MAX);
    const page = encodeFsPage('fileset', fits)!;
    expect(page).to.not.equal(undefined);
    expect(decodeFsPage('fileset', page, ADDR, z.instanceof(Uint8Array))).to.deep.equal(fits);
    const tooBig = new Uint8Array(FS_BODY_BYTES_MAX - 2);
    expect(encodeFsPage('fileset', tooBig)).to.equal(undefined);
    expect(encodeFsPage('entries', 'x'.repeat(PAGE_BYTES))).to.equal(undefined);
    const got = errorOf(() => sealFsPage('fileset', tooBig, ADDR));
    expect(got).to.match(new RegExp(`^E_INTERNAL: a fileset page for ${formatAddress(ADDR)} outgrew ${FS_BODY_BYTES_MAX} bytes`));
  });

  it('survives 2,000 random and damaged pages: E_CORRUPT every time, never another exception, never a body (seeded)', () => {
    forSeeds([0xf5_9a9e, 11], fuzz);
  });
});

const REASONS = ['bad magic', 'holds a page of kind', 'layout format', 'claims a', 'fails its checksum', 'past its body', 'not CBOR', 'malformed body'];

/**
 * 2,000 pages in five shapes: random bytes; a good header over a random body
 * (wrong checksum); a forged checksum over random bytes (reaches CBOR and the
 * schema); a real page with 1-3 bits flipped anywhere in its 4096 bytes; a
 * real page with a random header byte set.
 */
function fuzz(seed: number): void {
  const rnd = new SeededRandom(seed);
  const template = good();
  const counts = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    let page: Uint8Array;
    const shape = i % 5;
    if (shape === 0) {
      page = rnd.bytes(PAGE_BYTES);
    } else if (shape === 1) {
      page = template.slice();
      page.set(rnd.bytes(1 + rnd.int(200)), FS_HEADER_BYTES);
    } else if (shape === 2) {
      const body = i % 2 ? rnd.bytes(1 + rnd.int(300)) : bodyBytes(randomValue(rnd, 3));
      page = forge(FS_PAGE_KINDS.inode, FS_PAGE_FORMAT, body);
    } else if (shape === 3) {
      page = template.slice();
      const flips = 1 + rnd.int(3);
      const at = new Set<number>();
      while (at.size < flips) at.add(rnd.int(PAGE_BYTES));
      for (const a of at) page[a] ^= 1 << rnd.int(8);
    } else {
      page = template.slice();
      const at = rnd.int(FS_HEADER_BYTES);
      const was = page[at];
      while (page[at] === was) page[at] = rnd.int(256);
    }
    let got: unknown;
    try {
      got = decodeFsPage('inode', page, ADDR, bodySchema);
    } catch (e) {
      if (!isMangroveError(e) || e.code !== 'E_CORRUPT') throw new Error(`page ${i} (shape ${shape}) threw ${String(e)}`);
      if (!e.message.includes(formatAddress(ADDR))) throw new Error(`page ${i}: the error does not name the address: ${e.message}`);
      const reason = REASONS.find((r) => e.message.includes(r)) ?? e.message;
      counts.set(reason, (counts.get(reason) ?? 0) + 1);
      continue;
    }
    throw new Error(`page ${i} (shape ${shape}) decoded to ${JSON.stringify(got)}`);
  }
  // Every check was reached by some page, so none is dead code the fuzz could not tell from a working one.
  expect([...counts.keys()].sort()).to.deep.equal([...REASONS].sort());
}

/** A random JSON-ish value, sometimes an object with the schema's keys holding the wrong things. */
function randomValue(rnd: SeededRandom, depth: number): unknown {
  switch (rnd.int(depth > 0 ? 7 : 4)) {
    case 0:
      return rnd.int(2 ** 20) - 2 ** 19;
    case 1:
      return String.fromCharCode(...rnd.bytes(rnd.int(10)));
    case 2:
      return rnd.bytes(rnd.int(10));
    case 3:
      return rnd.int(2) === 0 ? null : rnd.next() < 0.5;
    case 4:
      return Array.from({ length: rnd.int(4) }, () => randomValue(rnd, depth - 1));
    case 5:
      return { n: randomValue(rnd, depth - 1), s: randomValue(rnd, depth - 1), b: randomValue(rnd, depth - 1), list: randomValue(rnd, depth - 1) };
    default:
      return Object.fromEntries(Array.from({ length: rnd.int(4) }, (_, k) => [`k${k}`, randomValue(rnd, depth - 1)]));
  }
}
