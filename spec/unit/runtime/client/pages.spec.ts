/**
 * The client library (M24) without a node: what each call puts on the wire
 * (addresses as 16 bytes big-endian), how answers become bigints and bytes,
 * and every refused argument, which must reject with its code and a sentence
 * naming what was given, and send nothing.
 */
import { expect } from 'chai';
import { MangroveError } from '../../../../bus/errors.js';
import type { Body } from '../../../../bus/messages/index.js';
import { clientPageOp, COPIES_MAX, FS_ATTR_BYTES, PAGES_PER_RANGE_MAX, PAGES_PER_REQUEST_MAX } from '../../../../bus/messages/page.js';
import { FS_ATTR_BYTES as STORE_FS_ATTR_BYTES } from '../../../../actors/storage/page-store.js';
import { MAX_ADDRESS, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { clientDefaults, clientLimits, connect, MangroveClient, recoveryBackoff, recoveryBackoffMs, TXN_RECORD_BYTES_MAX, type PageLink } from '../../../../runtime/client/pages.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { errorOf, rejectionOf } from '../../../helpers/error-of.js';

type Sent = { kind: string; body: Record<string, unknown> };

/** A link that records what is sent and answers from a script. */
class FakeLink implements PageLink {
  readonly endpoint = 'tcp://127.0.0.1:7400';
  readonly clientId = 'client-spec';
  readonly sent: Sent[] = [];
  closed = false;
  constructor(private readonly answer: (body: Record<string, unknown>) => unknown = () => ({ result: {} })) {}

  async request<K extends 'client.page' | 'client.fs' | 'client.status'>(kind: K, body: Body<K>): Promise<unknown> {
    this.sent.push({ kind, body: body as Record<string, unknown> });
    return this.answer(body as Record<string, unknown>);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function bytesOf(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

describe('runtime/client/pages', () => {
  describe('on the wire', () => {
    it('sends addresses as 16 bytes big-endian and turns answered addresses into bigints', async () => {
      const link = new FakeLink((b) => ({ result: b.op === 'reserve' ? { address: '0x0000000000000000000000000010f000', pages: 16 } : {} }));
      const c = new MangroveClient(link);
      expect(await c.reserve(16)).to.equal(0x10f000n);
      await c.alloc((1n << 64n) + 0x1000n, 16);
      expect(link.sent).to.deep.equal([
        { kind: 'client.page', body: { op: 'reserve', pages: 16 } },
        { kind: 'client.page', body: { op: 'alloc', addr: bytesOf('00000000000000010000000000001000'), pages: 16 } },
      ]);
    });

    it('sends copies and volatile only when given', async () => {
      const link = new FakeLink();
      const c = new MangroveClient(link);
      await c.alloc(0x2000n, 2, { copies: 3, volatile: true });
      await c.alloc(0x2000n, 2, { volatile: false });
      expect(link.sent.map((s) => s.body)).to.deep.equal([
        { op: 'alloc', addr: bytesOf('00000000000000000000000000002000'), pages: 2, copies: 3, volatile: true },
        { op: 'alloc', addr: bytesOf('00000000000000000000000000002000'), pages: 2, volatile: false },
      ]);
    });

    it('reads pages × 4096 bytes with their versions, one page by default', async () => {
      const link = new FakeLink((b) => ({ result: { data: Buffer.alloc((b.pages as number) * PAGE_BYTES, 7), versions: Array(b.pages).fill(3) } }));
      const c = new MangroveClient(link);
      const one = await c.read(0x1000n);
      expect(one).to.be.instanceOf(Uint8Array);
      expect(Buffer.isBuffer(one), 'a plain Uint8Array, not a Buffer').to.equal(false);
      expect(one.byteLength).to.equal(PAGE_BYTES);
      const three = await c.readVersions(0x1000n, 3);
      expect(three.data.byteLength).to.equal(3 * PAGE_BYTES);
      expect(three.versions).to.deep.equal([3, 3, 3]);
      expect(link.sent.map((s) => s.body.pages)).to.deep.equal([1, 3]);
    });

    it('writes whole pages as they are and resolves with the versions', async () => {
      const link = new FakeLink(() => ({ result: { versions: [4, 9] } }));
      const data = new Uint8Array(2 * PAGE_BYTES).fill(5);
      expect(await new MangroveClient(link).write(0x3000n, data)).to.deep.equal([4, 9]);
      expect(link.sent[0].body).to.deep.equal({ op: 'write', addr: bytesOf('00000000000000000000000000003000'), data });
    });

    it('locks exclusively unless asked for shared, and names every other op as the protocol does', async () => {
      const link = new FakeLink((b) => ({ result: b.op === 'super_root' ? { address: '0x5000' } : {} }));
      const c = new MangroveClient(link);
      await c.lock(0x1000n);
      await c.lock(0x1000n, 'shared');
      await c.unlock(0x1000n);
      await c.unreserve(0x1000n, 1);
      await c.unallocate(0x1000n, 1);
      await c.dealloc(0x1000n, 1);
      await c.flush(0x1000n);
      await c.stat(0x1000n);
      await c.space();
      await c.getAttrs(0x1000n);
      await c.setAttrs(0x1000n, { cacheInRam: true, fs: new Uint8Array(16).fill(1) });
      expect(await c.superRoot()).to.equal(0x5000n);
      await c.setSuperRoot(0x5000n);
      const ops = link.sent.map((s) => [s.body.op, s.body.mode ?? s.body.pages ?? '']);
      expect(ops).to.deep.equal([
        ['lock', 'exclusive'],
        ['lock', 'shared'],
        ['unlock', ''],
        ['unreserve', 1],
        ['unallocate', 1],
        ['dealloc', 1],
        ['flush', 1],
        ['stat', ''],
        ['space', ''],
        ['get_attrs', ''],
        ['set_attrs', ''],
        ['super_root', ''],
        ['set_super_root', ''],
      ]);
      expect(link.sent[10].body).to.deep.equal({ op: 'set_attrs', addr: bytesOf('00000000000000000000000000001000'), fs: new Uint8Array(16).fill(1), cacheInRam: true });
    });

    it('asks client.status for status and closes its link', async () => {
      const link = new FakeLink(() => ({ result: { self: 'n0' } }));
      const c = new MangroveClient(link);
      expect(await c.status()).to.deep.equal({ self: 'n0' });
      expect(link.sent).to.deep.equal([{ kind: 'client.status', body: {} }]);
      await c.close();
      expect(link.closed).to.equal(true);
      expect([c.endpoint, c.clientId]).to.deep.equal(['tcp://127.0.0.1:7400', 'client-spec']);
    });

    it('asks for access in a mode and unreferences pages, checking what comes back', async () => {
      const link = new FakeLink((body) => ({ result: body.op === 'access' ? { pages: 2, versions: [3, 0] } : { pages: 2, dropped: 1 } }));
      const c = new MangroveClient(link);
      expect(await c.access(0x2000n, 2, 'write')).to.deep.equal([3, 0]);
      expect(await c.unreference(0x2000n, 2)).to.equal(1);
      expect(link.sent.map((x) => x.body)).to.deep.equal([
        { op: 'access', addr: bytesOf('00000000000000000000000000002000'), pages: 2, mode: 'write' },
        { op: 'unreference', addr: bytesOf('00000000000000000000000000002000'), pages: 2 },
      ]);
      expect(await rejectionOf(c.access(0x2000n, 1, 'own' as never))).to.match(/^E_BAD_ARGUMENT: access is for 'read' or 'write'/);
      expect(link.sent).to.have.length(2);
      const wrong = new MangroveClient(new FakeLink(() => ({ result: { dropped: 5 } })));
      expect(await rejectionOf(wrong.unreference(0x2000n, 2))).to.match(/^E_BAD_MESSAGE/);
    });

    it('passes the node\'s refusal through with its code', async () => {
      const link = new FakeLink(() => Promise.reject(new MangroveError('E_LOCKED', 'client-b holds an exclusive lock')));
      expect(await rejectionOf(new MangroveClient(link).lock(0x1000n))).to.equal('E_LOCKED: client-b holds an exclusive lock');
    });

    it('refuses an answer that breaks the protocol with E_BAD_MESSAGE', async () => {
      const short = new MangroveClient(new FakeLink(() => ({ result: { data: new Uint8Array(10), versions: [1] } })));
      expect(await rejectionOf(short.read(0x1000n))).to.match(/^E_BAD_MESSAGE: the node's answer to read should hold 4096 bytes of data, but has 10 bytes/);
      const versions = new MangroveClient(new FakeLink(() => ({ result: { versions: [1] } })));
      expect(await rejectionOf(versions.write(0x1000n, new Uint8Array(2 * PAGE_BYTES)))).to.match(/^E_BAD_MESSAGE: .*2 page versions/);
      const address = new MangroveClient(new FakeLink(() => ({ result: { address: 'here' } })));
      expect(await rejectionOf(address.reserve(1))).to.match(/^E_BAD_MESSAGE: .*an address in 0x hex, but has a string \("here"\)/);
    });
  });

  describe('refuses bad arguments before sending anything', () => {
    const page = 0x1000n;
    const last = MAX_ADDRESS - BigInt(PAGE_BYTES - 1);
    const cases: [string, (c: MangroveClient) => Promise<unknown>, RegExp][] = [
      ['an unaligned address', (c) => c.read(0x1001n), /^E_BAD_ADDRESS: 0x0+1001 is not the start of a page/],
      ['a negative address', (c) => c.stat(-4096n), /^E_BAD_ADDRESS: -0x1000 is outside the 128-bit address space/],
      ['an address past 2^128', (c) => c.lock(1n << 128n), /^E_BAD_ADDRESS: 0x1(0){32} is outside the 128-bit address space/],
      ['a number for an address', (c) => c.read(4096 as unknown as bigint), /^E_BAD_ARGUMENT: an address is a bigint such as 0x1000n, not a number \(4096\)/],
      ['a string for an address', (c) => c.unlock('0x1000' as unknown as bigint), /^E_BAD_ARGUMENT: an address is a bigint .*not a string \("0x1000"\)/],
      ['read of 0 pages', (c) => c.read(page, 0), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 256 .*not a number \(0\)/],
      ['read of 257 pages', (c) => c.readVersions(page, 257), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 256 \(one request carries at most 256 pages\), not a number \(257\)/],
      ['read of 1.5 pages', (c) => c.read(page, 1.5), /^E_BAD_ARGUMENT: pages must be an integer/],
      ['flush of 257 pages', (c) => c.flush(page, 257), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 256/],
      ['read past the end of the space', (c) => c.read(last, 2), /^E_BAD_ADDRESS: 2 pages from 0xf+000 run past the end of the 128-bit address space/],
      ['reserve of 0 pages', (c) => c.reserve(0), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 4294967296 \(2\^32\), not a number \(0\)/],
      ['reserve of 2^32+1 pages', (c) => c.reserve(2 ** 32 + 1), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 4294967296/],
      ['reserve of NaN pages', (c) => c.reserve(NaN), /^E_BAD_ARGUMENT: pages must be .*not a number \(NaN\)/],
      ['a bigint page count', (c) => c.dealloc(page, 2n as unknown as number), /^E_BAD_ARGUMENT: pages must be .*not 0x2n/],
      ['a range past the end', (c) => c.unreserve(last, 2), /^E_BAD_ADDRESS: 2 pages from 0xf+000 run past the end/],
      ['alloc of 0 copies', (c) => c.alloc(page, 1, { copies: 0 }), /^E_BAD_ARGUMENT: copies must be an integer from 1 to 8, not a number \(0\)/],
      ['alloc of 9 copies', (c) => c.alloc(page, 1, { copies: 9 }), /^E_BAD_ARGUMENT: copies must be an integer from 1 to 8/],
      ['alloc with volatile "yes"', (c) => c.alloc(page, 1, { volatile: 'yes' as unknown as boolean }), /^E_BAD_ARGUMENT: volatile must be true or false, not a string \("yes"\)/],
      ['alloc with a misspelt option', (c) => c.alloc(page, 1, { copis: 2 } as never), /^E_BAD_ARGUMENT: alloc options has no "copis"; it takes copies, volatile/],
      ['a write of part of a page', (c) => c.write(page, new Uint8Array(100)), /^E_BAD_ARGUMENT: data must be whole 4096-byte pages; 100 bytes were given \(0 pages and 100 bytes\)/],
      ['a write of 1.5 pages', (c) => c.write(page, new Uint8Array(6144)), /; 6144 bytes were given \(1 page and 2048 bytes\)/],
      ['an empty write', (c) => c.write(page, new Uint8Array(0)), /^E_BAD_ARGUMENT: data must be whole 4096-byte pages; 0 bytes were given/],
      ['a write of 257 pages', (c) => c.write(page, new Uint8Array(257 * PAGE_BYTES)), /^E_BAD_ARGUMENT: one write carries at most 256 pages \(1048576 bytes\); 1052672 bytes \(257 pages\) were given/],
      ['a write of an array', (c) => c.write(page, [1, 2] as unknown as Uint8Array), /^E_BAD_ARGUMENT: data must be a Uint8Array, not an array of 2/],
      ['a write past the end', (c) => c.write(last, new Uint8Array(2 * PAGE_BYTES)), /^E_BAD_ADDRESS: 2 pages from 0xf+000 run past the end/],
      ['a lock mode that is not one', (c) => c.lock(page, 'write' as never), /^E_BAD_ARGUMENT: a lock is 'shared' or 'exclusive', not a string \("write"\)/],
      ['setAttrs with nothing to set', (c) => c.setAttrs(page, {}), /^E_BAD_ARGUMENT: setAttrs has nothing to set/],
      ['an fs attribute of 15 bytes', (c) => c.setAttrs(page, { fs: new Uint8Array(15) }), /^E_BAD_ARGUMENT: fs must be a Uint8Array of 16 bytes, not 15 bytes/],
      ['cacheInRam "on"', (c) => c.setAttrs(page, { cacheInRam: 'on' as unknown as boolean }), /^E_BAD_ARGUMENT: cacheInRam must be true or false/],
      ['setAttrs with an unknown key', (c) => c.setAttrs(page, { cache: true } as never), /^E_BAD_ARGUMENT: setAttrs has no "cache"/],
      ['setSuperRoot of an unaligned address', (c) => c.setSuperRoot(0x10n), /^E_BAD_ADDRESS: .* is not the start of a page/],
    ];
    for (const [what, call, expected] of cases) {
      it(what, async () => {
        const link = new FakeLink();
        expect(await rejectionOf(call(new MangroveClient(link)))).to.match(expected);
        expect(link.sent, 'nothing sent').to.deep.equal([]);
      });
    }
  });

  describe('connect', () => {
    it('refuses a bad endpoint, timeout or client id before opening anything', async () => {
      expect(await rejectionOf(connect('localhost:7400'))).to.match(/^E_BAD_ARGUMENT: the endpoint must be like tcp:\/\/127\.0\.0\.1:7400, not a string \("localhost:7400"\)/);
      expect(await rejectionOf(connect('tcp://127.0.0.1:7400', { timeoutMs: 0 }))).to.match(/^E_BAD_ARGUMENT: timeoutMs must be an integer from 1 to 2147483647, not a number \(0\)/);
      expect(await rejectionOf(connect('tcp://127.0.0.1:7400', { timeoutMs: 2 ** 31 }))).to.match(/^E_BAD_ARGUMENT: timeoutMs must be/);
      expect(await rejectionOf(connect('tcp://127.0.0.1:7400', { clientId: '' }))).to.match(/^E_BAD_ARGUMENT: clientId must be a string of 1 to 64 characters/);
      expect(await rejectionOf(connect('tcp://127.0.0.1:7400', { clientId: 'x'.repeat(65) }))).to.match(/^E_BAD_ARGUMENT: clientId must be/);
      expect(await rejectionOf(connect('tcp://127.0.0.1:7400', { timeout: 5 } as never))).to.match(/^E_BAD_ARGUMENT: connect options has no "timeout"/);
    });

    it('opens a link without a node; a call then times out with the ZeroMQ client\'s error', async () => {
      const c = await connect('tcp://127.0.0.1:1', { timeoutMs: 200, clientId: 'spec-client' });
      try {
        expect(c.endpoint).to.equal('tcp://127.0.0.1:1');
        expect(c.clientId).to.equal('spec-client');
        expect(await rejectionOf(c.space())).to.match(/^E_UNREACHABLE: no answer from tcp:\/\/127\.0\.0\.1:1 within 200 ms/);
      } finally {
        await c.close();
      }
      expect(await rejectionOf(c.space())).to.match(/^E_CLOSED/);
    });

    it('gives every client its own random id by default', async () => {
      const [a, b] = await Promise.all([connect('tcp://127.0.0.1:1'), connect('tcp://127.0.0.1:1')]);
      try {
        expect(a.clientId).to.match(/^client-[0-9a-f]{12}$/);
        expect(a.clientId).to.not.equal(b.clientId);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });
  });
});

describe('runtime/client/pages: the transaction log (M7)', () => {
  const outcome = (b: Record<string, unknown>) => {
    const state = { txn_commit: 'committed', txn_abort: 'aborted', txn_end: 'ended' }[b.op as string];
    return { result: { txn: b.txn, state, records: 2 } };
  };

  it('sends each call as the protocol has it, and every body passes the wire schema', async () => {
    const link = new FakeLink((b) => {
      if (b.op === 'txn_begin') return { result: { txn: 7 } };
      if (b.op === 'txn_log') return { result: { txn: b.txn, seq: 3 } };
      if (b.op === 'txn_read') return { result: { records: [{ txn: 7, seq: 1, data: Buffer.from([1, 2]) }] } };
      return outcome(b);
    });
    const c = new MangroveClient(link);
    const record = new Uint8Array(TXN_RECORD_BYTES_MAX).fill(1);
    expect(await c.txnBegin()).to.equal(7);
    expect(await c.txnLog(7, record)).to.equal(3);
    expect(await c.txnLog(7, new Uint8Array(0))).to.equal(3);
    expect(await c.txnCommit(7)).to.deep.equal({ txn: 7, state: 'committed', records: 2 });
    expect(await c.txnAbort(8)).to.deep.equal({ txn: 8, state: 'aborted', records: 2 });
    expect(await c.txnEnd(Number.MAX_SAFE_INTEGER)).to.deep.equal({ txn: Number.MAX_SAFE_INTEGER, state: 'ended', records: 2 });
    const all = await c.txnRead();
    expect(all).to.deep.equal([{ txn: 7, seq: 1, data: new Uint8Array([1, 2]) }]);
    expect(Buffer.isBuffer(all[0].data), 'a plain Uint8Array, not a Buffer').to.equal(false);
    await c.txnRead(7);
    expect(link.sent.map((s) => s.body)).to.deep.equal([
      { op: 'txn_begin' },
      { op: 'txn_log', txn: 7, record },
      { op: 'txn_log', txn: 7, record: new Uint8Array(0) },
      { op: 'txn_commit', txn: 7 },
      { op: 'txn_abort', txn: 8 },
      { op: 'txn_end', txn: Number.MAX_SAFE_INTEGER },
      { op: 'txn_read' },
      { op: 'txn_read', txn: 7 },
    ]);
    for (const { kind, body } of link.sent) {
      expect(kind).to.equal('client.page');
      expect(clientPageOp.safeParse(body).success, JSON.stringify(body.op)).to.equal(true);
    }
  });

  it('passes the node\'s refusal through with its code', async () => {
    const link = new FakeLink(() => Promise.reject(new MangroveError('E_NOT_FOUND', 'transaction 9 cannot be ended: it was aborted or ended')));
    expect(await rejectionOf(new MangroveClient(link).txnEnd(9))).to.equal('E_NOT_FOUND: transaction 9 cannot be ended: it was aborted or ended');
  });

  it('refuses an answer that breaks the protocol with E_BAD_MESSAGE', async () => {
    const answering = (result: unknown) => new MangroveClient(new FakeLink(() => ({ result })));
    expect(await rejectionOf(answering({ txn: 0 }).txnBegin())).to.match(/^E_BAD_MESSAGE: the node's answer to txn_begin should hold a transaction id, but has a number \(0\)/);
    expect(await rejectionOf(answering({ txn: 1 }).txnLog(1, new Uint8Array(1)))).to.match(/^E_BAD_MESSAGE: the node's answer to txn_log should hold a field seq/);
    expect(await rejectionOf(answering({ txn: 1, state: 'aborted', records: 0 }).txnCommit(1))).to.match(
      /^E_BAD_MESSAGE: the node's answer to txn_commit should hold \{txn: 1, state: 'committed', records\}/,
    );
    expect(await rejectionOf(answering({ txn: 2, state: 'ended', records: 0 }).txnEnd(1))).to.match(/^E_BAD_MESSAGE: .*txn_end/);
    expect(await rejectionOf(answering({ txn: 1, state: 'aborted', records: -1 }).txnAbort(1))).to.match(/^E_BAD_MESSAGE: .*txn_abort/);
    expect(await rejectionOf(answering({ records: 'none' }).txnRead())).to.match(/^E_BAD_MESSAGE: .*an array of records, but has a string/);
    expect(await rejectionOf(answering({ records: [{ txn: 2, seq: 1, data: new Uint8Array(1) }] }).txnRead(1))).to.match(
      /^E_BAD_MESSAGE: the node's answer to txn_read should hold records of transaction 1 with a seq/,
    );
    expect(await rejectionOf(answering({ records: [{ txn: 1, seq: 1, data: [1] }] }).txnRead())).to.match(/^E_BAD_MESSAGE: .*records of at most 4096 bytes, but has an array of 1/);
  });

  describe('refuses bad arguments before sending anything', () => {
    const idRule = /^E_BAD_ARGUMENT: a transaction id is a whole number from txnBegin \(1 or more\), not /;
    const cases: [string, (c: MangroveClient) => Promise<unknown>, RegExp][] = [
      ['a transaction id of 0', (c) => c.txnCommit(0), /not a number \(0\)$/],
      ['a negative transaction id', (c) => c.txnAbort(-1), /not a number \(-1\)$/],
      ['a fractional transaction id', (c) => c.txnEnd(1.5), /not a number \(1\.5\)$/],
      ['a transaction id past 2^53', (c) => c.txnLog(2 ** 53, new Uint8Array(1)), /not a number \(9007199254740992\)$/],
      ['a string transaction id', (c) => c.txnRead('7' as unknown as number), /not a string \("7"\)$/],
      ['a bigint transaction id', (c) => c.txnCommit(7n as unknown as number), /not 0x7n$/],
      ['a null transaction id for txnRead', (c) => c.txnRead(null as unknown as number), /not null$/],
    ];
    for (const [what, call, shown] of cases) {
      it(what, async () => {
        const link = new FakeLink();
        const refused = await rejectionOf(call(new MangroveClient(link)));
        expect(refused).to.match(idRule);
        expect(refused).to.match(shown);
        expect(link.sent, 'nothing sent').to.deep.equal([]);
      });
    }

    const records: [string, unknown, RegExp][] = [
      ['a record of 4097 bytes', new Uint8Array(TXN_RECORD_BYTES_MAX + 1), /^E_BAD_ARGUMENT: a log record holds at most 4096 bytes; 4097 were given: split it into several records$/],
      ['a record that is an array', [1, 2], /^E_BAD_ARGUMENT: a log record must be a Uint8Array, not an array of 2$/],
      ['a record that is a string', 'abc', /^E_BAD_ARGUMENT: a log record must be a Uint8Array, not a string \("abc"\)$/],
      ['no record', undefined, /^E_BAD_ARGUMENT: a log record must be a Uint8Array, not undefined$/],
    ];
    for (const [what, record, expected] of records) {
      it(what, async () => {
        const link = new FakeLink();
        expect(await rejectionOf(new MangroveClient(link).txnLog(1, record as Uint8Array))).to.match(expected);
        expect(link.sent, 'nothing sent').to.deep.equal([]);
      });
    }
  });
});

describe('runtime/client/pages: every limit is the wire schema\'s (runtime/client/checks.ts)', () => {
  const page = 0x1000n;
  const bytes = (n: number) => new Uint8Array(n);
  /** A call at a limit and one past it: the first is sent and passes clientPageOp, the second is refused with `refused` and sends nothing. */
  const limits: [string, (c: MangroveClient) => Promise<unknown>, (c: MangroveClient) => Promise<unknown>, RegExp][] = [
    ['a range of PAGES_PER_RANGE_MAX pages', (c) => c.reserve(PAGES_PER_RANGE_MAX), (c) => c.reserve(PAGES_PER_RANGE_MAX + 1), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 4294967296 \(2\^32\), not a number \(4294967297\)$/],
    ['an unallocate of PAGES_PER_RANGE_MAX pages', (c) => c.unallocate(page, PAGES_PER_RANGE_MAX), (c) => c.unallocate(page, PAGES_PER_RANGE_MAX + 1), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 4294967296/],
    ['a read of PAGES_PER_REQUEST_MAX pages', (c) => c.readVersions(page, PAGES_PER_REQUEST_MAX), (c) => c.read(page, PAGES_PER_REQUEST_MAX + 1), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 256 \(one request carries at most 256 pages\), not a number \(257\)$/],
    ['an access of PAGES_PER_REQUEST_MAX pages', (c) => c.access(page, PAGES_PER_REQUEST_MAX), (c) => c.access(page, PAGES_PER_REQUEST_MAX + 1), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 256/],
    ['an unreference of PAGES_PER_REQUEST_MAX pages', (c) => c.unreference(page, PAGES_PER_REQUEST_MAX), (c) => c.unreference(page, PAGES_PER_REQUEST_MAX + 1), /^E_BAD_ARGUMENT: pages must be an integer from 1 to 256/],
    ['a write of PAGES_PER_REQUEST_MAX pages', (c) => c.write(page, bytes(PAGES_PER_REQUEST_MAX * PAGE_BYTES)), (c) => c.write(page, bytes((PAGES_PER_REQUEST_MAX + 1) * PAGE_BYTES)), /^E_BAD_ARGUMENT: one write carries at most 256 pages/],
    ['COPIES_MAX copies', (c) => c.alloc(page, 1, { copies: COPIES_MAX }), (c) => c.alloc(page, 1, { copies: COPIES_MAX + 1 }), /^E_BAD_ARGUMENT: copies must be an integer from 1 to 8, not a number \(9\)$/],
    ['an fs attribute of FS_ATTR_BYTES', (c) => c.setAttrs(page, { fs: bytes(FS_ATTR_BYTES) }), (c) => c.setAttrs(page, { fs: bytes(FS_ATTR_BYTES + 1) }), /^E_BAD_ARGUMENT: fs must be a Uint8Array of 16 bytes, not 17 bytes$/],
    ['a log record of TXN_RECORD_BYTES_MAX', (c) => c.txnLog(1, bytes(TXN_RECORD_BYTES_MAX)), (c) => c.txnLog(1, bytes(TXN_RECORD_BYTES_MAX + 1)), /^E_BAD_ARGUMENT: a log record holds at most 4096 bytes; 4097 were given/],
    ['a transaction id of 2^53 - 1', (c) => c.txnEnd(Number.MAX_SAFE_INTEGER), (c) => c.txnEnd(Number.MAX_SAFE_INTEGER + 1), /^E_BAD_ARGUMENT: a transaction id is a whole number from txnBegin/],
    ['a lock mode the wire has', (c) => c.lock(page, 'shared'), (c) => c.lock(page, 'Shared' as never), /^E_BAD_ARGUMENT: a lock is 'shared' or 'exclusive', not a string \("Shared"\)$/],
  ];
  /** Answers whatever each op needs, sized from what was asked. */
  const answer = (b: Record<string, unknown>) => {
    const pages = b.data instanceof Uint8Array ? b.data.byteLength / PAGE_BYTES : typeof b.pages === 'number' ? b.pages : 1;
    const read = b.op === 'read' ? { data: new Uint8Array(pages * PAGE_BYTES) } : {};
    const versions = b.op === 'read' || b.op === 'write' || b.op === 'access' ? { versions: Array(pages).fill(1) } : {};
    return { result: { address: '0x1000', ...read, ...versions, dropped: 0, seq: 1, txn: b.txn, state: 'ended', records: 0 } };
  };
  for (const [what, at, past, refused] of limits) {
    it(`at the limit, sends ${what}; past it, refuses with its code`, async () => {
      const ok = new FakeLink(answer);
      await at(new MangroveClient(ok));
      expect(ok.sent).to.have.length(1);
      expect(clientPageOp.safeParse(ok.sent[0].body).success, 'what is sent passes the wire schema').to.equal(true);
      const no = new FakeLink(answer);
      expect(await rejectionOf(past(new MangroveClient(no)))).to.match(refused);
      expect(no.sent, 'nothing sent').to.deep.equal([]);
    });
  }

  it('refuses exactly what the wire schema refuses, field by field', async () => {
    // Each candidate is tried through the client and against clientPageOp with the same op: they must agree.
    const candidates: unknown[] = [0, 1, 2, 1.5, -1, 8, 9, 256, 257, 2 ** 32, 2 ** 32 + 1, NaN, Infinity, '1', 1n, null, true];
    for (const value of candidates) {
      const tries: [string, (c: MangroveClient) => Promise<unknown>, Record<string, unknown>][] = [
        ['reserve pages', (c) => c.reserve(value as number), { op: 'reserve', pages: value }],
        ['flush pages', (c) => c.flush(page, value as number), { op: 'flush', addr: bytes(16), pages: value }],
        ['alloc copies', (c) => c.alloc(page, 1, { copies: value as number }), { op: 'alloc', addr: bytes(16), pages: 1, copies: value }],
        ['alloc volatile', (c) => c.alloc(page, 1, { volatile: value as boolean }), { op: 'alloc', addr: bytes(16), pages: 1, volatile: value }],
      ];
      for (const [what, call, body] of tries) {
        const link = new FakeLink(answer);
        const client = await rejectionOf(call(new MangroveClient(link)));
        const wire = clientPageOp.safeParse(body).success;
        expect(client === 'resolved', `${what} ${String(value)}: client says ${client}, the wire says ${wire ? 'yes' : 'no'}`).to.equal(wire);
        if (!wire) expect(client, `${what} ${String(value)}`).to.match(/^E_BAD_ARGUMENT: /);
      }
    }
  });

  it('keeps one file-system attribute size: the store\'s, the client\'s and the wire\'s are the same constant', () => {
    expect(STORE_FS_ATTR_BYTES).to.equal(FS_ATTR_BYTES);
    expect(clientLimits.fsBytes).to.equal(FS_ATTR_BYTES);
  });

  it('takes a client id as the wire\'s id: up to 64 characters', async () => {
    const c = await connect('tcp://127.0.0.1:1', { clientId: 'x'.repeat(64) });
    try {
      expect(c.clientId).to.have.length(64);
    } finally {
      await c.close();
    }
    expect(await rejectionOf(connect('tcp://127.0.0.1:1', { clientId: 7 as unknown as string }))).to.match(/^E_BAD_ARGUMENT: clientId must be a string of 1 to 64 characters, not a number \(7\)$/);
  });

  it('names the first wrong argument in the order it always has', async () => {
    const first = async (call: (c: MangroveClient) => Promise<unknown>) => rejectionOf(call(new MangroveClient(new FakeLink())));
    // The address before the count, the count before the options' keys, the keys before their values.
    expect(await first((c) => c.alloc(0x10n, 0, { copis: 1 } as never))).to.match(/^E_BAD_ADDRESS: /);
    expect(await first((c) => c.alloc(page, 0, { copis: 1 } as never))).to.match(/^E_BAD_ARGUMENT: pages must be/);
    expect(await first((c) => c.alloc(page, 1, { copis: 1, copies: 9 } as never))).to.match(/^E_BAD_ARGUMENT: alloc options has no "copis"/);
    // The end of the space as soon as the count is good: before the options.
    const last = MAX_ADDRESS - BigInt(PAGE_BYTES - 1);
    expect(await first((c) => c.alloc(last, 2, { copies: 9 }))).to.match(/^E_BAD_ADDRESS: 2 pages from .* run past the end/);
    // A write names its data before its address.
    expect(await first((c) => c.write(0x1001n, bytes(100)))).to.match(/^E_BAD_ARGUMENT: data must be whole 4096-byte pages/);
    expect(await first((c) => c.setAttrs(0x10n, null as never))).to.match(/^E_BAD_ADDRESS: /);
  });
});

describe('runtime/client/pages: a rebuild costs a pause, not an error (M6)', () => {
  const REBUILDING = 'the cluster is rebuilding after a node failure or restart; try again in a moment';
  const rebuilding = () => Promise.reject(new MangroveError('E_RECOVERING', REBUILDING));
  const versions = { result: { versions: [4] } };

  /** A link that answers from `script` in turn (its last entry from then on), noting the clock's time of every request. */
  function scripted(clock: SimClock, ...script: (() => unknown)[]): FakeLink & { at: number[] } {
    const at: number[] = [];
    const link = new FakeLink(() => {
      at.push(clock.now());
      return script[Math.min(at.length, script.length) - 1]();
    });
    return Object.assign(link, { at });
  }

  /** Random numbers in turn, checking none is asked for beyond them. */
  function randoms(...values: number[]): () => number {
    return () => {
      expect(values, 'no more random numbers asked for than given').to.not.be.empty;
      return values.shift()!;
    };
  }

  /** `p`'s outcome as `refusal` tells it, with the clock's timers (and the promises they start) run until it settles. */
  async function inSimTime(clock: SimClock, p: Promise<unknown>): Promise<string> {
    let done = false;
    const outcome = rejectionOf(p).finally(() => (done = true));
    for (let steps = 0; !done; steps++) {
      expect(steps, 'the call settles within 10000 timer steps').to.be.below(10_000);
      await clock.runUntilAsync(clock.nextAt() ?? clock.now());
    }
    return outcome;
  }

  const gaps = (at: number[]) => at.slice(1).map((t, i) => t - at[i]);
  const page = new Uint8Array(PAGE_BYTES).fill(3);

  it('sends a call refused twice with E_RECOVERING again, after waits that grow, and resolves with its answer', async () => {
    const clock = new SimClock(1000);
    const link = scripted(clock, rebuilding, rebuilding, () => versions);
    const c = new MangroveClient(link, { clock, random: () => 0.5 });
    const write = c.write(0x1000n, page);
    expect(await inSimTime(clock, write)).to.equal('resolved');
    expect(await write).to.deep.equal([4]);
    expect(link.at).to.deep.equal([1000, 1015, 1045]);
    expect(gaps(link.at)).to.deep.equal([15, 30]);
    const first = { op: 'write', addr: bytesOf('00000000000000000000000000001000'), data: page };
    expect(link.sent.map((x) => x.body), 'the same request every time').to.deep.equal([first, first, first]);
    expect(c.stats()).to.deep.equal({ recoveryRetries: 2, recoveryGiveUps: 0, recoveryPauseMsMax: 45, lockLeasesLost: 0 });
    expect(clock.pending(), 'no timer left behind').to.equal(0);
  });

  it('waits half its ceiling plus a random half, the ceiling doubling from 20 ms to 500 ms', async () => {
    expect(recoveryBackoff).to.deep.equal({ firstMs: 20, maxMs: 500 });
    const low = [0, 1, 2, 3, 4, 5, 6, 40].map((n) => recoveryBackoffMs(n, () => 0));
    const high = [0, 1, 2, 3, 4, 5, 6, 40].map((n) => recoveryBackoffMs(n, () => 0.999999));
    expect(low).to.deep.equal([10, 20, 40, 80, 160, 250, 250, 250]);
    expect(high).to.deep.equal([20, 40, 80, 160, 320, 500, 500, 500]);
    expect(errorOf(() => recoveryBackoffMs(0, () => 1))).to.match(/^E_INTERNAL: invariant broken: the random source gives a float in \[0, 1\)/);
    // The client takes each wait's jitter from the source it was given, one number a wait.
    const clock = new SimClock();
    const link = scripted(clock, rebuilding, rebuilding, rebuilding, () => versions);
    const c = new MangroveClient(link, { clock, random: randoms(0, 0.999999, 0.5) });
    expect(await inSimTime(clock, c.write(0x1000n, page))).to.equal('resolved');
    expect(gaps(link.at)).to.deep.equal([10, 40, 60]);
  });

  it('rejects with E_RECOVERING once recoveryWaitMs have passed since the first refusal, saying how long it waited', async () => {
    const clock = new SimClock(5000);
    const link = scripted(clock, rebuilding);
    const c = new MangroveClient(link, { clock, random: () => 0, recoveryWaitMs: 1000 });
    expect(await inSimTime(clock, c.read(0x1000n))).to.equal(
      `E_RECOVERING: ${REBUILDING} (still refused after waiting 1000 ms over 9 tries; connect's recoveryWaitMs is 1000)`,
    );
    // Waits of 10, 20, 40, 80, 160 ms, then the 500 ms cap's 250, the last one cut to end at the deadline.
    expect(gaps(link.at)).to.deep.equal([10, 20, 40, 80, 160, 250, 250, 190]);
    expect(link.at.at(-1)).to.equal(6000);
    expect(c.stats()).to.deep.equal({ recoveryRetries: 8, recoveryGiveUps: 1, recoveryPauseMsMax: 1000, lockLeasesLost: 0 });
    expect(clock.pending()).to.equal(0);
  });

  it('waits out a rebuild for 30 s by default', async () => {
    expect(clientDefaults.recoveryWaitMs).to.equal(30_000);
    const clock = new SimClock();
    const link = scripted(clock, rebuilding);
    const c = new MangroveClient(link, { clock, random: () => 0.5 });
    expect(await inSimTime(clock, c.stat(0x1000n))).to.match(/^E_RECOVERING: .*\(still refused after waiting 30000 ms over \d+ tries; connect's recoveryWaitMs is 30000\)$/);
    expect(link.at.at(-1)).to.equal(30_000);
    expect(Math.max(...gaps(link.at)), 'no wait longer than the cap').to.equal(recoveryBackoff.maxMs * 0.75);
  });

  it('ends the wait at the first answer that is not E_RECOVERING, and passes it through', async () => {
    const clock = new SimClock();
    const link = scripted(clock, rebuilding, () => Promise.reject(new MangroveError('E_NO_QUORUM', 'lock needs quorum and this node has none')));
    const c = new MangroveClient(link, { clock, random: () => 0 });
    expect(await inSimTime(clock, c.lock(0x1000n))).to.equal('E_NO_QUORUM: lock needs quorum and this node has none');
    expect(link.at).to.deep.equal([0, 10]);
    expect(c.stats()).to.deep.equal({ recoveryRetries: 1, recoveryGiveUps: 0, recoveryPauseMsMax: 10, lockLeasesLost: 0 });
  });

  for (const code of ['E_LOCKED', 'E_NO_QUORUM', 'E_UNREACHABLE', 'E_TIMEOUT', 'E_PAGE_LOST', 'E_BUSY', 'E_INTERNAL'] as const) {
    it(`does not send a call refused with ${code} again`, async () => {
      const clock = new SimClock();
      const link = scripted(clock, () => Promise.reject(new MangroveError(code, 'no')));
      const c = new MangroveClient(link, { clock, random: randoms() });
      expect(await rejectionOf(c.lock(0x1000n))).to.equal(`${code}: no`);
      expect(link.sent).to.have.length(1);
      expect(clock.pending(), 'no wait begun').to.equal(0);
      expect(c.stats()).to.deep.equal({ recoveryRetries: 0, recoveryGiveUps: 0, recoveryPauseMsMax: 0, lockLeasesLost: 0 });
    });
  }

  it('with recoveryWaitMs 0, rejects with the node\'s E_RECOVERING at once, as it is', async () => {
    const clock = new SimClock();
    const link = scripted(clock, rebuilding);
    const c = new MangroveClient(link, { clock, random: randoms(), recoveryWaitMs: 0 });
    expect(await rejectionOf(c.write(0x1000n, page))).to.equal(`E_RECOVERING: ${REBUILDING}`);
    expect(link.sent).to.have.length(1);
    expect(clock.pending()).to.equal(0);
    expect(c.stats()).to.deep.equal({ recoveryRetries: 0, recoveryGiveUps: 1, recoveryPauseMsMax: 0, lockLeasesLost: 0 });
  });

  it('rejects a call waiting out a rebuild with E_CLOSED when the client closes, and sends it no more', async () => {
    const clock = new SimClock();
    const link = scripted(clock, rebuilding);
    const c = new MangroveClient(link, { clock, random: () => 0 });
    const read = rejectionOf(c.read(0x1000n));
    await new Promise((resolve) => setImmediate(resolve));
    expect(clock.pending(), 'the call waits').to.equal(1);
    await c.close();
    expect(await read).to.equal('E_CLOSED: the client was closed while read waited out a rebuild of the cluster');
    expect(link.sent).to.have.length(1);
    expect(clock.pending(), 'its timer is cleared').to.equal(0);
  });

  it('does not retry status: the node answers it while it rebuilds', async () => {
    const clock = new SimClock();
    const link = scripted(clock, rebuilding);
    expect(await rejectionOf(new MangroveClient(link, { clock }).status())).to.equal(`E_RECOVERING: ${REBUILDING}`);
    expect(link.sent).to.have.length(1);
  });

  describe('refuses a bad recoveryWaitMs, clock or random source', () => {
    const bad: [unknown, string][] = [
      [-1, 'a number (-1)'],
      [1.5, 'a number (1.5)'],
      [NaN, 'a number (NaN)'],
      [2 ** 31, 'a number (2147483648)'],
      ['30000', 'a string ("30000")'],
      [true, 'a boolean'],
    ];
    for (const [value, shown] of bad) {
      it(`recoveryWaitMs ${shown}, in connect and in the constructor`, async () => {
        const says = `E_BAD_ARGUMENT: recoveryWaitMs must be an integer from 0 to ${clientLimits.recoveryWaitMsMax}, not ${shown}`;
        expect(await rejectionOf(connect('tcp://127.0.0.1:1', { recoveryWaitMs: value as number }))).to.equal(says);
        expect(errorOf(() => new MangroveClient(new FakeLink(), { recoveryWaitMs: value as number }))).to.equal(says);
      });
    }

    it('takes 0 and the largest wait', async () => {
      for (const recoveryWaitMs of [0, clientLimits.recoveryWaitMsMax]) {
        const c = await connect('tcp://127.0.0.1:1', { recoveryWaitMs });
        await c.close();
        expect(errorOf(() => new MangroveClient(new FakeLink(), { recoveryWaitMs }))).to.equal('no error');
      }
    });

    it('a clock, a random source or an option that is not one', () => {
      const make = (opts: unknown) => () => new MangroveClient(new FakeLink(), opts as never);
      expect(errorOf(make({ random: 0.5 }))).to.equal('E_BAD_ARGUMENT: random must be a function giving a float in [0, 1), not a number (0.5)');
      expect(errorOf(make({ clock: { now: () => 0 } }))).to.equal('E_BAD_ARGUMENT: clock must have now, setTimeout and clearTimeout (bus/clock.ts), not an object');
      expect(errorOf(make({ clock: null }))).to.match(/^E_BAD_ARGUMENT: clock must have .*, not null$/);
      expect(errorOf(make({ recoveryWait: 5 }))).to.equal('E_BAD_ARGUMENT: client options has no "recoveryWait"; it takes recoveryWaitMs, lockLeaseMs, clock, random');
      expect(errorOf(make(7))).to.equal('E_BAD_ARGUMENT: client options must be an object, not a number (7)');
    });
  });
});

describe('runtime/client/pages: lock leases (M14: a client that went away loses its locks)', () => {
  /** Runs the clock's timers, and the promises they start, up to `ms` from now. */
  async function advance(clock: SimClock, ms: number): Promise<void> {
    await clock.runUntilAsync(clock.now() + ms);
  }
  const ops = (link: FakeLink) => link.sent.map((s) => s.body.op);

  it('locks with the lease, renews it a third of it apart while it holds a lock, and stops once it holds none', async () => {
    const clock = new SimClock();
    const link = new FakeLink((b) => ({ result: b.op === 'renew' ? { held: true } : {} }));
    const c = new MangroveClient(link, { clock, lockLeaseMs: 3000 });
    await c.lock(0x1000n);
    expect(link.sent[0].body).to.include({ op: 'lock', mode: 'exclusive', leaseMs: 3000 });
    await advance(clock, 3500);
    expect(ops(link)).to.deep.equal(['lock', 'renew', 'renew', 'renew']);
    await c.unlock(0x1000n);
    await advance(clock, 5000);
    expect(ops(link), 'nothing renewed once no lock is held').to.deep.equal(['lock', 'renew', 'renew', 'renew', 'unlock']);
    expect(clock.pending(), 'no timer left behind').to.equal(0);
    await c.close();
  });

  it('with lockLeaseMs 0 asks for no lease and renews nothing (the CLI: a lock outlives the command)', async () => {
    const clock = new SimClock();
    const link = new FakeLink();
    const c = new MangroveClient(link, { clock, lockLeaseMs: 0 });
    await c.lock(0x1000n, 'shared', { wait: true });
    expect(link.sent[0].body).to.deep.equal({ op: 'lock', addr: link.sent[0].body.addr, mode: 'shared', wait: true });
    await advance(clock, 60_000);
    expect(ops(link)).to.deep.equal(['lock']);
    expect(clock.pending()).to.equal(0);
  });

  it('counts a lease the node says ran out, and stops renewing: its locks are gone', async () => {
    const clock = new SimClock();
    const link = new FakeLink((b) => ({ result: b.op === 'renew' ? { held: false } : {} }));
    const c = new MangroveClient(link, { clock, lockLeaseMs: 1500 });
    await c.lock(0x1000n);
    await c.lock(0x2000n);
    await advance(clock, 5000);
    expect(ops(link)).to.deep.equal(['lock', 'lock', 'renew']);
    expect(c.stats().lockLeasesLost).to.equal(1);
  });

  it('keeps renewing through a renewal that fails, and stops when the client closes', async () => {
    const clock = new SimClock();
    let n = 0;
    const link = new FakeLink((b) => (b.op === 'renew' && n++ === 0 ? Promise.reject(new MangroveError('E_TIMEOUT', 'no answer')) : { result: { held: true } }));
    const c = new MangroveClient(link, { clock, lockLeaseMs: 3000 });
    await c.lock(0x1000n);
    await advance(clock, 2500);
    expect(ops(link)).to.deep.equal(['lock', 'renew', 'renew']);
    await c.close();
    expect(clock.pending(), 'closed: no renewal left').to.equal(0);
  });

  it('refuses a lease that is not 0 or 1000 to 3600000 ms', async () => {
    for (const [value, says] of [
      [500, 'E_BAD_ARGUMENT: lockLeaseMs must be 0 (no lease) or 1000 to 3600000, not 500'],
      [-1, 'E_BAD_ARGUMENT: lockLeaseMs must be an integer from 0 to 3600000, not a number (-1)'],
      [1500.5, 'E_BAD_ARGUMENT: lockLeaseMs must be an integer from 0 to 3600000, not a number (1500.5)'],
      ['10s', 'E_BAD_ARGUMENT: lockLeaseMs must be an integer from 0 to 3600000, not a string ("10s")'],
    ] as const) {
      expect(errorOf(() => new MangroveClient(new FakeLink(), { lockLeaseMs: value as number })), String(value)).to.equal(says);
      expect(await rejectionOf(connect('tcp://127.0.0.1:1', { lockLeaseMs: value as number })), String(value)).to.equal(says);
    }
  });
});
