/**
 * What a mount needs from FUSE that @cocalc/fuse-native does not give,
 * through our addon in native/ (`npm run build:native`), for every mount
 * made after setExtrasHandler, provided loadFuseExtras ran before fuse-native
 * was imported (the addon takes over fuse.node's calls to libfuse's
 * fuse_new):
 * - fcntl (POSIX) and flock locks, handed to JavaScript so that the mount
 *   can hold them cluster-wide (fuse-native gives libfuse no lock operations,
 *   so the kernel would keep such locks on this host);
 * - utimens with both times as given (fuse-native hands its handler the
 *   access time twice, and turns "now" and "leave as it is" into dates);
 * - direct I/O for files opened to write (no page cache: a program that
 *   keeps a file open reads what other mounts wrote), chosen in C.
 *
 * Each request waits on a FUSE thread until its handler's promise settles, so
 * an F_SETLKW may take as long as the lock is held elsewhere. Closing a file
 * sends an unlock of the whole file for the closer's owner (a flock unlock
 * too, once flock was used on that open file).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EIO } from './errno.js';

export interface PosixLockRequest {
  kind: 'posix';
  /** Inside the mount, as fuse-native's operations see it. */
  path: string;
  /** The handle fuse-native's open or create gave the file. */
  fh: number;
  cmd: 'getlk' | 'setlk' | 'setlkw';
  type: 'read' | 'write' | 'unlock';
  start: number;
  /** 0: to the end of the file, however long it grows. */
  len: number;
  /** The locking process (the caller's thread for getlk and unlocks). */
  pid: number;
  /** The kernel's lock owner: one per process file table. */
  owner: bigint;
}

export interface FlockRequest {
  kind: 'flock';
  path: string;
  fh: number;
  op: 'shared' | 'exclusive' | 'unlock';
  nonblock: boolean;
  /** The kernel's lock owner: one per open file description. */
  owner: bigint;
}

export type LockRequest = PosixLockRequest | FlockRequest;

/** utimens(2) on the mount: each time in ms since the epoch, 'now', or null to leave it as it is. */
export interface UtimensRequest {
  kind: 'utimens';
  path: string;
  atimeMs: number | 'now' | null;
  mtimeMs: number | 'now' | null;
}

export type ExtrasRequest = LockRequest | UtimensRequest;

/** F_GETLK's answer: a lock in the way, or type 'unlock' when there is none. */
export interface GetlkAnswer {
  type: 'read' | 'write' | 'unlock';
  start: number;
  len: number;
  pid: number;
}

export interface LockAnswer {
  /** 0, or a negative errno such as -EAGAIN (refused without waiting) or -EINTR. */
  errno: number;
  getlk?: GetlkAnswer;
}

/**
 * Answers one request. The signal aborts when the locking process is
 * interrupted by a signal, or the mount's session ends; a waiting handler
 * should then answer -EINTR unless it has already granted the lock.
 */
export type ExtrasHandler = (req: ExtrasRequest, signal: AbortSignal) => Promise<LockAnswer>;

interface Addon {
  /** Mounts made from now on call dispatch(id, request), and dispatch(id) to abort that request. */
  install(dispatch: (id: number, req?: ExtrasRequest) => void): void;
  /** False when nothing waits for the answer any more (its mount's session ended). */
  reply(id: number, errno: number, getlk?: GetlkAnswer): boolean;
}

const ADDON = 'runtime/mount/native/build/Release/fuse_extras.node';

let addon: Addon | undefined;
/** Requests whose handler has not settled yet, by id. */
const unsettled = new Map<number, AbortController>();

/** The folder holding package.json, above this file in runtime/ or dist/runtime/. */
function packageRoot(): string {
  const here = fileURLToPath(import.meta.url);
  let dir = dirname(here);
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`No package.json in any folder above ${here}.`);
    dir = up;
  }
  return dir;
}

/** Loads the addon (must run before @cocalc/fuse-native is imported); throws a clear Error naming the missing file if the addon was not built. */
export function loadFuseExtras(): void {
  if (addon) return;
  const require = createRequire(import.meta.url);
  if (require.cache[require.resolve('@cocalc/fuse-native')]) {
    throw new Error('loadFuseExtras() ran after @cocalc/fuse-native was imported: its mounts would keep fcntl and flock locks local.');
  }
  const file = join(packageRoot(), ADDON);
  if (!existsSync(file)) throw new Error(`The FUSE addon ${file} is missing: build it with \`npm run build:native\`.`);
  const module = { exports: {} };
  process.dlopen(module, file, constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL);
  addon = module.exports as Addon;
}

export function fuseExtrasLoaded(): boolean {
  return addon !== undefined;
}

/** The handler's answer, or -EIO when it throws or answers with no errno of 0 or below. */
async function answerOf(handler: ExtrasHandler, req: ExtrasRequest, signal: AbortSignal): Promise<LockAnswer> {
  try {
    const answer = await handler(req, signal);
    return Number.isInteger(answer.errno) && answer.errno <= 0 ? answer : { errno: EIO };
  } catch {
    return { errno: EIO };
  }
}

/** Installs the handler every later mount uses; mounts made before keep theirs. */
export function setExtrasHandler(handler: ExtrasHandler): void {
  const native = addon;
  if (!native) throw new Error('setExtrasHandler() needs loadFuseExtras() first.');
  native.install((id, req) => {
    if (!req) {
      unsettled.get(id)?.abort();
      return;
    }
    const controller = new AbortController();
    unsettled.set(id, controller);
    void answerOf(handler, req, controller.signal).then(({ errno, getlk }) => {
      unsettled.delete(id);
      try {
        native.reply(id, errno, getlk);
      } catch {
        // A getlk answer of the wrong shape.
        native.reply(id, EIO);
      }
    });
  });
}
