/**
 * What a node's page holder (page-holder.ts) keeps per page, kept small
 * because a node keeps one for every page it caches: one record a page
 * (copy state, facts, rounds) and facts shared between the pages they are
 * true of (bench/cache-memory.ts measures what a cached page costs).
 */
import type { CopyMode, PageFacts } from './page-holder.js';

/** A copy's coherence state, packed into PageRecord `bits`: the mode's index here in the low three bits (0: no copy), then three flags. */
const MODES: readonly (CopyMode | undefined)[] = [undefined, 'read', 'write', 'kept', 'incoming'];
const MODE_MASK = 7;
/** This node is the page's owner (its copy is the newest), whatever it may do with it now. */
const OWNER = 8;
/** Paged out (M12): the RAM copy is gone, the same version is in this node's disk cache. */
const PAGED = 16;
/**
 * A reader's copy of a version that may not be durable yet (it came from
 * an owner whose copy was dirty, or a rebuild named this node a reader):
 * should the owner die, it may be the version's last copy, and it may
 * have been read here, so it leaves RAM only once a flush through the
 * home has made that version durable.
 */
const UNFLUSHED = 32;

/**
 * What this node knows of one page: its copy's coherence state, the page's
 * facts, the latest round seen and the round of the reader's copy last
 * dropped. Each part may be there without the others (facts outlive a copy
 * invalidated; a dropped copy's round outlives the copy); the record goes
 * once none is left. One object in one Map a page, its address the RAM
 * cache's key too: a node holds one for every page it caches, about 110
 * bytes with its Map slot, where a Map for each part, each with its own
 * small objects, cost about 290 (bench/cache-memory.ts, 100,000 pages).
 */
export class PageRecord {
  /** The copy's mode and flags (MODES, OWNER, PAGED, UNFLUSHED); 0 when this node holds no copy. */
  bits = 0;
  /** The round the copy came in. */
  round = 0;
  /** What the page's home told this node with its last grant (shared by every page it is true of: never changed). */
  facts: PageFacts | undefined = undefined;
  /** The latest round of a forward or invalidation this node has acted on; 0 for none. */
  seen = 0;
  /** The round of the reader's copy this node last dropped: said again if the home still counts it. */
  dropped: number | undefined = undefined;

  constructor(
    /** The Map's key, and the RAM cache's for the page once this record holds it: one bigint a page. */
    readonly addr: bigint,
  ) {}

  /** A copy comes in: its mode and flags, none paged out. */
  setCopy(mode: CopyMode, owner: boolean, unflushed: boolean): void {
    this.bits = MODES.indexOf(mode) | (owner ? OWNER : 0) | (unflushed ? UNFLUSHED : 0);
  }

  get mode(): CopyMode | undefined {
    return MODES[this.bits & MODE_MASK];
  }

  set mode(mode: CopyMode) {
    this.bits = (this.bits & ~MODE_MASK) | MODES.indexOf(mode);
  }

  get owner(): boolean {
    return (this.bits & OWNER) !== 0;
  }

  set owner(on: boolean) {
    this.bits = on ? this.bits | OWNER : this.bits & ~OWNER;
  }

  get paged(): boolean {
    return (this.bits & PAGED) !== 0;
  }

  set paged(on: boolean) {
    this.bits = on ? this.bits | PAGED : this.bits & ~PAGED;
  }

  get unflushed(): boolean {
    return (this.bits & UNFLUSHED) !== 0;
  }

  set unflushed(on: boolean) {
    this.bits = on ? this.bits | UNFLUSHED : this.bits & ~UNFLUSHED;
  }
}

/** The record of a page this node holds a copy of (in any mode). */
export type CopyState = PageRecord & { mode: CopyMode };

export const holdsCopy = (r: PageRecord): r is CopyState => r.bits !== 0;

/** Distinct facts (and holder lists) kept for sharing; past it the table starts afresh (pages keep theirs). */
const SHARED_FACTS_MAX = 1024;

/**
 * Page facts shared by every page they are true of: most pages of a range
 * have the same core holders, volatility and generation, so a node caching
 * 100,000 pages keeps a handful of facts, not 100,000 (an object and a list,
 * about 110 bytes each). Each is a frozen copy (the lists handed in belong
 * to their callers: a directory entry, a message); `factsOf` hands them out,
 * read only.
 */
export class SharedFacts {
  private readonly facts = new Map<string, PageFacts>();
  private readonly lists = new Map<string, string[]>();

  of(holders: readonly string[], volatile: boolean, gen: number): PageFacts {
    // Only what a key names exactly is shared (node ids, a flag, a generation); anything else is copied as it came.
    if (typeof volatile !== 'boolean' || !Number.isSafeInteger(gen) || Object.is(gen, -0) || !allStrings(holders)) {
      return { holders: [...holders], volatile, gen };
    }
    const list = JSON.stringify(holders);
    const key = `${gen}:${volatile ? 1 : 0}:${list}`;
    const known = this.facts.get(key);
    if (known !== undefined) return known;
    const facts: PageFacts = { holders: this.list(list, holders), volatile, gen };
    Object.freeze(facts);
    if (this.facts.size >= SHARED_FACTS_MAX) this.facts.clear();
    this.facts.set(key, facts);
    return facts;
  }

  private list(key: string, holders: readonly string[]): string[] {
    const known = this.lists.get(key);
    if (known !== undefined) return known;
    const list = [...holders];
    Object.freeze(list);
    if (this.lists.size >= SHARED_FACTS_MAX) this.lists.clear();
    this.lists.set(key, list);
    return list;
  }
}

function allStrings(list: readonly unknown[]): boolean {
  for (let i = 0; i < list.length; i++) if (typeof list[i] !== 'string') return false;
  return true;
}
