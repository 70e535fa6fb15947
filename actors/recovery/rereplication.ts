/**
 * Re-replication (SPEC.md M15; docs/recovery.md "Re-replication"): after a
 * failure, the data the failed node was responsible for gets a copy on
 * surviving nodes again without anyone touching it (claims 1(f), 1(g)).
 *
 * Each home scans what it is responsible for, paced (one step every
 * `intervalMs`, at most `rangesPerStep` ranges):
 * - its arenas' directories: a replica that lacks a change (it missed
 *   one, or this node has not compared since it began serving the arena)
 *   is caught up; an arena short of `copies - 1` live named
 *   replicas gets new ones, named by the PAN (the patent's PAN reduplexing
 *   of GDD pages reported under-replicated: the home reports to whichever
 *   node is the PAN at the time, so a PAN that fails is replaced by the next
 *   one on the next step);
 * - its persistent ranges whose core holders include a node counted failed
 *   or gone from the database: each failed holder is replaced by a live
 *   node that gets every flushed page of the range from a surviving
 *   holder's disk (core-holders.ts `reduplex`, the same path a flush takes),
 *   most endangered first (one live copy before two).
 * Work that fails (no disk space, a node down, no quorum) is simply found
 * again on the next step. Nothing runs while the node does not serve (a
 * rebuild) or has no quorum (M17: the directory is not written without it).
 *
 * `status()` counts what is left: pages of ranges short of their core
 * holders, and arenas short of directory replicas, for `status`,
 * `/metrics` and the live view.
 */
import type { Clock } from '../../bus/clock.js';
import { addressKey, formatAddress } from '../../machines/memory/address.js';
import { arenasServedBy } from '../../machines/membership/node-db.js';
import type { DirectoryEntry } from '../../machines/memory/directory.js';
import type { EngineParts } from '../engine/engine-parts.js';
import type { DirectoryReplicas } from '../pages/directory-replicas.js';
import { Paced } from './paced.js';

/** Directory entries one count of the under-replicated pages reads; past it the count says so (`partial`). */
export const SCAN_ENTRIES_MAX = 100_000;

export interface ReReplicationStatus {
  /** Persistent pages whose live core holders are fewer than their copies. */
  pagesUnderReplicated: number;
  rangesUnderReplicated: number;
  /** Arenas this node serves that lack directory replicas. */
  arenasUnderReplicated: number;
  /** Pages copied to new core holders since the start. */
  reReplicatedPages: number;
  /** The count stopped at SCAN_ENTRIES_MAX entries. */
  partial: boolean;
}

/** Re-replication's status with the collection's count: copies on this node's disk dropped because nothing names it for them any more (disk-gc.ts). */
export type ReplicationReport = ReReplicationStatus & { collectedCopies: number };

export interface ReReplicationDeps {
  engine: EngineParts;
  replicas: DirectoryReplicas;
  clock: Clock;
  intervalMs: number;
  rangesPerStep: number;
  /** Whether the node serves (not in a rebuild). */
  serving(): boolean;
}

interface Endangered {
  entry: DirectoryEntry;
  live: number;
}

export class ReReplication {
  private readonly loop: Paced;
  private running = false;

  constructor(private readonly deps: ReReplicationDeps) {
    this.loop = new Paced(deps.clock, deps.intervalMs, () => this.step());
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  status(): ReReplicationStatus {
    const { engine } = this.deps;
    let pages = 0;
    let ranges = 0;
    let read = 0;
    for (const entry of this.entries()) {
      if (++read > SCAN_ENTRIES_MAX) break;
      if (this.liveHolders(entry) < entry.copies) {
        pages += entry.pages;
        ranges++;
      }
    }
    return {
      pagesUnderReplicated: pages,
      rangesUnderReplicated: ranges,
      arenasUnderReplicated: this.deps.replicas.shortfall(this.servedArenas()).size,
      reReplicatedPages: engine.stats.reReplicatedPages,
      partial: read > SCAN_ENTRIES_MAX,
    };
  }

  /** One paced step: a directory short of replicas, then the most endangered ranges. */
  private async step(): Promise<void> {
    const { engine } = this.deps;
    if (this.running || !this.deps.serving() || !engine.deps.quorate()) return;
    this.running = true;
    try {
      for (const arena of this.servedArenas()) {
        if (!this.deps.replicas.behindOn(arena)) continue;
        await this.deps.replicas.catchUp(arena).catch((err: unknown) => engine.deps.log.warn({ arena, err: String(err) }, 'a directory replica is not caught up yet; tried again'));
      }
      for (const [arena] of this.deps.replicas.shortfall(this.servedArenas())) {
        await this.deps.replicas.topUp(arena).catch((err: unknown) => engine.deps.log.warn({ arena, err: String(err) }, 'directory replicas not restored yet; tried again'));
        break;
      }
      for (const { entry } of this.endangered().slice(0, this.deps.rangesPerStep)) {
        await engine.scheduler
          .dispatch('peer.reduplex', { op: 'reduplex', addr: addressKey(entry.start) })
          .catch((err: unknown) => engine.deps.log.warn({ range: formatAddress(entry.start), err: String(err) }, 're-replication of a range failed; tried again'));
      }
    } finally {
      this.running = false;
    }
  }

  /** Ranges that lost a core holder and have a live one to copy from, fewest live copies first. */
  private endangered(): Endangered[] {
    const out: Endangered[] = [];
    let read = 0;
    for (const entry of this.entries()) {
      if (++read > SCAN_ENTRIES_MAX) break;
      const live = this.liveHolders(entry);
      if (live > 0 && live < entry.holders.length) out.push({ entry, live });
    }
    return out.sort((a, b) => a.live - b.live);
  }

  /** Persistent, materialized ranges of the arenas this node serves. */
  private *entries(): Generator<DirectoryEntry> {
    const { space } = this.deps.engine;
    for (const arena of this.servedArenas()) {
      const a = BigInt(arena);
      if (!space.hasDirectory(a) || this.deps.engine.arenaRefusal(a)) continue;
      for (const entry of space.directory(a).entries()) if (entry.state === 'materialized' && !entry.volatile) yield entry;
    }
  }

  private liveHolders(entry: DirectoryEntry): number {
    const { deps } = this.deps.engine;
    return entry.holders.filter((h) => h === deps.self || deps.isAlive(h)).length;
  }

  private servedArenas(): number[] {
    const { deps } = this.deps.engine;
    return arenasServedBy(deps.db(), deps.self).map((a) => a.arena);
  }
}
