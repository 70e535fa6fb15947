/**
 * An embedded node (runtime/node/embedded.ts, `startNode`): a node of the
 * cluster running in this process, used through the same client API with
 * no socket. Alone it forms a one-node cluster and serves every call; beside
 * real node processes it is a full member, so a page written through it is
 * read through a socket client of another node and the other way round.
 * What a program passes in or gets back stays its own; bad input and a
 * closed client are refused as on the wire. Stops what it starts.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMangroveError } from '../../bus/errors.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import { connect, type MangroveClient } from '../../runtime/client/pages.js';
import { startNode, type EmbeddedNode } from '../../runtime/node/embedded.js';
import { freePort } from '../helpers/ports.js';
import { ProcessCluster } from '../helpers/process-cluster.js';

/** The rejection's code, or 'ok'. */
const codeOf = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (err: unknown) => (isMangroveError(err) ? err.code : String(err)));

describe('an embedded node (startNode), used without a socket', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const temp = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'mangrove-embedded-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('alone forms a one-node cluster and serves every call, the program\'s buffers its own', async () => {
    const listen = `tcp://127.0.0.1:${await freePort()}`;
    const node = await startNode({ insecure: true, listen, dataDir: temp(), anchors: [listen], anchor: true, periodMs: 200, logLevel: 'silent' });
    let written = 0n;
    try {
      await node.ready(20_000);
      const c = node.client({ clientId: 'embedded-spec' });
      const base = await c.reserve(2);
      written = base;
      await c.alloc(base, 2, { copies: 1 });
      const data = new Uint8Array(2 * PAGE_BYTES).fill(7);
      const versions = await c.write(base, data);
      expect(versions).to.have.length(2);
      data.fill(9);
      const read = await c.read(base, 2);
      expect(read.every((b) => b === 7), 'the write took the bytes as they were when it was made').to.equal(true);
      read.fill(1);
      expect((await c.read(base))[0], 'a read gives a copy').to.equal(7);
      expect((await c.flush(base, 2)).holders).to.deep.equal([[node.id], [node.id]]);
      await c.lock(base);
      const other = node.client({ clientId: 'embedded-other' });
      expect(await codeOf(other.lock(base))).to.equal('E_LOCKED');
      await c.unlock(base);
      expect((await c.stat(base)).owner).to.equal(node.id);
      expect(await codeOf(c.read(base + 1n))).to.equal('E_BAD_ADDRESS');
      expect(await codeOf(c.write(base, new Uint8Array(10)))).to.equal('E_BAD_ARGUMENT');
      expect((await c.status()).self).to.equal(node.id);
      await c.close();
      expect(await codeOf(c.read(base))).to.equal('E_CLOSED');
      await other.close();
    } finally {
      await node.stop();
    }
    expect(() => node.client()).to.throw(/stopping/);
    // Started again on its data: a restart is a rebuild round of one, and what was flushed is there.
    const again = await startNode({ insecure: true, listen, dataDir: dirs[0], anchors: [listen], anchor: true, periodMs: 200, logLevel: 'silent' });
    try {
      await again.ready(20_000);
      const c = again.client();
      expect((await c.read(written, 2)).every((b) => b === 7), 'the flushed pages after a restart').to.equal(true);
      await c.close();
    } finally {
      await again.stop();
    }
  });

  it('says when it does not get to serve: ready() times out naming its anchors', async () => {
    const listen = `tcp://127.0.0.1:${await freePort()}`;
    const nowhere = `tcp://127.0.0.1:${await freePort()}`;
    const node = await startNode({ insecure: true, listen, dataDir: temp(), anchors: [nowhere], periodMs: 100, logLevel: 'silent' });
    try {
      const err = await node.ready(500).then(() => undefined, (e: unknown) => e);
      expect(err).to.include({ code: 'E_TIMEOUT' });
      expect((err as Error).message).to.contain(nowhere);
    } finally {
      await node.stop();
    }
    expect(await codeOf(node.ready())).to.equal('E_CLOSED');
  });

  it('refuses a bad config naming the field, and leaves nothing open', async () => {
    const listen = `tcp://127.0.0.1:${await freePort()}`;
    expect(await codeOf(startNode({ insecure: true, listen, dataDir: temp(), anchors: [listen], anchor: true, periodMs: 1 }))).to.equal('E_BAD_CONFIG');
    expect(await startNode({ insecure: true, listen, dataDir: temp(), anchors: [listen], anchor: true, copies: 0 }).then(() => '', (err: Error) => err.message)).to.match(/copies/);
    // The port is free again: a node that failed to start left no socket behind.
    const node = await startNode({ insecure: true, listen, dataDir: temp(), anchors: [listen], anchor: true, logLevel: 'silent' });
    await node.stop();
  });

  it('beside node processes is a full member: its writes are read over the wire, and theirs through it', async () => {
    let cluster: ProcessCluster | undefined;
    let node: EmbeddedNode | undefined;
    let remote: MangroveClient | undefined;
    try {
      cluster = await ProcessCluster.start({ nodes: 2, anchors: 2, periodMs: 200 });
      const c = cluster;
      expect(await c.waitFor(() => c.converged(), 30_000), 'the two processes form').to.be.at.least(0);
      node = await startNode({ insecure: true, listen: `tcp://127.0.0.1:${await freePort()}`, dataDir: temp(), anchors: c.endpoints, periodMs: 200, logLevel: 'silent' });
      const n = node;
      await n.ready(30_000);
      expect(n.status().nodes).to.have.length(3);
      const local = n.client();
      remote = await connect(c.endpoints[1], { timeoutMs: 5000 });
      const base = await local.reserve(2);
      await local.alloc(base, 2, { copies: 2 });
      await local.write(base, new Uint8Array(PAGE_BYTES).fill(5));
      expect((await remote.read(base))[0], 'read over the wire').to.equal(5);
      await remote.write(base + BigInt(PAGE_BYTES), new Uint8Array(PAGE_BYTES).fill(6));
      expect((await local.read(base + BigInt(PAGE_BYTES)))[0], 'read through the embedded node').to.equal(6);
      const flushed = await local.flush(base, 1);
      expect(flushed.holders[0]).to.have.length(2);
      await local.close();
    } finally {
      await remote?.close();
      await node?.stop();
      await cluster?.stop();
    }
  });
});
