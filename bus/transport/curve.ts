/**
 * CURVE keys for the ZeroMQ transport (ZMTP's CurveZMQ: Curve25519 key
 * agreement, every frame encrypted and authenticated): what a key looks
 * like, how a transport is told who may connect and whom it connects to,
 * and the key file a node or a client keeps its pair in. Authentication
 * itself, the ZAP handler that asks `authorize`, is zap.ts.
 *
 * A key is a Z85 string of 40 characters (32 bytes), as `zmq.curveKeyPair()`
 * returns it and as ZeroMQ's socket options take it; a key is checked here
 * before ZeroMQ sees it, so a bad one is refused with a sentence naming the
 * field instead of an EINVAL from deep in a socket option.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as zmq from 'zeromq';
import { present } from '../assert.js';
import { MangroveError } from '../errors.js';
import type { KeyHolder } from './key-holder.js';

export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

export interface CurveOptions {
  /** This transport's long-term pair: its ROUTER is a CURVE server with it, its DEALERs CURVE clients. */
  keys: CurveKeyPair;
  /** Who may connect: a public key → the name it is known by (a node id or a client name), or null to refuse.
   * Asked once per connection, during the handshake; it must not throw (a throw refuses the key). */
  authorize(publicKey: string): string | null;
  /** The server public key of the node at an endpoint we connect to; null = unknown (the connection is refused with a clear error). */
  serverKeyOf(endpoint: string): string | null;
  /**
   * Who holds a key `authorize` lets in: a node or a client with its role.
   * Given, every inbound link must prove its key before anything it sends
   * is let through, and is bound to its holder (link-auth.ts); without it,
   * a link is known only to hold some authorized key.
   */
  holderOf?(publicKey: string): KeyHolder | null;
}

/** What a client process needs to talk to one node: its own pair and the node's public key. */
export interface ClientCurve {
  keys: CurveKeyPair;
  serverKey: string;
}

/** A key file's content: a public-only file (a peer's key) has no secret. */
export interface KeyFile {
  publicKey: string;
  secretKey?: string;
  /** A client's file may carry the public keys of the nodes it talks to, by endpoint (`mangrove local` writes them). */
  nodes?: Record<string, string>;
}

export const curveLimits = {
  /** Z85 characters of a key: 32 bytes, 4 bytes to 5 characters. */
  keyChars: 40,
  keyBytes: 32,
  /** A key file is a few hundred bytes, a client's with its nodes' keys a few ten thousand; anything much bigger is not one. */
  keyFileBytesMax: 256 * 1024,
  /** Nodes a client's key file may name. */
  keyFileNodesMax: 1024,
  endpointCharsMax: 256,
} as const;

/** ZeroMQ's Z85 alphabet (RFC 32). */
const Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_VALUE = new Map([...Z85].map((c, i) => [c, i]));

export function generateKeyPair(): CurveKeyPair {
  const { publicKey, secretKey } = zmq.curveKeyPair();
  return { publicKey, secretKey };
}

/** Z85 of `bytes` (a multiple of 4 long): zeromq.js v6 exports no encoder, so this is RFC 32's. */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.byteLength % 4 !== 0) throw new MangroveError('E_BAD_ARGUMENT', `Z85 encodes whole 4-byte words, not ${bytes.byteLength} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let out = '';
  for (let at = 0; at < bytes.byteLength; at += 4) {
    let word = view.getUint32(at);
    let chunk = '';
    for (let i = 0; i < 5; i++) {
      chunk = Z85[word % 85] + chunk;
      word = Math.floor(word / 85);
    }
    out += chunk;
  }
  return out;
}

/** The bytes of a Z85 string, or null if it is not one (wrong length, a stray character, a word over 32 bits). */
export function z85Decode(text: string): Uint8Array | null {
  if (text.length % 5 !== 0) return null;
  const out = new Uint8Array((text.length / 5) * 4);
  const view = new DataView(out.buffer);
  for (let at = 0; at < text.length; at += 5) {
    let word = 0;
    for (let i = 0; i < 5; i++) {
      const v = Z85_VALUE.get(text[at + i]);
      if (v === undefined) return null;
      word = word * 85 + v;
    }
    if (word > 0xffff_ffff) return null;
    view.setUint32((at / 5) * 4, word);
  }
  return out;
}

/**
 * `value` if it is a CURVE key, else E_BAD_CONFIG naming `field`. The value
 * itself is never quoted: the field may hold a secret.
 */
export function checkKey(field: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new MangroveError('E_BAD_CONFIG', `${field} must be a CURVE key (a string of ${curveLimits.keyChars} Z85 characters), not ${value === null ? 'null' : typeof value}`);
  }
  if (value.length !== curveLimits.keyChars || z85Decode(value) === null) {
    throw new MangroveError(
      'E_BAD_CONFIG',
      `${field} must be a CURVE key: ${curveLimits.keyChars} characters of ZeroMQ's Z85 alphabet, as \`mangrove keys generate\` writes (got ${value.length} characters${value.length === curveLimits.keyChars ? ', not all Z85' : ''})`,
    );
  }
  return value;
}

/**
 * Checks both halves of a pair and that they belong together (a pair pieced
 * together from two would fail every handshake, far from its cause).
 * `prefix` goes before the field names in errors: 'curve.keys.' or 'FILE: '.
 */
export function checkKeyPair(prefix: string, keys: { publicKey?: unknown; secretKey?: unknown }): CurveKeyPair {
  const publicKey = checkKey(`${prefix}publicKey`, keys.publicKey);
  const secretKey = checkKey(`${prefix}secretKey`, keys.secretKey);
  if (publicKeyOf(secretKey) !== publicKey) {
    throw new MangroveError('E_BAD_CONFIG', `${prefix}publicKey is not the public key of ${prefix}secretKey: the two come from different pairs`);
  }
  return { publicKey, secretKey };
}

/** The public key of a secret one: Curve25519's base-point multiple, which node:crypto computes as X25519. */
export function publicKeyOf(secretKey: string): string {
  const secret = present(z85Decode(checkKey('secretKey', secretKey)), 'a checked key decodes');
  const jwk = { kty: 'OKP', crv: 'X25519', d: Buffer.from(secret).toString('base64url'), x: '' };
  const x = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({ format: 'jwk' }).x;
  return z85Encode(Buffer.from(present(x, 'an X25519 public key has x'), 'base64url'));
}

/**
 * Writes `keys` as a key file readable by its owner only (0600). Refuses an
 * existing file unless `overwrite`; the file is written beside its place and
 * renamed into it, so a crash never leaves half a key, and a secret is never
 * on disk with a looser mode, even for a moment.
 */
export function writeKeyFile(path: string, keys: KeyFile, opts: { overwrite?: boolean } = {}): void {
  const content: KeyFile = { publicKey: checkKey(`${path}: publicKey`, keys.publicKey) };
  if (keys.secretKey !== undefined) content.secretKey = checkKeyPair(`${path}: `, keys).secretKey;
  if (keys.nodes !== undefined) content.nodes = checkNodes(path, keys.nodes);
  const text = `${JSON.stringify(content, null, 2)}\n`;
  if (!opts.overwrite) {
    try {
      writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw fileError(path, err, 'write');
    }
    // The umask may have narrowed the mode; it cannot have widened it, but say it exactly.
    chmodSync(path, 0o600);
    return;
  }
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(temp, text, { mode: 0o600, flag: 'w' });
    chmodSync(temp, 0o600);
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw fileError(path, err, 'write');
  }
}

/** A key file's content, checked: E_NOT_FOUND for a missing file, E_BAD_CONFIG naming the file and the field for a bad one. */
export function readKeyFile(path: string): KeyFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw fileError(path, err, 'read');
  }
  if (text.length > curveLimits.keyFileBytesMax) {
    throw new MangroveError('E_BAD_CONFIG', `${path} is not a key file: ${text.length} bytes, more than ${curveLimits.keyFileBytesMax}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new MangroveError('E_BAD_CONFIG', `${path} is not a key file: not JSON (expected {"publicKey": "...", "secretKey": "..."})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new MangroveError('E_BAD_CONFIG', `${path} is not a key file: expected a JSON object {"publicKey": "...", "secretKey": "..."}`);
  }
  const fields = parsed as Record<string, unknown>;
  const unknown = Object.keys(fields).find((k) => k !== 'publicKey' && k !== 'secretKey' && k !== 'nodes');
  if (unknown !== undefined) throw new MangroveError('E_BAD_CONFIG', `${path}: unknown field ${JSON.stringify(unknown)} (a key file has publicKey, secretKey and, a client's, nodes)`);
  const nodes = fields.nodes === undefined ? {} : { nodes: checkNodes(path, fields.nodes) };
  if (fields.secretKey === undefined) return { publicKey: checkKey(`${path}: publicKey`, fields.publicKey), ...nodes };
  const pair = checkKeyPair(`${path}: `, fields);
  return { publicKey: pair.publicKey, secretKey: pair.secretKey, ...nodes };
}

/** A key file's `nodes`: endpoint → the node's public key, each checked. */
function checkNodes(path: string, value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MangroveError('E_BAD_CONFIG', `${path}: nodes must be an object {"tcp://HOST:PORT": "<public key>", ...}`);
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > curveLimits.keyFileNodesMax) throw new MangroveError('E_BAD_CONFIG', `${path}: nodes names ${entries.length} nodes, more than ${curveLimits.keyFileNodesMax}`);
  const nodes: Record<string, string> = {};
  for (const [endpoint, key] of entries) {
    if (endpoint.length === 0 || endpoint.length > curveLimits.endpointCharsMax) throw new MangroveError('E_BAD_CONFIG', `${path}: nodes has an endpoint of ${endpoint.length} characters`);
    nodes[endpoint] = checkKey(`${path}: nodes[${JSON.stringify(endpoint)}]`, key);
  }
  return nodes;
}

/** A key file that must hold a pair (the owner's own keys, not a peer's public key). */
export function readKeyPair(path: string): CurveKeyPair {
  const file = readKeyFile(path);
  if (file.secretKey === undefined) {
    throw new MangroveError('E_BAD_CONFIG', `${path}: secretKey is missing: this file holds only a public key (a peer's?), not a key pair`);
  }
  return { publicKey: file.publicKey, secretKey: file.secretKey };
}

function fileError(path: string, err: unknown, doing: 'read' | 'write'): MangroveError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    return new MangroveError('E_NOT_FOUND', doing === 'read' ? `no key file at ${path}` : `cannot write ${path}: its directory does not exist`);
  }
  if (code === 'EEXIST') return new MangroveError('E_EXISTS', `${path} exists already: a key file is not overwritten unless asked (--force)`);
  const reason = err instanceof Error ? err.message : String(err);
  return new MangroveError('E_BAD_CONFIG', `cannot ${doing} the key file ${path}: ${reason}`);
}
