/**
 * `mangrove page` without a node: the pure parts (input cut into padded
 * page writes, read plans, --fs, the text renderings) in process, and the
 * built command's argument checks, which must refuse with their code and
 * exit status before anything is sent. Every built run points at a port
 * nothing listens on with a short timeout, so a request that did go out
 * would show as E_UNREACHABLE instead of the expected refusal.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { COPIES_MAX, FS_ATTR_BYTES, PAGES_PER_REQUEST_MAX, type DirectoryPageView, type FlushResult, type PageAttrs, type PageStat, type SpaceReport } from '../../../../bus/messages/page.js';
import { PAGE_BYTES } from '../../../../machines/memory/address.js';
import { clientDefaults } from '../../../../runtime/client/pages.js';
import { addPageCommands, chunkPlan, pageChunks, pageCliDefaults, parseFsAttr, renderAttrs, renderDirectoryPage, renderFlush, renderSpace, renderStat } from '../../../../runtime/cli/page.js';
import { errorOf } from '../../../helpers/error-of.js';
import { CLI, itRefusesUsage, mangrove } from '../../../helpers/run-cli.js';

const NOBODY = 'tcp://127.0.0.1:1';

async function collect(source: AsyncIterable<Uint8Array | string>, chunkBytes: number): Promise<{ data: Uint8Array; bytes: number }[]> {
  const out: { data: Uint8Array; bytes: number }[] = [];
  for await (const c of pageChunks(source, chunkBytes)) out.push({ data: new Uint8Array(c.data), bytes: c.bytes });
  return out;
}

async function* pieces(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The built command with `input` on its stdin (closed after). */
function withInput(args: string[], input: Uint8Array, timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

const stat: PageStat = {
  address: '0x00000000000000000000000000010000',
  reservation: { address: '0x00000000000000000000000000010000', pages: 16 },
  state: 'materialized',
  home: 'node-a',
  owner: null,
  readers: [],
  coreHolders: ['node-b', 'node-c'],
  copies: 2,
  volatile: false,
  version: 3,
  lock: { mode: 'exclusive', holders: ['node-a/client-1'] },
};

describe('runtime/cli/page', () => {
  describe('input cut into page writes', () => {
    it('zero-pads a last partial page and says how many bytes were given', async () => {
      const parts = await collect(pieces(pattern(10)), 2 * PAGE_BYTES);
      expect(parts).to.have.length(1);
      expect(parts[0].bytes).to.equal(10);
      expect(parts[0].data.byteLength).to.equal(PAGE_BYTES);
      expect([...parts[0].data.subarray(0, 10)]).to.deep.equal([...pattern(10)]);
      expect(parts[0].data.subarray(10).every((b) => b === 0)).to.equal(true);
    });

    it('cuts long input into full writes in order, whatever the pieces it arrives in', async () => {
      const input = pattern(5 * PAGE_BYTES + 1);
      const ragged = [input.subarray(0, 1), input.subarray(1, 9000), input.subarray(9000, 9001), input.subarray(9001)];
      const parts = await collect(pieces(...ragged), 2 * PAGE_BYTES);
      expect(parts.map((p) => [p.data.byteLength, p.bytes])).to.deep.equal([
        [2 * PAGE_BYTES, 2 * PAGE_BYTES],
        [2 * PAGE_BYTES, 2 * PAGE_BYTES],
        [2 * PAGE_BYTES, PAGE_BYTES + 1],
      ]);
      const joined = Buffer.concat(parts.map((p) => p.data));
      expect(joined.subarray(0, input.byteLength).equals(Buffer.from(input))).to.equal(true);
      expect(joined.subarray(input.byteLength).every((b) => b === 0)).to.equal(true);
    });

    it('adds no page to input that ends on a page boundary, and yields nothing for none', async () => {
      const parts = await collect(pieces(pattern(2 * PAGE_BYTES)), 2 * PAGE_BYTES);
      expect(parts.map((p) => p.bytes)).to.deep.equal([2 * PAGE_BYTES]);
      expect(await collect(pieces(), PAGE_BYTES)).to.deep.equal([]);
      expect(await collect(pieces(new Uint8Array(0)), PAGE_BYTES)).to.deep.equal([]);
    });

    it('takes text pieces as UTF-8', async () => {
      async function* text() {
        yield 'hé';
      }
      const [part] = await collect(text(), PAGE_BYTES);
      expect(Buffer.from(part.data.subarray(0, part.bytes)).toString()).to.equal('hé');
    });

    it('plans a long read as requests of at most 256 pages, in order', () => {
      const plan = [...chunkPlan(0x1000n, 600, 256)];
      expect(plan).to.deep.equal([
        { addr: 0x1000n, pages: 256 },
        { addr: 0x1000n + 256n * 4096n, pages: 256 },
        { addr: 0x1000n + 512n * 4096n, pages: 88 },
      ]);
      expect([...chunkPlan(0x1000n, 1, 256)]).to.deep.equal([{ addr: 0x1000n, pages: 1 }]);
    });
  });

  describe('--fs', () => {
    it('takes 32 hex digits, with or without 0x', () => {
      expect([...parseFsAttr('000102030405060708090a0b0c0d0e0f')]).to.deep.equal([...Array(16).keys()]);
      expect([...parseFsAttr('0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF')]).to.deep.equal(Array(16).fill(255));
    });

    it('takes as many bytes as the wire\'s FS_ATTR_BYTES, and not one more', () => {
      expect(parseFsAttr('ab'.repeat(FS_ATTR_BYTES))).to.have.length(FS_ATTR_BYTES);
      expect(errorOf(() => parseFsAttr('ab'.repeat(FS_ATTR_BYTES + 1)))).to.match(/^E_BAD_ARGUMENT: --fs takes 16 bytes as 32 hex digits/);
    });

    it('refuses anything else', () => {
      expect(errorOf(() => parseFsAttr('12'))).to.equal('E_BAD_ARGUMENT: --fs takes 16 bytes as 32 hex digits, not "12"');
      expect(errorOf(() => parseFsAttr('g'.repeat(32)))).to.match(/^E_BAD_ARGUMENT: --fs takes/);
      expect(errorOf(() => parseFsAttr('0'.repeat(34)))).to.match(/^E_BAD_ARGUMENT: --fs takes/);
    });
  });

  describe('text output', () => {
    it('renders a stat with owner, readers, core holders, version and lock', () => {
      expect(renderStat(stat)).to.equal(
        [
          'page          0x00000000000000000000000000010000',
          'reservation   0x00000000000000000000000000010000 (16 pages)',
          'state         materialized',
          'home          node-a',
          'owner         none (no node holds it in RAM)',
          'readers       none',
          'core holders  node-b, node-c (2 of 2 copies)',
          'version       3',
          'lock          exclusive, held by node-a/client-1',
        ].join('\n'),
      );
      const held = renderStat({ ...stat, owner: 'node-b', readers: ['node-a', 'node-c'], lock: null, volatile: true, coreHolders: [] });
      expect(held).to.include('owner         node-b\n');
      expect(held).to.include('readers       node-a, node-c\n');
      expect(held).to.include('core holders  none (0 of 2 copies, volatile)\n');
      expect(held).to.match(/lock {10}none$/);
    });

    it('renders space, attributes and a flush', () => {
      const space: SpaceReport = {
        node: 'node-a',
        ram: { budgetBytes: 64 * 1024 * 1024, usedBytes: 1024 * 1024, pages: 256, dirtyPages: 3 },
        disk: { pages: 1000, pagesMax: 262144, freePages: 261144 },
        homePages: 42,
        cluster: { nodes: 3, totalRamBytes: 192 * 1024 * 1024, freeRamBytes: 189 * 1024 * 1024, totalDiskPages: 786432, freeDiskPages: 780000 },
      };
      expect(renderSpace(space)).to.equal(
        [
          'node        node-a',
          'ram         1.0 MiB of 64.0 MiB used: 256 pages, 3 dirty',
          'disk        1000 pages of 262144, 261144 free',
          'home pages  42',
          'cluster     3 nodes: 189.0 MiB of 192.0 MiB RAM and 780000 disk pages of 786432 free',
        ].join('\n'),
      );
      expect(renderSpace({ ...space, cluster: undefined })).to.not.include('cluster');
      const attrs: PageAttrs = { address: '0x10000', coherency: 'invalidate', copies: 2, volatile: false, cacheInRam: true, fs: '00'.repeat(16) };
      expect(renderAttrs(attrs)).to.equal(
        ['page          0x10000', 'coherency     invalidate', 'copies        2', 'volatile      no', 'cache in RAM  yes', `fs            ${'00'.repeat(16)}`].join('\n'),
      );
      const flush: FlushResult = { pages: 2, holders: [['node-b', 'node-c'], ['node-c', 'node-b']] };
      expect(renderFlush(0x10000n, flush)).to.equal('flushed 2 pages at 0x00000000000000000000000000010000 to node-b, node-c');
      expect(renderFlush(0x10000n, { pages: 1, holders: [[]] })).to.equal('flushed 1 page at 0x00000000000000000000000000010000; no core holder had anything to commit');
    });
  });

  it("renders a directory page: the root's totals and its children, a leaf's reservations", () => {
    const common = { arena: 2, home: 'node-a', version: 9 };
    const root: DirectoryPageView = {
      ...common, address: '0x20', kind: 'inner', level: 1, entries: [],
      root: { highWater: '0x2000', superRoot: null, entries: 301, pages: 4, depth: 2 },
      children: [{ address: '0x21', from: null }, { address: '0x22', from: '0x1f000' }],
    };
    expect(renderDirectoryPage(root).split('\n')).to.deep.equal([
      'arena       2 (home node-a)',
      'page        0x20, version 9, an inner page, level 1',
      'tree        301 entries in 4 pages, 2 deep',
      'high water  0x2000',
      '  child 0x21  the lowest keys',
      '  child 0x22  from 0x1f000',
    ]);
    const leaf: DirectoryPageView = {
      ...common, address: '0x22', kind: 'leaf', level: 0, root: null, children: [],
      entries: [
        { start: '0x1f000', pages: 3, state: 'materialized', copies: 2, volatile: false, holders: ['node-a', 'node-b'], cacheInRam: true },
        { start: '0x22000', pages: 1, state: 'reserved', copies: 0, volatile: false, holders: [], cacheInRam: false },
      ],
    };
    expect(renderDirectoryPage(leaf).split('\n').slice(2)).to.deep.equal([
      '  0x1f000  3 pages      2 copies on node-a, node-b, cached in RAM',
      '  0x22000  1 page       reserved',
    ]);
    expect(renderDirectoryPage({ ...leaf, entries: [] })).to.match(/\(no entries\)$/);
    const empty: DirectoryPageView = { ...leaf, entries: [], root: { highWater: '0x2000', superRoot: null, entries: 0, pages: 0, depth: 1 } };
    expect(renderDirectoryPage(empty)).to.match(/^tree +none yet: nothing was reserved in this arena$/m);
  });

  it('adds every page subcommand to a program', () => {
    const program = new Command('mangrove');
    addPageCommands(program, { connect: 'tcp://127.0.0.1:7400' });
    const page = program.commands.find((c) => c.name() === 'page')!;
    expect(page.commands.map((c) => c.name())).to.have.members([
      'reserve', 'unreserve', 'unallocate', 'dealloc', 'alloc', 'write', 'read', 'lock', 'unlock', 'flush', 'stat', 'dir', 'space', 'attrs', 'super-root',
    ]);
    for (const c of page.commands) {
      const longs = c.options.map((o) => o.long);
      expect(longs, c.name()).to.include.members(['--connect', '--timeout', '--json', '--client-id']);
    }
  });

  it('names the wire\'s limits in its options (bus/messages/page-limits.ts)', () => {
    const program = new Command('mangrove');
    addPageCommands(program, { connect: 'tcp://127.0.0.1:7400' });
    const page = program.commands.find((c) => c.name() === 'page')!;
    const option = (name: string, long: string) => {
      const o = page.commands.find((c) => c.name() === name)!.options.find((x) => x.long === long)!;
      return `${o.flags} ${o.description}`;
    };
    expect(option('alloc', '--copies')).to.include(`(1 to ${COPIES_MAX}; default: the node's)`);
    for (const name of ['reserve', 'alloc', 'unreserve', 'unallocate', 'dealloc']) expect(option(name, '--pages'), name).to.include('how many pages (1 to 2^32)');
    expect(option('flush', '--pages')).to.include(`how many pages (1 to ${PAGES_PER_REQUEST_MAX})`);
    expect(option('read', '--json')).to.include(`at most ${PAGES_PER_REQUEST_MAX} pages`);
    expect(option('attrs', '--fs')).to.equal(`--fs <hex${FS_ATTR_BYTES * 2}> set the ${FS_ATTR_BYTES}-byte file-system attribute: ${FS_ATTR_BYTES * 2} hex digits`);
  });

  it('says in page --help that a call waits out a rebuild, as long as the client library does', () => {
    const program = new Command('mangrove');
    addPageCommands(program, { connect: 'tcp://127.0.0.1:7400' });
    const page = program.commands.find((c) => c.name() === 'page')!;
    let help = '';
    page.configureOutput({ writeOut: (s) => (help += s) });
    page.outputHelp();
    expect(pageCliDefaults.recoveryWaitMs, 'the CLI names the library\'s default').to.equal(clientDefaults.recoveryWaitMs);
    expect(help.replace(/\s+/g, ' ')).to.include('a call the node refuses with E_RECOVERING is sent again for up to 30 s');
  });

  describe('the built command', function () {
    this.timeout(30_000);
    let dir: string;
    before(() => {
      if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
      dir = mkdtempSync(join(tmpdir(), 'mangrove-cli-page-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    const subcommands = ['reserve', 'unreserve', 'unallocate', 'dealloc', 'alloc', 'write', 'read', 'lock', 'unlock', 'flush', 'stat', 'space', 'attrs', 'super-root'];
    for (const sub of ['', ...subcommands]) {
      it(`explains \`mangrove page ${sub}\` --help with examples`, async () => {
        const r = await mangrove(['page', ...(sub ? [sub] : []), '--help']);
        expect(r.code).to.equal(0);
        expect(r.stdout).to.include(`Usage: mangrove page${sub ? ` ${sub}` : ''}`);
        expect(r.stdout).to.include('Examples:');
      });
    }

    it('says in write --help that the last page is zero-padded', async () => {
      expect((await mangrove(['page', 'write', '--help'])).stdout).to.include('zero-padded');
    });

    const at = ['--connect', NOBODY, '--timeout', '300'];
    const usage: [string, string[], RegExp][] = [
      ['an unaligned address', ['page', 'read', '0x1001', ...at], /^error E_BAD_ADDRESS: "0x1001" is not the start of a page \(a multiple of 0x1000\)\n$/],
      ['an address that is not hex', ['page', 'stat', '4096', ...at], /^error E_BAD_ADDRESS: "4096" is not an address: write 0x and 1 to 32 hex digits\n$/],
      ['an address of 33 digits', ['page', 'lock', `0x1${'0'.repeat(32)}`, ...at], /^error E_BAD_ADDRESS: .* has 33 hex digits/],
      ['a range past the end of the space', ['page', 'read', `0x${'f'.repeat(29)}000`, '--pages', '2', ...at], /^error E_BAD_ADDRESS: 2 pages from 0xf+000 run past the end/],
      ['a bad --set address', ['page', 'super-root', '--set', '0x10', ...at], /^error E_BAD_ADDRESS: "0x10" is not the start of a page/],
      ['--pages 0', ['page', 'reserve', '--pages', '0', ...at], /^error E_BAD_ARGUMENT: option '--pages <n>' argument '0' is invalid\. It must be at least 1\. \(see mangrove page reserve --help\)/],
      ['a missing --pages', ['page', 'alloc', '0x1000', ...at], /^error E_BAD_ARGUMENT: required option '--pages <n>' not specified/],
      ['a range of more than 2^32 pages', ['page', 'dealloc', '0x1000', '--pages', '4294967297', ...at], /^error E_BAD_ARGUMENT: pages must be an integer from 1 to 4294967296/],
      ['--copies 9', ['page', 'alloc', '0x1000', '--pages', '1', '--copies', '9', ...at], /^error E_BAD_ARGUMENT: copies must be an integer from 1 to 8, not a number \(9\)/],
      ['a reserve of more than 2^32 pages', ['page', 'reserve', '--pages', '4294967297', ...at], /^error E_BAD_ARGUMENT: pages must be an integer from 1 to 4294967296 \(2\^32\), not a number \(4294967297\)/],
      ['a read of more than 2^32 pages', ['page', 'read', '0x1000', '--pages', '4294967297', ...at], /^error E_BAD_ARGUMENT: --pages is at most 4294967296 \(2\^32\), not 4294967297/],
      ['an --fs of 17 bytes', ['page', 'attrs', '0x1000', '--fs', 'ab'.repeat(17), ...at], /^error E_BAD_ARGUMENT: --fs takes 16 bytes as 32 hex digits/],
      ['a flush of 257 pages', ['page', 'flush', '0x1000', '--pages', '257', ...at], /^error E_BAD_ARGUMENT: pages must be an integer from 1 to 256/],
      ['read --json of 257 pages', ['page', 'read', '0x1000', '--pages', '257', '--json', ...at], /^error E_BAD_ARGUMENT: --json carries at most 256 pages, not 257/],
      ['a bad --fs', ['page', 'attrs', '0x1000', '--fs', 'abc', ...at], /^error E_BAD_ARGUMENT: --fs takes 16 bytes as 32 hex digits, not "abc"/],
      ['a bad --cache-in-ram', ['page', 'attrs', '0x1000', '--cache-in-ram', 'yes', ...at], /^error E_BAD_ARGUMENT: option '--cache-in-ram <on\|off>' argument 'yes' is invalid/],
      ['a bad --connect', ['page', 'space', '--connect', 'localhost:7400'], /^error E_BAD_ARGUMENT: --connect must be a tcp endpoint like tcp:\/\/127\.0\.0\.1:7400 \(got "localhost:7400"\)/],
      ['a client id of 65 characters', ['page', 'unlock', '0x1000', '--client-id', 'x'.repeat(65), ...at], /^error E_BAD_ARGUMENT: clientId must be a string of 1 to 64 characters/],
      ['an unknown subcommand', ['page', 'frob'], /^error E_BAD_ARGUMENT: unknown command 'frob'/],
    ];
    itRefusesUsage(usage);

    it('refuses an empty write with exit 2 and a missing --file with E_NOT_FOUND', async () => {
      const empty = await withInput(['page', 'write', '0x1000', ...at], new Uint8Array(0));
      expect(empty.stderr).to.equal('error E_BAD_ARGUMENT: nothing to write: stdin gave no bytes\n');
      expect(empty.code).to.equal(2);
      const file = join(dir, 'missing.bin');
      const missing = await mangrove(['page', 'write', '0x1000', '--file', file, ...at]);
      expect(missing.stderr).to.equal(`error E_NOT_FOUND: cannot read ${file}: no such file\n`);
      expect(missing.code).to.equal(1);
    });

    it('refuses an unaligned write address before reading its input', async () => {
      const r = await withInput(['page', 'write', '0x0800', ...at], pattern(100));
      expect(r.stderr).to.match(/^error E_BAD_ADDRESS: "0x0800" is not the start of a page/);
      expect(r.code).to.equal(2);
    });

    it('says E_UNREACHABLE and exits 1 when a valid call finds no node', async () => {
      const read = await mangrove(['page', 'read', '0x1000', ...at]);
      expect(read.stderr).to.equal(`error E_UNREACHABLE: no answer from ${NOBODY} within 300 ms: is the node running?\n`);
      expect(read.code).to.equal(1);
      expect(read.stdout).to.equal('');
      const write = await withInput(['page', 'write', '0x1000', ...at], pattern(5000));
      expect(write.stderr).to.match(/^error E_UNREACHABLE: /);
      expect(write.code).to.equal(1);
    });
  });
});
