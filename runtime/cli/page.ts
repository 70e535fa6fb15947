/**
 * `mangrove page …` (SPEC.md M24): the memory engine's calls (M7) from a
 * shell, one command each, through the client library (runtime/client/pages.ts).
 * Like every command it loads what it needs when it runs: the client library
 * (and with it ZeroMQ and the wire's schemas) only once the arguments are
 * checked, so a refused command is quick and sends nothing. The limits its
 * help names come from the wire (bus/messages/page-limits.ts); the client
 * checks every argument against the wire's schema before it sends.
 *
 * Addresses are `0x` hex; output is one human line or block, or one JSON line
 * with --json; `page read` writes the raw bytes. A bad address exits 2 like
 * any other usage error, with E_BAD_ADDRESS (runtime/cli/main/main.ts).
 */
import { open } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import { COPIES_MAX, FS_ATTR_BYTES, PAGES_PER_RANGE_MAX, PAGES_PER_REQUEST_MAX } from '../../bus/messages/page-limits.js';
import { formatAddress, PAGE_BYTES, pageRange, parseAddress, parsePageAddress } from '../../machines/memory/address.js';
import type { DirectoryPageView, FlushResult, MangroveClient, PageAttrs, PageStat, SpaceReport } from '../client/pages.js';
import { chunksOf, examples, integer, jsonLine, positive, print } from './util.js';
import { checkConnect } from './ask.js';

export const pageCliDefaults = {
  /** Longer than `status`'s: a call may wait on other nodes' disks. */
  timeoutMs: 10_000,
  /**
   * How long a command waits out a rebuild of the cluster (E_RECOVERING):
   * the client library's default, named here so the help can say it without
   * loading the library.
   */
  recoveryWaitMs: 30_000,
} as const;

/** Two hex digits a byte: how `--fs` spells the attribute. */
const FS_HEX_DIGITS = FS_ATTR_BYTES * 2;
/** A range's page count as the help says it: `1 to 2^32`. */
const RANGE_PAGES_TEXT = `1 to 2^${Math.log2(PAGES_PER_RANGE_MAX)}`;

interface LinkOpts {
  connect: string;
  timeout: number;
  clientId?: string;
  json?: boolean;
}

/** What every subcommand hangs from: the `page` command, and the node to ask by default. */
interface PageCli {
  readonly page: Command;
  readonly connect: string;
}

export function addPageCommands(program: Command, defaults: { connect: string }): void {
  const page = program
    .command('page')
    .description('the paged 128-bit address space: reserve, allocate, read, write, lock and flush pages through a node')
    .addHelpText(
      'after',
      examples(
        'A=$(mangrove page reserve --pages 16)          # address space, no storage yet',
        'mangrove page alloc $A --pages 16 --copies 2   # storage: 2 core copies on distinct nodes',
        'echo hello | mangrove page write $A            # zero-padded to a whole page',
        'mangrove page flush $A && mangrove page read $A | head -c 5',
        'mangrove page stat $A --connect tcp://127.0.0.1:7401',
        '',
        `Addresses are 0x hex, multiples of 0x${PAGE_BYTES.toString(16)} (a page is ${PAGE_BYTES} bytes).`,
        'Every subcommand takes --connect (default the node at ' + defaults.connect + '), --timeout, --json.',
        'While the cluster rebuilds after a node failure, a call the node refuses with E_RECOVERING',
        `is sent again for up to ${pageCliDefaults.recoveryWaitMs / 1000} s: a pause, not an error (--timeout is for each try).`,
      ),
    );
  const cli: PageCli = { page, connect: defaults.connect };
  addReserve(cli);
  addRangeCommand(cli, 'unreserve', 'give back reserved pages, with any storage they have', 'unreserved', (c, a, n) => c.unreserve(a, n));
  addRangeCommand(cli, 'unallocate', 'drop the storage of pages; they stay reserved', 'unallocated', (c, a, n) => c.unallocate(a, n));
  addRangeCommand(cli, 'dealloc', 'drop the storage of pages and their reservation', 'deallocated', (c, a, n) => c.dealloc(a, n));
  addAlloc(cli);
  addWrite(cli);
  addRead(cli);
  addLock(cli);
  addUnlock(cli);
  addFlush(cli);
  addInspect(cli);
  addAttrs(cli);
  addSuperRoot(cli);
}

/** A subcommand with the options every one takes: --json (printing `json`), --connect, --timeout, --client-id. */
function subcommand(cli: PageCli, name: string, description: string, json: string): Command {
  return cli.page
    .command(name)
    .description(description)
    .option('--json', json)
    .option('--connect <endpoint>', 'the node to ask', cli.connect)
    .option('--timeout <ms>', 'how long to wait for each answer', positive, pageCliDefaults.timeoutMs)
    .option('--client-id <id>', 'the client the node sees (locks belong to it); default a new random id');
}

function addReserve(cli: PageCli): void {
  subcommand(cli, 'reserve', 'reserve address space for N pages (no storage yet); prints its base address', 'print {"address","pages"}')
    .requiredOption('--pages <n>', `how many pages (${RANGE_PAGES_TEXT})`, positive)
    .addHelpText('after', examples('A=$(mangrove page reserve --pages 16)', 'mangrove page reserve --pages 1 --json'))
    .action(async (o: LinkOpts & { pages: number }) => {
      const base = await session(o, (c) => c.reserve(o.pages));
      print(o.json ? jsonLine({ address: formatAddress(base), pages: o.pages }) : formatAddress(base));
    });
}

/** unreserve, unallocate, dealloc: a range in, `done` and the range out. */
function addRangeCommand(cli: PageCli, name: string, description: string, done: string, call: (c: MangroveClient, addr: bigint, pages: number) => Promise<void>): void {
  subcommand(cli, name, description, 'print {"address","pages"}')
    .argument('<addr>', 'the first page, 0x hex')
    .requiredOption('--pages <n>', `how many pages (${RANGE_PAGES_TEXT})`, positive)
    .addHelpText('after', examples(`mangrove page ${name} 0x10000 --pages 16`))
    .action(async (addr: string, o: LinkOpts & { pages: number }) => {
      const a = parsePageAddress(addr);
      await session(o, (c) => call(c, a, o.pages));
      print(o.json ? jsonLine({ address: formatAddress(a), pages: o.pages }) : `${done} ${plural(o.pages, 'page')} at ${formatAddress(a)}`);
    });
}

function addAlloc(cli: PageCli): void {
  subcommand(cli, 'alloc', 'materialize reserved pages: zero-filled storage on core holders', 'print {"address","pages"}')
    .argument('<addr>', 'the first page, 0x hex')
    .requiredOption('--pages <n>', `how many pages (${RANGE_PAGES_TEXT})`, positive)
    .option('--copies <k>', `core copies, each on a distinct node (1 to ${COPIES_MAX}; default: the node's)`, positive)
    .option('--volatile', 'never written to disk: lost if every RAM copy is')
    .addHelpText('after', examples('mangrove page alloc 0x10000 --pages 16 --copies 2', 'mangrove page alloc 0x10000 --pages 1 --volatile'))
    .action(async (addr: string, o: LinkOpts & { pages: number; copies?: number; volatile?: boolean }) => {
      const a = parsePageAddress(addr);
      await session(o, (c) => c.alloc(a, o.pages, { ...(o.copies !== undefined ? { copies: o.copies } : {}), ...(o.volatile ? { volatile: true } : {}) }));
      if (o.json) return print(jsonLine({ address: formatAddress(a), pages: o.pages }));
      const how = [o.copies !== undefined ? `${o.copies} core copies` : '', o.volatile ? 'volatile' : ''].filter((s) => s).join(', ');
      print(`allocated ${plural(o.pages, 'page')} at ${formatAddress(a)}${how ? ` (${how})` : ''}`);
    });
}

function addWrite(cli: PageCli): void {
  subcommand(cli, 'write', 'write bytes from stdin (or --file) to pages from ADDR on', 'print {"address","pages","bytes","versions"}')
    .argument('<addr>', 'the first page, 0x hex')
    .option('--file <file>', 'read the bytes from this file instead of stdin')
    .addHelpText(
      'after',
      examples(
        'echo hello | mangrove page write 0x10000',
        'mangrove page write 0x10000 --file image.bin --json',
        '',
        `The last partial page is zero-padded to ${PAGE_BYTES} bytes. More than ${PAGES_PER_REQUEST_MAX} pages go as`,
        `writes of ${PAGES_PER_REQUEST_MAX} pages, in order: a failure part way leaves the earlier parts written.`,
      ),
    )
    .action(async (addr: string, o: LinkOpts & { file?: string }) => {
      await writeCommand(parsePageAddress(addr), o);
    });
}

function addRead(cli: PageCli): void {
  subcommand(cli, 'read', 'write the bytes of N pages from ADDR to stdout', `print {"address","pages","versions","data"} (data in base64; at most ${PAGES_PER_REQUEST_MAX} pages)`)
    .argument('<addr>', 'the first page, 0x hex')
    .option('--pages <n>', 'how many pages', positive, 1)
    .addHelpText(
      'after',
      examples(
        'mangrove page read 0x10000 | head -c 5',
        'mangrove page read 0x10000 --pages 512 > pages.bin',
        'mangrove page read 0x10000 --json | jq .versions',
        '',
        `More than ${PAGES_PER_REQUEST_MAX} pages are read ${PAGES_PER_REQUEST_MAX} at a time, each part after the one before is out.`,
        'A page that is reserved but not allocated is refused with E_NOT_MATERIALIZED.',
      ),
    )
    .action(async (addr: string, o: LinkOpts & { pages: number }) => {
      await readCommand(parsePageAddress(addr), o);
    });
}

function addLock(cli: PageCli): void {
  subcommand(cli, 'lock', 'take a page lock (exclusive unless --shared); it belongs to the client id', 'print {"address","mode","client"}')
    .argument('<addr>', 'the page, 0x hex')
    .option('--shared', 'a shared lock: others may take shared locks too')
    .option('--wait', 'wait for a conflicting lock to be released (first come, first served) instead of failing with E_LOCKED')
    .addHelpText(
      'after',
      examples(
        'mangrove page lock 0x10000 --client-id backup-job',
        'mangrove page unlock 0x10000 --client-id backup-job',
        '',
        'A lock another client holds is refused with E_LOCKED (exit 1), or with --wait waited for. The lock outlives this command:',
        'unlock it through the same node with the same --client-id (printed when none is given).',
      ),
    )
    .action(async (addr: string, o: LinkOpts & { shared?: boolean; wait?: boolean }) => {
      const a = parsePageAddress(addr);
      const mode = o.shared ? 'shared' : 'exclusive';
      const client = await session(o, async (c) => {
        await c.lock(a, mode, { wait: o.wait === true });
        return c.clientId;
      });
      if (o.json) return print(jsonLine({ address: formatAddress(a), mode, client }));
      print(`locked ${formatAddress(a)} (${mode}) for client ${client}`);
      if (o.clientId === undefined) print(`unlock: mangrove page unlock ${formatAddress(a)} --client-id ${client} --connect ${o.connect}`);
    });
}

function addUnlock(cli: PageCli): void {
  subcommand(cli, 'unlock', 'release a page lock this client id holds', 'print {"address","client"}')
    .argument('<addr>', 'the page, 0x hex')
    .addHelpText('after', examples('mangrove page unlock 0x10000 --client-id backup-job'))
    .action(async (addr: string, o: LinkOpts) => {
      const a = parsePageAddress(addr);
      const client = await session(o, async (c) => {
        await c.unlock(a);
        return c.clientId;
      });
      print(o.json ? jsonLine({ address: formatAddress(a), client }) : `unlocked ${formatAddress(a)} for client ${client}`);
    });
}

function addFlush(cli: PageCli): void {
  subcommand(cli, 'flush', 'make the newest copy of N pages durable on every core holder', 'print {"address","pages","holders"}')
    .argument('<addr>', 'the first page, 0x hex')
    .option('--pages <n>', `how many pages (1 to ${PAGES_PER_REQUEST_MAX})`, positive, 1)
    .addHelpText('after', examples('mangrove page flush 0x10000', 'mangrove page flush 0x10000 --pages 16 --json'))
    .action(async (addr: string, o: LinkOpts & { pages: number }) => {
      const a = parsePageAddress(addr);
      const r = await session(o, (c) => c.flush(a, o.pages));
      print(o.json ? jsonLine({ address: formatAddress(a), ...r }) : renderFlush(a, r));
    });
}

/** stat and space: what a page, and the node, look like. */
function addInspect(cli: PageCli): void {
  subcommand(cli, 'stat', 'where a page lives: home, owner, readers, core holders, version, lock', 'print the page\'s stat object')
    .argument('<addr>', 'the page, 0x hex')
    .addHelpText('after', examples('mangrove page stat 0x10000', 'mangrove page stat 0x10000 --json | jq .coreHolders'))
    .action(async (addr: string, o: LinkOpts) => {
      const a = parsePageAddress(addr);
      const s = await session(o, (c) => c.stat(a));
      print(o.json ? jsonLine(s) : renderStat(s));
    });

  subcommand(cli, 'dir', 'one page of an arena\'s directory (the GDD), as its home has it: the root, or --page', 'print the page as {"arena","home","address","kind","level","root","children","entries"}')
    .argument('[arena]', 'the arena: 0 is the system\'s; `mangrove status --json` lists them (arenas), or give --of', (v: string) => {
      const n = integer(v);
      if (n < 0) throw new InvalidArgumentError('It must be 0 or more.');
      return n;
    })
    .option('--of <addr>', 'the arena an address is in (the high 64 bits of it), instead of ARENA')
    .option('--page <addr>', 'a page of the directory, 0x hex, as a parent names it (default: the root)')
    .addHelpText(
      'after',
      examples('mangrove page dir --of $A                # the directory that holds reservation $A', 'mangrove page dir 1 --page 0x10000000000001000', 'mangrove page dir 2 --json | jq \'.entries[] | select(.state == "materialized")\''),
    )
    .action(async (arena: number | undefined, o: LinkOpts & { of?: string; page?: string }) => {
      if ((arena === undefined) === (o.of === undefined)) throw new MangroveError('E_BAD_ARGUMENT', 'name the arena: an ARENA number or --of ADDRESS (one of the two)');
      const which = arena ?? Number(parseAddress(o.of!) >> 64n);
      const at = o.page === undefined ? undefined : parsePageAddress(o.page);
      const v = await session(o, (c) => c.directoryPage(which, at));
      print(o.json ? jsonLine(v) : renderDirectoryPage(v));
    });

  subcommand(cli, 'space', 'RAM and disk of the node, and free space in the cluster', 'print the node\'s space report')
    .addHelpText('after', examples('mangrove page space', 'mangrove page space --connect tcp://127.0.0.1:7401 --json | jq .cluster'))
    .action(async (o: LinkOpts) => {
      const s = await session(o, (c) => c.space());
      print(o.json ? jsonLine(s) : renderSpace(s));
    });
}

function addAttrs(cli: PageCli): void {
  subcommand(cli, 'attrs', 'show a page\'s attributes, or set its file-system attribute and RAM caching', 'print the page\'s attributes')
    .argument('<addr>', 'the page, 0x hex')
    .option(`--fs <hex${FS_HEX_DIGITS}>`, `set the ${FS_ATTR_BYTES}-byte file-system attribute: ${FS_HEX_DIGITS} hex digits`)
    .addOption(new Option('--cache-in-ram <on|off>', 'keep the page cached in RAM').choices(['on', 'off']))
    .addHelpText('after', examples('mangrove page attrs 0x10000', 'mangrove page attrs 0x10000 --fs 000102030405060708090a0b0c0d0e0f --cache-in-ram on'))
    .action(async (addr: string, o: LinkOpts & { fs?: string; cacheInRam?: 'on' | 'off' }) => {
      const a = parsePageAddress(addr);
      const set = { ...(o.fs !== undefined ? { fs: parseFsAttr(o.fs) } : {}), ...(o.cacheInRam !== undefined ? { cacheInRam: o.cacheInRam === 'on' } : {}) };
      const attrs = await session(o, (c) => (Object.keys(set).length > 0 ? c.setAttrs(a, set) : c.getAttrs(a)));
      print(o.json ? jsonLine(attrs) : renderAttrs(attrs));
    });
}

function addSuperRoot(cli: PageCli): void {
  subcommand(cli, 'super-root', 'print the file system\'s super-root address, or set it', 'print {"address"}')
    .option('--set <addr>', 'make this page the super root')
    .addHelpText('after', examples('mangrove page super-root', 'mangrove page super-root --set 0x10000'))
    .action(async (o: LinkOpts & { set?: string }) => {
      const target = o.set === undefined ? undefined : parsePageAddress(o.set);
      const a = await session(o, async (c) => {
        if (target === undefined) return c.superRoot();
        await c.setSuperRoot(target);
        return target;
      });
      print(o.json ? jsonLine({ address: formatAddress(a) }) : formatAddress(a));
    });
}

/** One client for one command, closed whatever happens. */
async function session<T>(o: LinkOpts, fn: (client: MangroveClient) => Promise<T>): Promise<T> {
  await checkConnect(o.connect, 'tcp://127.0.0.1:7400');
  const { connect } = await import('../client/pages.js');
  // No lock lease: a lock outlives the command that took it, until unlocked with the same client id.
  const client = await connect(o.connect, { timeoutMs: o.timeout, clientId: o.clientId, recoveryWaitMs: pageCliDefaults.recoveryWaitMs, lockLeaseMs: 0 });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

async function writeCommand(addr: bigint, o: LinkOpts & { file?: string }): Promise<void> {
  const chunks = pageChunks(await byteSource(o.file), PAGES_PER_REQUEST_MAX * PAGE_BYTES)[Symbol.asyncIterator]();
  // The first part is read before connecting: empty input is refused without a word to the node.
  const first = await chunks.next();
  if (first.done) throw new MangroveError('E_BAD_ARGUMENT', `nothing to write: ${o.file ?? 'stdin'} gave no bytes`);
  const versions: number[] = [];
  let bytes = 0;
  let pages = 0;
  await session(o, async (c) => {
    try {
      for (let part: IteratorResult<PageChunk> = first; !part.done; part = await chunks.next()) {
        const at = addr + BigInt(pages) * BigInt(PAGE_BYTES);
        versions.push(...(await c.write(at, part.value.data)));
        bytes += part.value.bytes;
        pages += part.value.data.byteLength / PAGE_BYTES;
      }
    } catch (err) {
      // Earlier parts are written: say how far it got, so the user knows what to redo.
      if (pages === 0 || !isMangroveError(err)) throw err;
      throw new MangroveError(err.code, `${err.message} (the first ${plural(pages, 'page')} from ${formatAddress(addr)} were written)`);
    }
  });
  if (o.json) return print(jsonLine({ address: formatAddress(addr), pages, bytes, versions }));
  const padded = pages * PAGE_BYTES - bytes;
  print(`wrote ${plural(pages, 'page')} at ${formatAddress(addr)} (${plural(bytes, 'byte')}${padded > 0 ? `, the last page zero-padded by ${padded}` : ''})`);
}

/** The bytes to write: the file, opened now so a wrong path fails before anything else, or stdin. */
async function byteSource(file: string | undefined): Promise<AsyncIterable<Uint8Array>> {
  if (file === undefined) {
    if (process.stdin.isTTY) {
      throw new MangroveError('E_BAD_ARGUMENT', 'page write reads the bytes from stdin: pipe or redirect them (… | mangrove page write ADDR), or give --file');
    }
    return process.stdin;
  }
  try {
    return (await open(file, 'r')).createReadStream();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : String(err);
    throw new MangroveError('E_NOT_FOUND', `cannot read ${file}: ${why}`);
  }
}

/** One write's worth of input: `bytes` of `data` came from the stream, the rest is padding. */
export interface PageChunk {
  data: Uint8Array;
  bytes: number;
}

/**
 * Cuts a byte stream into writes of `chunkBytes` (a whole number of pages),
 * in order; the last holds what is left, zero-padded to a whole page.
 * `bytes` is how many of a part's bytes came from the stream.
 */
export async function* pageChunks(source: AsyncIterable<Uint8Array | string>, chunkBytes: number): AsyncGenerator<PageChunk> {
  if (!Number.isInteger(chunkBytes) || chunkBytes < PAGE_BYTES || chunkBytes % PAGE_BYTES !== 0) {
    throw new RangeError(`chunkBytes must be a positive multiple of ${PAGE_BYTES}`);
  }
  for await (const part of chunksOf(source, chunkBytes)) {
    if (part.byteLength === chunkBytes) {
      yield { data: part, bytes: chunkBytes };
      continue;
    }
    // The last part: copied into a zero-filled buffer of whole pages, the pad.
    const whole = new Uint8Array(Math.ceil(part.byteLength / PAGE_BYTES) * PAGE_BYTES);
    whole.set(part);
    yield { data: whole, bytes: part.byteLength };
  }
}

async function readCommand(addr: bigint, o: LinkOpts & { pages: number }): Promise<void> {
  checkRange(addr, o.pages);
  if (o.json) {
    if (o.pages > PAGES_PER_REQUEST_MAX) {
      throw new MangroveError('E_BAD_ARGUMENT', `--json carries at most ${PAGES_PER_REQUEST_MAX} pages, not ${o.pages}: read more as raw bytes (without --json)`);
    }
    const r = await session(o, (c) => c.readVersions(addr, o.pages));
    return print(jsonLine({ address: formatAddress(addr), pages: o.pages, versions: r.versions, data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength).toString('base64') }));
  }
  await session(o, async (c) => {
    for (const part of chunkPlan(addr, o.pages, PAGES_PER_REQUEST_MAX)) await writeOut(await c.read(part.addr, part.pages));
  });
}

/** A read of up to a range's worth of pages (PAGES_PER_RANGE_MAX) inside the address space, checked before anything is sent. */
function checkRange(addr: bigint, pages: number): void {
  if (pages > PAGES_PER_RANGE_MAX) throw new MangroveError('E_BAD_ARGUMENT', `--pages is at most ${PAGES_PER_RANGE_MAX} (2^${Math.log2(PAGES_PER_RANGE_MAX)}), not ${pages}`);
  pageRange(addr, pages);
}

/** `pages` pages from `addr` as requests of at most `perRequest` pages, in order. */
export function* chunkPlan(addr: bigint, pages: number, perRequest: number): Generator<{ addr: bigint; pages: number }> {
  for (let done = 0; done < pages; done += perRequest) {
    yield { addr: addr + BigInt(done) * BigInt(PAGE_BYTES), pages: Math.min(perRequest, pages - done) };
  }
}

/** Resolves once stdout has taken the bytes, so a slow pipe is never overrun. */
function writeOut(data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/** `--fs`: FS_ATTR_BYTES (16) bytes as hex digits, `0x` allowed. */
export function parseFsAttr(text: string): Uint8Array {
  const digits = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (!new RegExp(`^[0-9a-fA-F]{${FS_HEX_DIGITS}}$`).test(digits)) {
    throw new MangroveError('E_BAD_ARGUMENT', `--fs takes ${FS_ATTR_BYTES} bytes as ${FS_HEX_DIGITS} hex digits, not ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)}`);
  }
  return new Uint8Array(Buffer.from(digits, 'hex'));
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function list(ids: readonly string[], none: string): string {
  return ids.length === 0 ? none : ids.join(', ');
}

function table(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

export function renderStat(s: PageStat): string {
  const lock = s.lock === null ? 'none' : `${s.lock.mode}, held by ${list(s.lock.holders, 'nobody')}`;
  return table([
    ['page', s.address],
    ['reservation', `${s.reservation.address} (${plural(s.reservation.pages, 'page')})`],
    ['state', s.state],
    ['home', s.home],
    ['owner', s.owner ?? 'none (no node holds it in RAM)'],
    ['readers', list(s.readers, 'none')],
    ['core holders', `${list(s.coreHolders, 'none')} (${s.coreHolders.length} of ${s.copies} copies${s.volatile ? ', volatile' : ''})`],
    ['version', String(s.version)],
    ['lock', lock],
  ]);
}

export function renderDirectoryPage(v: DirectoryPageView): string {
  const rows: [string, string][] = [
    ['arena', `${v.arena} (home ${v.home})`],
    ['page', `${v.address}, version ${v.version}, ${v.kind === 'leaf' ? 'a leaf' : `an inner page, level ${v.level}`}`],
  ];
  if (v.root && v.root.pages === 0) rows.push(['tree', 'none yet: nothing was reserved in this arena']);
  else if (v.root) {
    rows.push(['tree', `${v.root.entries} entr${v.root.entries === 1 ? 'y' : 'ies'} in ${plural(v.root.pages, 'page')}, ${v.root.depth} deep`]);
    rows.push(['high water', v.root.highWater]);
    if (v.root.superRoot !== null) rows.push(['super-root', v.root.superRoot]);
  }
  const lines = [table(rows)];
  for (const c of v.children) lines.push(`  child ${c.address}  ${c.from === null ? 'the lowest keys' : `from ${c.from}`}`);
  for (const e of v.entries) {
    const where = e.state === 'reserved' ? 'reserved' : `${e.copies} ${e.volatile ? 'volatile ' : ''}cop${e.copies === 1 ? 'y' : 'ies'} on ${list(e.holders, 'no node')}`;
    lines.push(`  ${e.start}  ${plural(e.pages, 'page').padEnd(12)} ${where}${e.cacheInRam ? ', cached in RAM' : ''}`);
  }
  if (v.kind === 'leaf' && v.entries.length === 0) lines.push('  (no entries)');
  return lines.join('\n');
}

export function renderSpace(s: SpaceReport): string {
  const rows: [string, string][] = [
    ['node', s.node],
    ['ram', `${mib(s.ram.usedBytes)} of ${mib(s.ram.budgetBytes)} used: ${plural(s.ram.pages, 'page')}, ${s.ram.dirtyPages} dirty`],
    ['disk', `${plural(s.disk.pages, 'page')} of ${s.disk.pagesMax}, ${s.disk.freePages} free`],
    ['home pages', String(s.homePages)],
  ];
  if (s.cluster) {
    rows.push(['cluster', `${plural(s.cluster.nodes, 'node')}: ${mib(s.cluster.freeRamBytes)} of ${mib(s.cluster.totalRamBytes)} RAM and ${plural(s.cluster.freeDiskPages, 'disk page')} of ${s.cluster.totalDiskPages} free`]);
  }
  return table(rows);
}

export function renderAttrs(a: PageAttrs): string {
  return table([
    ['page', a.address],
    ['coherency', a.coherency],
    ['copies', String(a.copies)],
    ['volatile', a.volatile ? 'yes' : 'no'],
    ['cache in RAM', a.cacheInRam ? 'yes' : 'no'],
    ['fs', a.fs],
  ]);
}

export function renderFlush(addr: bigint, r: FlushResult): string {
  const holders = [...new Set(r.holders.flat())];
  const where = holders.length === 0 ? '; no core holder had anything to commit' : ` to ${holders.join(', ')}`;
  return `flushed ${plural(r.pages, 'page')} at ${formatAddress(addr)}${where}`;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
