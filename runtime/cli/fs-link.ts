/**
 * What every `mangrove fs …` subcommand shares: its options (--json,
 * --connect, --timeout), one client for the command, closed whatever
 * happens, and how a refusal is printed: `error E_CODE (POSIX): sentence`,
 * the POSIX name beside Mangrove's code as a file-system caller expects it,
 * with the exit status main.ts gives every command (2 for a usage error, 1
 * for anything else). The client library (and ZeroMQ) is loaded only once
 * a command's arguments are checked.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { FsClient } from '../client/files.js';
import { checkConnect } from './ask.js';
import { canonicalPath, childPath, namesDirectory, parseMode } from './fs-render.js';
import { ExitWith, positive } from './util.js';

export const fsCliDefaults = {
  /** As `page`'s: a call may wait on other nodes' disks. */
  timeoutMs: 10_000,
  /** How long a command waits out a rebuild of the cluster (E_RECOVERING), as `page`'s. */
  recoveryWaitMs: 30_000,
  /** How long `lock --wait` waits for a conflicting lock, as the client library's. */
  lockWaitMs: 30_000,
  /** `fs check` walks a whole fileset: one call, given longer. */
  checkTimeoutMs: 120_000,
  path: 'default:/',
  fileset: 'default',
} as const;

/** After a refusal, the longest the process may linger to flush its output (as main.ts). */
const FORCED_EXIT_MS = 1000;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

export interface FsLinkOpts {
  connect: string;
  timeout: number;
  json?: boolean;
}

/** The `fs` command and the node every subcommand asks by default. */
export interface FsCli {
  readonly cmd: Command;
  readonly connect: string;
}

/** A subcommand of `parent` with the options every one takes: --json (printing `json`), --connect, --timeout. */
export function fsSubcommand(parent: Command, cli: FsCli, name: string, description: string, json: string, timeoutMs: number = fsCliDefaults.timeoutMs): Command {
  return parent
    .command(name)
    .description(description)
    .option('--json', json)
    .option('--connect <endpoint>', 'the node to ask', cli.connect)
    .option('--timeout <ms>', 'how long to wait for each answer', positive, timeoutMs);
}

/**
 * The action, with a refusal (a MangroveError, or one in an ExitWith)
 * printed as `error E_CODE (POSIX): sentence` and the exit status set;
 * anything else is a bug and goes on to main.ts, which prints its stack.
 */
export function act<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const cause = err instanceof ExitWith ? err.cause : err;
      if (!isMangroveError(cause)) throw err;
      process.stderr.write(errorLine(cause));
      process.exitCode = err instanceof ExitWith ? err.exitCode : exitCodeOf(cause);
      // Whatever the refused command left open must not keep the process alive.
      setTimeout(() => process.exit(), FORCED_EXIT_MS).unref();
    }
  };
}

export function exitCodeOf(err: MangroveError): number {
  return err.code === 'E_BAD_ARGUMENT' || err.code === 'E_BAD_ADDRESS' ? EXIT_USAGE : EXIT_FAILURE;
}

/** `error E_NOT_FOUND (ENOENT): no "x" in "/a/x"`. */
export function errorLine(err: MangroveError): string {
  const posix = err.posix;
  return `error ${err.code}${posix === undefined ? '' : ` (${posix})`}: ${err.message}\n`;
}

/** One client for one command, closed whatever happens. */
export async function fsSession<T>(o: FsLinkOpts, fn: (fs: FsClient) => Promise<T>): Promise<T> {
  await checkConnect(o.connect, 'tcp://127.0.0.1:7400');
  const { connect } = await import('../client/pages.js');
  // No lock lease: a command's byte-range locks belong to its handles, which close with it.
  const client = await connect(o.connect, { timeoutMs: o.timeout, recoveryWaitMs: fsCliDefaults.recoveryWaitMs, lockLeaseMs: 0 });
  try {
    return await fn(client.fs);
  } finally {
    await client.close();
  }
}

export function isMissing(err: unknown): boolean {
  return isMangroveError(err) && err.code === 'E_NOT_FOUND';
}

/** Whether `path` names a directory (following links); false when nothing is there. */
export async function isDirectory(fs: FsClient, path: string): Promise<boolean> {
  try {
    return (await fs.stat(path)).type === 'dir';
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/** `to`, or `to/NAME` when `to` is a directory or ends in '/' (as cp, mv and ln do). */
export async function intoDirectory(fs: FsClient, to: string, name: string, what: string): Promise<string> {
  if (!namesDirectory(to) && !(await isDirectory(fs, to))) return to;
  if (name === '') throw new MangroveError('E_BAD_ARGUMENT', `${canonicalPath(to)} is a directory: name the ${what} to make in it`);
  return childPath(to, name);
}

/** `--mode`: octal permission bits. */
export function octal(value: string): number {
  const mode = parseMode(value);
  if (mode === null) throw new InvalidArgumentError('It must be octal permission bits like 755 or 0750.');
  return mode;
}
