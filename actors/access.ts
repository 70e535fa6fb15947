/**
 * What each client role may ask a node. A secure node knows the role of
 * every client link (bus/transport/link-auth.ts); a request its role does
 * not allow is answered E_FORBIDDEN, naming the role and the operation,
 * and counted. Requests from nodes, and on an insecure node from anyone,
 * carry no role and are not checked.
 *
 * - read-only: reads that change nothing another client could see: status,
 *   the protocol machines' states, page reads, stats and attributes, the file system's stats, listings,
 *   reads, opens for reading, checks with `repair: false`; and keeping its own
 *   session alive (renew, close, a mount's report).
 * - read-write: everything but what changes the cluster itself.
 * - admin: that too: the node database (nodes added, changed, removed) and
 *   the fault filter.
 */
import type { Envelope } from '../bus/envelope.js';
import type { ClientFsOp } from '../bus/messages/fs.js';
import type { ClientPageOp } from '../bus/messages/page.js';
import type { ClientRole } from '../bus/transport/key-holder.js';

/** Client kinds only an admin may send. */
const ADMIN_KINDS: ReadonlySet<string> = new Set(['client.ndb_update', 'client.fault']);

/** Page ops that read (or only keep the session alive). */
const PAGE_READS: ReadonlySet<ClientPageOp['op']> = new Set(['read', 'stat', 'space', 'get_attrs', 'super_root', 'dir_page', 'txn_read', 'renew']);

/** File-system ops that read (or only keep the session alive); `open` and `check` depend on their flags. */
const FS_READS: ReadonlySet<ClientFsOp['op']> = new Set(['fileset_list', 'statfs', 'stat', 'fstat', 'readdir', 'read', 'readlink', 'streams', 'close', 'fsync', 'renew', 'mount_report']);

/** The operation a client request names, as an error shows it: `client.page write`, `client.ndb_update`. */
export function operationOf(env: Envelope): string {
  const op = (env.body as { op?: unknown } | undefined)?.op;
  return typeof op === 'string' ? `${env.kind} ${op}` : env.kind;
}

/** Whether `role` may send the client request `env` (its body already checked by the codec). */
export function allowed(role: ClientRole, env: Envelope): boolean {
  if (role === 'admin') return true;
  if (ADMIN_KINDS.has(env.kind)) return false;
  if (role === 'read-write') return true;
  switch (env.kind) {
    case 'client.status':
    case 'client.machines':
      return true;
    case 'client.page':
      return readsPages(env.body as ClientPageOp);
    case 'client.fs':
      return readsFiles(env.body as ClientFsOp);
    default:
      return false;
  }
}

function readsPages(op: ClientPageOp): boolean {
  if (op.op === 'access') return op.mode === 'read';
  return PAGE_READS.has(op.op);
}

function readsFiles(op: ClientFsOp): boolean {
  if (op.op === 'open') return op.write !== true && op.create !== true && op.truncate !== true && op.append !== true && op.excl !== true;
  // A check repairs unless told not to (actors/fs/file-system.ts): only `repair: false` is a read.
  if (op.op === 'check') return op.repair === false;
  return FS_READS.has(op.op);
}
