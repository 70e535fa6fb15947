/**
 * The package's public entry (`import { connect } from 'mangrove'`): what a
 * program needs to use a running cluster's pages (connect, MangroveClient),
 * run a node in its own process and use it without a socket (startNode),
 * talk to a node at the message level (ZmqClient) and read a node's config;
 * the key files a client of a node with keys uses (docs/security.md).
 * Kept small on purpose: everything here is a promise to users.
 */
export { MangroveError, isMangroveError, type ErrorCode } from '../bus/errors.js';
export { ZmqClient, type ZmqClientOptions } from '../bus/transport/zmq-client.js';
export { generateKeyPair, readKeyFile, writeKeyFile, type ClientCurve, type CurveKeyPair, type KeyFile } from '../bus/transport/curve.js';
export { clientCurveFor, findClientKey, loadClientKey, type ClientKey } from './client/client-key.js';
export type { ClientRole } from '../bus/transport/key-holder.js';
export { loadConfig, type NodeConfig, type NodeConfigInput } from './node/config.js';
export { startNode, EmbeddedNode, type LocalClientOptions, type StartNodeOptions } from './node/embedded.js';
export {
  connect,
  MangroveClient,
  type AllocOptions,
  type AttrChanges,
  type ConnectOptions,
  type FlushResult,
  type LockMode,
  type PageAttrs,
  type PageStat,
  type SpaceReport,
} from './client/pages.js';
export { formatAddress, PAGE_BYTES, parseAddress } from '../machines/memory/address.js';
export { FsClient, FileHandle, HANDLE_RENEW_MS, type CheckReport, type FilesetInfo, type FsDirEntry, type FsStat, type OpenFlags, type OpenOptions } from './client/files.js';
export { posixOf } from '../bus/errors.js';
export type { NodeStatus, NodeView, NodeStateName } from '../actors/status.js';
