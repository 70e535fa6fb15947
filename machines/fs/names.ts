/**
 * Names and paths of the file system (SPEC.md M18, M19): what a fileset may
 * be called, what a directory entry may be called, how a path names a
 * fileset and a file (`FILESET:/a/b`), and the hash that places an entry in
 * its directory's table. Pure.
 */
import { MangroveError } from '../../bus/errors.js';

/** An entry's name, in UTF-8 bytes (M19). */
export const NAME_BYTES_MAX = 255;
/** A fileset's name, in characters (M18). */
export const FILESET_NAME_CHARS_MAX = 255;
/** The fileset made when the cluster is first formed (M18). */
export const DEFAULT_FILESET = 'default';
/** A path's length in UTF-8 bytes, as Linux's PATH_MAX. */
export const PATH_BYTES_MAX = 4096;

const utf8 = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** No lone surrogate: the text has one UTF-8 form, and a name reads back as it was given. */
function wellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/** The name as its UTF-8 bytes, once checked: 1-255 bytes, no '/' or NUL, not '.' or '..'. */
export function checkName(name: unknown): Uint8Array {
  if (typeof name !== 'string' || name.length === 0) throw new MangroveError('E_BAD_NAME', 'a name must be 1 to 255 bytes of UTF-8; an empty one was given');
  if (name.includes('/') || name.includes('\0')) throw new MangroveError('E_BAD_NAME', `the name ${JSON.stringify(name)} holds '/' or NUL, which no name may`);
  if (name === '.' || name === '..') throw new MangroveError('E_BAD_NAME', `'${name}' names a directory's place, not an entry; pick another name`);
  if (!wellFormed(name)) throw new MangroveError('E_BAD_NAME', `the name ${JSON.stringify(name)} is not well-formed Unicode`);
  const bytes = utf8.encode(name);
  if (bytes.length > NAME_BYTES_MAX) throw new MangroveError('E_NAME_TOO_LONG', `a name is at most ${NAME_BYTES_MAX} bytes of UTF-8; this one is ${bytes.length}`);
  return bytes;
}

export function checkFilesetName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > FILESET_NAME_CHARS_MAX) {
    throw new MangroveError('E_BAD_NAME', `a fileset's name is 1 to ${FILESET_NAME_CHARS_MAX} characters; ${JSON.stringify(name)} is not`);
  }
  if (name.includes(':') || name.includes('/') || name.includes('\0') || !wellFormed(name)) {
    throw new MangroveError('E_BAD_NAME', `a fileset's name may not hold ':', '/' or NUL (${JSON.stringify(name)})`);
  }
  return name;
}

/**
 * The parts of a path inside a fileset: '/'-separated, empty parts and '.'
 * dropped; '..' is kept, for the walk resolves it against the directory it is
 * in (its parent; at the root, the root itself, as in POSIX).
 */
export function pathParts(path: unknown): string[] {
  if (typeof path !== 'string') throw new MangroveError('E_BAD_ARGUMENT', 'a path must be a string');
  if (utf8.encode(path).length > PATH_BYTES_MAX) throw new MangroveError('E_NAME_TOO_LONG', `a path is at most ${PATH_BYTES_MAX} bytes`);
  if (path.includes('\0')) throw new MangroveError('E_BAD_NAME', 'a path may not hold NUL');
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  for (const p of parts) if (p !== '..') checkName(p);
  return parts;
}

/** `FILESET:/a/b` (or `/a/b`, the default fileset) as its fileset and its path. */
export function parseFsPath(text: string): { fileset: string; path: string } {
  const colon = text.indexOf(':');
  if (colon < 0) return { fileset: DEFAULT_FILESET, path: text === '' ? '/' : text };
  const fileset = checkFilesetName(text.slice(0, colon));
  const path = text.slice(colon + 1);
  return { fileset, path: path === '' ? '/' : path };
}

/** FNV-1a over the name's bytes: which hash bucket of its directory holds the entry (M19). */
export function nameHash(name: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of name) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

/** Entry order in a bucket's list: bytewise, as the names are stored. */
export function compareNames(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
