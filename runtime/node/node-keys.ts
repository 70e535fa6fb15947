/**
 * A secure node's CURVE settings from its config (config-keys.ts): its own
 * pair from `keyFile`, the nodes of `peers` let in and dialed by their
 * keys, the keys of `clients` let in with their roles. An insecure node has
 * none, and its transport runs plain TCP as before.
 */
import { MangroveError } from '../../bus/errors.js';
import { readKeyPair, type CurveKeyPair, type CurveOptions } from '../../bus/transport/curve.js';
import type { KeyHolder } from '../../bus/transport/key-holder.js';
import type { NodeConfig } from './config.js';

/** The transport's CURVE options, or undefined for an insecure node; E_BAD_CONFIG naming `keyFile` if the pair cannot be used. */
export function nodeCurve(config: NodeConfig): CurveOptions | undefined {
  if (config.keyFile === undefined) return undefined;
  const keys = ownKeys(config.keyFile);
  const peers = new Map(Object.entries(config.peers ?? {}));
  const own = peers.get(config.listen);
  if (own !== undefined && own !== keys.publicKey) {
    throw new MangroveError('E_BAD_CONFIG', `"peers" gives this node's endpoint ${config.listen} a key that is not the public key of "keyFile" ${config.keyFile}: one of the two is another node's`);
  }
  const holders = new Map<string, KeyHolder>();
  for (const key of peers.values()) holders.set(key, { kind: 'node' });
  // This node's own key is a node's too: its own CLI and tools may dial it with the node's pair.
  holders.set(keys.publicKey, { kind: 'node' });
  for (const c of config.clients ?? []) holders.set(c.publicKey, { kind: 'client', role: c.role, name: c.name ?? `${c.role} ${c.publicKey.slice(0, 8)}` });
  return {
    keys,
    authorize: (key) => {
      const holder = holders.get(key);
      return holder === undefined ? null : holder.kind === 'node' ? 'node' : holder.name;
    },
    serverKeyOf: (endpoint) => (endpoint === config.listen ? keys.publicKey : (peers.get(endpoint) ?? null)),
    holderOf: (key) => holders.get(key) ?? null,
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
