/**
 * The simulator's transaction-log store: a counter and a Map, sorted on read.
 * The twin of lmdb-txn-log.ts; one compliance suite runs against both
 * (spec/unit/actors/pages/txn-log.spec.ts).
 */
import { MangroveError } from '../../bus/errors.js';
import { alreadyCommitted, checkIdBlock, checkTxnId, checkTxnRecords, firstReserved, notReserved, type TxnLogStore, type TxnRecord } from '../../actors/storage/txn-log-store.js';

export class MemoryTxnLogStore implements TxnLogStore {
  private last = 0;
  private readonly committed = new Map<number, Uint8Array[]>();
  private closed = false;

  lastTxn(): number {
    this.checkOpen();
    return this.last;
  }

  reserveTxns(count: number): number {
    checkIdBlock(count);
    this.checkOpen();
    const first = firstReserved(this.last, count);
    this.last += count;
    return first;
  }

  commit(txn: number, records: readonly Uint8Array[]): void {
    checkTxnId(txn);
    checkTxnRecords(txn, records);
    this.checkOpen();
    if (txn > this.last) throw notReserved(txn, this.last);
    if (this.committed.has(txn)) throw alreadyCommitted(txn);
    this.committed.set(txn, records.map((r) => r.slice()));
  }

  committedRecords(txn: number): number | undefined {
    checkTxnId(txn);
    this.checkOpen();
    return this.committed.get(txn)?.length;
  }

  read(txn?: number): TxnRecord[] {
    if (txn !== undefined) checkTxnId(txn);
    this.checkOpen();
    const txns = txn === undefined ? [...this.committed.keys()].sort((a, b) => a - b) : [txn];
    return txns.flatMap((t) => (this.committed.get(t) ?? []).map((data, i) => ({ txn: t, seq: i + 1, data: data.slice() })));
  }

  end(txn: number): number | undefined {
    checkTxnId(txn);
    this.checkOpen();
    const records = this.committed.get(txn);
    this.committed.delete(txn);
    return records?.length;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new MangroveError('E_CLOSED', 'the transaction log is closed');
  }
}
