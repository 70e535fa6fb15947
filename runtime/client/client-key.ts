/**
 * Which key a client presents to a secure node (docs/security.md): the key
 * file it is given (`--key FILE`, `connect(…, { key })`), else the one
 * $MANGROVE_KEY names, else `./mangrove-local/client.key` when there is one
 * (what `mangrove local` writes, so the CLI works from the folder `local`
 * ran in with no flags), else none: a plain link, which only an insecure
 * node lets in.
 *
 * A client's key file carries, beside its pair, the public keys of the
 * nodes it talks to (`nodes`: endpoint → key): CURVE needs the server's key
 * before the first byte. A file given or named by $MANGROVE_KEY that does
 * not know an endpoint is an error saying so; the file found by default
 * speaks only for the cluster `mangrove local` made, and any other endpoint
 * is dialled plain.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { MangroveError } from '../../bus/errors.js';
import { readKeyFile, type ClientCurve, type CurveKeyPair } from '../../bus/transport/curve.js';

export const CLIENT_KEY_ENV = 'MANGROVE_KEY';
/** Where `mangrove local` puts the admin client's key, relative to the folder it ran in. */
export const DEFAULT_CLIENT_KEY = 'mangrove-local/client.key';

export interface ClientKey {
  keys: CurveKeyPair;
  /** The nodes' public keys, by endpoint. */
  nodes: Readonly<Record<string, string>>;
  /** The file it came from, absolute. */
  path: string;
  /** Found by default (./mangrove-local/client.key), not asked for. */
  implicit: boolean;
}

/** The client key to use: `given` (a path), else $MANGROVE_KEY, else ./mangrove-local/client.key if it exists, else none. */
export function findClientKey(given?: string): ClientKey | undefined {
  const named = given ?? (process.env[CLIENT_KEY_ENV] || undefined);
  if (named !== undefined) return loadClientKey(named, false);
  const fallback = resolve(DEFAULT_CLIENT_KEY);
  return existsSync(fallback) ? loadClientKey(fallback, true) : undefined;
}

/** Reads a client's key file: a pair, and `nodes`. */
export function loadClientKey(path: string, implicit = false): ClientKey {
  const absolute = resolve(path);
  const file = readKeyFile(absolute);
  if (file.secretKey === undefined) throw new MangroveError('E_BAD_CONFIG', `${absolute}: secretKey is missing: a client's key file holds its own key pair, not only a public key`);
  return { keys: { publicKey: file.publicKey, secretKey: file.secretKey }, nodes: file.nodes ?? {}, path: absolute, implicit };
}

/** The CURVE settings of a link to `endpoint` with `key`; undefined for a plain link. E_NOT_FOUND when the key's file does not know the node. */
export function clientCurveFor(endpoint: string, key: ClientKey | undefined): ClientCurve | undefined {
  if (key === undefined) return undefined;
  const serverKey = key.nodes[endpoint];
  if (serverKey !== undefined) return { keys: key.keys, serverKey };
  if (key.implicit) return undefined;
  const known = Object.keys(key.nodes);
  throw new MangroveError(
    'E_NOT_FOUND',
    `the key file ${key.path} does not know the public key of the node at ${endpoint}` +
      (known.length === 0 ? ' (it names no node: add "nodes": {"ENDPOINT": "<the node\'s public key>"}, as `mangrove keys show NODE.key` prints it)' : ` (it knows ${known.slice(0, 3).join(', ')}${known.length > 3 ? ', …' : ''}): is that node in its cluster?`),
  );
}
