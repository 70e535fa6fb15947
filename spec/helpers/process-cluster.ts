/**
 * Real node processes on 127.0.0.1 for spec/cluster: each node is
 * `node dist/runtime/cli/main.js start --config …` in its own process, reached over
 * ZeroMQ. Every process this starts is stopped by pid in `stop()`, and every
 * wait is a bounded loop. Nodes run `"insecure": true` unless `secure` is
 * asked: then each has its key pair, every config the full peers map and an
 * admin client, whose key this helper's own clients use.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMangroveError } from '../../bus/errors.js';
import { generateKeyPair, writeKeyFile, type ClientCurve, type CurveKeyPair } from '../../bus/transport/curve.js';
import { ZmqClient } from '../../bus/transport/zmq-client.js';
import type { ClientKeyEntry } from '../../runtime/node/config.js';
import type { NodeStatus } from '../../actors/status.js';
import { freePort } from './ports.js';
import { CLI } from './run-cli.js';
import { until } from './until.js';

export interface ProcessClusterOptions {
  nodes: number;
  anchors?: number;
  groups?: number;
  periodMs?: number;
  quorumTimeoutMs?: number;
  /** Give every node an HTTP port (the OS picks it; a node's status names it). */
  http?: boolean;
  /** Record every node's messages to node-i/node.trace (see tracePath). */
  trace?: boolean;
  /** Core copies of a page, and directory replicas + 1 (the config's `copies`). */
  copies?: number;
  /** Keys (docs/security.md), and clients to let in besides the admin one this helper uses. */
  secure?: { clients?: ClientKeyEntry[]; unlisted?: number[] };
  /** More fields for every node's config (runtime/node/config.ts), e.g. `{ floodPerSecond: 2000 }`; they win over this helper's own. */
  config?: Record<string, unknown>;
}

export class ProcessCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'mangrove-cluster-'));
  readonly endpoints: string[] = [];
  private readonly children: (ChildProcess | undefined)[] = [];
  private readonly clients = new Map<number, ZmqClient>();
  /** Nodes a spec stopped on purpose; any other that is not running has died. */
  private readonly killed = new Set<number>();
  /** With `secure`: the admin client's pair (also in adminKeyPath), and each node's public key by endpoint. */
  readonly admin: CurveKeyPair | undefined;
  readonly peers: Record<string, string> = {};

  private constructor(readonly options: ProcessClusterOptions) {
    this.admin = options.secure ? generateKeyPair() : undefined;
  }

  /** Node i's key file (with `secure`). */
  keyPath(i: number): string {
    return join(this.dir, `node-${i}`, 'node.key');
  }

  /** The admin client's key file, with every node's public key (with `secure`): what `--key` takes. */
  get adminKeyPath(): string {
    return join(this.dir, 'client.key');
  }

  /** How a client reaches node i: CURVE with the admin key when the cluster is secure. */
  curveFor(i: number, keys: CurveKeyPair | undefined = this.admin): ClientCurve | undefined {
    return keys ? { keys, serverKey: this.peers[this.endpoints[i]] } : undefined;
  }

  static async start(options: ProcessClusterOptions): Promise<ProcessCluster> {
    const c = new ProcessCluster(options);
    try {
      await c.writeConfigs();
      for (let i = 0; i < options.nodes; i++) c.spawn(i);
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  get periodMs(): number {
    return this.options.periodMs ?? 100;
  }

  configPath(i: number): string {
    return join(this.dir, `node-${i}`, 'config.json');
  }

  /** Node i's trace file (with the `trace` option); complete once the node has stopped. */
  tracePath(i: number): string {
    return join(this.dir, `node-${i}`, 'node.trace');
  }

  pid(i: number): number | undefined {
    return this.children[i]?.pid;
  }

  isRunning(i: number): boolean {
    const c = this.children[i];
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  log(i: number): string {
    try {
      return readFileSync(join(this.dir, `node-${i}`, 'node.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts node i again with its config and data (a restart: new process, new epoch). */
  spawn(i: number): void {
    if (this.isRunning(i)) return;
    this.killed.delete(i);
    const out = openSync(join(this.dir, `node-${i}`, 'node.log'), 'a');
    const child = spawn(process.execPath, [CLI, 'start', '--config', this.configPath(i)], { stdio: ['ignore', out, out] });
    closeSync(out);
    this.children[i] = child;
  }

  signal(i: number, sig: NodeJS.Signals): void {
    const pid = this.pid(i);
    if (pid !== undefined) process.kill(pid, sig);
  }

  async kill(i: number): Promise<void> {
    const child = this.children[i];
    this.killed.add(i);
    if (!child || !this.isRunning(i)) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    await this.dropClient(i);
  }

  async status(i: number, timeoutMs = 1000): Promise<NodeStatus> {
    let client = this.clients.get(i);
    if (!client) {
      client = await ZmqClient.connect(this.endpoints[i], { timeoutMs, curve: this.curveFor(i) });
      this.clients.set(i, client);
    }
    const reply = (await client.request('client.status', {})) as { result: NodeStatus };
    return reply.result;
  }

  /** Statuses of the running nodes (undefined for a node that does not answer). */
  async statuses(only?: number[]): Promise<(NodeStatus | undefined)[]> {
    const which = only ?? [...Array(this.options.nodes).keys()];
    return Promise.all(
      [...Array(this.options.nodes).keys()].map((i) =>
        which.includes(i) && this.isRunning(i) ? this.status(i, 500).catch(() => undefined) : Promise.resolve(undefined),
      ),
    );
  }

  async request(i: number, kind: 'client.fault', body: { drop?: string[]; heal?: boolean }): Promise<unknown> {
    await this.status(i);
    return this.clients.get(i)!.request(kind, body);
  }

  /**
   * Polls every `pollMs` until `check` returns true; returns the elapsed ms,
   * or -1 once `timeoutMs` has passed. The -1 is for callers that report a
   * wait that ran out (bench/) or assert on how long it took; a spec that
   * only needs the wait to end can use `until`, which fails naming it.
   */
  async waitFor(check: () => Promise<boolean>, timeoutMs: number, pollMs = 50): Promise<number> {
    const start = Date.now();
    try {
      await until('the cluster', check, { timeoutMs, pollMs });
    } catch (err) {
      if (isMangroveError(err) && err.code === 'E_TIMEOUT') return -1;
      throw err;
    }
    return Date.now() - start;
  }

  /** Nodes that exited without a spec stopping them, with the end of their logs. */
  died(): string[] {
    return [...Array(this.options.nodes).keys()]
      .filter((i) => !this.killed.has(i) && this.children[i] !== undefined && !this.isRunning(i))
      .map((i) => `node ${i} exited (${this.children[i]!.exitCode ?? this.children[i]!.signalCode}):\n${this.log(i).slice(-2000)}`);
  }

  /** Every node not stopped on purpose is running, joined and quorate, sees all of them alive; one PAN. */
  async converged(expectAlive?: number[]): Promise<boolean> {
    const alive = expectAlive ?? [...Array(this.options.nodes).keys()].filter((i) => !this.killed.has(i));
    if (alive.some((i) => !this.isRunning(i))) return false;
    const statuses = await this.statuses(alive);
    const live = alive.map((i) => statuses[i]);
    if (live.some((s) => !s || !s.quorum || s.phase !== 'joined')) return false;
    const ids = new Set(live.map((s) => s!.self));
    if (new Set(live.map((s) => s!.pan)).size !== 1 || live[0]!.pan === null) return false;
    return live.every((s) => s!.nodes.filter((n) => n.alive).every((n) => ids.has(n.id)) && s!.nodes.filter((n) => n.alive).length === ids.size);
  }

  /** Stops every node cleanly (SIGTERM: traces are flushed), keeping the folder. */
  async stopNodes(): Promise<void> {
    for (const i of [...this.clients.keys()]) await this.dropClient(i);
    await Promise.all(
      this.children.map(async (child) => {
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  async stop(): Promise<void> {
    await this.stopNodes();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async dropClient(i: number): Promise<void> {
    const c = this.clients.get(i);
    this.clients.delete(i);
    await c?.close();
  }

  private async writeConfigs(): Promise<void> {
    const { nodes, periodMs = 100 } = this.options;
    const anchors = Math.min(this.options.anchors ?? 3, nodes);
    const groups = this.options.groups ?? 1;
    const ports = await Promise.all([...Array(nodes)].map(() => freePort()));
    for (const p of ports) this.endpoints.push(`tcp://127.0.0.1:${p}`);
    for (let i = 0; i < nodes; i++) mkdirSync(join(this.dir, `node-${i}`), { recursive: true });
    const security = this.writeKeys();
    for (let i = 0; i < nodes; i++) {
      const config = {
        listen: this.endpoints[i],
        dataDir: '.',
        anchors: this.endpoints.slice(0, anchors),
        anchor: i < anchors,
        ...(i < anchors ? { votes: 1 } : {}),
        group: Math.floor((i * groups) / nodes),
        periodMs,
        quorumTimeoutMs: this.options.quorumTimeoutMs ?? periodMs * 8,
        faultInjection: true,
        logLevel: 'info',
        ...(this.options.http ? { httpPort: 0 } : {}),
        ...(this.options.trace ? { trace: 'node.trace' } : {}),
        ...(this.options.copies ? { copies: this.options.copies } : {}),
        ...security,
        ...(security.peers ? { peers: this.peersFor(i) } : {}),
        ...this.options.config,
      };
      writeFileSync(this.configPath(i), JSON.stringify(config, null, 2));
    }
  }

  /** The `peers` of node i's config: every node's key but those of `secure.unlisted` (a node's own config always has its own). */
  private peersFor(i: number): Record<string, string> {
    const unlisted = new Set((this.options.secure?.unlisted ?? []).filter((j) => j !== i).map((j) => this.endpoints[j]));
    return Object.fromEntries(Object.entries(this.peers).filter(([endpoint]) => !unlisted.has(endpoint)));
  }

  /** With `secure`, every node's pair and the admin client's key file; the security fields of every config. */
  private writeKeys(): Record<string, unknown> {
    if (!this.admin) return { insecure: true };
    this.endpoints.forEach((endpoint, i) => {
      const pair = generateKeyPair();
      writeKeyFile(this.keyPath(i), pair);
      this.peers[endpoint] = pair.publicKey;
    });
    writeKeyFile(this.adminKeyPath, { ...this.admin, nodes: this.peers });
    const clients = [{ publicKey: this.admin.publicKey, role: 'admin', name: 'spec admin' }, ...(this.options.secure?.clients ?? [])];
    return { keyFile: 'node.key', peers: this.peers, clients };
  }
}
