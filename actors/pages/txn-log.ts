/**
 * The memory engine's transaction log (SPEC.md M7): begin, log, commit,
 * abort, end and read, what the file system uses to make a metadata update
 * crash safe (log what it will change, commit, apply, end; after a crash,
 * replay what `read()` returns). Here: TxnLog, the element the engine
 * calls, over a store (actors/storage/txn-log-store.ts: the interface and
 * the checks; its LMDB and memory twins are in runtime/storage/).
 *
 * A transaction's life, on one node:
 *
 *   begin → open ──log…──► commit → committed ──end──► (gone)
 *             └──abort──► (gone)
 *
 * - Ids are unique on the node forever: the store keeps a durable counter,
 *   advanced before an id is handed out. TxnLog advances it a block of ids at
 *   a time (`idBlock`), so most begins cost no disk sync; a restart skips the
 *   rest of the block, never reuses an id.
 * - An open transaction's records are buffered in RAM only: nothing is
 *   durable before commit, so a restart forgets open transactions.
 * - Commit writes every record and the committed state in one durable commit;
 *   when it returns they survive kill -9. Committing a committed transaction
 *   again answers as the first commit did, so a retry after a lost answer is
 *   safe.
 * - End deletes a committed transaction's records durably (its effects are
 *   applied; the space is reclaimed). Abort drops an open one's buffer.
 * - Ended and aborted transactions leave nothing behind, so a refusal can
 *   tell them from an unknown id (never handed out) but not from each other.
 *
 * Synchronous like PageStore (actors/storage/page-store.ts): a commit is durable when
 * the call returns, and a simulated run stays a pure function of its seed.
 * Every call checks its arguments and the transaction's state before it
 * changes anything, so a refused call changes nothing.
 */
import { MangroveError } from '../../bus/errors.js';
import {
  checkIdBlock,
  checkTxnId,
  checkTxnRecord,
  TXN_BYTES_MAX,
  TXN_ID_BLOCK_DEFAULT,
  TXN_OPEN_MAX,
  TXN_RECORDS_MAX,
  type TxnBegun,
  type TxnLogOptions,
  type TxnLogStore,
  type TxnLogged,
  type TxnOutcome,
  type TxnRecords,
} from '../storage/txn-log-store.js';

/** The element: open transactions in RAM over a durable store. One per node and store. */
export class TxnLog {
  /** Open transactions: their buffered records, seq = index + 1. */
  private readonly open = new Map<number, Uint8Array[]>();
  private readonly idBlock: number;
  /** The first id this element could hand out; lower ones are from before the last start. */
  private readonly firstOfRun: number;
  /** The next id to hand out, and the last one reserved durably. */
  private next: number;
  private reserved: number;

  constructor(
    private readonly store: TxnLogStore,
    options: TxnLogOptions = {},
  ) {
    this.idBlock = checkIdBlock(options.idBlock ?? TXN_ID_BLOCK_DEFAULT);
    this.reserved = store.lastTxn();
    this.firstOfRun = this.reserved + 1;
    this.next = this.firstOfRun;
  }

  /** A new transaction, open; E_BUSY while TXN_OPEN_MAX are open. */
  begin(): TxnBegun {
    if (this.open.size >= TXN_OPEN_MAX) {
      throw new MangroveError('E_BUSY', `${TXN_OPEN_MAX} transactions are open on this node, the most it keeps; commit or abort some before beginning another`);
    }
    if (this.next > this.reserved) {
      // The counter goes to disk before any id of the block is handed out.
      this.next = this.store.reserveTxns(this.idBlock);
      this.reserved = this.next + this.idBlock - 1;
    }
    const txn = this.next++;
    this.open.set(txn, []);
    return { txn };
  }

  /** Buffers a copy of `record` in open transaction `txn` (RAM only, until commit). */
  log(txn: number, record: Uint8Array): TxnLogged {
    checkTxnId(txn);
    checkTxnRecord(record);
    const records = this.open.get(txn);
    if (records === undefined) {
      if (this.isCommitted(txn)) throw new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} is committed and takes no more records; log them in a new transaction`);
      throw this.gone(txn, 'logged to');
    }
    if (records.length >= TXN_RECORDS_MAX) {
      throw new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} holds its maximum of ${TXN_RECORDS_MAX} records; commit it and log the rest in another transaction`);
    }
    const bytes = records.reduce((n, r) => n + r.byteLength, 0);
    if (bytes + record.byteLength > TXN_BYTES_MAX) {
      throw new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} would hold more than ${TXN_BYTES_MAX} bytes of records; commit it and log the rest in another transaction`);
    }
    records.push(record.slice());
    return { txn, seq: records.length };
  }

  /** Makes an open transaction's records durable, all in one commit; a committed one answers as its commit did. */
  commit(txn: number): TxnOutcome {
    checkTxnId(txn);
    const records = this.open.get(txn);
    if (records === undefined) {
      const committed = this.store.committedRecords(txn);
      if (committed !== undefined) return { txn, state: 'committed', records: committed };
      throw this.gone(txn, 'committed');
    }
    this.store.commit(txn, records);
    this.open.delete(txn);
    return { txn, state: 'committed', records: records.length };
  }

  /** Discards an open transaction; nothing of it was durable. */
  abort(txn: number): TxnOutcome {
    checkTxnId(txn);
    const records = this.open.get(txn);
    if (records === undefined) {
      if (this.isCommitted(txn)) {
        throw new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} is committed and cannot be aborted; apply its records and end it`);
      }
      throw this.gone(txn, 'aborted');
    }
    this.open.delete(txn);
    return { txn, state: 'aborted', records: records.length };
  }

  /** Says a committed transaction's effects are applied: its records are deleted durably. */
  end(txn: number): TxnOutcome {
    checkTxnId(txn);
    if (this.open.has(txn)) throw new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} is open; commit or abort it before ending it`);
    const deleted = this.store.end(txn);
    if (deleted === undefined) throw this.gone(txn, 'ended');
    return { txn, state: 'ended', records: deleted };
  }

  /** Without `txn`, every committed, not yet ended, transaction's records in (txn, seq) order: what recovery replays. */
  read(txn?: number): TxnRecords {
    if (txn === undefined) return { records: this.store.read() };
    checkTxnId(txn);
    if (this.open.has(txn)) {
      throw new MangroveError('E_NOT_FOUND', `transaction ${txn} is open, not yet committed: only a committed transaction's records can be read`);
    }
    if (!this.isCommitted(txn)) throw this.gone(txn, 'read');
    return { records: this.store.read(txn) };
  }

  /** Transactions open now (their records in RAM). */
  openCount(): number {
    return this.open.size;
  }

  private isCommitted(txn: number): boolean {
    return this.store.committedRecords(txn) !== undefined;
  }

  /** Why `txn`, neither open nor committed, cannot be `action`: finished, or never begun. */
  private gone(txn: number, action: string): MangroveError {
    const cannot = `transaction ${txn} cannot be ${action}`;
    if (txn >= this.next) return new MangroveError('E_NOT_FOUND', `${cannot}: no transaction ${txn} was ever begun on this node`);
    if (txn >= this.firstOfRun) return new MangroveError('E_NOT_FOUND', `${cannot}: it was aborted or ended`);
    // Before this start: ended, aborted, or open at the restart. (An id the last run reserved but never handed out lands here too.)
    return new MangroveError('E_NOT_FOUND', `${cannot}: it was aborted or ended, or was still open when the node restarted (open records never reach disk)`);
  }
}
