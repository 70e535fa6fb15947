/**
 * Pages from the shell and from a program on real node processes (M24, with
 * M7, M10, M11): three nodes over ZeroMQ on 127.0.0.1; the built `mangrove
 * page` commands and the client library reserve, allocate two core copies,
 * write on one node and read the same bytes on another, lock against a
 * second client, and refuse bad input with its code, changing nothing.
 * Runs dist/ (npm test builds it). Every process it starts is stopped by pid.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { formatAddress, MAX_ADDRESS, PAGE_BYTES, parseAddress } from '../../machines/memory/address.js';
import type { DirectoryPageView, PageStat } from '../../bus/messages/page.js';
import { connect, type MangroveClient } from '../../runtime/client/pages.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { CLI } from '../helpers/run-cli.js';

const PERIOD = 200;
/** Each CLI call's own --timeout; the process is killed if it outlives twice that. */
const CALL_MS = 5000;
const PAGES = 3;

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** The built `mangrove` with `input` on stdin (or none), stdout kept as bytes. */
function mangrove(args: string[], input?: Uint8Array): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 2 * CALL_MS);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code: code ?? -1, stdout: Buffer.concat(out), stderr: stderr + (signal ? `(killed by ${signal})` : '') });
    });
    if (input) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(input);
    }
  });
}

describe('pages through the CLI and the client library, on real processes', function () {
  this.timeout(120_000);
  let cluster: ProcessCluster;
  const clients: MangroveClient[] = [];
  let ids: string[] = [];
  let base = 0n;
  let unmaterialized = 0n;
  /** What was written: 2.5 pages of random bytes, the rest of the third page zeros. */
  const given = randomBytes(2 * PAGE_BYTES + PAGE_BYTES / 2);
  const expected = Buffer.concat([given, Buffer.alloc(PAGES * PAGE_BYTES - given.byteLength)]);
  let versions: number[] = [];

  const on = (i: number) => ['--connect', cluster.endpoints[i], '--timeout', String(CALL_MS)];
  const ok = (r: Run, what: string) => expect(r.code, `${what}: ${r.stderr}`).to.equal(0);
  const json = <T>(r: Run): T => JSON.parse(r.stdout.toString()) as T;

  async function client(i: number, clientId: string): Promise<MangroveClient> {
    const c = await connect(cluster.endpoints[i], { timeoutMs: CALL_MS, clientId });
    clients.push(c);
    return c;
  }

  before(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    cluster = await ProcessCluster.start({ nodes: 3, anchors: 3, periodMs: PERIOD });
    const took = await cluster.waitFor(() => cluster.converged(), 30_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || `node-0 log:\n${cluster.log(0).slice(-3000)}`}`);
    ids = (await cluster.statuses()).map((s) => s!.self);
    // The engine may start after membership: wait, bounded, until every node answers a page call.
    const probes = await Promise.all([0, 1, 2].map((i) => client(i, `spec-probe-${i}`)));
    const ready = await cluster.waitFor(async () => (await Promise.all(probes.map((c) => c.space().then(() => true, () => false)))).every((x) => x), 30_000, 250);
    if (ready < 0) throw new Error('the nodes do not answer client.page (space): is the memory engine running?');
  });

  after(async () => {
    for (const c of clients) await c.close();
    await cluster?.stop();
  });

  it('reserves through the CLI, printing the base address alone, and allocates 2 core copies', async () => {
    const r = await mangrove(['page', 'reserve', '--pages', String(PAGES), ...on(0)]);
    ok(r, 'reserve');
    expect(r.stdout.toString()).to.match(/^0x[0-9a-f]{32}\n$/);
    base = parseAddress(r.stdout.toString().trim());
    ok(await mangrove(['page', 'alloc', formatAddress(base), '--pages', String(PAGES), '--copies', '2', ...on(0)]), 'alloc');

    const other = await mangrove(['page', 'reserve', '--pages', '1', '--json', ...on(0)]);
    ok(other, 'reserve --json');
    const reserved = json<{ address: string; pages: number }>(other);
    expect(reserved.pages).to.equal(1);
    unmaterialized = parseAddress(reserved.address);
    expect(unmaterialized, 'a second reservation does not overlap the first').to.satisfy((a: bigint) => a >= base + BigInt(PAGES * PAGE_BYTES) || a < base);
  });

  it('writes from stdin on node 0, zero-padding the last page, and flushes to both core holders', async () => {
    const w = await mangrove(['page', 'write', formatAddress(base), '--json', ...on(0)], given);
    ok(w, 'write');
    const wrote = json<{ address: string; pages: number; bytes: number; versions: number[] }>(w);
    expect(wrote).to.include({ address: formatAddress(base), pages: PAGES, bytes: given.byteLength });
    expect(wrote.versions).to.have.length(PAGES);
    versions = wrote.versions;

    const f = await mangrove(['page', 'flush', formatAddress(base), '--pages', String(PAGES), '--json', ...on(0)]);
    ok(f, 'flush');
    const flushed = json<{ pages: number; holders: string[][] }>(f);
    expect(flushed.pages).to.equal(PAGES);
    for (const h of flushed.holders) expect(new Set(h).size, 'committed on 2 distinct core holders').to.equal(2);
  });

  it('reads the same bytes on node 1 (raw), node 2 (--json) and through the library', async () => {
    const raw = await mangrove(['page', 'read', formatAddress(base), '--pages', String(PAGES), ...on(1)]);
    ok(raw, 'read');
    expect(raw.stdout.byteLength).to.equal(PAGES * PAGE_BYTES);
    expect(raw.stdout.equals(expected), 'node 1 reads what node 0 wrote').to.equal(true);

    const j = await mangrove(['page', 'read', formatAddress(base), '--pages', String(PAGES), '--json', ...on(2)]);
    ok(j, 'read --json');
    const read = json<{ address: string; pages: number; versions: number[]; data: string }>(j);
    expect(read.versions).to.deep.equal(versions);
    expect(Buffer.from(read.data, 'base64').equals(expected)).to.equal(true);

    const c = await client(2, 'spec-reader');
    const lib = await c.readVersions(base, PAGES);
    expect(Buffer.from(lib.data).equals(expected)).to.equal(true);
    expect(lib.versions).to.deep.equal(versions);
  });

  it('stat --json shows 2 core holders on distinct nodes of the cluster', async () => {
    const r = await mangrove(['page', 'stat', formatAddress(base), '--json', ...on(1)]);
    ok(r, 'stat');
    const s = json<PageStat>(r);
    expect(s.state).to.equal('materialized');
    expect(s.copies).to.equal(2);
    expect(s.coreHolders).to.have.length(2);
    expect(new Set(s.coreHolders).size, 'distinct nodes').to.equal(2);
    for (const h of s.coreHolders) expect(ids, 'a core holder is a cluster node').to.include(h);
    expect(parseAddress(s.address)).to.equal(base);
    expect(s.version).to.equal(versions[0]);

    const text = await mangrove(['page', 'stat', formatAddress(base), ...on(2)]);
    ok(text, 'stat (text)');
    expect(text.stdout.toString()).to.match(/^core holders {2}\S+, \S+ \(2 of 2 copies\)$/m);
  });

  it("page dir shows the arena's directory from its home, asked through another node: both reservations, the allocated one on 2 core holders", async () => {
    const arena = String(base >> 64n);
    const r = await mangrove(['page', 'dir', arena, '--json', ...on(2)]);
    ok(r, 'page dir');
    const v = json<DirectoryPageView>(r);
    expect([v.home, v.kind, v.root?.entries]).to.deep.equal([ids[0], 'leaf', 2]);
    expect(v.entries.map((e) => [e.start, e.pages, e.state, e.holders.length])).to.deep.equal([
      [formatAddress(base), PAGES, 'materialized', 2],
      [formatAddress(unmaterialized), 1, 'reserved', 0],
    ]);
    const text = await mangrove(['page', 'dir', '--of', formatAddress(base), ...on(1)]);
    ok(text, 'page dir (text)');
    expect(text.stdout.toString()).to.match(/^tree +2 entries in 1 page, 1 deep$/m);
    expect(text.stdout.toString()).to.contain(`${formatAddress(base)}  ${PAGES} pages`);
    const neither = await mangrove(['page', 'dir', ...on(1)]);
    expect([neither.code, neither.stderr.toString()], 'no arena named').to.satisfy(([code, err]: [number, string]) => code === 2 && err.includes('one of the two'));
    const bad = await mangrove(['page', 'dir', arena, '--page', formatAddress(base), ...on(1)]);
    expect([bad.code, bad.stderr.toString()], 'a data page is no directory page').to.satisfy(([code, err]: [number, string]) => code !== 0 && err.includes('E_BAD_ARGUMENT'));
  });

  it('a lock one client holds refuses a second client with E_LOCKED until it is released', async () => {
    const a = await client(0, 'spec-holder');
    await a.lock(base);

    const cli = await mangrove(['page', 'lock', formatAddress(base), '--client-id', 'spec-other', ...on(1)]);
    expect(cli.code, 'CLI lock from a second client').to.equal(1);
    expect(cli.stderr).to.match(/^error E_LOCKED: /);
    const b = await client(1, 'spec-other-lib');
    const refused = await b.lock(base, 'shared').then(() => 'locked', (e: { code?: string }) => e.code);
    expect(refused, 'a shared lock against an exclusive one').to.equal('E_LOCKED');

    await a.unlock(base);
    ok(await mangrove(['page', 'lock', formatAddress(base), '--client-id', 'spec-other', ...on(1)]), 'lock after unlock');
    expect(await a.lock(base).then(() => 'locked', (e: { code?: string }) => e.code), 'the CLI client holds it now').to.equal('E_LOCKED');
    ok(await mangrove(['page', 'unlock', formatAddress(base), '--client-id', 'spec-other', ...on(1)]), 'unlock');
    await a.lock(base);
    await a.unlock(base);
  });

  it('refuses bad input with its code and a non-zero exit, and changes nothing', async () => {
    const statBefore = json<PageStat>(await mangrove(['page', 'stat', formatAddress(base), '--json', ...on(0)]));
    const junk = randomBytes(PAGE_BYTES);

    const unaligned = await mangrove(['page', 'write', formatAddress(base + 0x800n), ...on(0)], junk);
    expect(unaligned.code).to.equal(2);
    expect(unaligned.stderr).to.match(/^error E_BAD_ADDRESS: "0x[0-9a-f]+" is not the start of a page/);

    const nowhere = formatAddress(MAX_ADDRESS - BigInt(PAGE_BYTES - 1));
    const notReserved = await mangrove(['page', 'write', nowhere, ...on(0)], junk);
    expect(notReserved.code).to.equal(1);
    expect(notReserved.stderr).to.match(/^error E_NOT_RESERVED: /);

    const notMaterialized = await mangrove(['page', 'read', formatAddress(unmaterialized), ...on(1)]);
    expect(notMaterialized.code).to.equal(1);
    expect(notMaterialized.stderr).to.match(/^error E_NOT_MATERIALIZED: /);
    expect(notMaterialized.stdout.byteLength, 'no bytes on stdout').to.equal(0);

    for (const r of [unaligned, notReserved, notMaterialized]) expect(r.stdout.toString()).to.equal('');

    // Nothing changed: the written pages, their version, and the two refused places.
    const again = await mangrove(['page', 'read', formatAddress(base), '--pages', String(PAGES), ...on(2)]);
    ok(again, 'read after');
    expect(again.stdout.equals(expected)).to.equal(true);
    const statAfter = json<PageStat>(await mangrove(['page', 'stat', formatAddress(base), '--json', ...on(0)]));
    expect(statAfter.version).to.equal(statBefore.version);
    expect((await mangrove(['page', 'read', nowhere, ...on(1)])).stderr).to.match(/^error E_NOT_RESERVED: /);
    expect((await mangrove(['page', 'read', formatAddress(unmaterialized), ...on(0)])).stderr).to.match(/^error E_NOT_MATERIALIZED: /);
  });
});
