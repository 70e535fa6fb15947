/**
 * Repopulation, the second half of the RAM directory rebuild (SPEC.md M14;
 * docs/recovery.md). Every node has dropped its RAM directory (the homes'
 * page-home machines) and now registers each copy it holds with the page's
 * home, which rebuilds who holds what from the registrations alone.
 *
 * Safety claims:
 * - The newest copy wins. A home keeps, per page, the registered copy with
 *   the highest version (at equal versions, the one registered as owner);
 *   every older copy is told to go, and a registration is answered only once
 *   each holder told so has acknowledged it, so by the time every node
 *   reports repopulation complete no stale copy is left anywhere.
 * - A copy no node registered as owner (its owner died) counts only if it is
 *   at least as new as the freshest durable copy on the core holders; then
 *   it is marked dirty when it is newer, so it reaches the disks again.
 * - A holder's standing only goes down within a round: owner, then reader,
 *   then drop. Answers and demotions may cross on the wire; the lowest one
 *   received is the one that holds.
 *
 * One Repopulation serves one round on one node, as holder and as home.
 */
import { present } from '../../bus/assert.js';
import { MangroveError } from '../../bus/errors.js';
import { REGISTER_PAGES_MAX } from '../../bus/messages/page.js';
import { addressFromKey, addressKey } from '../../machines/memory/address.js';
import type { EngineParts } from '../engine/engine-parts.js';
import type { CopyVerdict, PageFacts, RegisteredCopy } from '../pages/page-holder.js';
import { homeFacts } from '../engine/applets/home.js';
import { arenaBase, arenaOf } from '../pages/page-space.js';

/**
 * A verdict as it crosses the wire: the page's address as 16 bytes. `keep`:
 * the home cannot rule now (its arena here did not check out, so nothing
 * of it is written); the holder keeps its copy read-only, unregistered.
 */
export interface WireVerdict {
  addr: Uint8Array;
  as: 'owner' | 'reader' | 'drop' | 'keep';
  dirty?: boolean;
  holders?: string[];
  volatile?: boolean;
  gen?: number;
}

/**
 * What the round's quiesce named: its participants (a copy registers with
 * its home only if the home is one) and the coordinator's node database
 * version (the arena table every node rules by, at least).
 */
export interface RoundScope {
  participants: readonly string[];
  dbVersion: number;
}

/** Who holds a page, as the home rebuilds it: the newest copy's node, and the readers of that version. */
export interface RebuiltPage {
  owner: string;
  readers: string[];
  version: number;
}

interface Candidate {
  node: string;
  version: number;
  owner: boolean;
  dirty: boolean;
}

interface PageTable {
  /** The newest copy registered; null when every registered copy was older than the durable one. */
  best: Candidate | null;
  readers: Set<string>;
  /** The freshest durable version, once it had to be asked for. */
  durable?: number;
}

const RANK = { drop: 0, reader: 1, owner: 2 } as const;

export class Repopulation {
  /** Holder side: the homes' answers, and the demotions that may have crossed them. */
  private readonly verdicts = new Map<bigint, CopyVerdict>();
  private readonly caps = new Map<bigint, 'reader' | 'drop'>();
  private registered = false;
  /** The node database version the round rules by: the quiesce's, raised by the repopulate's (the newest a participant has). */
  private dbVersion: number;
  /** Home side: the page table being rebuilt, and one resolution at a time per page. */
  private readonly table = new Map<bigint, PageTable>();
  private readonly lanes = new Map<bigint, Promise<unknown>>();

  constructor(
    readonly round: number,
    private readonly engine: EngineParts,
    private readonly scope: RoundScope,
  ) {
    this.dbVersion = scope.dbVersion;
  }

  // ---- As a holder ----

  /**
   * Registers every copy this node holds with its page's home, and applies
   * what the homes decide. Copies of pages whose home is not one of the
   * round's participants (it is down or cut off) are kept unregistered and
   * unread (`shelve`) until a later round, after the arena is handed on,
   * registers them with the new home. Every node rules by the same arena
   * table: at least the coordinator's.
   */
  async registerCopies(timeoutMs: number, dbVersion: number): Promise<void> {
    this.dbVersion = Math.max(this.dbVersion, dbVersion);
    await this.caughtUp(timeoutMs);
    const byHome = new Map<string, RegisteredCopy[]>();
    const held = this.engine.holder.copies();
    for (const copy of held) {
      const home = this.homeOrNull(copy.addr);
      if (home === null || !this.scope.participants.includes(home)) continue;
      byHome.set(home, [...(byHome.get(home) ?? []), copy]);
    }
    const calls: Promise<void>[] = [];
    for (const [home, copies] of byHome) {
      for (let i = 0; i < copies.length; i += REGISTER_PAGES_MAX) calls.push(this.registerWith(home, copies.slice(i, i + REGISTER_PAGES_MAX), timeoutMs));
    }
    await Promise.all(calls);
    this.registered = true;
    for (const addr of this.verdicts.keys()) this.engine.holder.settle(addr, present(this.effective(addr), 'a page with an answer has a verdict'));
    for (const copy of held) if (!this.verdicts.has(copy.addr)) this.engine.holder.shelve(copy.addr);
  }

  /** A home found a newer copy elsewhere: this one is kept read-only, or goes. */
  demote(addr: bigint, as: 'reader' | 'drop'): void {
    const cap = this.caps.get(addr);
    if (cap === 'drop' || cap === as) return;
    this.caps.set(addr, as);
    const verdict = this.effective(addr);
    if (this.registered && verdict) this.engine.holder.settle(addr, verdict);
  }

  private async registerWith(home: string, copies: readonly RegisteredCopy[], timeoutMs: number): Promise<void> {
    const pages = copies.map((c) => ({ addr: addressKey(c.addr), version: c.version, owner: c.owner, dirty: c.dirty }));
    const answer = await this.engine.calls.call<{ verdicts: WireVerdict[] }>(home, { op: 'register', round: this.round, pages }, timeoutMs);
    for (const v of answer.verdicts) {
      const verdict = toVerdict(v);
      if (verdict) this.verdicts.set(addressFromKey(v.addr), verdict);
    }
  }

  /**
   * Waits (at most `timeoutMs`) until this node's node database is at least
   * the coordinator's, so it names the homes the round's other nodes name.
   */
  private async caughtUp(timeoutMs: number): Promise<void> {
    const { clock, db, settings } = this.engine.deps;
    const until = clock.now() + timeoutMs;
    while (db().version < this.dbVersion) {
      if (clock.now() >= until) {
        throw new MangroveError('E_RECOVERING', `this node's node database (version ${db().version}) is still behind the round's (${this.dbVersion}); the round is tried again`);
      }
      await new Promise<void>((resolve) => clock.setTimeout(resolve, settings.retryMs));
    }
  }

  /** The home's verdict for `addr`, lowered by any demotion that crossed it. */
  private effective(addr: bigint): CopyVerdict | undefined {
    const verdict = this.verdicts.get(addr);
    const cap = this.caps.get(addr);
    if (!verdict || cap === undefined || RANK[verdict.as] <= RANK[cap]) return verdict;
    return cap === 'drop' || verdict.as === 'drop' ? { as: 'drop' } : { ...verdict, as: 'reader' };
  }

  private homeOrNull(addr: bigint): string | null {
    try {
      return this.engine.homeOf(addr);
    } catch {
      return null;
    }
  }

  // ---- As a home ----

  /** `from`'s copies of pages this node is home to: a verdict for each, once it holds. */
  async register(from: string, copies: readonly RegisteredCopy[]): Promise<WireVerdict[]> {
    await this.caughtUp(this.engine.deps.settings.timeoutMs);
    // A verdict names core holders: only ones every directory replica knows of (a replica behind is caught up first).
    for (const arena of new Set(copies.map((c) => arenaOf(c.addr)))) if (this.homeOrNull(arenaBase(arena)) === this.engine.deps.self) await this.engine.directoryCaughtUp(arena);
    return Promise.all(copies.map((copy) => this.inLane(copy.addr, () => this.resolve(from, copy))));
  }

  /** The rebuilt RAM directory: who holds each page registered here. */
  rebuilt(): [bigint, RebuiltPage][] {
    const out: [bigint, RebuiltPage][] = [];
    for (const [addr, t] of this.table) {
      if (t.best) out.push([addr, { owner: t.best.node, readers: [...t.readers].filter((r) => r !== t.best?.node).sort(), version: t.best.version }]);
    }
    return out;
  }

  private inLane<T>(addr: bigint, work: () => Promise<T>): Promise<T> {
    const before = this.lanes.get(addr) ?? Promise.resolve();
    const run = before.then(work, work);
    this.lanes.set(addr, run.catch(() => undefined));
    return run;
  }

  private async resolve(from: string, copy: RegisteredCopy): Promise<WireVerdict> {
    const addr = addressKey(copy.addr);
    const facts = homeFacts(this.engine, copy.addr);
    if (facts instanceof MangroveError) {
      // Not a page any more (freed): the copy is garbage.
      if (facts.code === 'E_NOT_RESERVED' || facts.code === 'E_NOT_MATERIALIZED') return { addr, as: 'drop' };
      // The arena did not check out here: a copy as new as the disks' goes, a newer one waits.
      if (facts.code === 'E_UNREACHABLE') return { addr, as: copy.dirty ? 'keep' : 'drop' };
      // Not this node's arena by its node database: the arena table changed within the round, which is tried again.
      throw facts;
    }
    const mine: Candidate = { node: from, ...copy };
    const t = this.table.get(copy.addr);
    if (!t) return this.first(addr, copy.addr, mine, facts);
    return this.against(addr, copy.addr, t, mine, facts);
  }

  /** The first copy registered for a page: it wins, unless a durable copy is newer than an ownerless one. */
  private async first(addr: Uint8Array, page: bigint, mine: Candidate, facts: PageFacts): Promise<WireVerdict> {
    const t: PageTable = { best: mine, readers: new Set() };
    this.table.set(page, t);
    if (mine.owner) return owner(addr, mine.dirty, facts);
    t.durable = await this.durableVersion(page, facts);
    if (t.durable > mine.version) {
      t.best = null;
      return { addr, as: 'drop' };
    }
    return owner(addr, mine.dirty || t.durable < mine.version, facts);
  }

  private async against(addr: Uint8Array, page: bigint, t: PageTable, mine: Candidate, facts: PageFacts): Promise<WireVerdict> {
    const best = t.best;
    if (best === null) {
      // Every copy so far was older than the disks'; one as new or newer stands.
      const durable = t.durable ?? 0;
      if (mine.version < durable) return { addr, as: 'drop' };
      t.best = mine;
      return owner(addr, mine.dirty || mine.version > durable, facts);
    }
    if (mine.version < best.version) return { addr, as: 'drop' };
    if (mine.version === best.version && !(mine.owner && !best.owner)) {
      t.readers.add(mine.node);
      return { addr, as: 'reader', dirty: false, holders: facts.holders, volatile: facts.volatile, gen: facts.gen };
    }
    // Newer, or the owner of the same version: it takes over, and what was there steps down.
    const stale = mine.version > best.version;
    const demoted = stale ? [best.node, ...t.readers] : [best.node];
    await Promise.all(demoted.filter((n) => n !== mine.node).map((n) => this.demoteAt(n, page, stale ? 'drop' : 'reader')));
    if (stale) t.readers.clear();
    else t.readers.add(best.node);
    t.readers.delete(mine.node);
    t.best = mine;
    return owner(addr, mine.dirty || best.dirty, facts);
  }

  private demoteAt(node: string, page: bigint, as: 'reader' | 'drop'): Promise<unknown> {
    return this.engine.calls.call(node, { op: 'demote', round: this.round, addr: addressKey(page), as });
  }

  /**
   * The freshest durable version of `page` on its live core holders (0 if
   * none has it). A live holder that does not answer fails the registration
   * (the round is tried again): it may hold a newer version than the copy.
   */
  private async durableVersion(page: bigint, facts: PageFacts): Promise<number> {
    if (facts.volatile) return 0;
    const { deps } = this.engine;
    const live = facts.holders.filter((h) => h === deps.self || deps.isAlive(h));
    const found = await Promise.all(
      live.map((h) =>
        h === deps.self
          ? Promise.resolve(deps.store.get(page)?.version ?? 0)
          : this.engine.calls.call<{ version: number } | null>(h, { op: 'fetch', addr: addressKey(page) }).then((c) => c?.version ?? 0),
      ),
    );
    return Math.max(0, ...found);
  }
}

function owner(addr: Uint8Array, dirty: boolean, facts: PageFacts): WireVerdict {
  return { addr, as: 'owner', dirty, holders: facts.holders, volatile: facts.volatile, gen: facts.gen };
}

/** What a holder does with a verdict: nothing for `keep`. */
function toVerdict(v: WireVerdict): CopyVerdict | undefined {
  if (v.as === 'keep') return undefined;
  if (v.as === 'drop') return { as: 'drop' };
  return { as: v.as, dirty: v.dirty ?? false, facts: { holders: v.holders ?? [], volatile: v.volatile ?? false, gen: v.gen ?? 0 } };
}
