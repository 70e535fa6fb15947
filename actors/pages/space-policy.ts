/**
 * The policy element's view of the cluster's space (M12): free RAM and disk
 * per node, as the nodes last reported it (`space` answers). Placement asks
 * it which nodes can take more pages: a node with a full disk is never made
 * a core holder, and among the rest the emptier disks come first.
 *
 * Reports older than `ttlMs` are asked for again before a placement; a node
 * that does not answer keeps its last report (or none: it ranks after the
 * nodes that reported, never before).
 */
import type { Clock } from '../../bus/clock.js';
import type { SpaceReport } from '../../bus/messages/page.js';

interface Seen {
  freeDiskPages: number;
  freeRamBytes: number;
  at: number;
}

export class SpacePolicy {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly clock: Clock,
    private readonly ttlMs: number,
  ) {}

  /** Records a node's report. */
  note(report: SpaceReport): void {
    this.seen.set(report.node, {
      freeDiskPages: report.disk.freePages,
      freeRamBytes: Math.max(0, report.ram.budgetBytes - report.ram.usedBytes),
      at: this.clock.now(),
    });
  }

  /** Asks `nodes` whose reports are older than the policy's ttl, and records the answers. */
  async refresh(nodes: readonly string[], ask: (id: string) => Promise<SpaceReport>): Promise<void> {
    const now = this.clock.now();
    const stale = nodes.filter((id) => {
      const s = this.seen.get(id);
      return s === undefined || now - s.at >= this.ttlMs;
    });
    const reports = await Promise.all(stale.map((id) => ask(id).catch(() => null)));
    for (const r of reports) if (r) this.note(r);
  }

  /** Free disk pages the node last reported; undefined if it never did. */
  freeDisk(id: string): number | undefined {
    return this.seen.get(id)?.freeDiskPages;
  }

  /** Orders candidate holders: nodes with room first, the emptier disk first; unknown ones after; full ones left out. */
  rank<T extends { id: string }>(candidates: readonly T[]): T[] {
    const room = (c: T) => this.freeDisk(c.id);
    return candidates
      .filter((c) => room(c) !== 0)
      .map((c, i) => ({ c, i, free: room(c) }))
      .sort((a, b) => (a.free === undefined ? 1 : 0) - (b.free === undefined ? 1 : 0) || (b.free ?? 0) - (a.free ?? 0) || a.i - b.i)
      .map((x) => x.c);
  }
}
