/**
 * One error class for the whole system, with a stable code a script can match
 * and a sentence a user can act on (DESIGN.md, Errors).
 */
export type ErrorCode =
  | 'E_BAD_CONFIG'
  | 'E_BAD_MESSAGE'
  | 'E_BAD_ARGUMENT'
  | 'E_BAD_ADDRESS'
  | 'E_NO_QUORUM'
  | 'E_BUSY'
  | 'E_STALE'
  | 'E_TIMEOUT'
  | 'E_UNREACHABLE'
  | 'E_NOT_ANCHOR'
  | 'E_NOT_FOUND'
  | 'E_FAULTS_DISABLED'
  | 'E_RECOVERING'
  | 'E_CLOSED'
  | 'E_FULL'
  | 'E_STORAGE'
  /** Memory engine (M7): an address in no reservation. */
  | 'E_NOT_RESERVED'
  /** A reserved page that has no storage (materialize it first). */
  | 'E_NOT_MATERIALIZED'
  /** A range that overlaps one already reserved or materialized. */
  | 'E_EXISTS'
  /** A lock another client holds. */
  | 'E_LOCKED'
  /** A page whose newest copy died with its node, until recovery (M15). */
  | 'E_PAGE_LOST'
  /** Too few live nodes for the core copies a page asks for (M11). */
  | 'E_TOO_FEW_NODES'
  /** From a home of an older generation of its arena: it no longer speaks for it (fencing, M16). */
  | 'E_STALE_GEN'
  /** Asked of a node that is not the primary anchor node (M16). */
  | 'E_NOT_PAN'
  /** Asked of a page's owner that has since handed the page on: ask the home again. */
  | 'E_NOT_OWNER'
  /** File system (M18-M22): a path, name or handle that does not fit the call; POSIX's code beside each, see posixOf. */
  | 'E_NOT_DIR'
  | 'E_IS_DIR'
  | 'E_NOT_EMPTY'
  | 'E_NO_SPACE'
  | 'E_BAD_NAME'
  | 'E_NAME_TOO_LONG'
  | 'E_BAD_HANDLE'
  | 'E_FILE_TOO_BIG'
  | 'E_LOOP'
  | 'E_OFFLINE'
  /** A change to a fileset set read-only (fileset control, M18). */
  | 'E_READ_ONLY'
  /** A structure that failed its check and could not be repaired: refused, never served (M22). */
  | 'E_CORRUPT'
  /** This host lacks what the call needs (the mount's FUSE binding or addon was not built). */
  | 'E_UNSUPPORTED'
  /** A call the client's role may not make (a read-only client writing, a non-admin changing the node database). */
  | 'E_FORBIDDEN'
  /** A bug: the report carries the stack. */
  | 'E_INTERNAL';

export class MangroveError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MangroveError';
  }

  /** The POSIX errno name beside the code (ENOENT, EEXIST…), where one fits: what a file-system caller matches. */
  get posix(): string | undefined {
    return posixOf(this.code);
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isMangroveError(e: unknown): e is MangroveError {
  return e instanceof MangroveError;
}

/**
 * The POSIX errno name beside a Mangrove code, for a file-system caller (the
 * client's `fs` API, the mount); undefined where none fits.
 */
const POSIX: Partial<Record<ErrorCode, string>> = {
  E_NOT_FOUND: 'ENOENT',
  E_EXISTS: 'EEXIST',
  E_NOT_DIR: 'ENOTDIR',
  E_IS_DIR: 'EISDIR',
  E_NOT_EMPTY: 'ENOTEMPTY',
  E_NO_SPACE: 'ENOSPC',
  E_FULL: 'ENOSPC',
  E_LOCKED: 'EAGAIN',
  E_BAD_NAME: 'EINVAL',
  E_BAD_ARGUMENT: 'EINVAL',
  E_NAME_TOO_LONG: 'ENAMETOOLONG',
  E_BAD_HANDLE: 'EBADF',
  E_FILE_TOO_BIG: 'EFBIG',
  E_LOOP: 'ELOOP',
  E_OFFLINE: 'ENODEV',
  E_READ_ONLY: 'EROFS',
  E_BUSY: 'EBUSY',
  E_CORRUPT: 'EIO',
  E_PAGE_LOST: 'EIO',
  E_STORAGE: 'EIO',
  E_TIMEOUT: 'ETIMEDOUT',
  E_NO_QUORUM: 'EROFS',
  E_RECOVERING: 'EAGAIN',
  E_CLOSED: 'ESHUTDOWN',
  E_UNSUPPORTED: 'ENOTSUP',
  E_FORBIDDEN: 'EACCES',
};

export function posixOf(code: string): string | undefined {
  return POSIX[code as ErrorCode];
}

