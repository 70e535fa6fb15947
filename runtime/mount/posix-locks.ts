/**
 * fcntl and flock locks across mounts (SPEC.md M21, M28). The kernel hands
 * a mount's lock requests to fuse-extras.ts (our addon: the binding has no
 * lock handlers); here each becomes a byte-range lock of the file system on
 * the handle of the open file it came through, marked advisory (it forbids
 * no read or write, as POSIX locks forbid none). So two processes on mounts
 * of two nodes exclude each other as two on one machine do.
 *
 * POSIX rules the file system's (Win32's) do not have are kept here, per
 * open file and lock owner (the process, for fcntl; the open file, for
 * flock): a new lock replaces the owner's own locks where they overlap (an
 * upgrade, a downgrade, a split), and an unlock may cut a piece out of one.
 * Such a change releases the owner's overlapping locks, takes the new one,
 * and takes back the pieces outside it; when the new one is refused, the
 * released ones are taken back. That is not atomic: another owner may get
 * in between (the fcntl manual allows as much for upgrades; flock's says a
 * conversion is not atomic).
 *
 * F_GETLK tries the parts of the range the owner does not hold, and gives
 * them back: a conflict is reported as a write lock over the range asked,
 * by pid 0 (the holder may be on another host). The bytes the owner holds
 * are not looked at: under its write lock no other can hold anything, but
 * under its read lock another's read lock, which a write would meet, goes
 * unreported (an F_SETLK is still refused).
 *
 * Requests of one owner through one open file run one at a time (processes
 * sharing an open file send them together); a waiting request gives up with
 * EINTR when its process is interrupted (the addon's abort signal).
 *
 * After a failover the locks an owner held are taken again on the new
 * node's handle (open-files.ts); the old node's records go when it is
 * counted out, or with its handles' lease.
 */
import { isMangroveError } from '../../bus/errors.js';
import type { MangroveClient } from '../client/pages.js';
import type { Logger } from '../node/logger.js';
import { EAGAIN, EINTR, EIO, errnoOf } from './errno.js';
import type { GetlkAnswer, LockRequest } from './fuse-extras.js';
import type { OpenFiles } from './open-files.js';

type Mode = 'shared' | 'exclusive';
export interface Held {
  start: number;
  end: number;
  mode: Mode;
}

/** A range that reaches to the end of the file and beyond. */
export const TO_EOF = Number.MAX_SAFE_INTEGER;

const overlaps = (a: { start: number; end: number }, start: number, end: number) => a.start < end && start < a.end;

/** The parts of `held` outside [start, end): none, one or two pieces. */
export function outside(held: Held, start: number, end: number): Held[] {
  const out: Held[] = [];
  if (held.start < start) out.push({ ...held, end: Math.min(held.end, start) });
  if (held.end > end) out.push({ ...held, start: Math.max(held.start, end) });
  return out;
}

/** The parts of [start, end) not covered by `held`. */
export function uncovered(held: readonly Held[], start: number, end: number): { start: number; end: number }[] {
  let parts = [{ start, end }];
  for (const h of held) parts = parts.flatMap((p) => (overlaps(h, p.start, p.end) ? outside({ ...p, mode: 'shared' }, h.start, h.end).map(({ start: s, end: e }) => ({ start: s, end: e })) : [p]));
  return parts;
}

/** [start, end) of a POSIX request: `len` 0 reaches past the end of the file. */
export function rangeOf(start: number, len: number): { start: number; end: number } {
  return { start, end: len === 0 ? TO_EOF : Math.min(TO_EOF, start + len) };
}

export class PosixLocks {
  /** By open file (fh), then lock owner: what the owner holds through that file. */
  private readonly held = new Map<number, Map<string, Held[]>>();
  /** The last request of each open file and owner (`fh owner`): the next one runs after it. */
  private readonly turns = new Map<string, Promise<unknown>>();

  constructor(
    private readonly files: OpenFiles,
    private readonly log: Logger,
  ) {
    files.onReopened = (fh, c, handle) => this.reassert(fh, c, handle);
    files.onClosed = (fh) => this.forget(fh);
  }

  handle(req: LockRequest, signal: AbortSignal): Promise<{ errno: number; getlk?: GetlkAnswer }> {
    const owner = req.kind === 'flock' ? `flock:${req.fh}` : `posix:${req.owner}`;
    const turn = `${req.fh} ${owner}`;
    const answer = (this.turns.get(turn) ?? Promise.resolve()).then(() => this.serve(req, owner, signal));
    const last = answer.catch(() => undefined);
    this.turns.set(turn, last);
    void last.then(() => {
      if (this.turns.get(turn) === last) this.turns.delete(turn);
    });
    return answer;
  }

  private async serve(req: LockRequest, owner: string, signal: AbortSignal): Promise<{ errno: number; getlk?: GetlkAnswer }> {
    try {
      if (signal.aborted) return { errno: EINTR };
      if (req.kind === 'flock') {
        const mode = req.op === 'unlock' ? null : req.op;
        return { errno: await this.set(req.fh, req.path, owner, 0, TO_EOF, mode, !req.nonblock, signal) };
      }
      const { start, end } = rangeOf(req.start, req.len);
      if (req.cmd === 'getlk') return await this.test(req.fh, req.path, owner, start, end, req.type === 'write' ? 'exclusive' : 'shared', req.start, req.len);
      const mode = req.type === 'unlock' ? null : req.type === 'write' ? 'exclusive' : 'shared';
      return { errno: await this.set(req.fh, req.path, owner, start, end, mode, req.cmd === 'setlkw', signal) };
    } catch (err) {
      if (err === INTERRUPTED) return { errno: EINTR };
      this.log.warn({ req: { ...req, owner: String(req.owner) }, err: String(err) }, 'a lock request failed');
      return { errno: isMangroveError(err) ? errnoOf(err) : EIO };
    }
  }

  /** Takes the owner's locks again on a new handle of `fh` (the mount moved to another node). */
  async reassert(fh: number, c: MangroveClient, handle: string): Promise<void> {
    for (const [owner, held] of this.held.get(fh) ?? []) {
      for (const h of held) {
        try {
          await takeOn(c, handle, h, true);
        } catch (err) {
          this.log.warn({ fh, owner, lock: h, err: String(err) }, 'a lock held before the failover could not be taken again');
        }
      }
    }
  }

  /** The file was closed: its records went with its handle. */
  forget(fh: number): void {
    this.held.delete(fh);
  }

  /** Sets [start, end) of `owner` to `mode` (null: unlocked); 0 or a negative errno. */
  private async set(fh: number, path: string, owner: string, start: number, end: number, mode: Mode | null, wait: boolean, signal?: AbortSignal): Promise<number> {
    const byOwner = this.held.get(fh) ?? new Map<string, Held[]>();
    const mine = byOwner.get(owner) ?? [];
    const hit = mine.filter((h) => overlaps(h, start, end));
    const kept = mine.filter((h) => !overlaps(h, start, end));
    if (mode !== null && hit.length === 1 && hit[0]!.mode === mode && hit[0]!.start <= start && hit[0]!.end >= end) return 0;
    return this.files.with(fh, path, async (c, handle) => {
      for (const h of hit) await release(c, handle, h);
      const pieces = hit.flatMap((h) => outside(h, start, end));
      if (mode !== null) {
        try {
          await takeOn(c, handle, { start, end, mode }, wait, signal);
        } catch (err) {
          // Refused or interrupted: the owner keeps what it had.
          for (const h of hit) await takeOn(c, handle, h, true).catch(() => undefined);
          if (isMangroveError(err) && err.code === 'E_LOCKED') return EAGAIN;
          throw err;
        }
      }
      for (const p of pieces) await takeOn(c, handle, p, true);
      const now = [...kept, ...pieces, ...(mode === null ? [] : [{ start, end, mode }])];
      if (now.length > 0) byOwner.set(owner, now);
      else byOwner.delete(owner);
      if (byOwner.size > 0) this.held.set(fh, byOwner);
      else this.held.delete(fh);
      return 0;
    });
  }

  private async test(fh: number, path: string, owner: string, start: number, end: number, mode: Mode, reqStart: number, reqLen: number): Promise<{ errno: number; getlk: GetlkAnswer }> {
    const free: GetlkAnswer = { type: 'unlock', start: reqStart, len: reqLen, pid: 0 };
    const parts = uncovered(this.held.get(fh)?.get(owner) ?? [], start, end);
    for (const p of parts) {
      const granted = await this.files.with(fh, path, async (c, handle) => {
        try {
          await takeOn(c, handle, { ...p, mode }, false);
        } catch (err) {
          if (isMangroveError(err) && err.code === 'E_LOCKED') return false;
          throw err;
        }
        await release(c, handle, p);
        return true;
      });
      if (!granted) return { errno: 0, getlk: { type: 'write', start: reqStart, len: reqLen, pid: 0 } };
    }
    return { errno: 0, getlk: free };
  }
}

/**
 * One waiting lock call waits this long on the node, then is asked again:
 * well inside the session's per-call timeout, so a long wait is never taken
 * for a node that stopped answering.
 */
const LOCK_WAIT_SLICE_MS = 2_000;

/** Thrown by a wait whose process was interrupted. */
const INTERRUPTED = new Error('interrupted');

/** Takes `lock` on `handle`, advisory; with `wait`, for as long as it takes, or until `signal` aborts. */
async function takeOn(c: MangroveClient, handle: string, lock: Held, wait: boolean, signal?: AbortSignal): Promise<void> {
  for (;;) {
    if (signal?.aborted) throw INTERRUPTED;
    try {
      await c.fsCall({ op: 'lock', handle, start: lock.start, end: lock.end, mode: lock.mode, wait, waitMs: wait ? LOCK_WAIT_SLICE_MS : undefined, advisory: true });
      return;
    } catch (err) {
      if (!(wait && isMangroveError(err) && err.code === 'E_TIMEOUT')) throw err;
    }
  }
}

/** Gives back `lock` on `handle`; one the node no longer has (its record went with a failover) is gone already. */
async function release(c: MangroveClient, handle: string, lock: { start: number; end: number }): Promise<void> {
  try {
    await c.fsCall({ op: 'unlock', handle, start: lock.start, end: lock.end });
  } catch (err) {
    if (!isMangroveError(err) || err.code !== 'E_NOT_FOUND') throw err;
  }
}
