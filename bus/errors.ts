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

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isMangroveError(e: unknown): e is MangroveError {
  return e instanceof MangroveError;
}
