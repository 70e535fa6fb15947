/**
 * An embedded node (`import { startNode } from 'mangrove'`): a program runs
 * its cluster node in its own process and uses it through the same client
 * API as a remote one (MangroveClient), without a socket: each call is a
 * function call into the node's engine, so a read of a page the node holds
 * costs microseconds, not a round trip.
 *
 * The node is a whole member of its cluster: it listens on `listen` for its
 * peers and for other programs' clients, keeps pages on its disk, and fails
 * over like any node. It differs from `mangrove start` only in what the
 * program owns: signals (the program decides when to `stop()`), stdout (the
 * node logs to stderr unless given a file) and the process's crash handling.
 *
 * Same semantics as the wire: every call is checked against the wire's
 * schema before it reaches the node (runtime/client/checks.ts), answered by
 * the same engine call a `client.page` request runs (PageEngine.call), and
 * what the program passes or gets back is its own (data going in is copied
 * before the call, a page coming back is a copy of the cached one).
 */
import type { ClientFsOp } from '../../bus/messages/fs.js';
import type { NodeStatus } from '../../actors/status.js';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { ClientPageOp } from '../../bus/messages/page.js';
import { MangroveClient, type PageLink } from '../client/pages.js';
import { checkClientId, checkKeys, describe } from '../client/checks.js';
import { loadConfig, parseConfig, type NodeConfig, type NodeConfigInput } from './config.js';
import { createLogger } from './logger.js';
import { openNode, type RunningNode } from './start.js';
import { randomBytes } from 'node:crypto';

/** How often `ready` looks at the node's state. */
const READY_POLL_MS = 50;

export interface StartNodeOptions {
  /** Append the node's log to this file; stderr when absent. */
  logFile?: string;
  /** Record every message the node sends and accepts (`mangrove trace show`), as `mangrove start --trace` does. */
  trace?: string;
}

export interface LocalClientOptions {
  /** Who the node thinks is asking: locks belong to it. Default: 'local-' and 12 random hex digits. */
  clientId?: string;
  /** As connect()'s: how long a call waits out a rebuild of the cluster; default 30000. */
  recoveryWaitMs?: number;
  /** As connect()'s: how long the node keeps this client's locks once it stops hearing from it; default 10000, 0 for none. */
  lockLeaseMs?: number;
}

/**
 * Starts a node in this process from a config file's path or a config
 * object (the file's fields; relative paths from the current directory).
 * Resolves once the node runs (it joins its cluster in the background, as
 * `mangrove start` does; `ready()` waits until it serves); rejects with
 * E_BAD_CONFIG naming the field of a bad config, with nothing left open.
 */
export async function startNode(config: string | NodeConfigInput, opts: StartNodeOptions = {}): Promise<EmbeddedNode> {
  checkKeys(opts, ['logFile', 'trace'], 'startNode options');
  let checked: NodeConfig;
  if (typeof config === 'string') checked = loadConfig(config);
  else if (typeof config === 'object' && config !== null) checked = parseConfig(config, 'startNode config', { baseDir: process.cwd() });
  else throw new MangroveError('E_BAD_CONFIG', `startNode takes a config file's path or a config object, not ${describe(config)}`);
  const log = createLogger({ level: checked.logLevel, file: opts.logFile, fd: 2 });
  return new EmbeddedNode(await openNode(checked, log, { trace: opts.trace }));
}

export class EmbeddedNode {
  private readonly links = new Set<InProcessLink>();
  private stopping: Promise<void> | undefined;

  /** @internal Made by startNode. */
  constructor(private readonly running: RunningNode) {}

  /** This node's permanent id. */
  get id(): string {
    return this.running.id;
  }

  /** Where peers and remote clients reach this node (`connect(node.endpoint)` from another process). */
  get endpoint(): string {
    return this.running.transport.endpoint;
  }

  /** The cluster as this node sees it (what `mangrove status` shows). */
  status(): NodeStatus {
    return this.running.node.status();
  }

  /**
   * Resolves once the node serves calls: it is in the cluster's node
   * database, has quorum and has finished its first rebuild round (a fresh
   * node joining, or one restarted). Rejects with E_TIMEOUT after
   * `timeoutMs` (the node keeps trying), E_CLOSED once stopped.
   */
  async ready(timeoutMs = 30_000): Promise<void> {
    const started = Date.now();
    for (;;) {
      if (this.stopping) throw new MangroveError('E_CLOSED', 'the node is stopping');
      const s = this.status();
      if (s.phase === 'joined' && s.quorum && this.running.node.engine.recoveryState().serving) return;
      if (Date.now() - started >= timeoutMs) {
        throw new MangroveError('E_TIMEOUT', `the node does not serve after ${timeoutMs} ms (${s.phase}, ${s.quorum ? 'with' : 'without'} quorum, ${s.state}): are its anchors ${this.running.config.anchors.join(', ')} reachable?`);
      }
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
  }

  /** A client of this node, in this process; as many as the program likes, each its own lock owner. */
  client(opts: LocalClientOptions = {}): MangroveClient {
    if (this.stopping) throw new MangroveError('E_CLOSED', 'the node is stopping');
    checkKeys(opts, ['clientId', 'recoveryWaitMs', 'lockLeaseMs'], 'client options');
    checkClientId(opts.clientId);
    const link = new InProcessLink(this.running, opts.clientId ?? `local-${randomBytes(6).toString('hex')}`, () => this.links.delete(link));
    this.links.add(link);
    return new MangroveClient(link, { recoveryWaitMs: opts.recoveryWaitMs, lockLeaseMs: opts.lockLeaseMs });
  }

  /** Stops the node; calls of its clients still running reject with E_CLOSED. Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const link of [...this.links]) await link.close();
      await this.running.stop();
    })();
    return this.stopping;
  }
}

/** A PageLink that is a function call: what a `client.page`, `client.fs` or `client.status` request would run on the node. */
class InProcessLink implements PageLink {
  private closed = false;
  /** Rejects each call still running: a closed client's calls end with E_CLOSED, as the socket client's do. */
  private readonly running = new Set<(err: MangroveError) => void>();

  constructor(
    private readonly node: RunningNode,
    readonly clientId: string,
    private readonly onClose: () => void,
  ) {}

  get endpoint(): string {
    return this.node.transport.endpoint;
  }

  request(kind: 'client.page' | 'client.fs' | 'client.status', body: unknown): Promise<unknown> {
    if (this.closed) return Promise.reject(new MangroveError('E_CLOSED', 'the client is closed'));
    if (kind === 'client.status') return Promise.resolve({ result: this.node.node.status() });
    const call =
      kind === 'client.fs' ? this.node.node.fs.call(ownedFs(body as ClientFsOp), this.clientId) : this.node.node.engine.call(owned(body as ClientPageOp), this.clientId);
    return new Promise((resolve, reject) => {
      this.running.add(reject);
      call.then(
        (result) => {
          this.running.delete(reject);
          resolve({ result });
        },
        (err: unknown) => {
          this.running.delete(reject);
          // As on the wire (PageEngine.onClient): the node's own codes, anything else is E_INTERNAL.
          reject(isMangroveError(err) ? err : new MangroveError('E_INTERNAL', String(err)));
        },
      );
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const reject of this.running) reject(new MangroveError('E_CLOSED', 'the client was closed before the answer came'));
    this.running.clear();
    this.onClose();
  }
}

/** A file-system write's data copied, as `owned` does for the engine's. */
function ownedFs(op: ClientFsOp): ClientFsOp {
  return op.op === 'write' ? { ...op, data: op.data.slice() } : op;
}

/** The op with the program's byte strings copied: the node may keep or use them after the program changes its own. */
function owned(op: ClientPageOp): ClientPageOp {
  if (op.op === 'write') return { ...op, data: op.data.slice() };
  if (op.op === 'txn_log') return { ...op, record: op.record.slice() };
  if (op.op === 'set_attrs' && op.fs !== undefined) return { ...op, fs: op.fs.slice() };
  return op;
}
