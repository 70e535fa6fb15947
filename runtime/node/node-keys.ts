/**
 * A secure node's CURVE settings from its config (config-keys.ts) and its
 * node database: its own pair from `keyFile`; the nodes of `peers` and the
 * member keys of the node database (docs/security.md) let in and dialed by
 * their keys; the keys of `clients` let in with their roles. An insecure
 * node has none, and its transport runs plain TCP as before.
 *
 * The node database's keys are read as they are now at every handshake and
 * every message (they change with a quorum-committed update: a node added,
 * a key rotated or taken away). For dialing, the key the database gives an
 * endpoint comes before the one `peers` gives, so a rotation takes effect
 * without editing configs; a key only a config lists stays let in until
 * that config changes.
 */
import { MangroveError } from '../../bus/errors.js';
import type { MemberKey } from '../../bus/messages/index.js';
import { readKeyPair, type CurveKeyPair, type CurveOptions } from '../../bus/transport/curve.js';
import type { KeyHolder } from '../../bus/transport/key-holder.js';
import type { NodeConfig } from './config.js';

const NODE: KeyHolder = Object.freeze({ kind: 'node' });

/**
 * The transport's CURVE options, or undefined for an insecure node; E_BAD_CONFIG
 * naming `keyFile` if the pair cannot be used. `memberKeys`: the node
 * database's keys now (none until the node has one).
 */
export function nodeCurve(config: NodeConfig, memberKeys: () => readonly MemberKey[] = () => []): CurveOptions | undefined {
  if (config.keyFile === undefined) return undefined;
  const keys = ownKeys(config.keyFile);
  const peers = new Map(Object.entries(config.peers ?? {}));
  const own = peers.get(config.listen);
  if (own !== undefined && own !== keys.publicKey) {
    throw new MangroveError('E_BAD_CONFIG', `"peers" gives this node's endpoint ${config.listen} a key that is not the public key of "keyFile" ${config.keyFile}: one of the two is another node's`);
  }
  const holders = new Map<string, KeyHolder>();
  for (const key of peers.values()) holders.set(key, NODE);
  // This node's own key is a node's too: its own CLI and tools may dial it with the node's pair.
  holders.set(keys.publicKey, NODE);
  for (const c of config.clients ?? []) holders.set(c.publicKey, { kind: 'client', role: c.role, name: c.name ?? `${c.role} ${c.publicKey.slice(0, 8)}` });
  const members = indexed(memberKeys);
  const holderOf = (key: string): KeyHolder | null => holders.get(key) ?? (members().byKey.has(key) ? NODE : null);
  return {
    keys,
    authorize: (key) => {
      const holder = holderOf(key);
      return holder === null ? null : holder.kind === 'node' ? 'node' : holder.name;
    },
    serverKeyOf: (endpoint) => (endpoint === config.listen ? keys.publicKey : (members().byEndpoint.get(endpoint) ?? peers.get(endpoint) ?? null)),
    holderOf,
  };
}

/** The member keys by key and by endpoint, indexed again only when the database gave a new list. */
function indexed(memberKeys: () => readonly MemberKey[]): () => { byKey: ReadonlySet<string>; byEndpoint: ReadonlyMap<string, string> } {
  let seen: readonly MemberKey[] | undefined;
  let index = { byKey: new Set<string>(), byEndpoint: new Map<string, string>() };
  return () => {
    const now = memberKeys();
    if (now !== seen) {
      seen = now;
      index = { byKey: new Set(now.map((k) => k.key)), byEndpoint: new Map(now.map((k) => [k.endpoint, k.key])) };
    }
    return index;
  };
}

function ownKeys(path: string): CurveKeyPair {
  try {
    return readKeyPair(path);
  } catch (err) {
    if (err instanceof MangroveError) throw new MangroveError('E_BAD_CONFIG', `"keyFile": ${err.message}`);
    throw err;
  }
}
