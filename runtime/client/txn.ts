/**
 * A request id for the file system's updates of names (bus/messages/fs.ts
 * FS_TXN_OPS): given once, before the first try, and sent with every try,
 * so a node that finds the update done already (its answer was lost to a
 * node failure, or a rebuild refused a later step) answers it as done
 * instead of E_EXISTS or E_NOT_FOUND.
 */
import { randomBytes } from 'node:crypto';
import { FS_TXN_OPS, type ClientFsOp } from '../../bus/messages/fs.js';

const TXN_OPS: ReadonlySet<string> = new Set(FS_TXN_OPS);

/** A new request id (16 characters). */
export function newTxn(): string {
  return randomBytes(12).toString('base64url');
}

/** `op` with a `txn` when it is an update of names without one (an open only with `create`); else `op` itself. */
export function withTxn(op: ClientFsOp): ClientFsOp {
  if (!TXN_OPS.has(op.op) || ('txn' in op && op.txn !== undefined)) return op;
  if (op.op === 'open' && !op.create) return op;
  return { ...op, txn: newTxn() } as ClientFsOp;
}
