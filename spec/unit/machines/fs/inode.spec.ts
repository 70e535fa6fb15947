/**
 * The inode (machines/fs/inode.ts; SPEC M19, M20, M22): new inodes of each
 * type, the page layout round-tripping every field (transaction marks of
 * every kind, openers, streams at 128-bit addresses), what must fit one
 * page, and the directory index's guard.
 */
import { expect } from 'chai';
import { formatAddress, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { decode as cborDecode } from 'cbor-x';
import { FS_TXN_CHARS_MAX } from '../../../../bus/messages/fs.js';
import { bodyBytes, encodeFsPage, FS_BODY_BYTES_MAX, FS_HEADER_BYTES, sealFsPage } from '../../../../machines/fs/fs-page.js';
import {
  ACL_STREAM,
  BUCKET_BYTES,
  decodeInode,
  dirOf,
  encodeInode,
  HASH_BUCKETS,
  isDone,
  NAMED_STREAMS_MAX,
  newInode,
  OPENERS_MAX,
  rememberDone,
  sizeOf,
  STREAM_NAME_CHARS_MAX,
  SYMLINK_TARGET_CHARS_MAX,
  TXNS_KEPT,
  typeBits,
  type Inode,
  type MarkKind,
  type NewInode,
  type TxnMark,
} from '../../../../machines/fs/inode.js';
import { STREAM_BYTES_MAX } from '../../../../machines/fs/stream.js';
import { errorOf } from '../../../helpers/error-of.js';

/** Addresses past 64 bits, so a layout that truncated them would show. */
const A = (page: number) => (5n << 64n) + 0x10000000000n + BigInt(page) * 4096n;
const ADDR = A(1234);
const NOW = 1_700_000_000_123;
const MARK_KINDS: MarkKind[] = ['create', 'create_directory', 'delete', 'rename', 'rename_target', 'link'];
/** A node's permanent id, as membership makes them (M1). */
const nodeId = (i: number) => `${i.toString(16).padStart(12, '0')}-0000018f2a3b`;

const make = (type: Inode['type'], extra: Partial<NewInode> = {}): Inode =>
  newInode({ fileset: 3, ino: 4242, type, mode: 0o755, uid: 1000, gid: 100, parent: 7, parentAddr: A(7), nowMs: NOW, ...extra });

const roundTrip = (i: Inode): Inode | null => decodeInode(encodeInode(i, ADDR), ADDR);

/** The body's length in an encoded page: how close to the page a layout comes. */
const bodyLength = (page: Uint8Array) => new DataView(page.buffer, page.byteOffset).getUint16(6);

/** Every numeric field at the top of its range, a lock page, an entry ref: the largest a plain inode gets. */
function maximal(i: Inode): Inode {
  i.fileset = 2 ** 32 - 1;
  i.ino = 2 ** 32 - 1;
  i.mode = 0o7777;
  i.uid = i.gid = i.nlink = 2 ** 32 - 1;
  i.atimeMs = i.mtimeMs = i.ctimeMs = i.btimeMs = 8.64e15;
  i.sync = Number.MAX_SAFE_INTEGER;
  i.parent = 2 ** 32 - 1;
  i.entry = { page: 2 ** 31, slot: 63 };
  i.lockPage = A(99);
  i.streams = i.streams.map((s, k) => ({ ...s, base: A(500 + k), size: STREAM_BYTES_MAX, segs: 2 ** 20 - 1 }));
  if (i.dir) {
    i.dir.buckets.fill(0xff);
    i.dir.count = i.dir.subdirs = i.dir.pages = 2 ** 32 - 1;
    i.dir.freeHead = 2 ** 31;
  }
  return i;
}

const namedStreams = (n: number, chars: number) =>
  Array.from({ length: n }, (_, k) => ({ name: `${k}`.padStart(chars, 's'), base: A(1000 + k * 4096), size: STREAM_BYTES_MAX, segs: 2 ** 20 - 1 }));
const openers = (n: number) => Array.from({ length: n }, (_, k) => ({ node: nodeId(k), epoch: 2 ** 32 - 1, count: 2 ** 32 - 1 }));

describe('machines/fs/inode', () => {
  it('makes a file, a directory and a symbolic link with their defaults', () => {
    const f = make('file');
    expect(f).to.deep.include({ type: 'file', nlink: 1, sync: 1, entry: null, temporary: false, target: null, mark: null, deleting: false, corrupt: null, lockPage: null, dir: null });
    expect([f.atimeMs, f.mtimeMs, f.ctimeMs, f.btimeMs]).to.deep.equal([NOW, NOW, NOW, NOW]);
    expect(f.streams).to.deep.equal([
      { name: '', base: null, size: 0, segs: 0 },
      { name: ACL_STREAM, base: null, size: 0, segs: 0 },
    ]);
    expect(f.openers).to.deep.equal([]);
    const d = make('dir');
    expect(d.nlink).to.equal(2);
    expect(d.dir).to.deep.equal({ count: 0, subdirs: 0, buckets: new Uint8Array(HASH_BUCKETS * BUCKET_BYTES), freeHead: -1, pages: 0 });
    const l = make('symlink', { target: '../there' });
    expect(l.target).to.equal('../there');
    expect(l.dir).to.equal(null);
    expect(make('file', { temporary: true }).temporary).to.equal(true);
    // Two inodes share nothing mutable.
    const d2 = make('dir');
    d2.dir!.buckets[0] = 1;
    d2.streams[0].size = 5;
    expect(d.dir!.buckets[0]).to.equal(0);
    expect(d.streams[0].size).to.equal(0);
  });

  it('round-trips each type through its page', () => {
    for (const i of [make('file'), make('dir'), make('symlink', { target: 'x'.repeat(SYMLINK_TARGET_CHARS_MAX) }), make('file', { temporary: true })]) {
      const page = encodeInode(i, ADDR);
      expect(page.length).to.equal(PAGE_BYTES);
      expect(decodeInode(page, ADDR), i.type).to.deep.equal(i);
    }
  });

  it('round-trips every field: marks of every kind with their other side and replaced target, openers, 128-bit stream ranges', () => {
    for (const kind of MARK_KINDS) {
      for (const sides of [false, true]) {
        const i = make('dir');
        const mark: TxnMark = {
          kind,
          ino: 77,
          addr: A(77),
          name: `name of ${kind} ü`,
          nlinkBefore: 3,
          other: sides ? { dir: 12, addr: A(12), name: 'elsewhere' } : null,
          replaced: sides ? { ino: 78, addr: A(78) } : null,
        };
        i.mark = mark;
        i.entry = { page: 3, slot: 17 };
        i.sync = 99;
        i.deleting = sides;
        i.corrupt = sides ? 'hash bucket 3 started at the wrong entry' : null;
        i.lockPage = A(4000);
        i.openers = [
          { node: nodeId(1), epoch: 3, count: 2 },
          { node: nodeId(2), epoch: 1, count: 1 },
        ];
        i.streams[0] = { name: '', base: A(0x10_0000), size: 12_345, segs: 0b111 };
        i.streams[1] = { name: ACL_STREAM, base: A(0x20_0000), size: 0, segs: 1 };
        i.streams.push({ name: 'thumbnail', base: A(0x30_0000), size: STREAM_BYTES_MAX, segs: 2 ** 20 - 1 });
        i.dir!.buckets[5] = 9;
        i.dir!.count = 4;
        i.dir!.subdirs = 1;
        i.dir!.freeHead = 2;
        i.dir!.pages = 3;
        const back = roundTrip(i);
        expect(back, `${kind}${sides ? ' with other sides' : ''}`).to.deep.equal(i);
        expect(back!.streams[0].base! >> 64n).to.equal(5n);
        expect(back!.mark!.addr).to.equal(A(77));
      }
    }
  });

  it('reads a page never written as null (a free inode of its group), and a page of another kind as E_CORRUPT', () => {
    expect(decodeInode(new Uint8Array(PAGE_BYTES), ADDR)).to.equal(null);
    expect(errorOf(() => decodeInode(encodeFsPage('fileset', {})!, ADDR))).to.match(new RegExp(`^E_CORRUPT: the inode page at ${formatAddress(ADDR)} holds a page of kind 2`));
  });

  it('calls an inode with fields out of range E_CORRUPT, naming the field', () => {
    const cases: [string, (i: Inode) => void, RegExp][] = [
      ['mode past 0o7777', (i) => (i.mode = 0o10000), /mode/],
      ['a negative time', (i) => (i.mtimeMs = -1), /mtimeMs/],
      ['a fractional uid', (i) => (i.uid = 1.5), /uid/],
      ['one stream', (i) => i.streams.pop(), /streams/],
      ['too many named streams', (i) => i.streams.push(...namedStreams(NAMED_STREAMS_MAX + 1, 1)), /streams/],
      ['a stream name too long', (i) => i.streams.push({ name: 'x'.repeat(STREAM_NAME_CHARS_MAX + 1), base: null, size: 0, segs: 0 }), /streams\.2\.name/],
      ['too many openers', (i) => (i.openers = openers(OPENERS_MAX + 1)), /openers/],
      ['an unknown mark', (i) => (i.mark = { kind: 'move' as MarkKind, ino: 1, addr: A(1), name: 'a', nlinkBefore: 1, other: null, replaced: null }), /mark\.kind/],
      ['a symlink target too long', (i) => (i.target = 'x'.repeat(SYMLINK_TARGET_CHARS_MAX + 1)), /target/],
      ['an entry slot past 63', (i) => (i.entry = { page: 0, slot: 64 }), /entry\.slot/],
      ['a short hash table', (i) => (i.dir = { count: 0, subdirs: 0, buckets: new Uint8Array(10), freeHead: -1, pages: 0 }), /dir\.buckets/],
    ];
    for (const [why, damage, field] of cases) {
      const i = make('file');
      damage(i);
      // The page is written (the layout does not check on the way out), and read back refused.
      const got = errorOf(() => decodeInode(encodeInode(i, ADDR), ADDR));
      expect(got, why).to.match(new RegExp(`^E_CORRUPT: the inode page at ${formatAddress(ADDR)} has a malformed body: `));
      expect(got, why).to.match(field);
    }
  });

  describe('what fits one page (M19: an inode fits one page with its stream descriptors)', () => {
    it('a directory with a full hash table and 32 openers, every number at its largest', () => {
      const i = maximal(make('dir'));
      i.openers = openers(OPENERS_MAX);
      const page = encodeInode(i, ADDR);
      expect(bodyLength(page)).to.be.at.most(FS_BODY_BYTES_MAX);
      expect(decodeInode(page, ADDR)).to.deep.equal(i);
    });

    it(`a directory with a full hash table and ${NAMED_STREAMS_MAX} named streams of ${STREAM_NAME_CHARS_MAX} characters`, () => {
      const i = maximal(make('dir'));
      i.streams.push(...namedStreams(NAMED_STREAMS_MAX, STREAM_NAME_CHARS_MAX));
      expect(decodeInode(encodeInode(i, ADDR), ADDR)).to.deep.equal(i);
    });

    it('a directory with a full hash table and a rename mark of two 255-byte names', () => {
      const i = maximal(make('dir'));
      i.mark = { kind: 'rename_target', ino: 2 ** 32 - 1, addr: A(1), name: 'n'.repeat(255), nlinkBefore: 2 ** 32 - 1, other: { dir: 2 ** 32 - 1, addr: A(2), name: 'm'.repeat(255) }, replaced: { ino: 2 ** 32 - 1, addr: A(3) } };
      expect(decodeInode(encodeInode(i, ADDR), ADDR)).to.deep.equal(i);
    });

    it(`a symbolic link with the longest target, ${SYMLINK_TARGET_CHARS_MAX} characters of 3 UTF-8 bytes`, () => {
      const i = maximal(make('symlink', { target: '€'.repeat(SYMLINK_TARGET_CHARS_MAX) }));
      expect(decodeInode(encodeInode(i, ADDR), ADDR)).to.deep.equal(i);
    });

    it(`a file with ${NAMED_STREAMS_MAX} named streams of the longest names and ${OPENERS_MAX} openers; a directory with a full hash table and the longest mark`, () => {
      const f = maximal(make('file'));
      f.streams.push(...namedStreams(NAMED_STREAMS_MAX, STREAM_NAME_CHARS_MAX));
      f.openers = openers(OPENERS_MAX);
      expect(decodeInode(encodeInode(f, ADDR), ADDR)).to.deep.equal(f);
      const d = maximal(make('dir'));
      d.mark = { kind: 'rename_target', ino: 2 ** 32 - 1, addr: A(1), name: '€'.repeat(85), nlinkBefore: 2 ** 32 - 1, other: { dir: 2 ** 32 - 1, addr: A(2), name: '€'.repeat(85) }, replaced: { ino: 2 ** 32 - 1, addr: A(3) } };
      d.corrupt = 'c'.repeat(1000);
      expect(decodeInode(encodeInode(d, ADDR), ADDR)).to.deep.equal(d);
      // And the updates done it remembers, each id and the mark's at their longest.
      d.mark.txn = 't'.repeat(FS_TXN_CHARS_MAX);
      d.done = Array.from({ length: TXNS_KEPT }, (_, k) => `${k}`.padStart(FS_TXN_CHARS_MAX, 't'));
      expect(decodeInode(encodeInode(d, ADDR), ADDR)).to.deep.equal(d);
    });

    it('an inode that outgrows its page is refused E_INTERNAL naming the address, never written cut', () => {
      const i = maximal(make('dir'));
      i.streams.push(...namedStreams(NAMED_STREAMS_MAX, STREAM_NAME_CHARS_MAX));
      i.openers = openers(OPENERS_MAX);
      i.corrupt = 'c'.repeat(1000);
      expect(bodyBytes(i).length).to.be.above(FS_BODY_BYTES_MAX);
      expect(errorOf(() => encodeInode(i, ADDR))).to.match(new RegExp(`^E_INTERNAL: .* page for ${formatAddress(ADDR)} outgrew ${FS_BODY_BYTES_MAX} bytes`));
      expect(FS_HEADER_BYTES + FS_BODY_BYTES_MAX).to.equal(PAGE_BYTES);
    });
  });

  describe('the updates done a directory remembers (a request sent again happens once)', () => {
    it(`keeps the last ${TXNS_KEPT} ids, oldest out first, each once; none without an id`, () => {
      const d = make('dir');
      expect(d.done).to.deep.equal([]);
      rememberDone(d, undefined);
      expect(d.done).to.deep.equal([]);
      for (const t of ['a', 'b', 'a', 'c', 'd', 'e']) rememberDone(d, t);
      expect(d.done).to.deep.equal(['b', 'c', 'd', 'e']);
      expect(isDone('c', make('dir'), d)).to.equal(true);
      expect(isDone('a', d)).to.equal(false);
      expect(isDone(undefined, d)).to.equal(false);
      expect(roundTrip(d)).to.deep.equal(d);
    });

    it('reads a page written before ids were remembered as remembering none', () => {
      const d = make('dir');
      d.mark = { kind: 'create', ino: 9, addr: A(9), name: 'n', nlinkBefore: 0, other: null, replaced: null };
      const page = encodeInode(d, ADDR);
      const body = cborDecode(page.subarray(FS_HEADER_BYTES, FS_HEADER_BYTES + bodyLength(page))) as Record<string, unknown>;
      delete body.done;
      expect(decodeInode(sealFsPage('inode', body, ADDR), ADDR)).to.deep.equal(d);
    });

    it(`refuses an id longer than ${FS_TXN_CHARS_MAX} characters, or more than ${TXNS_KEPT} ids (E_CORRUPT)`, () => {
      const long = make('dir');
      long.done = ['t'.repeat(FS_TXN_CHARS_MAX + 1)];
      expect(errorOf(() => roundTrip(long))).to.match(/^E_CORRUPT: /);
      const many = make('dir');
      many.done = Array.from({ length: TXNS_KEPT + 1 }, (_, k) => `t${k}`);
      expect(errorOf(() => roundTrip(many))).to.match(/^E_CORRUPT: /);
    });
  });

  it("answers a directory's index; a file's is E_NOT_DIR, a directory marked corrupt is E_CORRUPT (M22)", () => {
    const d = make('dir');
    expect(dirOf(d)).to.equal(d.dir);
    expect(errorOf(() => dirOf(make('file')))).to.equal('E_NOT_DIR: a path goes through ino 4242, which is not a directory');
    expect(errorOf(() => dirOf(make('symlink', { target: 'x' }), 'mkdir'))).to.equal('E_NOT_DIR: mkdir goes through ino 4242, which is not a directory');
    // A type and an index that disagree: not a directory either.
    expect(errorOf(() => dirOf({ ...make('file'), dir: make('dir').dir }))).to.match(/^E_NOT_DIR: /);
    expect(errorOf(() => dirOf({ ...make('dir'), dir: null }))).to.match(/^E_NOT_DIR: /);
    const broken = make('dir');
    broken.corrupt = 'two entries are named "a"';
    expect(errorOf(() => dirOf(broken))).to.equal('E_CORRUPT: directory ino 4242 was found damaged past repair and is refused: two entries are named "a"');
  });

  it('reports the size of the default stream and the type bits stat shows', () => {
    const f = make('file');
    f.streams[0].size = 8191;
    f.streams[1].size = 5;
    expect(sizeOf(f)).to.equal(8191);
    expect(typeBits('file')).to.equal(0o100000);
    expect(typeBits('dir')).to.equal(0o040000);
    expect(typeBits('symlink')).to.equal(0o120000);
  });
});
