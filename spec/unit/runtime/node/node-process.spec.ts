/**
 * Real node processes from the built CLI: `start` serves status over ZeroMQ
 * and HTTP, stops cleanly on SIGTERM, keeps its identity across restarts;
 * `local` starts a cluster and stops every process it started. Every test
 * stops what it started, also when it fails.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeStatus } from '../../../../actors/status.js';
import { writeConfig } from '../../../../runtime/node/config.js';
import { freePort } from '../../../helpers/ports.js';
import { CLI, mangrove } from '../../../helpers/run-cli.js';
import { until } from '../../../helpers/until.js';

const children = new Set<ChildProcess>();

function launch(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => (children.delete(child), r(code))));
  return { child, output: () => out, exited };
}

/** Each look at a process runs the CLI once: every 200 ms is often enough, for up to 15 s. */
const PROCESS_WAIT = { timeoutMs: 15_000, pollMs: 200 };

async function statusOf(endpoint: string): Promise<NodeStatus | undefined> {
  const r = await mangrove(['status', '--connect', endpoint, '--json', '--timeout', '500']);
  return r.code === 0 ? (JSON.parse(r.stdout) as NodeStatus) : undefined;
}

describe('runtime/node/start and runtime/cli/local (real processes)', function () {
  this.timeout(60_000);
  let dir: string;

  before(function () {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mangrove-proc-'));
  });
  afterEach(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a node that answers status, serves HTTP, stops on SIGTERM and restarts as itself', async () => {
    const port = await freePort();
    const httpPort = await freePort();
    const endpoint = `tcp://127.0.0.1:${port}`;
    const config = join(dir, 'node', 'config.json');
    writeConfig(config, { insecure: true, listen: endpoint, dataDir: 'data', anchors: [endpoint], anchor: true, periodMs: 50, httpPort });

    const first = launch(['start', '--config', config]);
    const s1 = await until('the node to answer', () => statusOf(endpoint), PROCESS_WAIT);
    expect(s1.endpoint).to.equal(endpoint);
    expect(s1.epoch).to.equal(1);
    expect(s1.faults.enabled).to.equal(false);

    const human = await mangrove(['status', '--connect', endpoint]);
    expect(human.code).to.equal(0);
    expect(human.stdout).to.match(new RegExp(`^node\\s+${s1.self}`));

    const http = (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as NodeStatus;
    expect(http.self).to.equal(s1.self);
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    expect(metrics).to.include(`mangrove_epoch{node="${s1.self}"} 1`);

    const refused = await mangrove(['fault', '--connect', endpoint, '--heal']);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(/^error E_FAULTS_DISABLED: /);

    first.child.kill('SIGTERM');
    expect(await first.exited).to.equal(0);
    for (const line of first.output().trim().split('\n')) expect(() => JSON.parse(line), line).not.to.throw();

    const second = launch(['start', '--config', config]);
    const s2 = await until('the restarted node to answer', () => statusOf(endpoint), PROCESS_WAIT);
    expect(s2.self).to.equal(s1.self);
    expect(s2.epoch).to.equal(2);
    second.child.kill('SIGINT');
    expect(await second.exited).to.equal(0);
  });

  it('refuses to start on a port in use, naming the endpoint', async () => {
    const port = await freePort();
    const server: Server = createServer();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    try {
      const endpoint = `tcp://127.0.0.1:${port}`;
      const config = join(dir, 'config.json');
      writeConfig(config, { insecure: true, listen: endpoint, dataDir: 'data', anchors: [endpoint], anchor: true });
      const r = await mangrove(['start', '--config', config]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(new RegExp(`^error E_BAD_CONFIG: cannot listen on ${endpoint}`));
    } finally {
      server.close();
    }
  });

  it('local starts a cluster, shows it, stops every node on SIGTERM and reuses it next time', async () => {
    const basePort = 20_000 + Math.floor(Math.random() * 20_000);
    const args = ['local', '--nodes', '2', '--dir', join(dir, 'cluster'), '--base-port', String(basePort), '--period', '50', '--insecure'];
    const endpoint = `tcp://127.0.0.1:${basePort + 1}`;

    const run = launch(args);
    const view = await until('both nodes in the view', async () => (/answering 2\/2, quorum at 2\/2/.test(run.output()) ? run.output() : undefined), PROCESS_WAIT);
    expect(view).to.include(`mangrove local: 2 nodes in ${join(dir, 'cluster')}`);
    const s1 = await until('node 1 to answer', () => statusOf(endpoint), PROCESS_WAIT);
    const pids = [s1.pid, ...s1.nodes.map((n) => n.pid).filter((p): p is number => p !== null)];

    run.child.kill('SIGTERM');
    expect(await run.exited).to.equal(0);
    expect(run.output()).to.include('all nodes stopped');
    for (const pid of new Set(pids)) expect(() => process.kill(pid, 0), `node pid ${pid} still runs`).to.throw();
    expect(readFileSync(join(dir, 'cluster', 'node-1', 'node.log'), 'utf8')).to.include('"msg":"stopped"');

    const again = launch(args);
    const s2 = await until('node 1 to answer again', () => statusOf(endpoint), PROCESS_WAIT);
    expect(s2.self).to.equal(s1.self);
    expect(s2.epoch).to.equal(s1.epoch + 1);
    again.child.kill('SIGTERM');
    expect(await again.exited).to.equal(0);
  });
});
