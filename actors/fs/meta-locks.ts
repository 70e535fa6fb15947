/**
 * Who may change a piece of metadata (SPEC.md M21, M22): an update of a
 * directory, an inode or a fileset's inode table holds the page's engine lock,
 * exclusive, for the whole update, so updates from different nodes never
 * interleave; on this node, updates of one page also queue here first, for
 * the engine's locks are per client and every update of this node's file
 * system is the one client.
 *
 * Pages are locked in address order, so two updates that need the same two
 * pages never wait on each other. Every update asks the engine for the lock,
 * always: the engine's locks are re-entrant per client, so one this node
 * still holds is granted again at once, and one a rebuild released (this
 * node was counted out for a moment) is taken anew rather than assumed.
 * An unlock the engine did not answer (a rebuild began just then) leaves a
 * hold whose fate is unknown: it is given back in the background, in its
 * own turn of the page's queue, until the engine answers; an answer that
 * this node holds no lock there means the hold is gone already. A lock held
 * here dies with this node (the engine releases a failed node's locks in the
 * rebuild, M14), and what the update left half done is found by its
 * transaction mark.
 */
import type { Clock } from '../../bus/clock.js';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import { formatAddress } from '../../machines/memory/address.js';
import type { Log } from '../log.js';
import type { FsPages } from './fs-pages.js';

/** How long an update waits for a page another node's update holds, in all its tries. */
export const META_LOCK_WAIT_MS = 30_000;
/** The pause before giving back a lock the engine refused to release, again. */
const UNLOCK_RETRY_MS = 250;
/** Refusals a lock waits out (another node's update, a rebuild) rather than failing the update. */
const WAITED_OUT: ReadonlySet<string> = new Set(['E_TIMEOUT', 'E_LOCKED']);

export class MetaLocks {
  /** Per page, the tail of this node's queue for it. */
  private readonly queues = new Map<bigint, Promise<void>>();
  /** Per page, holds of the engine's lock whose unlock went unanswered: given back in the background. */
  private readonly stuck = new Map<bigint, number>();
  private closed = false;

  constructor(
    private readonly pages: FsPages,
    private readonly clock: Clock,
    private readonly log: Log,
  ) {}

  /** Runs `work` holding every page of `addrs` exclusively, here and in the cluster. */
  async with<T>(addrs: bigint[], work: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(addrs)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const releases: (() => void)[] = [];
    const locked: bigint[] = [];
    try {
      for (const a of sorted) {
        releases.push(await this.queue(a));
        await this.engineLock(a);
        locked.push(a);
      }
      return await work();
    } finally {
      await Promise.all(locked.map((a) => this.engineUnlock(a)));
      for (const r of releases) r();
    }
  }

  close(): void {
    this.closed = true;
  }

  /** Waits for this node's earlier updates of `addr`; resolves with the release of this one's turn. */
  private async queue(addr: bigint): Promise<() => void> {
    const before = this.queues.get(addr) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = before.then(() => mine);
    this.queues.set(addr, tail);
    await before;
    return () => {
      release();
      if (this.queues.get(addr) === tail) this.queues.delete(addr);
    };
  }

  private async engineLock(addr: bigint): Promise<void> {
    const start = this.clock.now();
    for (;;) {
      try {
        return await this.pages.lock(addr, 'exclusive', true);
      } catch (err) {
        if (!isMangroveError(err) || !WAITED_OUT.has(err.code)) throw err;
        if (this.clock.now() - start >= META_LOCK_WAIT_MS) {
          throw new MangroveError('E_BUSY', `the metadata at ${formatAddress(addr)} stayed locked by another node's update for ${META_LOCK_WAIT_MS} ms; try again`);
        }
      }
    }
  }

  /** Gives one hold back; one the engine did not answer is counted stuck and given back later. */
  private async engineUnlock(addr: bigint): Promise<void> {
    if (await this.unlockOnce(addr)) return;
    this.stuck.set(addr, (this.stuck.get(addr) ?? 0) + 1);
    this.retrySoon(addr);
  }

  /** True once the hold is given back, or is known gone (the engine says this node holds none). */
  private async unlockOnce(addr: bigint): Promise<boolean> {
    try {
      await this.pages.unlock(addr);
      return true;
    } catch (err) {
      if (isMangroveError(err) && err.code === 'E_BAD_ARGUMENT') return true;
      this.log.warn({ addr: formatAddress(addr), err: String(err) }, 'a metadata lock was not given back; retried');
      return false;
    }
  }

  private retrySoon(addr: bigint): void {
    this.clock.setTimeout(() => void this.retryUnlock(addr), UNLOCK_RETRY_MS);
  }

  /** Gives the stuck holds of `addr` back in their own turn of the queue, so no update is running under them meanwhile. */
  private async retryUnlock(addr: bigint): Promise<void> {
    if (this.closed || !this.stuck.has(addr)) return;
    const release = await this.queue(addr);
    try {
      for (let n = this.stuck.get(addr) ?? 0; n > 0; n--) {
        if (!(await this.unlockOnce(addr))) return this.retrySoon(addr);
        if (n === 1) this.stuck.delete(addr);
        else this.stuck.set(addr, n - 1);
      }
    } finally {
      release();
    }
  }
}
