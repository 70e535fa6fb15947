/**
 * The transaction log's durable store in production (SPEC.md M7): LMDB, an
 * environment of its own, `txnlog.mdb`, in the node's data directory. The
 * simulator's twin is MemoryTxnLogStore (actors/pages/txn-log.ts), where the
 * element, TxnLog, lives too.
 *
 * An environment of its own, like the page store's (runtime/storage/lmdb-pages.ts):
 * LMDB has one writer per environment, so a transaction commit neither waits
 * for nor delays a page flush or a node-database commit.
 *
 * Two databases:
 * - `meta`: key `last` → the highest transaction id reserved, u64 big-endian.
 * - `records`: key = txn (u64 big-endian) ‖ seq (u32 big-endian), so LMDB's
 *   byte order is (txn, seq) order and reading the log is one cursor walk.
 *   Seq 0 is the transaction's committed marker, `format (1), zero (3),
 *   record count (u32 big-endian)`, there even when it has no records;
 *   seq 1… are its records, `format (1), data (0 to 4096 bytes)`.
 *
 * Durability as in lmdb-node-store.ts: synchronous transactions with
 * overlappingSync off, so a commit, an end or a counter update has been
 * flushed to disk when the call returns; a commit's records and marker are
 * one LMDB transaction, so a crash leaves all of them or none.
 */
import type { Database, RootDatabase } from 'lmdb';
import { LmdbFile } from './lmdb-file.js';
import { MangroveError } from '../../bus/errors.js';
import { alreadyCommitted, checkIdBlock, checkTxnId, checkTxnRecords, firstReserved, notReserved, TXN_RECORDS_MAX, TXN_RECORD_BYTES_MAX, type TxnLogStore, type TxnRecord } from '../../actors/storage/txn-log-store.js';

/** The environment file inside the data directory (lmdb adds `-lock` beside it). */
export const TXN_LOG_FILE = 'txnlog.mdb';

const FORMAT = 1;
const KEY_LAST = 'last';
const KEY_BYTES = 12;
const MARKER_BYTES = 8;


/** The key of record `seq` of `txn` (seq 0: the committed marker). */
export function txnKey(txn: number, seq: number): Buffer {
  const key = Buffer.alloc(KEY_BYTES);
  key.writeBigUInt64BE(BigInt(txn), 0);
  key.writeUInt32BE(seq, 8);
  return key;
}

export class LmdbTxnLogStore extends LmdbFile implements TxnLogStore {
  private constructor(
    dir: string,
    env: RootDatabase,
    private readonly meta: Database<Buffer, string>,
    private readonly records: Database<Buffer, Buffer>,
  ) {
    super(dir, env, 'the transaction log');
  }

  /** Opens (creating if needed) the transaction log in the data directory `dir`. */
  static open(dir: string): LmdbTxnLogStore {
    return this.openIn(dir, TXN_LOG_FILE, 'the transaction log', 4, (env) => {
      const meta = env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' });
      const records = env.openDB<Buffer, Buffer>({ name: 'records', keyEncoding: 'binary', encoding: 'binary' });
      return new LmdbTxnLogStore(dir, env, meta, records);
    });
  }

  lastTxn(): number {
    return this.attempt('cannot read the transaction counter in', () => this.readLast());
  }

  reserveTxns(count: number): number {
    checkIdBlock(count);
    return this.attempt('cannot advance the transaction counter in', () =>
      // Read and advance in one transaction: an id can never be reserved twice.
      this.env.transactionSync(() => {
        const last = this.readLast();
        const first = firstReserved(last, count);
        const value = Buffer.alloc(8);
        value.writeBigUInt64BE(BigInt(last + count));
        this.meta.putSync(KEY_LAST, value);
        return first;
      }),
    );
  }

  commit(txn: number, records: readonly Uint8Array[]): void {
    checkTxnId(txn);
    checkTxnRecords(txn, records);
    this.attempt(`cannot commit transaction ${txn} to`, () =>
      this.env.transactionSync(() => {
        // Every check before the first write; a throw would abort the transaction anyway.
        const last = this.readLast();
        if (txn > last) throw notReserved(txn, last);
        if (this.records.doesExist(txnKey(txn, 0))) throw alreadyCommitted(txn);
        const marker = Buffer.alloc(MARKER_BYTES);
        marker[0] = FORMAT;
        marker.writeUInt32BE(records.length, 4);
        this.records.putSync(txnKey(txn, 0), marker);
        records.forEach((data, i) => {
          const value = Buffer.allocUnsafe(1 + data.byteLength);
          value[0] = FORMAT;
          value.set(data, 1);
          this.records.putSync(txnKey(txn, i + 1), value);
        });
      }),
    );
  }

  committedRecords(txn: number): number | undefined {
    checkTxnId(txn);
    return this.attempt(`cannot read transaction ${txn} from`, () => {
      const raw = this.records.getBinary(txnKey(txn, 0));
      return raw === undefined ? undefined : this.markerCount(txn, raw);
    });
  }

  read(txn?: number): TxnRecord[] {
    if (txn !== undefined) checkTxnId(txn);
    this.checkOpen();
    const start = txnKey(txn ?? 1, 0);
    const end = txn === undefined ? undefined : txnKey(txn + 1, 0);
    return this.attempt('cannot read the transaction log in', () => {
      const out: TxnRecord[] = [];
      // Each transaction is its marker, then exactly that many records, seq 1, 2, …
      let current = 0;
      let expected = 0;
      let seen = 0;
      const finish = () => {
        if (seen !== expected) throw this.damaged(current, `${seen} records, its marker says ${expected}`);
      };
      for (const { key, value } of this.records.getRange({ start, end })) {
        const k = key as Buffer;
        if (k.byteLength !== KEY_BYTES) throw this.damaged(0, `a key of ${k.byteLength} bytes`);
        const t = Number(k.readBigUInt64BE(0));
        const seq = k.readUInt32BE(8);
        const raw = value as Buffer;
        if (seq === 0) {
          if (current !== 0) finish();
          current = t;
          expected = this.markerCount(t, raw);
          seen = 0;
          continue;
        }
        if (t !== current || seq !== seen + 1) throw this.damaged(t, `record ${seq} out of place`);
        seen++;
        out.push({ txn: t, seq, data: this.decodeRecord(t, seq, raw) });
      }
      if (current !== 0) finish();
      return out;
    });
  }

  end(txn: number): number | undefined {
    checkTxnId(txn);
    return this.attempt(`cannot end transaction ${txn} in`, () =>
      this.env.transactionSync(() => {
        const raw = this.records.getBinary(txnKey(txn, 0));
        if (raw === undefined) return undefined;
        const count = this.markerCount(txn, raw);
        // Every key of the transaction, whatever its marker says: the space is reclaimed whole.
        const keys = [...this.records.getKeys({ start: txnKey(txn, 0), end: txnKey(txn + 1, 0) })];
        for (const key of keys) this.records.removeSync(key as Buffer);
        return count;
      }),
    );
  }

  private readLast(): number {
    const raw = this.meta.getBinary(KEY_LAST);
    if (raw === undefined) return 0;
    if (raw.byteLength !== 8) throw this.damaged(0, `a counter of ${raw.byteLength} bytes`);
    const last = raw.readBigUInt64BE(0);
    if (last > BigInt(Number.MAX_SAFE_INTEGER)) throw this.damaged(0, `counter ${last}`);
    return Number(last);
  }

  private markerCount(txn: number, raw: Buffer): number {
    if (raw.byteLength !== MARKER_BYTES || raw[0] !== FORMAT) throw this.damaged(txn, `a marker of ${raw.byteLength} bytes, format ${raw[0]}`);
    const count = raw.readUInt32BE(4);
    if (count > TXN_RECORDS_MAX) throw this.damaged(txn, `a marker counting ${count} records`);
    return count;
  }

  private decodeRecord(txn: number, seq: number, raw: Buffer): Uint8Array {
    if (raw.byteLength < 1 || raw.byteLength > 1 + TXN_RECORD_BYTES_MAX || raw[0] !== FORMAT) {
      throw this.damaged(txn, `record ${seq} of ${raw.byteLength} bytes, format ${raw[0]}`);
    }
    // A copy in a plain array (a Buffer's slice would share LMDB's memory): the caller owns it.
    return new Uint8Array(raw.subarray(1));
  }

  private damaged(txn: number, why: string): MangroveError {
    const where = txn === 0 ? 'the transaction log' : `transaction ${txn} in the transaction log`;
    return new MangroveError(
      'E_STORAGE',
      `${where} in ${this.dir} is damaged (${why}); move ${TXN_LOG_FILE} away to start with an empty log, losing the committed transactions not yet ended`,
    );
  }
}
