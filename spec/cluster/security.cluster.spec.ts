/**
 * Only members get in (docs/security.md), on real node processes over
 * 127.0.0.1: a cluster whose configs have keys forms and serves its admin
 * client; a process without a key, or with a key nobody listed, gets
 * nothing from any port, and is counted; a member's key sending in another
 * member's name is dropped, counted `forged_from`, and the cluster does
 * not notice; each client role gets what it may and E_FORBIDDEN for the
 * rest; `mangrove local` makes keys and the CLI finds the admin's by
 * itself; a config with no keys that does not say "insecure" is refused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { get } from 'node:http';
import type { NodeStatus } from '../../actors/status.js';
import { ENVELOPE_VERSION } from '../../bus/envelope.js';
import { generateKeyPair, readKeyPair, writeKeyFile, type CurveKeyPair } from '../../bus/transport/curve.js';
import { ZmqClient } from '../../bus/transport/zmq-client.js';
import { ZmqTransport } from '../../bus/transport/zmq.js';
import { connect, type MangroveClient } from '../../runtime/client/pages.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import { WallClock } from '../../runtime/world/clock.js';
import { freePort } from '../helpers/ports.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { CLI, mangrove, type Run } from '../helpers/run-cli.js';
import { until } from '../helpers/until.js';
import { rejectionOf } from '../helpers/error-of.js';

const PERIOD = 100;

/** The built CLI run in `cwd` with `env` added, bounded. */
function mangroveIn(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, MANGROVE_KEY: '', ...env }, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('security: only members get in', function () {
  this.timeout(120_000);
  const reader = generateKeyPair();
  const writer = generateKeyPair();
  let cluster: ProcessCluster;
  let ids: string[];
  const clients: { close(): Promise<unknown> }[] = [];

  /** A key file for `keys` that knows every node of the cluster, as `mangrove local` writes the admin's. */
  function keyFileOf(name: string, keys: CurveKeyPair): string {
    const path = join(cluster.dir, `${name}.key`);
    if (!existsSync(path)) writeKeyFile(path, { ...keys, nodes: cluster.peers });
    return path;
  }

  async function client(i: number, keyFile: string | undefined): Promise<MangroveClient> {
    const c = await connect(cluster.endpoints[i], { timeoutMs: 5000, recoveryWaitMs: 10_000, key: keyFile });
    clients.push(c);
    return c;
  }

  async function raw(i: number, keys?: CurveKeyPair, timeoutMs = 5000): Promise<ZmqClient> {
    const c = await ZmqClient.connect(cluster.endpoints[i], { timeoutMs, curve: keys && { keys, serverKey: cluster.peers[cluster.endpoints[i]] } });
    clients.push(c);
    return c;
  }

  before(async () => {
    cluster = await ProcessCluster.start({
      nodes: 3,
      anchors: 3,
      periodMs: PERIOD,
      http: true,
      secure: {
        clients: [
          { publicKey: reader.publicKey, role: 'read-only', name: 'reader' },
          { publicKey: writer.publicKey, role: 'read-write', name: 'writer' },
        ],
      },
    });
    await cluster.waitFor(() => cluster.converged(), 30_000);
    if (!(await cluster.converged())) throw new Error(`the secure cluster did not form:\n${cluster.died().join('\n')}\n${cluster.log(0).slice(-3000)}`);
    ids = (await cluster.statuses()).map((s) => s!.self);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });

  after(async () => {
    await cluster?.stop();
  });

  it('forms from configs with keys, says it is secure, and serves the admin client', async () => {
    for (const s of await cluster.statuses()) {
      expect(s!.security).to.deep.include({ secure: true });
      // Every honest link proved its key before it said anything else: nothing of theirs was dropped.
      expect(s!.rejectedByReason).to.include({ unauthenticated: 0, bad_proof: 0, forged_from: 0, not_a_node: 0 });
    }
    const admin = await client(0, cluster.adminKeyPath);
    const base = await admin.reserve(1);
    await admin.alloc(base, 1, { copies: 2 });
    await admin.write(base, new Uint8Array(PAGE_BYTES).fill(0x5a));
    const elsewhere = await client(2, cluster.adminKeyPath);
    expect((await elsewhere.read(base, 1)).every((b) => b === 0x5a)).to.equal(true);
  });

  it("shows every node's own status on a node's dashboard: it asks the others with its own key", async () => {
    const port = (await cluster.statuses())[0]!.http!;
    const first = await new Promise<{ nodes: { id: string; status: unknown; error: string | null }[] }>((resolve, reject) => {
      const req = get({ host: '127.0.0.1', port, path: '/dashboard/stream' }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
          const m = /^data: (.*)$/m.exec(text);
          if (m) {
            req.destroy();
            resolve(JSON.parse(m[1]!));
          }
        });
      });
      req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
    });
    expect(first.nodes.map((n) => n.id).sort()).to.deep.equal([...ids].sort());
    for (const n of first.nodes) expect(n.status, `${n.id}: ${n.error}`).to.not.equal(null);
    // Another node's machines, asked over the bus with the same key (client.machines).
    const res = await fetch(`http://127.0.0.1:${port}/dashboard/machines?node=${ids[1]}`);
    const theirs = (await res.json()) as { node: string; actors: { machine: string }[]; records: { id: number; node: string }[]; last: number };
    expect(res.status, JSON.stringify(theirs)).to.equal(200);
    expect(theirs.node).to.equal(ids[1]);
    expect(theirs.actors.map((a) => a.machine)).to.include('quorum');
    expect(theirs.records.length).to.be.above(0);
    expect(theirs.records.every((r) => r.node === ids[1])).to.equal(true);
    expect(theirs.last).to.equal(theirs.records.at(-1)!.id);
  });

  it('gives a process without a key nothing from any port, at once, and counts it as no_key', async () => {
    for (let i = 0; i < 3; i++) {
      const before = (await cluster.status(i)).rejectedByReason.no_key;
      const started = Date.now();
      const answer = await rejectionOf((await raw(i, undefined, 60_000)).request('client.status', {}));
      expect(answer).to.equal(`E_UNREACHABLE: ${cluster.endpoints[i]} lets in only clients with a key (it is a secure node): give this client its key file (--key FILE, or $MANGROVE_KEY)`);
      expect(Date.now() - started, 'refused, not timed out').to.be.below(10_000);
      await until(`node ${i} to count the refusal`, async () => (await cluster.status(i)).rejectedByReason.no_key > before, { timeoutMs: 5000 });
    }
  });

  it('refuses a client whose key no config lists, and counts it as unknown_key', async () => {
    const before = (await cluster.status(1)).rejectedByReason.unknown_key;
    const answer = await rejectionOf((await raw(1, generateKeyPair(), 60_000)).request('client.status', {}));
    expect(answer).to.equal(`E_UNREACHABLE: ${cluster.endpoints[1]} refused this client's CURVE key: is the client's public key authorized on that node?`);
    expect((await cluster.status(1)).rejectedByReason.unknown_key).to.equal(before + 1);
  });

  it('drops what a member\'s key sends in another member\'s name (forged_from), epoch and all, and the cluster carries on', async () => {
    const before = await cluster.status(1);
    // Node 2's own key, in a process of this spec's: it may speak for node 2, and for no one else.
    const forger = await ZmqTransport.open({
      self: ids[2],
      endpoint: `tcp://127.0.0.1:${await freePort()}`,
      clock: new WallClock(),
      curve: { keys: readKeyPair(cluster.keyPath(2)), authorize: () => null, serverKeyOf: (e) => cluster.peers[e] ?? null },
    });
    const forged = 20;
    try {
      for (let seq = 1; seq <= forged; seq++) {
        // A pulse from node 0 from a far later incarnation: accepted, it would make node 0's real pulses stale at node 1.
        forger.sendToEndpoint(cluster.endpoints[1], { v: ENVELOPE_VERSION, kind: 'pan.claim', from: ids[0], to: ids[1], epoch: 1e12, seq, body: { term: 1e9 } });
      }
      await until('the forged envelopes to be counted', async () => (await cluster.status(1)).rejectedByReason.forged_from >= before.rejectedByReason.forged_from + forged, { timeoutMs: 10_000 });
    } finally {
      await forger.close();
    }
    const after = await cluster.status(1);
    expect(after.rejectedByReason.forged_from - before.rejectedByReason.forged_from).to.equal(forged);
    // Several periods on, node 0's own envelopes still get in (no stale_epoch), and the cluster is whole with one PAN.
    await new Promise((resolve) => setTimeout(resolve, 10 * PERIOD));
    const later = await cluster.status(1);
    expect(later.rejectedByReason.stale_epoch - before.rejectedByReason.stale_epoch).to.equal(0);
    expect(later.pan).to.equal(before.pan);
    expect(await cluster.converged(), 'still one PAN, quorum, every node alive').to.equal(true);
  });

  it('takes a member back after kill -9 and restart: the links to and from it prove their keys again', async () => {
    await cluster.kill(1);
    cluster.spawn(1);
    await cluster.waitFor(() => cluster.converged(), 30_000);
    expect(await cluster.converged(), `the cluster did not take node 1 back:\n${cluster.log(1).slice(-2000)}`).to.equal(true);
    expect((await cluster.status(1)).self).to.equal(ids[1]);
  });

  it('lets a read-only client read, and refuses its write E_FORBIDDEN, counted', async () => {
    const admin = await client(0, cluster.adminKeyPath);
    const base = await admin.reserve(1);
    await admin.alloc(base, 1, { copies: 2 });
    await admin.write(base, new Uint8Array(PAGE_BYTES).fill(7));
    const ro = await client(1, keyFileOf('reader', reader));
    expect((await ro.read(base, 1))[0]).to.equal(7);
    // A node's machines are a read too.
    const machines = (await (await raw(1, reader)).request('client.machines', {})) as { result: { node: string } };
    expect(machines.result.node).to.equal(ids[1]);
    expect((await ro.stat(base)).address).to.be.a('string');
    const before = (await cluster.status(1)).security!.forbidden;
    expect(await rejectionOf(ro.write(base, new Uint8Array(PAGE_BYTES)))).to.equal(
      'E_FORBIDDEN: a read-only client may not client.page write (a read-write or admin key may)',
    );
    expect(await rejectionOf(ro.fs.mkdir('/made-by-a-reader'))).to.match(/^E_FORBIDDEN: a read-only client may not client\.fs mkdir/);
    expect((await cluster.status(1)).security!.forbidden).to.equal(before + 2);
    expect((await admin.read(base, 1))[0], 'the page is as the admin wrote it').to.equal(7);
  });

  it('lets a read-write client write but not change the node database or the fault filter; the admin\'s reach the node', async () => {
    const rw = await client(2, keyFileOf('writer', writer));
    const base = await rw.reserve(1);
    await rw.alloc(base, 1);
    expect(await rw.write(base, new Uint8Array(PAGE_BYTES).fill(1))).to.have.length(1);
    const link = await raw(0, writer);
    expect(await rejectionOf(link.request('client.fault', { heal: true }))).to.equal(
      'E_FORBIDDEN: a read-write client may not client.fault (only an admin key may change the node database or the fault filter)',
    );
    expect(await rejectionOf(link.request('client.ndb_update', { change: { op: 'delete', id: 'nobody' } }))).to.match(/^E_FORBIDDEN: a read-write client may not client\.ndb_update/);
    const admin = await raw(0, cluster.admin);
    expect(await admin.request('client.fault', { heal: true })).to.deep.equal({ result: { dropped: [] } });
    // Past the role check, the node database itself answers: there is no such node.
    expect(await rejectionOf(admin.request('client.ndb_update', { change: { op: 'delete', id: 'nobody' } }))).to.match(/^E_NOT_FOUND: /);
  });

  it('runs the CLI with --key or $MANGROVE_KEY, says what is missing without one, and refuses a node its key file does not know', async () => {
    const at = ['--connect', cluster.endpoints[0], '--timeout', '3000'];
    const withFlag = await mangrove(['status', ...at, '--key', cluster.adminKeyPath, '--json']);
    expect(withFlag.code, withFlag.stderr).to.equal(0);
    expect((JSON.parse(withFlag.stdout) as NodeStatus).security).to.deep.include({ secure: true });
    const human = await mangroveIn(cluster.dir, ['status', ...at], { MANGROVE_KEY: cluster.adminKeyPath });
    expect(human.stdout).to.match(/^security +secure: only the keys of its config and node database get in/m);
    const none = await mangroveIn(cluster.dir, ['status', ...at]);
    expect(none.code).to.equal(1);
    expect(none.stderr).to.match(/^error E_UNREACHABLE: .* lets in only clients with a key/);
    const elsewhere = await mangroveIn(cluster.dir, ['status', '--connect', 'tcp://127.0.0.1:9', '--key', cluster.adminKeyPath]);
    expect(elsewhere.stderr).to.match(/^error E_NOT_FOUND: the key file .*client\.key does not know the public key of the node at tcp:\/\/127\.0\.0\.1:9/);
  });
});

describe('security: mangrove local makes keys', function () {
  this.timeout(120_000);
  let dir: string;
  let local: ChildProcess | undefined;
  const nodePids = new Set<number>();

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mangrove-local-secure-'));
  });

  after(async () => {
    if (local && local.exitCode === null && local.signalCode === null) {
      const exited = new Promise((resolve) => local!.once('exit', resolve));
      local.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    }
    // Should the launcher not have stopped them, its nodes go by pid.
    for (const pid of nodePids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes D/client.key, and the CLI run in the folder works with no flags', async () => {
    const basePort = await freeBase();
    local = spawn(process.execPath, [CLI, 'local', '--nodes', '3', '--dir', 'mangrove-local', '--base-port', String(basePort), '--period', '100'], {
      cwd: dir,
      env: { ...process.env, MANGROVE_KEY: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    local.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const endpoint = `tcp://127.0.0.1:${basePort}`;
    const status = await until(
      'the local cluster to answer the CLI with quorum',
      async () => {
        if (local!.exitCode !== null) throw new Error(`mangrove local exited ${local!.exitCode}: ${stderr}`);
        const r = await mangroveIn(dir, ['status', '--connect', endpoint, '--json', '--timeout', '1000']);
        if (r.code !== 0) return false;
        const s = JSON.parse(r.stdout) as NodeStatus;
        for (const n of s.nodes) if (n.pid !== null) nodePids.add(n.pid);
        return s.quorum && s.nodes.length === 3 && s.nodes.every((n) => n.alive) ? s : false;
      },
      { timeoutMs: 60_000, pollMs: 250 },
    );
    expect(status.security).to.deep.include({ secure: true });
    const clientKey = join(dir, 'mangrove-local', 'client.key');
    expect(statSync(clientKey).mode & 0o777).to.equal(0o600);
    const file = JSON.parse(readFileSync(clientKey, 'utf8')) as { nodes: Record<string, string> };
    expect(Object.keys(file.nodes)).to.have.members([0, 1, 2].map((i) => `tcp://127.0.0.1:${basePort + i}`));
    const config = JSON.parse(readFileSync(join(dir, 'mangrove-local', 'node-1', 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).to.include({ keyFile: 'node.key' });
    expect(config.peers).to.deep.equal(file.nodes);
    expect(stderr).to.contain(`the admin client's ${clientKey} (the CLI finds it when run in ${dir})`);
    // A page through the CLI, no flags: the default key, the default node.
    const reserved = await mangroveIn(dir, ['page', 'reserve', '--pages', '1', '--connect', endpoint]);
    expect(reserved.code, reserved.stderr).to.equal(0);
    // From another folder there is no key to find: the node says what is missing.
    const outside = await mangroveIn(tmpdir(), ['status', '--connect', endpoint]);
    expect(outside.stderr).to.match(/^error E_UNREACHABLE: .* lets in only clients with a key/);
  });
});

describe('security: a config must choose', function () {
  this.timeout(30_000);

  it('refuses to start a node whose config has no keys and does not say "insecure", naming the fields', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mangrove-no-keys-'));
    try {
      const endpoint = `tcp://127.0.0.1:${await freePort()}`;
      const config = join(dir, 'config.json');
      writeFileSync(config, JSON.stringify({ listen: endpoint, dataDir: 'data', anchors: [endpoint], anchor: true }));
      const r = await mangrove(['start', '--config', config]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/^error E_BAD_CONFIG: .*config\.json: "keyFile" is required: .*or set "insecure": true/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A base port P with P..P+2 and P+100..P+102 free (mangrove local's node and HTTP ports). */
async function freeBase(): Promise<number> {
  for (let tries = 0; tries < 20; tries++) {
    const p = await freePort();
    if (p + 102 > 32_000) continue;
    const { createServer } = await import('node:net');
    const free = (port: number) =>
      new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(false));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
      });
    const all = await Promise.all([1, 2, 100, 101, 102].map((d) => free(p + d)));
    if (all.every(Boolean)) return p;
  }
  throw new Error('no free base port for mangrove local');
}
