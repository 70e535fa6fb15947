/**
 * The package's public entry (`import { ZmqClient } from 'mangrove'`): what a
 * program needs to talk to a running cluster and to read a node's config.
 * Kept small on purpose: everything here is a promise to users.
 */
export { MangroveError, isMangroveError, type ErrorCode } from '../bus/errors.js';
export { ZmqClient, type ZmqClientOptions } from '../bus/zmq-client.js';
export { loadConfig, type NodeConfig } from './config.js';
export type { NodeStatus, NodeView, NodeStateName } from '../actors/status.js';
