/**
 * Byte-range locks on this node (SPEC.md M21): each request runs the
 * byte-range-lock machine (machines/fs/byte-range-lock.ts) against the
 * file's lock page, a volatile page allocated on the file's first lock, and
 * this runner does the machine's I/O: the engine's page locks (as a client
 * of its own per handle, so two handles of this node exclude each other as
 * handles of two nodes do), reads and writes of the table, and the engine's
 * page-change notification (M10) as the wake-up of a waiting request.
 *
 * Records of nodes that failed or restarted are dropped from a table when it
 * is read, so their locks are released by recovery; a membership change
 * wakes every waiter to look again. A wait lasts at most `waitMs`, then
 * E_TIMEOUT (the client asks again), so a call never outlives its caller.
 */
import { createActor, type InspectionEvent } from 'xstate';
import type { Observable } from 'rxjs';
import { MangroveError, isMangroveError, type ErrorCode } from '../../bus/errors.js';
import { byteRangeLockMachine, type ByteRangeCommand, type ByteRangeLockEvent } from '../../machines/fs/byte-range-lock.js';
import { decodeRangeLocks, encodeRangeLocks, withoutNodes, type RangeLock } from '../../machines/fs/byte-ranges.js';
import type { PageChange } from '../pages/page-holder.js';
import type { FsContext } from './fs-context.js';
import { FsPages, type EngineCalls } from './fs-pages.js';

export type RangeOutcome = { ok: true; found?: boolean } | { ok: false; code: ErrorCode; message: string; conflict?: RangeLock };

export class RangeLocks {
  private readonly wakers = new Set<() => void>();

  constructor(
    private readonly ctx: FsContext,
    private readonly engine: EngineCalls,
    private readonly changes$: Observable<PageChange>,
    /** The node's inspection hook: `machines watch` sees every request's machine (M26). */
    private readonly inspect?: (e: InspectionEvent) => void,
  ) {}

  /** Every waiting request looks at its table again (a node failed or came back). */
  wakeAll(): void {
    for (const w of [...this.wakers]) w();
  }

  /** Puts `lock` back in the table at `page` if it is missing (its page lost its records with a failed node); granted if it is there. */
  async reassert(page: bigint, lock: RangeLock): Promise<RangeOutcome> {
    const table = decodeRangeLocks(await readLockPage(this.ctx.pages, page));
    if (table.some((l) => l.owner === lock.owner && l.start === lock.start && l.end === lock.end && l.mode === lock.mode)) return { ok: true };
    return this.run(page, lock, 'lock', false, 1);
  }

  /** Takes (or, `op: 'release'`, gives back) `lock` on the lock page at `page`. */
  run(page: bigint, lock: RangeLock, op: 'lock' | 'release', wait: boolean, waitMs: number): Promise<RangeOutcome> {
    const pages = new FsPages(this.engine, `${this.ctx.pages.client}/${lock.owner}`);
    const actor = createActor(byteRangeLockMachine, { input: { request: lock, op, wait }, inspect: this.inspect });
    return new Promise<RangeOutcome>((resolve) => {
      let settled = false;
      const wake = () => actor.send({ type: 'PAGE_CHANGED' });
      const sub = this.changes$.subscribe((c) => {
        if (c.addr === page) wake();
      });
      this.wakers.add(wake);
      const timer = this.ctx.clock.setTimeout(() => actor.send({ type: 'CANCEL' }), waitMs);
      const finish = (outcome: RangeOutcome) => {
        if (settled) return;
        settled = true;
        sub.unsubscribe();
        this.wakers.delete(wake);
        this.ctx.clock.clearTimeout(timer);
        actor.stop();
        resolve(outcome);
      };
      const fail = (err: unknown) => {
        const e = isMangroveError(err) ? err : new MangroveError('E_INTERNAL', String(err));
        actor.send({ type: 'FAILED', code: e.code, message: e.message });
      };
      actor.on('*', (cmd: ByteRangeCommand) => {
        const answer = this.command(pages, page, cmd);
        answer.then((event) => actor.send(event), fail);
      });
      actor.subscribe((snap) => {
        if (snap.status !== 'done') return;
        const c = snap.context;
        switch (snap.value) {
          case 'granted':
            return finish({ ok: true });
          case 'released':
            return finish({ ok: true, found: c.found });
          case 'refused':
            return finish({ ok: false, code: 'E_LOCKED', message: `bytes [${c.conflict!.start}, ${c.conflict!.end}) are locked ${c.conflict!.mode} by another handle`, conflict: c.conflict! });
          case 'cancelled':
            return finish({ ok: false, code: 'E_TIMEOUT', message: `the lock was still held by another handle after ${waitMs} ms; ask again to go on waiting` });
          default:
            return finish({ ok: false, code: c.failure?.code ?? 'E_INTERNAL', message: c.failure?.message ?? 'the lock request failed' });
        }
      });
      actor.start();
      actor.send({ type: 'START' });
    });
  }

  private async command(pages: FsPages, page: bigint, cmd: ByteRangeCommand): Promise<ByteRangeLockEvent> {
    switch (cmd.type) {
      case 'lockPage':
        await pages.lock(page, cmd.mode, true);
        return { type: 'PAGE_LOCKED' };
      case 'readPage': {
        const table = decodeRangeLocks(await readLockPage(pages, page));
        // A failed node's or a restarted node's records are not locks any more (M21: released by recovery).
        return { type: 'PAGE_READ', table: withoutNodes(table, (n, e) => this.ctx.isLive(n, e)).table };
      }
      case 'writePage':
        await pages.write(page, encodeRangeLocks(cmd.table));
        return { type: 'PAGE_WRITTEN' };
      case 'unlockPage':
        await pages.unlock(page);
        return { type: 'PAGE_UNLOCKED' };
    }
  }
}

/**
 * A lock page read. Its newest copy may have died with a node until the
 * rebuild restores it (E_PAGE_LOST): no one can say then which ranges are
 * locked, so the caller waits the rebuild out (E_RECOVERING, which clients
 * try again) rather than read or write past a lock it cannot see.
 */
export async function readLockPage(pages: FsPages, page: bigint): Promise<Uint8Array> {
  try {
    return await pages.read(page);
  } catch (err) {
    if (isMangroveError(err) && err.code === 'E_PAGE_LOST') throw new MangroveError('E_RECOVERING', `the byte-range locks of this file are being restored after a node failure; try again (${err.message})`);
    throw err;
  }
}
