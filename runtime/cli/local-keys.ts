/**
 * The keys of a `mangrove local` cluster (docs/security.md): a pair per node
 * in DIR/node-<i>/node.key, an admin client's pair in DIR/client.key with
 * every node's public key beside it (what the CLI reads by default from the
 * folder `local` ran in), and every config with its `keyFile`, the whole
 * `peers` map and the admin client among its `clients`.
 *
 * Keys are made once: a later run reads the files and keeps the pairs, and
 * only the peers map grows with nodes added. A cluster whose configs say
 * `"insecure": true` stays so; configs from before keys existed (neither
 * field) take today's choice (`--insecure` or not).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { MangroveError } from '../../bus/errors.js';
import { generateKeyPair, readKeyPair, writeKeyFile, type CurveKeyPair } from '../../bus/transport/curve.js';
import type { ClientKeyEntry, NodeConfigInput } from '../node/config.js';

/** The admin client's name in the configs. */
export const LOCAL_ADMIN_NAME = 'mangrove local';
export const NODE_KEY_FILE = 'node.key';
export const CLIENT_KEY_FILE = 'client.key';

/** A node of the run: where its config lives, and the config to write (today's plan, or the file of an earlier run as it is). */
export interface LocalConfigFile {
  configPath: string;
  config: NodeConfigInput;
  /** Read from an earlier run's file, not planned today. */
  reused: boolean;
}

/** An earlier run's config file as written (relative paths kept), without the checks loadConfig makes: a config from before keys is upgraded, not refused. */
export function readConfigInput(path: string): NodeConfigInput {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as NodeConfigInput;
  } catch (err) {
    throw new MangroveError('E_BAD_CONFIG', `cannot read ${path} from an earlier run: ${(err as Error).message}`);
  }
}

/** Whether the run is secure: as the earlier run's configs say, else as today's flag. */
export function localSecure(files: readonly LocalConfigFile[], insecureFlag: boolean): boolean {
  const reused = files.filter((f) => f.reused).map((f) => f.config);
  if (reused.some((c) => c.keyFile !== undefined)) return true;
  if (reused.some((c) => c.insecure === true)) return false;
  return !insecureFlag;
}

/**
 * Gives every config the cluster's keys, making the pairs that are missing;
 * writes DIR/client.key. Returns the configs to write and the admin
 * client's pair and nodes, for the launcher's own status client.
 */
export function keyLocalCluster(dir: string, files: readonly LocalConfigFile[]): { configs: NodeConfigInput[]; admin: CurveKeyPair; peers: Record<string, string> } {
  const admin = pairAt(join(dir, CLIENT_KEY_FILE));
  const peers: Record<string, string> = {};
  // Nodes an earlier, bigger run had keep their place: they are still in the node database.
  for (const f of files) Object.assign(peers, f.config.peers ?? {});
  const keyFiles = files.map((f) => resolve(dirname(f.configPath), f.config.keyFile ?? NODE_KEY_FILE));
  files.forEach((f, i) => (peers[f.config.listen] = pairAt(keyFiles[i]).publicKey));
  const configs = files.map((f) => {
    const { insecure: _insecure, ...rest } = f.config;
    return { ...rest, keyFile: f.config.keyFile ?? NODE_KEY_FILE, peers, clients: withAdmin(f.config.clients ?? [], admin.publicKey) };
  });
  writeKeyFile(join(dir, CLIENT_KEY_FILE), { ...admin, nodes: peers }, { overwrite: true });
  return { configs, admin, peers };
}

/** Every config says `"insecure": true` (and names no key). */
export function insecureLocalCluster(files: readonly LocalConfigFile[]): NodeConfigInput[] {
  return files.map((f) => ({ ...f.config, insecure: true }));
}

/** The pair in `path`, made and written (0600) if there is none yet. */
function pairAt(path: string): CurveKeyPair {
  // A file holding a public key alone is a peer's, not this one's: readKeyPair refuses it, naming it.
  if (existsSync(path)) return readKeyPair(path);
  mkdirSync(dirname(path), { recursive: true });
  const pair = generateKeyPair();
  writeKeyFile(path, pair);
  return pair;
}

function withAdmin(clients: readonly ClientKeyEntry[], admin: string): ClientKeyEntry[] {
  if (clients.some((c) => c.publicKey === admin)) return [...clients];
  return [...clients, { publicKey: admin, role: 'admin', name: LOCAL_ADMIN_NAME }];
}
