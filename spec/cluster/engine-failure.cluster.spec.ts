/**
 * Flushed pages survive a kill -9 (M11), on real node processes over ZeroMQ:
 * every persistent page has its core holders on distinct nodes, a flush
 * returns once each has it on disk, and when a page's home is killed, a
 * client on another node still reads the flushed bytes from a surviving core
 * holder. Clients run in this process (a different one from every node).
 * Every process is stopped by pid.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import { connect, type MangroveClient } from '../../runtime/client/pages.js';
import { ProcessCluster } from '../helpers/process-cluster.js';

const PERIOD = 200;
const PAGES = 8;

describe('flushed pages survive a kill -9 of their home (real processes)', function () {
  this.timeout(120_000);
  let cluster: ProcessCluster;
  const clients: MangroveClient[] = [];

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 3, anchors: 3, periodMs: PERIOD });
    const took = await cluster.waitFor(() => cluster.converged(), 30_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || cluster.log(0).slice(-3000)}`);
  });

  after(async () => {
    for (const c of clients.splice(0)) await c.close();
    await cluster?.stop();
  });

  it('keeps every flushed page on distinct core holders on disk, and serves it after the home dies', async () => {
    const [home, writer, reader] = await Promise.all([0, 1, 2].map((i) => connect(cluster.endpoints[i], { timeoutMs: 10_000 })));
    clients.push(home, writer, reader);
    const statuses = await cluster.statuses();
    const ids = statuses.map((s) => s!.self);

    // Node 0 is responsible for the pages it reserves; a client on node 1 writes and flushes them.
    const base = await home.reserve(PAGES);
    await home.alloc(base, PAGES, { copies: 2 });
    const data = randomBytes(PAGES * PAGE_BYTES);
    await writer.write(base, data);
    const flushed = await writer.flush(base, PAGES);
    for (const holders of flushed.holders) {
      expect(new Set(holders).size, 'core holders are distinct nodes').to.equal(2);
      expect(holders[0], 'the home is the first core holder').to.equal(ids[0]);
    }
    const stat = await reader.stat(base);
    expect(stat.coreHolders).to.deep.equal(flushed.holders[0]);
    expect(stat.home).to.equal(ids[0]);
    // Written after the flush and never flushed: may be lost with the home, never torn.
    await writer.write(base, new Uint8Array(PAGE_BYTES).fill(0xee));

    // The pages are on the holders' disks: the disk caches count them.
    const disks = (await cluster.statuses()).map((s) => s!.pages.disk.pages);
    for (const [i, id] of ids.entries()) if (flushed.holders[0].includes(id)) expect(disks[i], `pages on ${id}'s disk`).to.be.at.least(PAGES);

    await cluster.kill(0);
    const counted = await cluster.waitFor(async () => {
      const s = await cluster.status(2).catch(() => undefined);
      return s?.nodes.find((n) => n.id === ids[0])?.alive === false;
    }, 30 * PERIOD);
    expect(counted, 'node 2 counts the home failed').to.be.at.least(0);

    const got = Buffer.from(await reader.read(base, PAGES));
    // Page 0 was rewritten after the flush: either value, whole.
    const first = got.subarray(0, PAGE_BYTES);
    expect(first.equals(data.subarray(0, PAGE_BYTES)) || first.equals(Buffer.alloc(PAGE_BYTES, 0xee)), 'page 0 is one whole written value').to.equal(true);
    expect(got.subarray(PAGE_BYTES).equals(data.subarray(PAGE_BYTES)), 'every flushed page reads back').to.equal(true);
  });
});
