/**
 * The file system on real node processes over ZeroMQ (SPEC.md M18-M22, M24):
 * clients in this process (not any node's) use it through the client
 * library's `fs`. A file written and fsynced through one node is read
 * exactly through another; a rename is atomic for a reader on a third;
 * byte-range locks exclude across nodes. Then a kill -9 of the node that
 * homes the directories, in the middle of a loop of creates, renames and
 * deletes from clients on the other nodes: `fs check` is clean afterwards
 * and no fsynced file is lost. Every process is stopped by pid.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { MangroveError } from '../../bus/errors.js';
import { connect, type MangroveClient } from '../../runtime/client/pages.js';
import { ProcessCluster } from '../helpers/process-cluster.js';

const PERIOD = 200;

async function clientsOf(cluster: ProcessCluster, nodes: number[], into: MangroveClient[]): Promise<MangroveClient[]> {
  const cs = await Promise.all(nodes.map((i) => connect(cluster.endpoints[i], { timeoutMs: 15_000, recoveryWaitMs: 60_000 })));
  into.push(...cs);
  return cs;
}

describe('file system across real node processes', function () {
  this.timeout(240_000);
  let cluster: ProcessCluster;
  const clients: MangroveClient[] = [];

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 4, anchors: 3, periodMs: PERIOD });
    const took = await cluster.waitFor(() => cluster.converged(), 30_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || cluster.log(0).slice(-3000)}`);
  });

  after(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    await cluster?.stop();
  });

  it('reads on one node what another fsynced, renames atomically for a third, and excludes byte ranges across nodes', async () => {
    const [a, b, c] = await clientsOf(cluster, [0, 1, 2], clients);
    await a.fs.mkdir('default:/share/docs', { recursive: true });
    const data = randomBytes(3 * 1024 * 1024 + 777);
    await a.fs.writeFile('/share/docs/big.bin', data, { fsync: true });
    const back = await b.fs.readFile('/share/docs/big.bin');
    expect(back.equals(data), 'the bytes read through node 1 are those fsynced through node 0').to.equal(true);
    const listed = await c.fs.readdirStat('/share/docs');
    expect(listed.map((e) => [e.name, e.size])).to.deep.equal([['big.bin', data.length]]);

    // Renames back and forth on node 1 while node 2 lists: one name, always.
    await a.fs.writeFile('/share/flip', 'x', { fsync: true });
    let stop = false;
    const seen = new Set<string>();
    const watcher = (async () => {
      while (!stop) seen.add((await c.fs.readdir('/share')).filter((n) => n !== 'docs').join(','));
    })();
    for (let i = 0; i < 30; i++) await b.fs.rename(i % 2 === 0 ? '/share/flip' : '/share/flop', i % 2 === 0 ? '/share/flop' : '/share/flip');
    stop = true;
    await watcher;
    expect(seen.size, 'the watcher listed the directory').to.be.greaterThan(0);
    expect([...seen].every((s) => s === 'flip' || s === 'flop'), `listings seen: ${[...seen].join(' | ')}`).to.equal(true);

    // Byte-range locks: node 0's handle holds bytes 0-99; node 1's is refused, then waits and gets them.
    const h0 = await a.fs.open('/share/docs/big.bin', 'r+');
    const h1 = await b.fs.open('/share/docs/big.bin', 'r+');
    await h0.lock(0, 100);
    const refused = await h1.lock(50, 60, { mode: 'shared' }).then(
      () => 'ok',
      (err: MangroveError) => `${err.code}/${err.posix}`,
    );
    expect(refused).to.equal('E_LOCKED/EAGAIN');
    const waiting = h1.lock(0, 10, { wait: true, waitMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    await h0.unlock(0, 100);
    await waiting;
    await h0.close();
    await h1.close();
  });

  it('loses no fsynced file and checks clean after a kill -9 of the directories\' home in a loop of creates, renames and deletes', async () => {
    const [victim] = await clientsOf(cluster, [3], clients);
    const workers = await clientsOf(cluster, [1, 2], clients);
    // The directories are made through node 3: its arena homes them, and it is the node killed.
    for (const w of [0, 1]) await victim.fs.mkdir(`/loop${w}`);
    const expected = new Map<string, Buffer>();
    const unknown = new Set<string>();
    let running = true;
    const loop = async (w: number) => {
      const fs = workers[w].fs;
      for (let i = 0; running && i < 400; i++) {
        const name = `/loop${w}/f${i}`;
        const body = randomBytes(100 + i);
        try {
          await fs.writeFile(name, body, { fsync: true });
          expected.set(name, body);
        } catch {
          unknown.add(name);
          continue;
        }
        if (i % 3 === 1) {
          const to = `/loop${w}/r${i}`;
          try {
            await fs.rename(name, to);
            expected.delete(name);
            expected.set(to, body);
          } catch {
            expected.delete(name);
            unknown.add(name).add(to);
          }
        } else if (i % 3 === 2) {
          try {
            await fs.unlink(`/loop${w}/f${i - 2}`);
            expected.delete(`/loop${w}/f${i - 2}`);
          } catch {
            expected.delete(`/loop${w}/f${i - 2}`);
            unknown.add(`/loop${w}/f${i - 2}`);
          }
        }
      }
    };
    const loops = [loop(0), loop(1)];
    await new Promise((r) => setTimeout(r, 2000));
    const before = expected.size;
    await cluster.kill(3);
    await new Promise((r) => setTimeout(r, 8000));
    running = false;
    await Promise.all(loops);
    expect(before, 'files made before the kill').to.be.greaterThan(5);
    expect(expected.size, 'the loops went on after the kill').to.be.greaterThan(before);

    const checker = workers[0].fs;
    const report = await checker.check('default');
    expect(report.problems, `fs check after the kill: ${JSON.stringify(report)}`).to.deep.equal([]);
    const again = await checker.check('default');
    expect(again.repairs, 'a second check repairs nothing').to.deep.equal([]);
    for (const [name, body] of expected) {
      if (unknown.has(name)) continue;
      const got = await workers[1].fs.readFile(name);
      expect(got.equals(body), `${name} reads back as fsynced`).to.equal(true);
    }
  });
});
