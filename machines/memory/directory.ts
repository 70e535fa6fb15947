/**
 * The global disk directory, GDD (SPEC M8, the patent's FIG. 11 and 12): a
 * B+-tree of 4096-byte directory pages stored in the shared address space
 * itself, whose root sits at a well-known address forever, and the linker
 * that inserts and removes its entries. A leaf entry is one reservation
 * range with its state and core holders, the first of them the responsible
 * node (docs/engine.md, Directory). Page layout: machines/memory/directory-page.ts.
 *
 * Pure: every read and write goes through the DirectoryPages accessor the
 * owner gives it (the engine maps it onto its page store).
 *
 * Safety claim: every change commits with ONE final page write. A change
 * that fits rewrites its leaf in place; a split writes every new page at a
 * freshly allocated address first and then rewrites the one ancestor that
 * links them (the root, if the split reaches it: its content moves into new
 * children and it becomes an inner page). A leaf emptied by a removal is
 * unlinked by rewriting its parent. Pages replaced are released only after
 * the commit. So a crash at any write leaves, for whoever reopens the same
 * pages, the directory from before the change or from after it; at worst
 * some allocated pages are never referenced. Memory follows the pages: it is
 * updated after the commit, and dropped (re-read on demand) if the commit
 * write throws, since it may or may not have landed.
 *
 * Entries never overlap. An entry may run past its leaf's upper bound into
 * keys with no entries, so the entry containing an address is either in the
 * address's leaf or the last of the leaf before: a lookup decodes at most
 * two root-to-leaf paths of pages, and decoded pages are cached.
 */
import { MangroveError } from '../../bus/errors.js';
import { checkAddress, checkPageAddress, formatAddress, MAX_ADDRESS } from './address.js';
import { checkEntry, decodeDirectoryPage, describeRange, encodeDirectoryPage, entryEnd, LEVELS_MAX, splitPage } from './directory-page.js';
import type { DirectoryEntry, DirectoryMeta, DirectoryPage, InnerPage, LeafPage } from './directory-page.js';

export type { DirectoryEntry, DirectoryMeta } from './directory-page.js';

/** Where directory pages live: the caller maps these onto its page store. */
export interface DirectoryPages {
  /** The page's 4096 bytes, or undefined if never written. */
  read(addr: bigint): Uint8Array | undefined;
  /** Durable when it returns. Each single write is atomic. */
  write(addr: bigint, data: Uint8Array): void;
  /** A page address never handed out before, for a new directory page. */
  allocate(): bigint;
  /** A directory page no longer referenced (the caller may delete it). */
  release(addr: bigint): void;
}

export interface DirectoryOptions {
  /** Most decoded non-root pages kept in memory; the oldest goes first. */
  cachedPagesMax?: number;
}

export const CACHED_PAGES_MAX_DEFAULT = 16_384;
/** One past the last address: the upper bound of the root's key range. */
const KEYS_END = MAX_ADDRESS + 1n;
const EMPTY_META: DirectoryMeta = { highWater: 0n, superRoot: null };

/** One page on the way from the root to a leaf, with the keys it covers. */
interface Step {
  addr: bigint;
  page: DirectoryPage;
  lo: bigint;
  hi: bigint;
  /** The child taken from an inner page; -1 at the leaf. */
  index: number;
}

/** A change, ready to write: new pages first, then the one page that commits it. */
interface Plan {
  fresh: { addr: bigint; page: DirectoryPage; bytes: Uint8Array }[];
  final: { addr: bigint; page: DirectoryPage; bytes: Uint8Array };
  released: bigint[];
}

export class Directory {
  private readonly cache = new Map<bigint, DirectoryPage>();
  private rootPage: DirectoryPage | undefined;
  /** Entries and pages, once counted; kept up to date from then on. */
  private totals: { entries: number; pages: number } | undefined;
  /** Bumped by every committed change, so an iterator knows to re-seek. */
  private version = 0;

  private constructor(
    private readonly pages: DirectoryPages,
    private readonly root: bigint,
    private readonly cachedPagesMax: number,
  ) {}

  /** Opens the directory rooted at `root`, writing an empty root page if there is none (or only zeros, a fresh page). */
  static open(pages: DirectoryPages, root: bigint, options: DirectoryOptions = {}): Directory {
    checkPageAddress(root);
    const max = options.cachedPagesMax ?? CACHED_PAGES_MAX_DEFAULT;
    if (!Number.isSafeInteger(max) || max < 1) throw new MangroveError('E_BAD_ARGUMENT', `cachedPagesMax is a whole number, at least 1, not ${String(max)}`);
    const dir = new Directory(pages, root, max);
    const data = pages.read(root);
    if (data === undefined || (data.byteLength > 0 && data.every((b) => b === 0))) {
      const empty: LeafPage = { kind: 'leaf', level: 0, entries: [], meta: EMPTY_META };
      pages.write(root, encodeDirectoryPage(root, empty)!);
      dir.rootPage = empty;
      dir.totals = { entries: 0, pages: 1 };
    } else {
      dir.rootPage = dir.decodeRoot(data);
    }
    return dir;
  }

  /** The entry whose range [start, start + pages*4096) contains addr, if any. */
  lookup(addr: bigint): DirectoryEntry | undefined {
    checkAddress(addr);
    const e = this.containing(addr, this.descend(addr));
    return e && copyOf(e);
  }

  /** Adds an entry; refuses one overlapping an existing entry (E_EXISTS) or malformed (E_BAD_ARGUMENT, E_BAD_ADDRESS), changing nothing. */
  insert(entry: DirectoryEntry): void {
    const e = checkEntry(entry);
    const path = this.descend(e.start);
    const leaf = path[path.length - 1];
    const entries = (leaf.page as LeafPage).entries;
    const at = upperBound(entries, e.start);
    const before = at > 0 ? entries[at - 1] : this.lastBefore(leaf);
    const after = at < entries.length ? entries[at] : this.firstFrom(leaf.hi);
    for (const other of [before, after]) {
      if (other !== undefined && other.start < entryEnd(e) && e.start < entryEnd(other)) {
        throw new MangroveError('E_EXISTS', `the range ${describeRange(e.start, e.pages)} overlaps the directory entry ${describeRange(other.start, other.pages)}`);
      }
    }
    const next: LeafPage = { kind: 'leaf', level: 0, entries: [...entries.slice(0, at), e, ...entries.slice(at)], meta: null };
    this.apply(this.plan(path, path.length - 1, next, []), +1);
  }

  /** Removes the entry starting exactly at `start`; returns it, or undefined. */
  remove(start: bigint): DirectoryEntry | undefined {
    checkPageAddress(start);
    const path = this.descend(start);
    const leaf = path[path.length - 1];
    const entries = (leaf.page as LeafPage).entries;
    const at = upperBound(entries, start) - 1;
    if (at < 0 || entries[at].start !== start) return undefined;
    const removed = entries[at];
    const rest = [...entries.slice(0, at), ...entries.slice(at + 1)];
    this.apply(this.planRemoval(path, rest), -1);
    return copyOf(removed);
  }

  /** Entries in address order, starting with the one containing `from` or the first after it. */
  *entries(from = 0n): Generator<DirectoryEntry> {
    checkAddress(from);
    let key = this.containing(from, this.descend(from))?.start ?? from;
    for (;;) {
      const at = this.seek(key);
      if (at === undefined) return;
      const version = this.version;
      let i = at.index;
      for (; i < at.entries.length; i++) {
        yield copyOf(at.entries[i]);
        if (this.version !== version) break;
      }
      if (i < at.entries.length) key = at.entries[i].start + 1n;
      else if (at.hi === KEYS_END) return;
      else key = at.hi;
    }
  }

  count(): number {
    return this.survey().entries;
  }

  /** The record the owner keeps in the root page header: the reservation high-water mark and the super-root address (M7). */
  meta(): { highWater: bigint; superRoot: bigint | null } {
    const m = this.root0().meta ?? EMPTY_META;
    return { highWater: m.highWater, superRoot: m.superRoot };
  }

  setMeta(meta: { highWater: bigint; superRoot: bigint | null }): void {
    if (typeof meta !== 'object' || meta === null) throw new MangroveError('E_BAD_ARGUMENT', `the directory meta record is an object, not ${String(meta)}`);
    const next: DirectoryMeta = { highWater: checkAddress(meta.highWater), superRoot: meta.superRoot === null ? null : checkPageAddress(meta.superRoot) };
    const root = this.root0();
    const now = root.meta ?? EMPTY_META;
    if (now.highWater === next.highWater && now.superRoot === next.superRoot) return;
    const step: Step = { addr: this.root, page: root, lo: 0n, hi: KEYS_END, index: -1 };
    this.apply(this.plan([step], 0, { ...root, meta: null }, [], next), 0);
  }

  /** Depth of the tree (1 = the root is a leaf) and page count, for status and specs. */
  shape(): { depth: number; pages: number } {
    return { depth: this.root0().level + 1, pages: this.survey().pages };
  }

  /** Root-to-leaf pages for `key`, each with the key range it covers. */
  private descend(key: bigint): Step[] {
    const path: Step[] = [];
    let step: Step = { addr: this.root, page: this.root0(), lo: 0n, hi: KEYS_END, index: -1 };
    for (;;) {
      const page = step.page;
      if (page.kind === 'leaf') {
        path.push(step);
        return path;
      }
      const i = Math.max(0, upperBoundKeys(page.keys, key) - 1);
      step.index = i;
      path.push(step);
      const lo = i === 0 ? step.lo : page.keys[i];
      const hi = i + 1 < page.keys.length ? page.keys[i + 1] : step.hi;
      const child = page.children[i];
      step = { addr: child, page: this.load(child, page.level - 1, lo, hi, step.addr), lo, hi, index: -1 };
    }
  }

  /** The entry containing `addr`, given the path to its leaf. */
  private containing(addr: bigint, path: Step[]): DirectoryEntry | undefined {
    const leaf = path[path.length - 1];
    const entries = (leaf.page as LeafPage).entries;
    const at = upperBound(entries, addr);
    const e = at > 0 ? entries[at - 1] : this.lastBefore(leaf);
    return e !== undefined && addr < entryEnd(e) ? e : undefined;
  }

  /** The last entry of the leaf before `leaf` (non-root leaves are never empty). */
  private lastBefore(leaf: Step): DirectoryEntry | undefined {
    if (leaf.lo === 0n) return undefined;
    const prev = this.descend(leaf.lo - 1n);
    const entries = (prev[prev.length - 1].page as LeafPage).entries;
    return entries[entries.length - 1];
  }

  private firstFrom(key: bigint): DirectoryEntry | undefined {
    if (key === KEYS_END) return undefined;
    return this.seek(key)?.entries[0];
  }

  /** The leaf holding the first entry with start >= key, and its index there. */
  private seek(key: bigint): { entries: readonly DirectoryEntry[]; index: number; hi: bigint } | undefined {
    for (;;) {
      const path = this.descend(key);
      const leaf = path[path.length - 1];
      const entries = (leaf.page as LeafPage).entries;
      const index = upperBound(entries, key - 1n);
      if (index < entries.length) return { entries, index, hi: leaf.hi };
      if (leaf.hi === KEYS_END) return undefined;
      key = leaf.hi;
    }
  }

  /**
   * Replaces the page at path[depth] with `page` (its meta aside), splitting
   * it, and then its ancestors, for as long as they overflow.
   */
  private plan(path: Step[], depth: number, page: DirectoryPage, released: bigint[], meta?: DirectoryMeta): Plan {
    const fresh: Plan['fresh'] = [];
    let d = depth;
    let content = page;
    for (;;) {
      const step = path[d];
      const isRoot = d === 0;
      const withMeta = isRoot ? { ...content, meta: meta ?? this.root0().meta ?? EMPTY_META } : content;
      const bytes = encodeDirectoryPage(step.addr, withMeta);
      if (bytes !== undefined) return { fresh, final: { addr: step.addr, page: withMeta, bytes }, released };
      // The first piece keeps the key its parent had for the whole page.
      const firstKeyNow = isRoot ? 0n : (path[d - 1].page as InnerPage).keys[path[d - 1].index];
      const pieces = splitPage(content);
      const keys = pieces.map((p, i) => (i === 0 ? firstKeyNow : firstKey(p)));
      const children = pieces.map((p) => {
        const addr = this.fresh();
        fresh.push({ addr, page: p, bytes: encodeDirectoryPage(addr, p)! });
        return addr;
      });
      if (isRoot) {
        if (content.level + 1 > LEVELS_MAX) throw new MangroveError('E_FULL', `the directory at ${formatAddress(this.root)} would grow past ${LEVELS_MAX} levels`);
        content = { kind: 'inner', level: content.level + 1, keys, children, meta: null };
        continue;
      }
      released.push(step.addr);
      const parent = path[d - 1];
      const p = parent.page as InnerPage;
      content = { kind: 'inner', level: p.level, keys: splice(p.keys, parent.index, keys), children: splice(p.children, parent.index, children), meta: null };
      d -= 1;
    }
  }

  /** Rewrites the leaf without one entry; an emptied non-root leaf is unlinked, and so is each parent it empties. */
  private planRemoval(path: Step[], rest: DirectoryEntry[]): Plan {
    let d = path.length - 1;
    const released: bigint[] = [];
    let content: DirectoryPage = { kind: 'leaf', level: 0, entries: rest, meta: null };
    while (d > 0 && isEmpty(content)) {
      released.push(path[d].addr);
      d -= 1;
      const { page, index } = path[d];
      const p = page as InnerPage;
      // The child before takes over the removed one's keys (for the first child, the one after: routing ignores key 0).
      content = { kind: 'inner', level: p.level, keys: splice(p.keys, index, []), children: splice(p.children, index, []), meta: null };
      if (d === 0 && isEmpty(content)) content = { kind: 'leaf', level: 0, entries: [], meta: null };
    }
    if (d === 0) content = this.collapse(content, released);
    return this.plan(path, d, content, released);
  }

  /** While the root would have one child, lift that child's content into it, if it fits. */
  private collapse(content: DirectoryPage, released: bigint[]): DirectoryPage {
    while (content.kind === 'inner' && content.children.length === 1) {
      const child = content.children[0];
      const page = this.load(child, content.level - 1, 0n, KEYS_END, this.root);
      if (encodeDirectoryPage(this.root, { ...page, meta: this.root0().meta ?? EMPTY_META }) === undefined) break;
      released.push(child);
      content = page;
    }
    return content;
  }

  /** Writes a plan; memory changes only once the final write has returned. */
  private apply(plan: Plan, entriesDelta: number): void {
    for (const f of plan.fresh) this.pages.write(f.addr, f.bytes);
    try {
      this.pages.write(plan.final.addr, plan.final.bytes);
    } catch (e) {
      this.forget();
      throw e;
    }
    for (const f of plan.fresh) this.remember(f.addr, f.page);
    if (plan.final.addr === this.root) this.rootPage = plan.final.page;
    else this.remember(plan.final.addr, plan.final.page);
    for (const r of plan.released) this.cache.delete(r);
    if (this.totals) this.totals = { entries: this.totals.entries + entriesDelta, pages: this.totals.pages + plan.fresh.length - plan.released.length };
    this.version += 1;
    let failed: unknown;
    for (const r of plan.released) {
      try {
        this.pages.release(r);
      } catch (e) {
        failed ??= e;
      }
    }
    if (failed !== undefined) throw failed;
  }

  private fresh(): bigint {
    const addr = this.pages.allocate();
    checkPageAddress(addr);
    if (addr === this.root || this.cache.has(addr)) {
      throw new MangroveError('E_INTERNAL', `the page allocator handed out ${formatAddress(addr)}, a directory page in use`);
    }
    return addr;
  }

  private root0(): DirectoryPage {
    if (this.rootPage === undefined) {
      const data = this.pages.read(this.root);
      if (data === undefined) throw new MangroveError('E_STORAGE', `the directory root page ${formatAddress(this.root)} is missing`);
      this.rootPage = this.decodeRoot(data);
    }
    return this.rootPage;
  }

  private decodeRoot(data: Uint8Array): DirectoryPage {
    const page = decodeDirectoryPage(this.root, data);
    if (page.meta === null) throw new MangroveError('E_STORAGE', `directory page ${formatAddress(this.root)} is corrupt: the root page has no meta record`);
    return page;
  }

  /** A non-root page, from the cache or decoded and checked against where its parent says it is. */
  private load(addr: bigint, level: number, lo: bigint, hi: bigint, parent: bigint): DirectoryPage {
    const cached = this.cache.get(addr);
    if (cached !== undefined && cached.level === level) return cached;
    const where = formatAddress(addr);
    const corrupt = (why: string): never => {
      throw new MangroveError('E_STORAGE', `directory page ${where} (a child of ${formatAddress(parent)}) is corrupt: ${why}`);
    };
    if (cached !== undefined || addr === this.root) corrupt(`it is reached at level ${level} but is at level ${cached?.level ?? this.root0().level}`);
    const data = this.pages.read(addr);
    if (data === undefined) throw new MangroveError('E_STORAGE', `directory page ${where}, a child of ${formatAddress(parent)}, is missing`);
    const page = decodeDirectoryPage(addr, data);
    if (page.level !== level) corrupt(`it is at level ${page.level}, its parent expects ${level}`);
    if (page.meta !== null) corrupt('only the root page has a meta record');
    const keys = page.kind === 'leaf' ? page.entries.map((e) => e.start) : page.keys;
    if (keys.length === 0) corrupt('a page below the root is empty');
    if (keys[0] < lo || keys[keys.length - 1] >= hi) corrupt(`its keys leave the range ${formatAddress(lo)} to ${hi === KEYS_END ? 'the end' : formatAddress(hi)} its parent gives it`);
    this.remember(addr, page);
    return page;
  }

  private remember(addr: bigint, page: DirectoryPage): void {
    this.cache.delete(addr);
    this.cache.set(addr, page);
    if (this.cache.size > this.cachedPagesMax) this.cache.delete(this.cache.keys().next().value as bigint);
  }

  /** Drops what memory holds, to be read again from the pages. */
  private forget(): void {
    this.cache.clear();
    this.rootPage = undefined;
    this.totals = undefined;
    this.version += 1;
  }

  /** Entries and pages, counted by walking the tree once. */
  private survey(): { entries: number; pages: number } {
    if (this.totals === undefined) {
      const totals = { entries: 0, pages: 0 };
      const walk = (addr: bigint, page: DirectoryPage, lo: bigint, hi: bigint): void => {
        totals.pages += 1;
        if (page.kind === 'leaf') {
          totals.entries += page.entries.length;
          return;
        }
        page.children.forEach((c, i) => {
          const clo = i === 0 ? lo : page.keys[i];
          const chi = i + 1 < page.keys.length ? page.keys[i + 1] : hi;
          walk(c, this.load(c, page.level - 1, clo, chi, addr), clo, chi);
        });
      };
      walk(this.root, this.root0(), 0n, KEYS_END);
      this.totals = totals;
    }
    return this.totals;
  }
}

function copyOf(e: DirectoryEntry): DirectoryEntry {
  return { ...e, holders: e.holders.slice() };
}

function isEmpty(page: DirectoryPage): boolean {
  return page.kind === 'leaf' ? page.entries.length === 0 : page.children.length === 0;
}

function firstKey(page: DirectoryPage): bigint {
  return page.kind === 'leaf' ? page.entries[0].start : page.keys[0];
}

/** Index of the first entry whose start is above `key`. */
function upperBound(entries: readonly DirectoryEntry[], key: bigint): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid].start <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upperBoundKeys(keys: readonly bigint[], key: bigint): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `list` with the item at `at` replaced by `items`. */
function splice<T>(list: readonly T[], at: number, items: readonly T[]): T[] {
  return [...list.slice(0, at), ...items, ...list.slice(at + 1)];
}
