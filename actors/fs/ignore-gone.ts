/**
 * Freeing what a crash may have freed already is not an error (M22): the
 * file system records a page as gone before the engine frees it, so a
 * recovery or a repeated delete may free it twice.
 */
import { MangroveError } from '../../bus/errors.js';

const GONE: ReadonlySet<string> = new Set(['E_NOT_RESERVED', 'E_NOT_MATERIALIZED', 'E_NOT_FOUND']);

export async function ignoreGone(p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MangroveError && GONE.has(err.code)) return;
    throw err;
  }
}
