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
