/**
 * What a synchronous call threw, as `CODE: message`, for specs that assert a
 * refusal's code and sentence in one line; 'no error' when it returned. A
 * throw that is not a MangroveError is a bug and is rethrown.
 */
import { isMangroveError } from '../../bus/errors.js';

export function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMangroveError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'no error';
}

/** What a promise rejected with, as `CODE: message`; 'resolved' when it did not. A rejection that is not a MangroveError is rethrown. */
export async function rejectionOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isMangroveError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'resolved';
}
