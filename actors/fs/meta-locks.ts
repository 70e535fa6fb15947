/**
 * Who may change a piece of metadata (SPEC.md M21, M22): an update of a
 * directory, an inode or a fileset's inode table holds the page's engine lock,
 * exclusive, for the whole update, so updates from different nodes never
 * interleave; on this node, updates of one page also queue here first, for
 * the engine's locks are per client and every update of this node's file
 * system is the one client.
 *
 * Pages are locked in address order, so two updates that need the same two
 * pages never wait on each other. A lock the engine could not give back (the
 * cluster began a rebuild just then) stays held by this node until a retry
 * gives it back, and the next update here of that page goes on under it: the
 * lock is never left held with nobody knowing. A lock held here dies with
 * this node (the engine releases a failed node's locks in the rebuild, M14),
 * and what the update left half done is found by its transaction mark.
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
  /** Engine locks this node holds that an unlock failed to give back. */
  private readonly stuck = new Set<bigint>();
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
    if (this.stuck.has(addr)) return;
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

  private async engineUnlock(addr: bigint): Promise<void> {
    try {
      await this.pages.unlock(addr);
      this.stuck.delete(addr);
    } catch (err) {
      this.stuck.add(addr);
      this.log.warn({ addr: formatAddress(addr), err: String(err) }, 'a metadata lock was not given back; retried');
      this.clock.setTimeout(() => void this.retryUnlock(addr), UNLOCK_RETRY_MS);
    }
  }

  /** Gives a stuck lock back in its own turn of the queue, so no update is running under it meanwhile. */
  private async retryUnlock(addr: bigint): Promise<void> {
    if (this.closed || !this.stuck.has(addr)) return;
    const release = await this.queue(addr);
    try {
      if (this.stuck.has(addr)) await this.engineUnlock(addr);
    } finally {
      release();
    }
  }
}
