/**
 * Collecting copies nobody counts on (SPEC.md M15; docs/recovery.md
 * "Re-replication"): after a failure, re-replication gives a range a new
 * core holder and an arena new directory replicas; a node that was one of
 * the old ones, back from the dead or merely passed over, keeps copies on
 * its disk that nothing names any more. Each node walks its own disk, paced
 * (`pagesPerStep` pages every `intervalMs`), and drops such copies:
 * - a directory page of an arena this node neither serves nor is a named
 *   replica of (the arena table says who is);
 * - a data page whose range, as its home's directory has it, is not
 *   materialized or does not name this node among its core holders.
 *
 * Safety claim: a copy is dropped only when two looks, at least one whole
 * pass apart, both found it unneeded at the same version. A new core holder
 * is given its copies before the home's directory names it
 * (core-holders.ts), and a new replica before the arena table does; a pass
 * takes longer than one such hand-over, so the second look sees the node
 * named and the copy stays. A home that does not answer decides nothing.
 */
import type { Clock } from '../../bus/clock.js';
import { addressKey, PAGE_BYTES } from '../../machines/memory/address.js';
import { arenaEntryOf } from '../../machines/membership/node-db.js';
import type { EngineParts } from '../engine/engine-parts.js';
import { arenaBase, arenaOf, DATA_OFFSET } from '../pages/page-space.js';
import { Paced } from './paced.js';

export interface DiskGcDeps {
  engine: EngineParts;
  clock: Clock;
  intervalMs: number;
  pagesPerStep: number;
  /** Whether the node serves (not in a rebuild). */
  serving(): boolean;
}

/** What a home says of the range holding a page (`peer.holders_of`). */
interface RangeFacts {
  start: string;
  pages: number;
  state: 'reserved' | 'materialized';
  holders: string[];
}

export class DiskGc {
  private readonly loop: Paced;
  private running = false;
  /** Where the walk goes on, and which pass it is in. */
  private cursor = 0n;
  private pass = 0;
  /** Copies found unneeded: their version and the pass that found them. */
  private readonly suspects = new Map<bigint, { version: number; pass: number }>();
  /** Copies dropped since the start. */
  dropped = 0;

  constructor(private readonly deps: DiskGcDeps) {
    this.loop = new Paced(deps.clock, deps.intervalMs, () => this.step());
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  /** One paced step of the walk: look at the next pages, drop what two looks found unneeded. */
  private async step(): Promise<void> {
    const { engine } = this.deps;
    if (this.running || !this.deps.serving() || !engine.deps.quorate()) return;
    this.running = true;
    try {
      const batch = engine.deps.store.scan(this.cursor, this.deps.pagesPerStep);
      if (batch.length === 0) {
        this.cursor = 0n;
        this.pass++;
        return;
      }
      this.cursor = batch[batch.length - 1].addr + 1n;
      const ranges = new Map<bigint, RangeFacts | null | 'unknown'>();
      for (const { addr, page } of batch) {
        const unneeded = await this.unneeded(addr, ranges);
        if (!unneeded) {
          this.suspects.delete(addr);
          continue;
        }
        const seen = this.suspects.get(addr);
        if (seen && seen.version === page.version && seen.pass < this.pass) {
          engine.deps.store.delete(addr);
          this.suspects.delete(addr);
          this.dropped++;
          continue;
        }
        if (!seen || seen.version !== page.version) this.suspects.set(addr, { version: page.version, pass: this.pass });
      }
    } catch (err) {
      engine.deps.log.warn({ err: String(err) }, 'collecting copies nobody counts on failed; tried again');
    } finally {
      this.running = false;
    }
  }

  /** Whether nothing counts on this node's copy of `addr`; false when that cannot be told now. */
  private async unneeded(addr: bigint, ranges: Map<bigint, RangeFacts | null | 'unknown'>): Promise<boolean> {
    const { deps } = this.deps.engine;
    const arena = arenaOf(addr);
    const entry = arenaEntryOf(deps.db(), Number(arena));
    if (!entry) return false;
    if (addr < arenaBase(arena) + DATA_OFFSET) return entry.home !== deps.self && !(entry.replicas ?? []).includes(deps.self);
    const range = await this.rangeOf(addr, entry.home, ranges);
    if (range === 'unknown') return false;
    return range === null || range.state !== 'materialized' || !range.holders.includes(deps.self);
  }

  /** The range holding `addr`, from its home (this node's own directory when it is the home); remembered for the batch. */
  private async rangeOf(addr: bigint, home: string, ranges: Map<bigint, RangeFacts | null | 'unknown'>): Promise<RangeFacts | null | 'unknown'> {
    for (const [start, r] of ranges) {
      if (r && r !== 'unknown' && addr >= start && addr < start + BigInt(r.pages * PAGE_BYTES)) return r;
    }
    const { engine } = this.deps;
    if (home !== engine.deps.self && !engine.deps.isAlive(home)) return 'unknown';
    const r = await engine.calls.call<RangeFacts | null>(home, { op: 'holders_of', addr: addressKey(addr) }).catch(() => 'unknown' as const);
    ranges.set(r && r !== 'unknown' ? BigInt(r.start) : addr, r);
    return r;
  }
}
