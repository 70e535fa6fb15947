/**
 * Member keys in the node database (docs/security.md, "Member keys"), on
 * real processes: a 4-node secure cluster whose fourth node no config but
 * its own lists. It is refused (unknown_key) and stays out; an admin's
 * `mangrove node key add` lets it in, and it joins without any node being
 * restarted; its key rotated, the node restarted with its new pair is let
 * in with it; `node key remove` takes the key away, and the others stop
 * hearing it and count it failed. Every process is stopped by pid in `after`.
 */
import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import type { NodeStatus } from '../../actors/status.js';
import { generateKeyPair, writeKeyFile } from '../../bus/transport/curve.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { mangrove, type Run } from '../helpers/run-cli.js';
import { until } from '../helpers/until.js';

const PERIOD = 100;
const NEW = 3;

describe('member keys in the node database: a node let in, and sent away, with no node restarted', function () {
  this.timeout(120_000);
  let cluster: ProcessCluster;
  let pids: (number | undefined)[];

  const admin = () => ['--key', cluster.adminKeyPath, '--connect', cluster.endpoints[0]!];
  const ok = (r: Run, what: string) => expect(r.code, `${what}: ${r.stderr}`).to.equal(0);
  const statusOf = (i: number): Promise<NodeStatus | undefined> => cluster.status(i).catch(() => undefined);
  /** Whether each of the first three nodes has the new node in its database, alive (or not). */
  const seenAlive = async (alive: boolean) => {
    const s = await cluster.statuses([0, 1, 2]);
    return [0, 1, 2].every((i) => s[i]?.nodes.some((n) => n.endpoint === cluster.endpoints[NEW] && n.alive === alive) === true);
  };

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 4, anchors: 3, periodMs: PERIOD, secure: { unlisted: [NEW] } });
    await cluster.waitFor(() => cluster.converged([0, 1, 2]), 30_000);
    if (!(await cluster.converged([0, 1, 2]))) throw new Error(`the three listed nodes did not form:\n${cluster.died().join('\n')}\n${cluster.log(0).slice(-3000)}`);
    pids = [0, 1, 2].map((i) => cluster.pid(i));
  });

  after(async () => {
    await cluster?.stop();
  });

  it('keeps out a node whose key no other config lists: its handshakes are refused and counted (unknown_key)', async () => {
    const anchor = await until('an anchor to refuse the unlisted node', async () => {
      const s = await statusOf(0);
      return s && s.rejectedByReason.unknown_key > 0 ? s : undefined;
    }, { timeoutMs: 20_000, pollMs: 200 });
    expect(anchor.nodes.map((n) => n.endpoint), 'not in the node database').to.not.include(cluster.endpoints[NEW]);
    expect((await statusOf(NEW))?.phase, 'it has not joined').to.equal('forming');
    expect(cluster.isRunning(NEW), 'it keeps trying').to.equal(true);
  });

  it('lets it in once an admin gives its key (node key add): it joins, and no node was restarted', async () => {
    const add = await mangrove(['node', 'key', 'add', cluster.endpoints[NEW]!, '--key-file', cluster.keyPath(NEW), '--json', ...admin()]);
    ok(add, 'node key add');
    const added = JSON.parse(add.stdout.toString()) as { endpoint: string; key: string; version: number };
    expect([added.endpoint, added.key]).to.deep.equal([cluster.endpoints[NEW], cluster.peers[cluster.endpoints[NEW]!]]);
    await until('the four nodes to converge', () => cluster.converged(), { timeoutMs: 30_000, pollMs: 200 });
    expect([0, 1, 2].map((i) => cluster.pid(i)), 'the same processes').to.deep.equal(pids);

    const list = await mangrove(['node', 'key', 'list', '--json', '--key', cluster.adminKeyPath, '--connect', cluster.endpoints[1]!]);
    ok(list, 'node key list');
    expect(JSON.parse(list.stdout.toString())).to.deep.equal([{ endpoint: cluster.endpoints[NEW], key: added.key }]);
    const text = await mangrove(['node', 'key', 'list', '--key', cluster.adminKeyPath, '--connect', cluster.endpoints[2]!]);
    expect(text.stdout.toString().trim()).to.equal(`${cluster.endpoints[NEW]}  ${added.key}`);
  });

  it('rotates its key (node key add again): the node restarted with its new pair is dialed and let in with it', async () => {
    const fresh = generateKeyPair();
    await cluster.kill(NEW);
    writeKeyFile(cluster.keyPath(NEW), fresh, { overwrite: true });
    // As an operator would: the node's own config lists its own key, which must be the new one.
    const config = JSON.parse(readFileSync(cluster.configPath(NEW), 'utf8')) as { peers: Record<string, string> };
    config.peers[cluster.endpoints[NEW]!] = fresh.publicKey;
    writeFileSync(cluster.configPath(NEW), JSON.stringify(config, null, 2));
    // And this spec's own client dials it with the new key.
    cluster.peers[cluster.endpoints[NEW]!] = fresh.publicKey;
    ok(await mangrove(['node', 'key', 'add', cluster.endpoints[NEW]!, '--public-key', fresh.publicKey, ...admin()]), 'node key add (rotation)');
    cluster.spawn(NEW);
    await until('the four nodes to converge again', () => cluster.converged(), { timeoutMs: 30_000, pollMs: 200 });
    const s = (await statusOf(0))!;
    expect(s.security?.memberKeys).to.deep.equal([{ endpoint: cluster.endpoints[NEW], key: fresh.publicKey }]);
    expect([0, 1, 2].map((i) => cluster.pid(i)), 'the same processes').to.deep.equal(pids);
  });

  it('takes the key away (node key remove): the others stop hearing the node and count it failed', async () => {
    const before = (await statusOf(0))!.rejectedByReason;
    ok(await mangrove(['node', 'key', 'remove', cluster.endpoints[NEW]!, ...admin()]), 'node key remove');
    await until('the others to count the node failed', () => seenAlive(false), { timeoutMs: 30_000, pollMs: 200 });
    const after = (await statusOf(0))!.rejectedByReason;
    expect(after.unauthenticated + after.unknown_key + after.bad_proof, 'what it still sends is dropped').to.be.greaterThan(before.unauthenticated + before.unknown_key + before.bad_proof);
    expect(await cluster.converged([0, 1, 2]) || (await statusOf(0))!.quorum, 'the others keep quorum').to.equal(true);
    const none = await mangrove(['node', 'key', 'remove', cluster.endpoints[NEW]!, ...admin()]);
    expect([none.code, none.stderr.toString()], 'no key left to take').to.satisfy(([code, err]: [number, string]) => code !== 0 && err.includes('E_UNKNOWN_NODE'));
  });

  it('refuses bad input before sending anything', async () => {
    const both = await mangrove(['node', 'key', 'add', cluster.endpoints[NEW]!, '--public-key', 'x'.repeat(40), '--key-file', cluster.keyPath(NEW), ...admin()]);
    expect([both.code, both.stderr.toString()]).to.satisfy(([c, e]: [number, string]) => c === 2 && e.includes('E_BAD_ARGUMENT') && e.includes('one of the two'));
    const short = await mangrove(['node', 'key', 'add', cluster.endpoints[NEW]!, '--public-key', 'abc', ...admin()]);
    expect([short.code, short.stderr.toString()]).to.satisfy(([c, e]: [number, string]) => c === 2 && e.includes('--public-key must be a CURVE key'));
    const endpoint = await mangrove(['node', 'key', 'remove', 'not-an-endpoint', ...admin()]);
    expect([endpoint.code, endpoint.stderr.toString()]).to.satisfy(([c, e]: [number, string]) => c === 2 && e.includes('ENDPOINT must be'));
  });
});
