/**
 * The memory engine's transaction log (SPEC.md M7): begin, log, commit,
 * abort, end and read, what the file system uses to make a metadata update
 * crash safe (log what it will change, commit, apply, end; after a crash,
 * replay what `read()` returns). Here: the store interface, its memory twin
 * (MemoryTxnLogStore, for the simulator), and TxnLog, the element the engine
 * calls. The LMDB store is runtime/lmdb-txn-log.ts; one compliance suite runs
 * against both (spec/unit/actors/txn-log.spec.ts).
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
 * Synchronous like PageStore (actors/page-store.ts): a commit is durable when
 * the call returns, and a simulated run stays a pure function of its seed.
 * Every call checks its arguments and the transaction's state before it
 * changes anything, so a refused call changes nothing.
 */
import { MangroveError } from '../bus/errors.js';
import { TXN_RECORD_BYTES_MAX, type TxnRecord } from '../bus/page-messages.js';

export { TXN_RECORD_BYTES_MAX, type TxnRecord };

/** Most records one transaction holds. */
export const TXN_RECORDS_MAX = 1024;
/** Most transactions open at once on one node (each may buffer up to 4 MiB in RAM). */
export const TXN_OPEN_MAX = 1024;
/** Most bytes of records one transaction holds, so any transaction's records fit one reply frame. */
export const TXN_BYTES_MAX = 1024 * 1024;
/** Ids TxnLog reserves with one durable counter update. */
export const TXN_ID_BLOCK_DEFAULT = 64;
/** Most ids one reservation takes. */
export const TXN_ID_BLOCK_MAX = 1 << 16;

export type TxnState = 'committed' | 'aborted' | 'ended';

/** begin → */
export interface TxnBegun {
  txn: number;
}
/** log → the record's place in its transaction, from 1. */
export interface TxnLogged {
  txn: number;
  seq: number;
}
/** commit, abort, end → the state reached and the records it concerned (committed, discarded, deleted). */
export interface TxnOutcome {
  txn: number;
  state: TxnState;
  records: number;
}
/** read → */
export interface TxnRecords {
  records: TxnRecord[];
}

/** The durable half: the id counter and committed, not yet ended, transactions. */
export interface TxnLogStore {
  /** The highest id reserved so far; 0 before the first. */
  lastTxn(): number;
  /** Durably advances the counter by `count` (1 to TXN_ID_BLOCK_MAX) and returns the first of the new ids. */
  reserveTxns(count: number): number;
  /**
   * Writes `records` (seq 1, 2, … in order) and the committed state of `txn`
   * in one durable commit: all of it, or nothing. Refuses an id not yet
   * reserved (E_NOT_FOUND), one already committed, too many records or a
   * record too long (E_BAD_ARGUMENT).
   */
  commit(txn: number, records: readonly Uint8Array[]): void;
  /** How many records committed transaction `txn` holds; undefined if it is not committed (or was ended). */
  committedRecords(txn: number): number | undefined;
  /** Copies of the records of committed transactions: `txn`'s alone ([] if it is not committed), or all in (txn, seq) order. */
  read(txn?: number): TxnRecord[];
  /** Durably deletes committed transaction `txn`; the records it held, or undefined if it was not committed. */
  end(txn: number): number | undefined;
  close(): Promise<void>;
}

export interface TxnLogOptions {
  /** Ids reserved per durable counter update, 1 to TXN_ID_BLOCK_MAX; default TXN_ID_BLOCK_DEFAULT. 1: a disk sync per begin. */
  idBlock?: number;
}

/** A transaction id as the element and the store take it: a safe integer, 1 or more. */
export function checkTxnId(txn: unknown): number {
  if (typeof txn !== 'number' || !Number.isSafeInteger(txn) || txn < 1) {
    throw new MangroveError('E_BAD_ARGUMENT', `a transaction id is a whole number, 1 or more, as begin gave it, not ${what(txn)}`);
  }
  return txn;
}

/** A log record: a Uint8Array of 0 to TXN_RECORD_BYTES_MAX bytes. */
export function checkTxnRecord(record: unknown): Uint8Array {
  if (!(record instanceof Uint8Array)) throw new MangroveError('E_BAD_ARGUMENT', `a log record is a Uint8Array, not ${what(record)}`);
  if (record.byteLength > TXN_RECORD_BYTES_MAX) {
    throw new MangroveError('E_BAD_ARGUMENT', `a log record holds at most ${TXN_RECORD_BYTES_MAX} bytes, not ${record.byteLength}; split it into several records`);
  }
  return record;
}

/** What a store's commit takes: an array of at most TXN_RECORDS_MAX valid records. */
export function checkTxnRecords(txn: number, records: readonly unknown[]): void {
  if (!Array.isArray(records)) throw new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} must commit an array of records, not ${what(records)}`);
  if (records.length > TXN_RECORDS_MAX) {
    throw new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} may hold at most ${TXN_RECORDS_MAX} records, not ${records.length}`);
  }
  for (const r of records) checkTxnRecord(r);
}

export function checkIdBlock(count: unknown): number {
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1 || count > TXN_ID_BLOCK_MAX) {
    throw new MangroveError('E_BAD_ARGUMENT', `a block of transaction ids is 1 to ${TXN_ID_BLOCK_MAX} ids, not ${what(count)}`);
  }
  return count;
}

/** The first id after `last`, refusing a counter that would pass 2^53 (it never will at any real rate). */
export function firstReserved(last: number, count: number): number {
  if (last + count > Number.MAX_SAFE_INTEGER) {
    throw new MangroveError('E_FULL', `this node has handed out its last transaction id (${last}); its transaction log cannot begin another`);
  }
  return last + 1;
}

export function alreadyCommitted(txn: number): MangroveError {
  return new MangroveError('E_BAD_ARGUMENT', `transaction ${txn} is already committed`);
}

export function notReserved(txn: number, last: number): MangroveError {
  return new MangroveError('E_NOT_FOUND', `transaction ${txn} was never begun on this node (the highest id reserved is ${last})`);
}

/** The simulator's store: a counter and a Map, sorted on read. */
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

/** What a value is, for a sentence. */
function what(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'number') return `${value}`;
  if (typeof value === 'string') return `a string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  if (typeof value === 'bigint') return `${value}n`;
  return `a ${typeof value}`;
}
