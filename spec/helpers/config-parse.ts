/** A node config parsed as if read from /srv/node/config.json, and the sentence a refused one fails with. */
import { expect } from 'chai';
import { isMangroveError } from '../../bus/errors.js';
import { parseConfig } from '../../runtime/node/config.js';

export function parse(obj: unknown) {
  return parseConfig(obj, 'config.json', { baseDir: '/srv/node' });
}

/** The E_BAD_CONFIG message parsing `obj` fails with (anything else fails the spec). */
export function failure(obj: unknown): string {
  try {
    parse(obj);
  } catch (err) {
    if (!isMangroveError(err)) throw err;
    expect(err.code).to.equal('E_BAD_CONFIG');
    return err.message;
  }
  throw new Error(`expected ${JSON.stringify(obj)} to be refused`);
}
