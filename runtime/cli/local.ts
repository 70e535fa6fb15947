/**
 * `mangrove local`: a whole cluster on this host, one node process each,
 * for trying Mangrove out and for watching it fail over. It writes one
 * config per node (or reuses the ones a previous run wrote, so nodes keep
 * their identities and data), starts the nodes as child processes, and shows
 * the cluster as each node sees it until Ctrl-C stops them all.
 *
 * Layout of DIR: node-<i>/config.json, node-<i>/node.log, node-<i>/node.mdb
 * (the node's store; its dataDir is its own folder), node-<i>/node.key and
 * client.key (the cluster's keys, local-keys.ts; not with --insecure), and
 * node-<i>.trace in the --trace folder when asked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, dirname, join, relative, resolve } from 'node:path';
import type { NodeStatus } from '../../actors/status.js';
import { MangroveError } from '../../bus/errors.js';
import type { CurveKeyPair } from '../../bus/transport/curve.js';
import type { ZmqClient } from '../../bus/transport/zmq-client.js';
import { MEMBERS_PER_GROUP_MAX } from '../../machines/membership/identity.js';
import { configLimits, loadConfig, writeConfig, type NodeConfig, type NodeConfigInput } from '../node/config.js';
import { renderLocal, type LocalNode } from './render.js';
import { CLIENT_KEY_FILE, insecureLocalCluster, keyLocalCluster, localSecure, readConfigInput } from './local-keys.js';

export const localLimits = {
  /** HTTP ports start at base-port + 100, so more nodes would collide with them. */
  nodesMax: 100,
  httpPortOffset: 100,
  basePortMin: 1024,
  refreshMs: 1000,
  statusTimeoutMs: 800,
  /** After SIGTERM, how long a node gets before SIGKILL. */
  stopGraceMs: 5000,
} as const;

export interface LocalOptions {
  nodes: number;
  /** Default: min(3, nodes). */
  anchors?: number;
  groups: number;
  dir: string;
  basePort: number;
  periodMs: number;
  traceDir?: string;
  /** No keys: configs say `"insecure": true` (a cluster from an earlier run keeps what its configs say). */
  insecure?: boolean;
}

export interface LocalPlanEntry {
  index: number;
  dir: string;
  configPath: string;
  logPath: string;
  /** Written when the file does not exist yet; an existing file is kept. */
  config: NodeConfigInput;
}

const usage = (why: string) => new MangroveError('E_BAD_ARGUMENT', why);

export function validateLocal(o: LocalOptions): void {
  const intIn = (name: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) throw usage(`${name} must be an integer from ${min} to ${max} (got ${v})`);
  };
  intIn('--nodes', o.nodes, 1, localLimits.nodesMax);
  intIn('--groups', o.groups, 1, o.nodes);
  if (o.anchors !== undefined) intIn('--anchors', o.anchors, 1, o.nodes);
  const perGroup = Math.ceil(o.nodes / o.groups);
  if (perGroup > MEMBERS_PER_GROUP_MAX) {
    throw usage(`a group holds at most ${MEMBERS_PER_GROUP_MAX} nodes: ${o.nodes} nodes need --groups ${Math.ceil(o.nodes / MEMBERS_PER_GROUP_MAX)} or more`);
  }
  const topPort = o.basePort + localLimits.httpPortOffset + o.nodes - 1;
  if (!Number.isInteger(o.basePort) || o.basePort < localLimits.basePortMin || topPort > 65535) {
    throw usage(`--base-port must be an integer from ${localLimits.basePortMin} to ${65535 - localLimits.httpPortOffset - o.nodes + 1} for ${o.nodes} nodes (ports P..P+${o.nodes - 1} and P+100..P+${99 + o.nodes}; got ${o.basePort})`);
  }
  intIn('--period', o.periodMs, configLimits.periodMsMin, configLimits.periodMsMax);
}

/**
 * The configs of the cluster. Node i listens on base-port + i and serves
 * HTTP on base-port + 100 + i; the first K nodes are the anchors, and every
 * node lists all of them; node i is in group i mod G, so the anchors spread
 * over the first groups rather than crowding into one.
 */
export function planLocal(o: LocalOptions): LocalPlanEntry[] {
  const dir = resolve(o.dir);
  const k = o.anchors ?? Math.min(3, o.nodes);
  const endpoint = (i: number) => `tcp://127.0.0.1:${o.basePort + i}`;
  const anchors = Array.from({ length: k }, (_, i) => endpoint(i));
  return Array.from({ length: o.nodes }, (_, i) => {
    const nodeDir = join(dir, `node-${i}`);
    const config: NodeConfigInput = {
      listen: endpoint(i),
      dataDir: '.',
      anchors,
      anchor: i < k,
      group: i % o.groups,
      periodMs: o.periodMs,
      httpPort: o.basePort + localLimits.httpPortOffset + i,
      faultInjection: true,
    };
    if (o.traceDir !== undefined) config.trace = relative(nodeDir, tracePath(o.traceDir, i));
    return { index: i, dir: nodeDir, configPath: join(nodeDir, 'config.json'), logPath: join(nodeDir, 'node.log'), config };
  });
}

/**
 * A node added to a cluster from an earlier run must contact the anchors
 * that cluster already has, not the ones today's flags would pick: the
 * anchors of the reused configs win, and a new node is an anchor only if
 * its endpoint is among them.
 */
export function adoptAnchors(plans: LocalPlanEntry[], reused: readonly Pick<NodeConfig, 'anchors'>[]): LocalPlanEntry[] {
  const anchors = reused[0]?.anchors;
  if (!anchors) return plans;
  return plans.map((p) => ({ ...p, config: { ...p.config, anchors: [...anchors], anchor: anchors.includes(p.config.listen) } }));
}

function tracePath(traceDir: string, i: number): string {
  return join(resolve(traceDir), `node-${i}.trace`);
}

/** The launcher's own key, for its status clients: the admin client's pair and the nodes' public keys. */
interface LauncherKey {
  keys: CurveKeyPair;
  peers: Record<string, string>;
}

interface Member {
  plan: LocalPlanEntry;
  config: NodeConfig;
  child?: ChildProcess;
  client?: ZmqClient;
  view: LocalNode;
}

/** Runs the cluster until SIGINT/SIGTERM; resolves with the exit code. */
export async function runLocal(options: LocalOptions, cliPath: string, out: NodeJS.WriteStream = process.stdout): Promise<number> {
  const { members, reused, key } = await prepareMembers(options);
  const dir = resolve(options.dir);
  printLayout(dir, members, reused, options.traceDir, key !== undefined);
  await launchMembers(members, cliPath, options.traceDir, key);
  return showUntilStopped(members, dir, out);
}

/**
 * Checks the options, writes the configs (an earlier run's keep their
 * settings; each gets the cluster's keys, local-keys.ts), and checks every
 * port is free.
 */
async function prepareMembers(options: LocalOptions): Promise<{ members: Member[]; reused: number; key?: LauncherKey }> {
  validateLocal(options);
  const plans = planLocal(options);
  if (options.traceDir !== undefined) mkdirSync(resolve(options.traceDir), { recursive: true });
  const earlier = new Map(plans.filter((p) => existsSync(p.configPath)).map((p) => [p.index, readConfigInput(p.configPath)]));
  const files = adoptAnchors(plans, [...earlier.values()]).map((plan) => ({ configPath: plan.configPath, config: earlier.get(plan.index) ?? plan.config, reused: earlier.has(plan.index) }));
  const keyed = localSecure(files, options.insecure === true) ? keyLocalCluster(resolve(options.dir), files) : undefined;
  const configs = keyed?.configs ?? insecureLocalCluster(files);
  const members: Member[] = plans.map((plan, i) => {
    writeConfig(plan.configPath, configs[i]);
    return { plan, config: loadConfig(plan.configPath), view: { index: plan.index, pid: null } };
  });
  await checkPortsFree(members);
  return { members, reused: earlier.size, key: keyed && { keys: keyed.admin, peers: keyed.peers } };
}

function printLayout(dir: string, members: Member[], reused: number, traceDir: string | undefined, secure: boolean): void {
  process.stderr.write(
    `mangrove local: ${members.length} nodes in ${dir}\n` +
      `  configs: ${join(dir, 'node-<i>', 'config.json')}${reused > 0 ? ` (${reused} reused from a previous run; their settings win over flags)` : ''}\n` +
      `  logs:    ${join(dir, 'node-<i>', 'node.log')}\n` +
      keysLine(dir, secure) +
      (traceDir !== undefined ? `  traces:  ${join(resolve(traceDir), 'node-<i>.trace')}\n` : '') +
      `  status:  mangrove status --connect ${members[0].config.listen}\n` +
      (members[0].config.httpPort !== undefined ? `  dashboard: http://127.0.0.1:${members[0].config.httpPort}/  (every node serves one on its HTTP port)\n` : '') +
      '\n',
  );
}

/** Where the keys are, and how the CLI finds the admin client's. */
function keysLine(dir: string, secure: boolean): string {
  if (!secure) return '  keys:    none ("insecure": true): every process that reaches a node\'s port gets in\n';
  const clientKey = join(dir, CLIENT_KEY_FILE);
  const found = basename(dir) === 'mangrove-local' ? `the CLI finds it when run in ${dirname(dir)}` : `give it to the CLI: --key ${clientKey} or export MANGROVE_KEY=${clientKey}`;
  return `  keys:    ${join(dir, 'node-<i>', 'node.key')}; the admin client's ${clientKey} (${found})\n`;
}

/** Starts each node's process and connects a status client to it (with the admin client's key, in a secure cluster). */
async function launchMembers(members: Member[], cliPath: string, traceDir: string | undefined, key: LauncherKey | undefined): Promise<void> {
  const { ZmqClient } = await import('../../bus/transport/zmq-client.js');
  // Should this launcher die on an error, its nodes must not outlive it.
  process.on('exit', () => {
    for (const m of members) if (isRunning(m.child)) m.child!.kill('SIGTERM');
  });
  for (const member of members) {
    member.child = spawnNode(member, cliPath, traceDir);
    member.view.pid = member.child.pid ?? null;
    const serverKey = key?.peers[member.config.listen];
    const curve = key && serverKey !== undefined ? { keys: key.keys, serverKey } : undefined;
    member.client = await ZmqClient.connect(member.config.listen, { timeoutMs: localLimits.statusTimeoutMs, curve });
  }
}

/** Polls and shows every node each refresh until a signal, or until every node has exited. */
function showUntilStopped(members: Member[], dir: string, out: NodeJS.WriteStream): Promise<number> {
  return new Promise<number>((resolveExit) => {
    const screen = new Screen(out);
    let timer: NodeJS.Timeout | undefined;
    let stopping = false;

    const refresh = async () => {
      const startedMs = Date.now();
      await Promise.all(members.map((m) => poll(m)));
      if (stopping) return;
      screen.show(renderLocal({ dir, nodes: members.map((m) => m.view), atMs: Date.now() }), footnotes(members));
      if (members.every((m) => m.view.exit)) {
        process.stderr.write('every node has exited; see the logs above\n');
        void stop(1);
        return;
      }
      // A silent node makes a poll wait for its timeout; keep the pace anyway.
      timer = setTimeout(() => void refresh(), Math.max(0, localLimits.refreshMs - (Date.now() - startedMs)));
    };

    const stop = async (code: number) => {
      if (stopping) return;
      stopping = true;
      clearTimeout(timer);
      process.stderr.write(`\nstopping ${members.filter((m) => !m.view.exit).length} node(s)...\n`);
      await Promise.all(members.map((m) => m.client?.close()));
      await Promise.all(members.map((m) => stopChild(m)));
      process.stderr.write('all nodes stopped\n');
      resolveExit(code);
    };

    const onSignal = () => {
      if (!stopping) return void stop(0);
      // A second Ctrl-C: the user will not wait for clean stops.
      for (const m of members) if (isRunning(m.child)) m.child!.kill('SIGKILL');
    };
    // SIGHUP too: the nodes are in their own process group, so a closed
    // terminal would otherwise leave them running.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
    void refresh();
  });
}

function spawnNode(m: Member, cliPath: string, traceDir: string | undefined): ChildProcess {
  const logFd = openSync(m.plan.logPath, 'a');
  const args = [...process.execArgv, cliPath, 'start', '--config', m.plan.configPath];
  if (traceDir !== undefined) args.push('--trace', tracePath(traceDir, m.plan.index));
  try {
    // Its own process group: a Ctrl-C reaches only this launcher, which then
    // stops each node once, instead of every node getting SIGINT and then
    // our SIGTERM as a second signal in the middle of its clean stop.
    const child = spawn(process.execPath, args, { stdio: ['ignore', logFd, logFd], detached: true });
    child.on('exit', (code, signal) => {
      m.view.exit = { code, signal };
    });
    child.on('error', (err) => {
      m.view.exit = { code: null, signal: null };
      m.view.error = err.message;
    });
    return child;
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(logFd);
  }
}

async function poll(m: Member): Promise<void> {
  if (!m.client || m.view.exit) {
    m.view.status = undefined;
    return;
  }
  try {
    const reply = (await m.client.request('client.status', {})) as { result: NodeStatus };
    m.view.status = reply.result;
    m.view.error = undefined;
  } catch (err) {
    m.view.status = undefined;
    m.view.error = err instanceof Error ? err.message : String(err);
  }
}

function footnotes(members: Member[]): string {
  return members
    .filter((m) => m.view.exit)
    .map((m) => `#${m.plan.index} exited (${m.view.exit!.signal ?? `code ${m.view.exit!.code}`}): see ${m.plan.logPath}`)
    .join('\n');
}

function isRunning(child: ChildProcess | undefined): boolean {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

async function stopChild(m: Member): Promise<void> {
  const child = m.child;
  if (!child || !isRunning(child)) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    process.stderr.write(`#${m.plan.index} (pid ${child.pid}) did not stop within ${localLimits.stopGraceMs} ms: killing it\n`);
    child.kill('SIGKILL');
  }, localLimits.stopGraceMs);
  await exited;
  clearTimeout(timer);
}

/** A clear error before anything starts, rather than nodes dying one by one on bind. */
async function checkPortsFree(members: Member[]): Promise<void> {
  for (const m of members) {
    const listenPort = Number(/:(\d+)$/.exec(m.config.listen)?.[1]);
    const ports = [listenPort, ...(m.config.httpPort ? [m.config.httpPort] : [])];
    for (const port of ports) {
      if (!(await portFree(port))) {
        throw new MangroveError(
          'E_BUSY',
          `port ${port} of node-${m.plan.index} is in use: is another 'mangrove local' running? Stop it, or use another --dir and --base-port`,
        );
      }
    }
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const server = createServer();
    server.once('error', () => res(false));
    server.listen(port, '127.0.0.1', () => server.close(() => res(true)));
  });
}

/** Redraws in place on a terminal; elsewhere appends a view only when it changed. */
class Screen {
  private lines = 0;
  private last = '';

  constructor(private readonly out: NodeJS.WriteStream) {}

  show(view: string, notes: string): void {
    const text = notes ? `${view}\n${notes}\n` : `${view}\n`;
    if (this.out.isTTY) {
      const up = this.lines > 0 ? `\x1b[${this.lines}F\x1b[J` : '';
      this.out.write(up + text);
      this.lines = this.countLines(text);
      return;
    }
    // The first line carries the time, which changes every refresh.
    const content = text.slice(text.indexOf('\n'));
    if (content === this.last) return;
    this.last = content;
    this.out.write(`${text}\n`);
  }

  /** Lines as displayed: long lines wrap on a narrow terminal. */
  private countLines(text: string): number {
    const width = this.out.columns || 80;
    return text
      .slice(0, -1)
      .split('\n')
      .reduce((n, line) => n + Math.max(1, Math.ceil(line.length / width)), 0);
  }
}
