/**
 * The security fields of a node's config: whose keys let a process in.
 *
 * - `keyFile`: this node's CURVE key pair (`mangrove keys generate`), a path
 *   relative to the config file's folder;
 * - `peers`: endpoint → public key of every node of the cluster (this
 *   node's own may be there or not): the nodes it lets in and dials;
 * - `clients`: the client keys it lets in, each with its role;
 * - `"insecure": true`: no keys at all, plain TCP, every process that
 *   reaches the port let in, with every right. Never by default: a config
 *   without `keyFile` must say so.
 *
 * Only the shapes and the rules between the fields are checked here; the
 * key file is read when the node starts (node-keys.ts).
 */
import { z } from 'zod';
import { MangroveError } from '../../bus/errors.js';
import { checkKey } from '../../bus/transport/curve.js';
import { isTcpEndpoint } from '../../bus/transport/endpoint.js';
import { CLIENT_ROLES, type ClientRole } from '../../bus/transport/key-holder.js';

export const keyConfigLimits = {
  peersMax: 4096,
  clientsMax: 4096,
  clientNameCharsMax: 64,
} as const;

export interface ClientKeyEntry {
  publicKey: string;
  role: ClientRole;
  name?: string;
}

/** The security fields as a parsed config holds them. */
export interface KeyConfig {
  /** Absolute once parsed. */
  keyFile?: string;
  peers?: Record<string, string>;
  clients?: ClientKeyEntry[];
  /** True only for a node that runs without keys. */
  insecure: boolean;
}

export const keySchema = {
  keyFile: z.string().min(1).max(4096).optional(),
  peers: z.record(z.string(), z.string()).optional(),
  clients: z
    .array(z.strictObject({ publicKey: z.string(), role: z.enum(CLIENT_ROLES), name: z.string().min(1).max(keyConfigLimits.clientNameCharsMax).optional() }))
    .max(keyConfigLimits.clientsMax)
    .optional(),
  insecure: z.boolean().default(false),
};

export const keyRules = {
  keyFile: { whole: 'a path to this node\'s key file (relative to the config file\'s folder), as `mangrove keys generate --out FILE` writes' },
  peers: {
    whole: `an object of at most ${keyConfigLimits.peersMax} entries "tcp://HOST:PORT": "<public key of the node there>"`,
    item: 'the public key of the node at that endpoint (40 Z85 characters, as `mangrove keys show` prints it)',
  },
  clients: {
    whole: `a list of at most ${keyConfigLimits.clientsMax} clients {"publicKey": "...", "role": "read-only" | "read-write" | "admin", "name": "..."}`,
    item: `a client {"publicKey": "...", "role": "read-only" | "read-write" | "admin", "name"?: "at most ${keyConfigLimits.clientNameCharsMax} characters"}`,
  },
  insecure: { whole: 'true or false' },
} as const;

type KeyInput = { keyFile?: string; peers?: Record<string, string>; clients?: ClientKeyEntry[]; insecure: boolean };

/**
 * The rules between the fields, and every key checked; `fail` throws naming
 * the field. `anchors` must all be in `peers`: a secure node cannot dial an
 * endpoint whose key it does not know.
 */
export function checkKeyConfig(c: KeyInput, anchors: readonly string[], sourceName: string, fail: (why: string) => never): Omit<KeyConfig, 'keyFile'> {
  if (c.keyFile === undefined) {
    if (!c.insecure) {
      fail('"keyFile" is required: this node\'s key pair (`mangrove keys generate --out node.key`), with "peers" and "clients"; or set "insecure": true to run without keys, letting in every process that reaches the port');
    }
    if (c.peers !== undefined || c.clients !== undefined) fail(`"${c.peers !== undefined ? 'peers' : 'clients'}" means nothing without "keyFile": give the node its key pair, or leave the field out`);
    return { insecure: true };
  }
  if (c.insecure) fail('"insecure" must be false or absent when "keyFile" is given: a node with keys lets in only the keys it knows');
  const peers = checkPeers(c.peers ?? {}, sourceName, fail);
  const missing = anchors.find((a) => peers[a] === undefined);
  if (missing !== undefined) fail(`"peers" has no key for the anchor ${missing}: this node could not dial it`);
  const clients = checkClients(c.clients ?? [], new Set(Object.values(peers)), sourceName, fail);
  return { peers, clients, insecure: false };
}

function checkPeers(peers: Record<string, string>, sourceName: string, fail: (why: string) => never): Record<string, string> {
  const entries = Object.entries(peers);
  if (entries.length > keyConfigLimits.peersMax) fail(`"peers" must be ${keyRules.peers.whole} (got ${entries.length} entries)`);
  const checked: Record<string, string> = {};
  for (const [endpoint, key] of entries) {
    if (!isTcpEndpoint(endpoint)) fail(`"peers" has the key ${JSON.stringify(endpoint.slice(0, 80))}: each must be a tcp endpoint tcp://HOST:PORT, as "listen" is`);
    checked[endpoint] = keyOf(`"peers[${endpoint}]"`, key, sourceName);
  }
  return checked;
}

function checkClients(clients: ClientKeyEntry[], nodeKeys: ReadonlySet<string>, sourceName: string, fail: (why: string) => never): ClientKeyEntry[] {
  const seen = new Set<string>();
  return clients.map((client, i) => {
    const publicKey = keyOf(`"clients[${i}][publicKey]"`, client.publicKey, sourceName);
    if (nodeKeys.has(publicKey)) fail(`"clients[${i}]" has the key of a node in "peers": a key is a node's or a client's, not both`);
    if (seen.has(publicKey)) fail(`"clients[${i}]" lists a key an earlier client has: one role per key`);
    seen.add(publicKey);
    return { ...client, publicKey };
  });
}

/** checkKey's sentence (which never quotes the key), with the file's name before it. */
function keyOf(field: string, value: unknown, sourceName: string): string {
  try {
    return checkKey(field, value);
  } catch (err) {
    if (err instanceof MangroveError) throw new MangroveError('E_BAD_CONFIG', `${sourceName}: ${err.message}`);
    throw err;
  }
}
