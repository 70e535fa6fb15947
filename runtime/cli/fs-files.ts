/**
 * `mangrove fs put | get | cat | lock`: bytes between local files (or stdin,
 * stdout) and the file system, streamed in calls of IO_BYTES and never held
 * whole in memory, with a meter on stderr for long transfers; and a
 * byte-range lock held from a shell (M21).
 */
import { open, stat as localStat } from 'node:fs/promises';
import { basename, join as localJoin } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { FileHandle, FsClient } from '../client/files.js';
import { act, fsCliDefaults, fsSubcommand, intoDirectory, octal, fsSession, type FsCli, type FsLinkOpts } from './fs-link.js';
import { canonicalPath, lastName, Meter, renderTransfer } from './fs-render.js';
import { chunksOf, examples, integer, jsonLine, positive, print } from './util.js';

/** Bytes a read or write call carries (bus/messages/fs.ts FS_IO_BYTES_MAX; not imported, it brings the wire's schemas). */
export const IO_BYTES = 1024 * 1024;
/**
 * A long put fsyncs every this many bytes: each fsync then makes a bounded
 * number of pages durable and answers within --timeout however large the
 * file, and the last one, after which put returns, is short.
 */
export const SYNC_EVERY_BYTES = 8 * IO_BYTES;
/** The longest a waiting lock call waits on the node before the client asks again (runtime/client/files.ts). */
const LOCK_CALL_WAIT_MS = 5_000;

export function addFileCommands(cli: FsCli): void {
  addPut(cli);
  addGet(cli);
  addLock(cli);
}

interface TransferOpts extends FsLinkOpts {
  progress?: boolean;
}

/** A meter on stderr when it is a terminal (and stdout, if it carries the bytes, is not), or with --progress. */
function meter(verb: string, total: number | undefined, o: { progress?: boolean }, toStdout = false): Meter | null {
  const tty = process.stderr.isTTY === true;
  if (!o.progress && !(tty && !(toStdout && process.stdout.isTTY))) return null;
  return new Meter({ verb, total, now: () => Date.now(), write: (t) => process.stderr.write(t), tty });
}

function addPut(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'put', 'copy a local file (or stdin) into the file system; returns once it is durable (fsynced)', 'print {"path", "bytes", "ms"} at the end')
    .argument('<src>', 'the local file, or - for stdin')
    .argument('<dest>', 'the Mangrove path; an existing directory (or a path ending in /): the file goes inside it, under SRC\'s name')
    .option('--progress', 'show progress on stderr even when it is not a terminal (a transfer over 8 MiB)')
    .option('--mode <octal>', 'permission bits of a file it makes (default 644)', octal)
    .addHelpText(
      'after',
      examples(
        'mangrove fs put holiday.jpg /photos/',
        'tar c docs | mangrove fs put - backups:/docs.tar --progress',
        '',
        `The bytes are streamed in writes of ${IO_BYTES / 1024 / 1024} MiB and fsynced every ${SYNC_EVERY_BYTES / 1024 / 1024} MiB and at the end:`,
        'durable on every core holder before the command returns. A file DEST named is replaced.',
      ),
    )
    .action(
      act(async (src: string, dest: string, o: TransferOpts & { mode?: number }) => {
        const source = await localSource(src);
        const started = Date.now();
        let bytes = 0;
        const path = await fsSession(o, async (fs) => {
          const path = await intoDirectory(fs, dest, source.name, 'file');
          bytes = await putFile(fs, path, source, o);
          return path;
        });
        const ms = Date.now() - started;
        print(o.json ? jsonLine({ path: canonicalPath(path), bytes, ms }) : renderTransfer('put', bytes, ms, src === '-' ? 'stdin' : src, canonicalPath(path)));
      }),
    );
}

interface Source {
  bytes: AsyncIterable<Uint8Array | string>;
  /** Bytes in all; unknown for stdin. */
  size: number | undefined;
  /** The name a file gets inside a directory; '' for stdin. */
  name: string;
}

/** The local bytes to put: the file, opened now so a wrong path fails before a word is sent, or stdin. */
async function localSource(src: string): Promise<Source> {
  if (src === '-') {
    if (process.stdin.isTTY) throw new MangroveError('E_BAD_ARGUMENT', 'put - reads the bytes from stdin: pipe or redirect them (… | mangrove fs put - DEST)');
    return { bytes: process.stdin, size: undefined, name: '' };
  }
  try {
    const fh = await open(src, 'r');
    const s = await fh.stat();
    if (s.isDirectory()) {
      await fh.close();
      throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
    }
    return { bytes: fh.createReadStream({ highWaterMark: IO_BYTES }), size: s.size, name: basename(src) };
  } catch (err) {
    throw localError(err, src, 'read');
  }
}

function localError(err: unknown, file: string, verb: string): MangroveError {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : String(err);
  return new MangroveError(code === 'ENOENT' ? 'E_NOT_FOUND' : code === 'EISDIR' ? 'E_IS_DIR' : 'E_STORAGE', `cannot ${verb} ${file}: ${why}`);
}

/** Writes the source into `path` (made or emptied), fsyncs it, closes it; the bytes written. */
async function putFile(fs: FsClient, path: string, source: Source, o: TransferOpts & { mode?: number }): Promise<number> {
  const h = await fs.open(path, 'w', o.mode === undefined ? {} : { mode: o.mode });
  const m = meter('put', source.size, o);
  let done = 0;
  try {
    for await (const part of chunksOf(source.bytes, IO_BYTES)) {
      await h.write(part, done);
      done += part.byteLength;
      if (done % SYNC_EVERY_BYTES === 0) await h.sync();
      m?.update(done);
    }
    await h.sync();
  } catch (err) {
    await h.close().catch(() => undefined);
    m?.finish(done);
    if (!isMangroveError(err)) throw err;
    throw new MangroveError(err.code, `${err.message} (after ${done} bytes; ${canonicalPath(path)} is incomplete)`);
  }
  await h.close();
  m?.finish(done);
  return done;
}

function addGet(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'get', 'copy a file out of the file system to a local file (or stdout)', 'print {"path", "file", "bytes", "ms"} at the end (not with DEST -)')
    .argument('<src>', 'the Mangrove path')
    .argument('<dest>', 'the local file, or - for stdout; an existing directory (or a path ending in /): the file goes inside it')
    .option('--progress', 'show progress on stderr even when it is not a terminal (a transfer over 8 MiB)')
    .addHelpText('after', examples('mangrove fs get /photos/a.jpg a.jpg', 'mangrove fs get backups:/docs.tar - | tar t', '', `Streamed in reads of ${IO_BYTES / 1024 / 1024} MiB, one read ahead; never held whole in memory.`))
    .action(
      act(async (src: string, dest: string, o: TransferOpts) => {
        if (dest === '-' && o.json) throw new MangroveError('E_BAD_ARGUMENT', 'get SRC - writes the file to stdout: --json would mix with it (give a local file, or use cat)');
        const file = dest === '-' ? '-' : await localDestination(dest, lastName(src));
        const started = Date.now();
        const bytes = await fsSession(o, (fs) => getFile(fs, src, file, { progress: o.progress, meter: true }));
        if (file === '-') return;
        const ms = Date.now() - started;
        print(o.json ? jsonLine({ path: canonicalPath(src), file, bytes, ms }) : renderTransfer('got', bytes, ms, canonicalPath(src), file));
      }),
    );

  fsSubcommand(cli.cmd, cli, 'cat', 'write a file\'s bytes to stdout', '(no JSON: the bytes are the output)')
    .argument('<path>', 'the Mangrove path')
    .addHelpText('after', examples('mangrove fs cat /notes.txt', 'mangrove fs cat backups:/docs.tar | tar t'))
    .action(
      act(async (path: string, o: FsLinkOpts) => {
        if (o.json) throw new MangroveError('E_BAD_ARGUMENT', 'cat writes the bytes themselves: use `fs get SRC FILE --json` for a report');
        await fsSession(o, (fs) => getFile(fs, path, '-', { meter: false }));
      }),
    );
}

/** The local file `get` writes: DEST, or DEST/NAME when DEST is a directory or ends in '/'. */
async function localDestination(dest: string, name: string): Promise<string> {
  const dir = dest.endsWith('/') || (await localStat(dest).then((s) => s.isDirectory(), () => false));
  if (!dir) return dest;
  if (name === '') throw new MangroveError('E_BAD_ARGUMENT', `${dest} is a directory and the source has no name: name the file`);
  return localJoin(dest, name);
}

/** Where `get` writes: stdout, or a local file opened once the source is open (a missing source leaves DEST untouched). */
interface Sink {
  write(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

async function localSink(file: string): Promise<Sink> {
  if (file === '-') return { write: writeOut, close: async () => undefined };
  const fh = await open(file, 'w').catch((err: unknown) => {
    throw localError(err, file, 'write');
  });
  return {
    write: async (data) => {
      await fh.write(data);
    },
    close: () => fh.close(),
  };
}

/** Resolves once stdout has taken the bytes, so a slow pipe is never overrun. */
function writeOut(data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/** Streams `src` to `file` ('-': stdout) with one read ahead; the bytes copied. */
async function getFile(fs: FsClient, src: string, file: string, o: { progress?: boolean; meter: boolean }): Promise<number> {
  const h = await fs.open(src, 'r');
  let done = 0;
  let m: Meter | null = null;
  try {
    const size = (await h.stat()).size;
    m = o.meter ? meter('get', size, o, file === '-') : null;
    const sink = await localSink(file);
    try {
      let next: Promise<{ data: Buffer; eof: boolean }> | null = h.read(IO_BYTES, 0);
      while (next !== null) {
        const { data, eof }: { data: Buffer; eof: boolean } = await next;
        // The next read goes out before this part is written: the node and the local disk work at once.
        next = eof || data.byteLength === 0 ? null : h.read(IO_BYTES, done + data.byteLength);
        next?.catch(() => undefined);
        if (data.byteLength > 0) await sink.write(data);
        done += data.byteLength;
        m?.update(done);
      }
    } finally {
      await sink.close();
    }
  } catch (err) {
    await h.close().catch(() => undefined);
    m?.finish(done);
    if (!isMangroveError(err) || done === 0) throw err;
    throw new MangroveError(err.code, `${err.message} (after ${done} bytes; ${file === '-' ? 'stdout' : file} is incomplete)`);
  }
  await h.close();
  m?.finish(done);
  return done;
}

// ---- byte-range locks ----

function nonNegative(value: string): number {
  const n = integer(value);
  if (n < 0) throw new InvalidArgumentError('It must be 0 or more.');
  return n;
}

function addLock(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'lock', 'take a byte-range lock on a file, hold it, then release it', 'print {"path", "start", "end", "mode", "held"} when it holds the lock and when it lets it go')
    .argument('<path>', 'the file')
    .requiredOption('--start <n>', 'the first byte locked', nonNegative)
    .requiredOption('--end <n>', 'the byte after the last one locked (it may lie past the end of the file)', nonNegative)
    .option('--shared', 'a shared (read) lock: other shared locks may overlap it')
    .option('--wait', `wait for a conflicting lock to go (up to --wait-ms) instead of failing with E_LOCKED`)
    .option('--wait-ms <ms>', 'how long --wait waits', positive, fsCliDefaults.lockWaitMs)
    .option('--hold-ms <ms>', 'hold the lock this long (default: until Ctrl-C or SIGTERM)', positive)
    .addHelpText(
      'after',
      examples(
        'mangrove fs lock /db --start 0 --end 4096 --hold-ms 10000',
        'mangrove fs lock /db --start 0 --end 100 --shared --wait',
        '',
        'Locks bytes [START, END) through a handle of its own; another handle\'s overlapping lock is refused with',
        'E_LOCKED (EAGAIN), exit 1, unless --wait. Closing the handle at the end releases the lock.',
      ),
    )
    .action(
      act(async (path: string, o: FsLinkOpts & { start: number; end: number; shared?: boolean; wait?: boolean; waitMs: number; holdMs?: number }) => {
        if (o.end <= o.start) throw new MangroveError('E_BAD_ARGUMENT', `--end must lie after --start (bytes [${o.start}, ${o.end}) are none)`);
        // A waiting call may last LOCK_CALL_WAIT_MS on the node: the answer must not time out first.
        const timeout = o.wait ? Math.max(o.timeout, LOCK_CALL_WAIT_MS + 2_000) : o.timeout;
        await fsSession({ ...o, timeout }, (fs) => holdLock(fs, path, o));
      }),
    );
}

async function holdLock(fs: FsClient, path: string, o: FsLinkOpts & { start: number; end: number; shared?: boolean; wait?: boolean; waitMs: number; holdMs?: number }): Promise<void> {
  const mode = o.shared ? 'shared' : 'exclusive';
  const say = (held: boolean, human: string) => print(o.json ? jsonLine({ path: canonicalPath(path), start: o.start, end: o.end, mode, held }) : human);
  const h: FileHandle = await fs.open(path, 'r');
  try {
    await h.lock(o.start, o.end, { mode, wait: o.wait === true, waitMs: o.waitMs });
    const how = o.holdMs === undefined ? 'until Ctrl-C or SIGTERM' : `for ${o.holdMs} ms`;
    say(true, `locked bytes [${o.start}, ${o.end}) of ${canonicalPath(path)} (${mode}); holding ${how}`);
    await held(o.holdMs);
    await h.unlock(o.start, o.end);
    say(false, `released bytes [${o.start}, ${o.end}) of ${canonicalPath(path)}`);
  } finally {
    await h.close().catch(() => undefined);
  }
}

/** Resolves after `ms` (never without it), or at SIGINT or SIGTERM: then the lock is released before the process ends. */
function held(ms: number | undefined): Promise<void> {
  return new Promise((resolve) => {
    // A timer keeps the process alive; a signal listener alone would not.
    const timer = ms === undefined ? setInterval(() => undefined, 60_000) : setTimeout(done, ms);
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    function done(): void {
      clearTimeout(timer);
      clearInterval(timer);
      process.removeListener('SIGINT', done);
      process.removeListener('SIGTERM', done);
      resolve();
    }
  });
}
