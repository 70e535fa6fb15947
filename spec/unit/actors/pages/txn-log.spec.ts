/**
 * The transaction log (M7): one compliance suite for both stores,
 * MemoryTxnLogStore and LmdbTxnLogStore (spec/helpers/store-twins.ts), and
 * for TxnLog, the element, over each; then what only the real store can
 * show: a damaged log reported, and every acknowledged commit and end kept
 * across a SIGKILL (spec/fixtures/txn-writer.ts). A restart is a new TxnLog
 * over the store reopened (the memory twin's "disk" is the store object
 * itself).
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { TxnLog } from '../../../../actors/pages/txn-log.js';
import { MemoryTxnLogStore } from '../../../../runtime/storage/memory-txn-log.js';
import { TXN_ID_BLOCK_DEFAULT, TXN_OPEN_MAX, TXN_RECORDS_MAX, TXN_RECORD_BYTES_MAX, type TxnLogStore, type TxnRecord } from '../../../../actors/storage/txn-log-store.js';
import { MangroveError } from '../../../../bus/errors.js';
import { LmdbTxnLogStore, TXN_LOG_FILE, txnKey } from '../../../../runtime/storage/lmdb-txn-log.js';
import { errorOf } from '../../../helpers/error-of.js';
import { WRITER_ID_BLOCK, writerRecord, writerRecordCount } from '../../../fixtures/txn-writer.js';
import { lmdbTwin, memoryTwin, twinPerTest, type TwinSetUp } from '../../../helpers/store-twins.js';
import { tempStores } from '../../../helpers/temp-stores.js';
import { killWriterWhen } from '../../../helpers/kill-writer.js';

function bytes(...xs: number[]): Uint8Array {
  return new Uint8Array(xs);
}

function rec(txn: number, seq: number, data: Uint8Array): TxnRecord {
  return { txn, seq, data };
}

function txnLogCompliance(name: string, setUp: TwinSetUp<TxnLogStore>): void {
  describe(`${name}: transaction log store compliance`, () => {
    let s: TxnLogStore;
    const twin = twinPerTest(setUp, (first) => (s = first));

    it('starts empty', () => {
      expect(s.lastTxn()).to.equal(0);
      expect(s.read()).to.deep.equal([]);
      expect(s.read(1)).to.deep.equal([]);
      expect(s.committedRecords(1)).to.equal(undefined);
      expect(s.end(1)).to.equal(undefined);
    });

    it('reserves ids in blocks, never one twice, across a restart', async () => {
      expect(s.reserveTxns(1)).to.equal(1);
      expect(s.reserveTxns(64)).to.equal(2);
      expect(s.lastTxn()).to.equal(65);
      s = await twin.restart(s);
      expect(s.lastTxn()).to.equal(65);
      expect(s.reserveTxns(1)).to.equal(66);
      for (const bad of [0, -1, 1.5, 65_537, Number.NaN]) expect(errorOf(() => s.reserveTxns(bad)), `${bad}`).to.match(/^E_BAD_ARGUMENT: a block of transaction ids is 1 to 65536 ids/);
      expect(s.lastTxn()).to.equal(66);
    });

    it('commits records as copies and reads them back in (txn, seq) order', () => {
      s.reserveTxns(10);
      const a = bytes(1, 2, 3);
      const full = new Uint8Array(TXN_RECORD_BYTES_MAX).fill(0xee);
      s.commit(3, [a, new Uint8Array(0), full]);
      s.commit(1, []);
      s.commit(2, [bytes(9)]);
      a[0] = 0;
      expect(s.read()).to.deep.equal([rec(2, 1, bytes(9)), rec(3, 1, bytes(1, 2, 3)), rec(3, 2, new Uint8Array(0)), rec(3, 3, full)]);
      expect(s.read(3).map((r) => r.seq)).to.deep.equal([1, 2, 3]);
      expect(s.read(1)).to.deep.equal([]);
      expect(s.read(4)).to.deep.equal([]);
      expect([1, 2, 3, 4].map((t) => s.committedRecords(t))).to.deep.equal([0, 1, 3, undefined]);
      const got = s.read(2);
      got[0].data[0] = 7;
      expect(s.read(2)[0].data).to.deep.equal(bytes(9));
      expect(Buffer.isBuffer(got[0].data), 'a plain Uint8Array').to.equal(false);
    });

    it('refuses a commit it cannot take whole, and changes nothing', () => {
      s.reserveTxns(2);
      s.commit(1, [bytes(1)]);
      const refused: [number, unknown[], RegExp][] = [
        [3, [], /^E_NOT_FOUND: transaction 3 was never begun on this node \(the highest id reserved is 2\)/],
        [1, [bytes(2)], /^E_BAD_ARGUMENT: transaction 1 is already committed/],
        [2, Array.from({ length: TXN_RECORDS_MAX + 1 }, () => bytes(1)), /^E_BAD_ARGUMENT: transaction 2 may hold at most 1024 records, not 1025/],
        [2, [bytes(1), new Uint8Array(TXN_RECORD_BYTES_MAX + 1)], /^E_BAD_ARGUMENT: a log record holds at most 4096 bytes, not 4097/],
        [2, [bytes(1), 'text'], /^E_BAD_ARGUMENT: a log record is a Uint8Array, not a string \("text"\)/],
        [0, [], /^E_BAD_ARGUMENT: a transaction id is a whole number, 1 or more, as begin gave it, not 0/],
        [1.5, [], /^E_BAD_ARGUMENT: a transaction id .*not 1.5/],
      ];
      for (const [txn, records, re] of refused) expect(errorOf(() => s.commit(txn, records as Uint8Array[])), `${txn}`).to.match(re);
      expect(errorOf(() => s.read(-1))).to.match(/^E_BAD_ARGUMENT: /);
      expect(errorOf(() => s.end('1' as unknown as number))).to.match(/^E_BAD_ARGUMENT: .*not a string \("1"\)/);
      expect(s.read()).to.deep.equal([rec(1, 1, bytes(1))]);
      expect(s.committedRecords(2)).to.equal(undefined);
      s.commit(2, Array.from({ length: TXN_RECORDS_MAX }, (_, i) => bytes(i & 0xff)));
      expect(s.committedRecords(2)).to.equal(TXN_RECORDS_MAX);
    });

    it('ends a committed transaction durably, saying how many records it held', async () => {
      s.reserveTxns(3);
      s.commit(1, [bytes(1), bytes(2)]);
      s.commit(2, [bytes(3)]);
      s.commit(3, []);
      expect(s.end(1)).to.equal(2);
      expect(s.end(1)).to.equal(undefined);
      expect(s.end(3)).to.equal(0);
      s = await twin.restart(s);
      expect(s.read()).to.deep.equal([rec(2, 1, bytes(3))]);
      expect([1, 2, 3].map((t) => s.committedRecords(t))).to.deep.equal([undefined, 1, undefined]);
    });

    it('refuses calls after close', async () => {
      await s.close();
      expect(errorOf(() => s.lastTxn())).to.match(/^E_CLOSED: /);
      expect(errorOf(() => s.reserveTxns(1))).to.match(/^E_CLOSED: /);
      expect(errorOf(() => s.read())).to.match(/^E_CLOSED: /);
      expect(errorOf(() => s.commit(1, []))).to.match(/^E_CLOSED: /);
    });
  });

  describe(`${name}: TxnLog`, () => {
    /** The store as it is now: the one the log runs over. */
    let store: TxnLogStore;
    let log: TxnLog;
    const twin = twinPerTest(setUp, (first) => {
      store = first;
      log = new TxnLog(store);
    });
    const restart = async () => {
      store = await twin.restart(store);
      log = new TxnLog(store);
    };

    it('begins, logs, commits and reads back; nothing is readable before commit', () => {
      expect(log.begin()).to.deep.equal({ txn: 1 });
      expect(log.begin()).to.deep.equal({ txn: 2 });
      expect(log.log(1, bytes(1))).to.deep.equal({ txn: 1, seq: 1 });
      expect(log.log(1, new Uint8Array(0))).to.deep.equal({ txn: 1, seq: 2 });
      expect(log.log(2, bytes(5))).to.deep.equal({ txn: 2, seq: 1 });
      expect(errorOf(() => log.read(1))).to.equal('E_NOT_FOUND: transaction 1 is open, not yet committed: only a committed transaction\'s records can be read');
      expect(log.read()).to.deep.equal({ records: [] });
      expect(store.read()).to.deep.equal([]);
      expect(log.commit(1)).to.deep.equal({ txn: 1, state: 'committed', records: 2 });
      expect(log.read(1)).to.deep.equal({ records: [rec(1, 1, bytes(1)), rec(1, 2, new Uint8Array(0))] });
      expect(log.read()).to.deep.equal({ records: [rec(1, 1, bytes(1)), rec(1, 2, new Uint8Array(0))] });
      expect(log.openCount()).to.equal(1);
    });

    it('keeps a copy of each record as it was logged', () => {
      const { txn } = log.begin();
      const r = bytes(1, 2);
      log.log(txn, r);
      r[0] = 9;
      log.commit(txn);
      expect(log.read(txn).records[0].data).to.deep.equal(bytes(1, 2));
    });

    it('reads every committed, unended transaction in (txn, seq) order, whatever order they committed in', () => {
      const [a, b, c, d] = [log.begin().txn, log.begin().txn, log.begin().txn, log.begin().txn];
      log.log(b, bytes(0xb1));
      log.log(b, bytes(0xb2));
      log.log(a, bytes(0xa1));
      log.log(c, bytes(0xc1));
      log.log(d, bytes(0xd1));
      log.commit(b);
      log.commit(d);
      log.commit(a);
      log.abort(c);
      expect(log.read()).to.deep.equal({ records: [rec(a, 1, bytes(0xa1)), rec(b, 1, bytes(0xb1)), rec(b, 2, bytes(0xb2)), rec(d, 1, bytes(0xd1))] });
      log.end(b);
      expect(log.read().records.map((r) => r.txn)).to.deep.equal([a, d]);
    });

    it('commits a transaction with no records, which reads as none until it is ended', () => {
      const { txn } = log.begin();
      expect(log.commit(txn)).to.deep.equal({ txn, state: 'committed', records: 0 });
      expect(log.read(txn)).to.deep.equal({ records: [] });
      expect(log.end(txn)).to.deep.equal({ txn, state: 'ended', records: 0 });
      expect(errorOf(() => log.read(txn))).to.match(/^E_NOT_FOUND: transaction 1 cannot be read: it was aborted or ended$/);
    });

    it('answers a repeated commit as the first (a retry is safe), and takes no more records after it', () => {
      const { txn } = log.begin();
      log.log(txn, bytes(1));
      log.commit(txn);
      expect(log.commit(txn)).to.deep.equal({ txn, state: 'committed', records: 1 });
      expect(errorOf(() => log.log(txn, bytes(2)))).to.equal('E_BAD_ARGUMENT: transaction 1 is committed and takes no more records; log them in a new transaction');
      expect(log.read(txn).records).to.have.length(1);
    });

    it('aborts an open transaction, discarding its records; a committed one cannot be aborted', () => {
      const t1 = log.begin().txn;
      const t2 = log.begin().txn;
      log.log(t1, bytes(1));
      log.log(t1, bytes(2));
      log.log(t2, bytes(3));
      log.commit(t2);
      expect(log.abort(t1)).to.deep.equal({ txn: t1, state: 'aborted', records: 2 });
      expect(errorOf(() => log.abort(t2))).to.equal('E_BAD_ARGUMENT: transaction 2 is committed and cannot be aborted; apply its records and end it');
      expect(log.read()).to.deep.equal({ records: [rec(t2, 1, bytes(3))] });
      expect(log.openCount()).to.equal(0);
      for (const [call, action] of [
        [() => log.log(t1, bytes(1)), 'logged to'],
        [() => log.commit(t1), 'committed'],
        [() => log.abort(t1), 'aborted'],
        [() => log.end(t1), 'ended'],
        [() => log.read(t1), 'read'],
      ] as const) {
        expect(errorOf(call)).to.equal(`E_NOT_FOUND: transaction 1 cannot be ${action}: it was aborted or ended`);
      }
    });

    it('ends only a committed transaction, deleting its records', () => {
      const { txn } = log.begin();
      log.log(txn, bytes(1));
      expect(errorOf(() => log.end(txn))).to.equal('E_BAD_ARGUMENT: transaction 1 is open; commit or abort it before ending it');
      expect(log.openCount()).to.equal(1);
      log.commit(txn);
      expect(log.end(txn)).to.deep.equal({ txn, state: 'ended', records: 1 });
      expect(log.read()).to.deep.equal({ records: [] });
      expect(store.committedRecords(txn)).to.equal(undefined);
      expect(errorOf(() => log.end(txn))).to.match(/^E_NOT_FOUND: transaction 1 cannot be ended: it was aborted or ended/);
    });

    it('says an id was never begun, and refuses ids and records of the wrong type or size', () => {
      const { txn } = log.begin();
      expect(errorOf(() => log.read(2))).to.equal('E_NOT_FOUND: transaction 2 cannot be read: no transaction 2 was ever begun on this node');
      expect(errorOf(() => log.commit(1000))).to.match(/^E_NOT_FOUND: transaction 1000 cannot be committed: no transaction 1000 was ever begun/);
      const badIds: [unknown, string][] = [
        [0, '0'],
        [-1, '-1'],
        [1.5, '1.5'],
        [Number.NaN, 'NaN'],
        [2 ** 53, '9007199254740992'],
        ['1', 'a string ("1")'],
        [1n, '1n'],
        [null, 'null'],
      ];
      for (const [bad, shown] of badIds) {
        const id = bad as number;
        for (const call of [() => log.log(id, bytes(1)), () => log.commit(id), () => log.abort(id), () => log.end(id), () => log.read(id)]) {
          expect(errorOf(call), String(bad)).to.equal(`E_BAD_ARGUMENT: a transaction id is a whole number, 1 or more, as begin gave it, not ${shown}`);
        }
      }
      expect(errorOf(() => log.log(txn, new Uint8Array(TXN_RECORD_BYTES_MAX + 1)))).to.equal(
        'E_BAD_ARGUMENT: a log record holds at most 4096 bytes, not 4097; split it into several records',
      );
      expect(errorOf(() => log.log(txn, [1, 2] as unknown as Uint8Array))).to.equal('E_BAD_ARGUMENT: a log record is a Uint8Array, not an array of 2');
      expect(errorOf(() => log.log(txn, 'abc' as unknown as Uint8Array))).to.match(/^E_BAD_ARGUMENT: a log record is a Uint8Array, not a string/);
      expect(log.log(txn, new Uint8Array(TXN_RECORD_BYTES_MAX))).to.deep.equal({ txn, seq: 1 });
      expect(errorOf(() => new TxnLog(new MemoryTxnLogStore(), { idBlock: 0 }))).to.match(/^E_BAD_ARGUMENT: a block of transaction ids/);
    });

    it('holds at most 1024 records per transaction; the refused record changes nothing', () => {
      const { txn } = log.begin();
      for (let i = 1; i <= TXN_RECORDS_MAX; i++) log.log(txn, bytes(i & 0xff));
      expect(errorOf(() => log.log(txn, bytes(0)))).to.equal(
        'E_BAD_ARGUMENT: transaction 1 holds its maximum of 1024 records; commit it and log the rest in another transaction',
      );
      expect(log.commit(txn)).to.deep.equal({ txn, state: 'committed', records: TXN_RECORDS_MAX });
      const records = log.read(txn).records;
      expect(records).to.have.length(TXN_RECORDS_MAX);
      expect(records[TXN_RECORDS_MAX - 1]).to.deep.equal(rec(txn, TXN_RECORDS_MAX, bytes(0)));
    });

    it('keeps at most 1024 transactions open (E_BUSY), and a refused begin uses up no id', () => {
      for (let i = 1; i <= TXN_OPEN_MAX; i++) expect(log.begin().txn).to.equal(i);
      const reserved = store.lastTxn();
      expect(errorOf(() => log.begin())).to.equal(
        'E_BUSY: 1024 transactions are open on this node, the most it keeps; commit or abort some before beginning another',
      );
      expect(store.lastTxn()).to.equal(reserved);
      log.commit(7);
      expect(log.begin().txn).to.equal(TXN_OPEN_MAX + 1);
      expect(errorOf(() => log.begin())).to.match(/^E_BUSY: /);
      log.abort(8);
      log.end(7);
      expect(log.begin().txn).to.equal(TXN_OPEN_MAX + 2);
      expect(log.openCount()).to.equal(TXN_OPEN_MAX);
    });

    it('has the counter on disk before it hands an id out', () => {
      for (let i = 0; i < TXN_ID_BLOCK_DEFAULT + 3; i++) {
        const { txn } = log.begin();
        expect(store.lastTxn()).to.be.at.least(txn);
      }
      expect(store.lastTxn()).to.equal(2 * TXN_ID_BLOCK_DEFAULT);
      const one = new TxnLog(store, { idBlock: 1 });
      for (let i = 0; i < 3; i++) {
        const { txn } = one.begin();
        expect(store.lastTxn()).to.equal(txn);
      }
    });

    it('forgets open transactions at a restart, keeps committed ones until ended, and never reuses an id', async () => {
      const committed = log.begin().txn;
      const open = log.begin().txn;
      const empty = log.begin().txn;
      const ended = log.begin().txn;
      log.log(committed, bytes(1));
      log.log(committed, bytes(2));
      log.log(open, bytes(3));
      log.log(ended, bytes(4));
      log.commit(committed);
      log.commit(empty);
      log.commit(ended);
      log.end(ended);
      await restart();
      expect(log.openCount()).to.equal(0);
      expect(log.read()).to.deep.equal({ records: [rec(committed, 1, bytes(1)), rec(committed, 2, bytes(2))] });
      expect(log.read(empty)).to.deep.equal({ records: [] });
      const lost = 'it was aborted or ended, or was still open when the node restarted (open records never reach disk)';
      expect(errorOf(() => log.read(open))).to.equal(`E_NOT_FOUND: transaction ${open} cannot be read: ${lost}`);
      expect(errorOf(() => log.log(open, bytes(5)))).to.equal(`E_NOT_FOUND: transaction ${open} cannot be logged to: ${lost}`);
      expect(errorOf(() => log.read(ended))).to.equal(`E_NOT_FOUND: transaction ${ended} cannot be read: ${lost}`);
      expect(log.commit(committed)).to.deep.equal({ txn: committed, state: 'committed', records: 2 });
      expect(errorOf(() => log.abort(committed))).to.match(/^E_BAD_ARGUMENT: transaction 1 is committed and cannot be aborted/);
      const next = log.begin().txn;
      expect(next).to.be.greaterThan(ended);
      expect(errorOf(() => log.read(next + 1))).to.match(/^E_NOT_FOUND: .*: no transaction \d+ was ever begun on this node$/);
      expect(log.end(committed)).to.deep.equal({ txn: committed, state: 'ended', records: 2 });
      await restart();
      expect(log.read()).to.deep.equal({ records: [] });
      expect(log.begin().txn).to.be.greaterThan(next);
    });

    it('leaves a transaction open when its commit fails, so it can be retried or aborted', () => {
      let fail = true;
      const flaky: TxnLogStore = {
        lastTxn: () => store.lastTxn(),
        reserveTxns: (n) => store.reserveTxns(n),
        commit: (txn, records) => {
          if (fail) throw new MangroveError('E_STORAGE', 'disk full');
          store.commit(txn, records);
        },
        committedRecords: (txn) => store.committedRecords(txn),
        read: (txn) => store.read(txn),
        end: (txn) => store.end(txn),
        close: () => store.close(),
      };
      const l = new TxnLog(flaky);
      const { txn } = l.begin();
      l.log(txn, bytes(1));
      expect(errorOf(() => l.commit(txn))).to.equal('E_STORAGE: disk full');
      expect(l.openCount()).to.equal(1);
      expect(store.read()).to.deep.equal([]);
      fail = false;
      expect(l.log(txn, bytes(2))).to.deep.equal({ txn, seq: 2 });
      expect(l.commit(txn)).to.deep.equal({ txn, state: 'committed', records: 2 });
    });
  });
}

txnLogCompliance('MemoryTxnLogStore', memoryTwin(() => new MemoryTxnLogStore()));
txnLogCompliance('LmdbTxnLogStore', lmdbTwin('mangrove-txnlog-', (dir) => LmdbTxnLogStore.open(dir)));

describe('runtime/storage/lmdb-txn-log', () => {
  const temp = tempStores('mangrove-txnlog-', (dir) => LmdbTxnLogStore.open(dir));
  const openStore = () => temp.open();

  it('reports a damaged log as E_STORAGE naming the transaction', async () => {
    const s = openStore();
    s.reserveTxns(2);
    s.commit(1, [bytes(1), bytes(2)]);
    s.commit(2, [bytes(3)]);
    await s.close();
    const env = open({ path: join(temp.dir, TXN_LOG_FILE), maxDbs: 4 });
    const records = env.openDB<Buffer, Buffer>({ name: 'records', keyEncoding: 'binary', encoding: 'binary' });
    records.removeSync(txnKey(1, 2));
    records.putSync(txnKey(2, 0), Buffer.from([1, 2, 3]));
    await env.close();
    const again = openStore();
    expect(errorOf(() => again.read(1))).to.match(/^E_STORAGE: transaction 1 in the transaction log in .* is damaged \(1 records, its marker says 2\); move txnlog\.mdb away/);
    expect(errorOf(() => again.committedRecords(2))).to.match(/^E_STORAGE: transaction 2 .* is damaged \(a marker of 3 bytes/);
    expect(errorOf(() => again.read())).to.match(/^E_STORAGE: transaction 1 .* is damaged/);
  });

  it('refuses a directory it cannot use, naming it', () => {
    const file = join(temp.dir, 'not-a-dir');
    writeFileSync(file, 'x');
    expect(errorOf(() => LmdbTxnLogStore.open(join(file, 'data')))).to.match(new RegExp(`^E_STORAGE: cannot open the transaction log in ${join(file, 'data')}`));
  });

  it('keeps every acknowledged commit whole, and no acknowledged end, after the writer is killed with SIGKILL', async () => {
    const said = await runWriterUntilKilled(temp.dir, 150);
    expect(said.committed.size).to.be.at.least(150);
    expect(said.ended.size, 'ends acknowledged').to.be.greaterThan(0);
    expect(said.open.size, 'transactions left open').to.be.greaterThan(0);
    const log = new TxnLog(openStore());
    const expected = (txn: number) => Array.from({ length: writerRecordCount(txn) }, (_, i) => rec(txn, i + 1, writerRecord(txn, i + 1)));
    // Every acknowledged commit not ended is there, whole; an end in flight may have landed.
    for (const txn of said.committed) {
      if (said.ended.has(txn)) continue;
      if (said.ending.has(txn) && errorOf(() => log.read(txn)) !== 'no error') continue;
      expect(log.read(txn).records, `transaction ${txn}`).to.deep.equal(expected(txn));
    }
    // Whatever is there is a whole transaction the writer committed, or the one whose commit was in flight.
    const byTxn = new Map<number, TxnRecord[]>();
    for (const r of log.read().records) byTxn.set(r.txn, [...(byTxn.get(r.txn) ?? []), r]);
    const last = Math.max(...said.began);
    for (const [txn, records] of byTxn) {
      expect(said.ended.has(txn) || said.open.has(txn), `transaction ${txn} ended or left open`).to.equal(false);
      expect(said.committed.has(txn) || txn === last, `transaction ${txn} committed`).to.equal(true);
      expect(records, `transaction ${txn}`).to.deep.equal(expected(txn));
    }
    for (const txn of said.open) expect(errorOf(() => log.read(txn))).to.match(/^E_NOT_FOUND: .*still open when the node restarted/);
    expect(log.begin().txn).to.be.greaterThan(last);
    expect(last).to.be.greaterThan(2 * WRITER_ID_BLOCK);
  });
});

interface WriterSaid {
  began: Set<number>;
  open: Set<number>;
  committed: Set<number>;
  ending: Set<number>;
  ended: Set<number>;
}

/** Starts the writer, kills it once `commits` transactions are acknowledged, and returns what it said. */
async function runWriterUntilKilled(dir: string, commits: number): Promise<WriterSaid> {
  const said: WriterSaid = { began: new Set(), open: new Set(), committed: new Set(), ending: new Set(), ended: new Set() };
  const onLine = (line: string) => {
    const [word, txn] = line.split(' ');
    if (word in said) said[word as keyof WriterSaid].add(Number(txn));
  };
  await killWriterWhen('txn-writer.ts', dir, onLine, () => said.committed.size >= commits, () => `${said.committed.size} commits, not ${commits}`);
  return said;
}
