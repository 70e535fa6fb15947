/**
 * `mangrove mount` and `mangrove umount` (SPEC.md M28): a fileset under a
 * directory through FUSE (runtime/mount/), for unmodified programs.
 *
 * `mount` runs in the foreground with --foreground (its log on stderr;
 * Ctrl-C or SIGTERM unmounts); otherwise it starts itself in the
 * background, waits until the mount is up (or prints why it is not), prints
 * the background process's pid and log file, and returns. Each running mount
 * leaves a record in MOUNT_RECORDS (its pid, node and log), which `umount`
 * uses to stop it cleanly; a mount with no record (its process was killed)
 * is taken down with `fusermount -uz`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import type { Command } from 'commander';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import { errorLine, exitCodeOf } from './fs-link.js';
import { examples, jsonLine, positive, print } from './util.js';

/** Where running mounts leave their records (one JSON file per mount point). */
export const MOUNT_RECORDS = join(tmpdir(), 'mangrove-mounts');
/** How long `mount` waits for its background process to be mounted. */
const READY_WAIT_MS = 60_000;
/** How long `umount` waits for a mount process to unmount and exit after SIGTERM. */
const STOP_WAIT_MS = 15_000;
/** How often a foreground mount checks that it is still mounted (someone may run fusermount -u). */
const STILL_MOUNTED_CHECK_MS = 2_000;

interface MountCliOpts {
  connect: string[];
  fileset: string;
  foreground?: boolean;
  nonEmpty?: boolean;
  log?: string;
  timeout: number;
  json?: boolean;
}

export interface MountRecord {
  pid: number;
  dir: string;
  fileset: string;
  node: string;
  log: string | null;
  id: string;
}

export function addMountCommands(program: Command, defaults: { connect: string }): void {
  program
    .command('mount')
    .description('mount a fileset on a directory through FUSE, for any program (cp, git, sqlite3, editors)')
    .argument('<dir>', 'an existing, empty directory')
    .option('--connect <endpoint>', 'a node to use; give several (or a comma-separated list) to fail over in that order; the others are learned from the cluster', collect, [])
    .option('--fileset <name>', 'the fileset to mount', 'default')
    .option('--foreground', 'stay in the foreground, logging to stderr, until Ctrl-C or SIGTERM unmounts')
    .option('--non-empty', 'mount on a directory that has files (hidden while mounted)')
    .option('--log <file>', 'in the background, append the log here (default: a file in the system temp folder, printed)')
    .option('--timeout <ms>', 'a call unanswered this long makes the mount ask its node whether it is there; a node that does not answer is left for another', positive, 5000)
    .option('--json', 'print {pid, dir, fileset, node, log} as one JSON line once mounted')
    .addHelpText(
      'after',
      examples(
        'mkdir -p /mnt/mangrove && mangrove mount /mnt/mangrove',
        'mangrove mount --fileset photos --connect tcp://127.0.0.1:7401,tcp://127.0.0.1:7402 /mnt/photos',
        'mangrove mount --foreground /mnt/mangrove           # Ctrl-C unmounts',
        'mangrove umount /mnt/mangrove',
        '',
        'Data written is on the node at once; fsync makes it durable on every core holder.',
        'After close on one mount, an open on any other sees the data. fcntl and flock locks hold across mounts.',
        'When the mount\'s node stops answering, the mount moves to another node and goes on (see its log).',
      ),
    )
    .action(act(async (dir: string, opts: MountCliOpts) => {
      const endpoints = opts.connect.length > 0 ? opts.connect : [defaults.connect];
      if (opts.foreground) await runForeground(resolvePath(dir), endpoints, opts);
      else await runBackground(resolvePath(dir), opts);
    }));

  program
    .command('umount')
    .alias('unmount')
    .description('unmount a directory mounted with `mangrove mount`: open files are closed, then the mount goes')
    .argument('<dir>', 'the mount point')
    .option('--json', 'print {dir, pid} as one JSON line once unmounted')
    .addHelpText('after', examples('mangrove umount /mnt/mangrove'))
    .action(act(async (dir: string, opts: { json?: boolean }) => {
      const r = await unmount(resolvePath(dir));
      print(opts.json ? jsonLine(r) : `unmounted ${r.dir}${r.pid === null ? ' (its process was gone: fusermount -uz)' : ` (mount process ${r.pid} stopped)`}`);
    }));
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').filter((v) => v !== '')];
}

function act<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (!isMangroveError(err)) throw err;
      process.stderr.write(errorLine(err));
      process.exitCode = exitCodeOf(err);
    }
  };
}

function recordPath(dir: string): string {
  return join(MOUNT_RECORDS, `${createHash('sha1').update(dir).digest('hex').slice(0, 16)}.json`);
}

export function readRecord(dir: string): MountRecord | null {
  try {
    return JSON.parse(readFileSync(recordPath(dir), 'utf8')) as MountRecord;
  } catch {
    return null;
  }
}

async function runForeground(dir: string, endpoints: string[], opts: MountCliOpts): Promise<void> {
  const { startMount, isMountPoint } = await import('../mount/mount.js');
  const { createLogger } = await import('../node/logger.js');
  const log = createLogger({ level: 'info', fd: 2 });
  let mount;
  try {
    mount = await startMount({ dir, endpoints, fileset: opts.fileset, log, nonEmpty: opts.nonEmpty, timeoutMs: opts.timeout });
  } catch (err) {
    // A background parent is told why over IPC, then this process is done.
    if (process.send && isMangroveError(err)) process.send({ error: { code: err.code, message: err.message } });
    throw err;
  }
  const record: MountRecord = { pid: process.pid, dir, fileset: opts.fileset, node: mount.session.endpoint, log: opts.log ?? null, id: mount.id };
  mkdirSync(MOUNT_RECORDS, { recursive: true });
  writeFileSync(recordPath(dir), JSON.stringify(record));
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(watch);
    log.info({ why }, 'stopping the mount');
    try {
      await mount.stop();
    } finally {
      rmSync(recordPath(dir), { force: true });
      process.exit(0);
    }
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  const watch = setInterval(() => {
    if (!isMountPoint(dir)) void stop('unmounted from outside (fusermount -u)');
  }, STILL_MOUNTED_CHECK_MS);
  if (process.send) {
    process.send({ ready: record });
    process.disconnect?.();
  } else {
    print(opts.json ? jsonLine(record) : `mounted fileset ${opts.fileset} on ${dir} through ${mount.session.endpoint}; Ctrl-C unmounts`);
  }
}

async function runBackground(dir: string, opts: MountCliOpts): Promise<void> {
  const { checkMountPoint } = await import('../mount/mount.js');
  // Refused here, the error is plain; the background process checks again.
  checkMountPoint(dir, opts.nonEmpty ?? false);
  const logFile = opts.log ?? join(tmpdir(), `mangrove-mount-${createHash('sha1').update(dir).digest('hex').slice(0, 8)}.log`);
  const out = openSync(logFile, 'a');
  const args = [...process.execArgv, process.argv[1]!, 'mount', '--foreground', '--fileset', opts.fileset, '--timeout', String(opts.timeout), '--log', logFile];
  for (const c of opts.connect) args.push('--connect', c);
  if (opts.nonEmpty) args.push('--non-empty');
  args.push(dir);
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', out, out, 'ipc'] });
  const answer = await new Promise<{ ready?: MountRecord; error?: { code: string; message: string } }>((resolve) => {
    const timer = setTimeout(() => resolve({ error: { code: 'E_TIMEOUT', message: `the mount was not up within ${READY_WAIT_MS} ms; see ${logFile}` } }), READY_WAIT_MS);
    child.on('message', (m) => {
      clearTimeout(timer);
      resolve(m as { ready?: MountRecord });
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ error: { code: 'E_INTERNAL', message: `the mount process exited (${code}) before it was mounted; see ${logFile}` } });
    });
  });
  child.removeAllListeners();
  if (child.connected) child.disconnect();
  child.unref();
  if (answer.error) {
    if (child.exitCode === null && child.pid !== undefined) child.kill('SIGTERM');
    throw new MangroveError(answer.error.code as never, answer.error.message);
  }
  const r = { ...answer.ready!, log: logFile };
  print(opts.json ? jsonLine(r) : `mounted fileset ${r.fileset} on ${r.dir} through ${r.node}\nmount process ${r.pid}, log ${logFile}; unmount with: mangrove umount ${r.dir}`);
}

/** Stops the mount process of `dir` (SIGTERM: it closes its files and unmounts); fusermount -uz when it is gone. */
export async function unmount(dir: string): Promise<{ dir: string; pid: number | null }> {
  const { isMountPoint } = await import('../mount/mount.js');
  const record = readRecord(dir);
  const alive = record !== null && processAlive(record.pid);
  if (!alive && !isMountPoint(dir)) {
    rmSync(recordPath(dir), { force: true });
    throw new MangroveError('E_NOT_FOUND', `nothing is mounted on ${dir}`);
  }
  if (alive) {
    process.kill(record.pid, 'SIGTERM');
    const deadline = Date.now() + STOP_WAIT_MS;
    while (processAlive(record.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (processAlive(record.pid)) process.kill(record.pid, 'SIGKILL');
  }
  if (isMountPoint(dir)) {
    const r = spawnSync('fusermount', ['-uz', dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new MangroveError('E_BUSY', `fusermount -uz ${dir} failed: ${(r.stderr || r.error?.message || '').trim()}`);
  }
  rmSync(recordPath(dir), { force: true });
  return { dir, pid: alive ? record.pid : null };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
