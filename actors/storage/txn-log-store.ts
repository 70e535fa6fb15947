/**
 * The transaction log's durable half (SPEC.md M7): the id counter and
 * committed, not yet ended, transactions, and the checks every store and the
 * element (actors/pages/txn-log.ts) apply before they change anything. LMDB
 * in production (runtime/storage/lmdb-txn-log.ts), a Map in the simulator
 * (runtime/storage/memory-txn-log.ts); one compliance suite runs against both
 * (spec/unit/actors/pages/txn-log.spec.ts).
 */
import { MangroveError } from '../../bus/errors.js';
import { TXN_RECORD_BYTES_MAX, type TxnRecord } from '../../bus/messages/page.js';

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
