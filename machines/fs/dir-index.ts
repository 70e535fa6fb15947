/**
 * A directory's name index (SPEC.md M19, M22; patent, "Directory" and "File
 * system recovery"): the hash table in the directory's inode, whose buckets
 * each start a list of entries sorted by name and linked through the entry
 * pages, and the free-space list of entry pages with room for one more
 * entry. Lookup hashes the name and walks one short list; insert puts the
 * entry in the first page on the free-space list that holds it whole (a new
 * page when none does) and links it into its bucket's list in name order;
 * remove unlinks it and frees its slot.
 *
 * `rebuild` is the verify-and-repair the patent runs on a directory found
 * with a transaction mark: it reads every entry page, recomputes the buckets,
 * the lists and the free-space list from the entries themselves, and says
 * what differed. A page that fails its checksum, or two entries of one name,
 * cannot be repaired from what is left: that is E_CORRUPT, and the caller
 * marks the directory corrupt.
 *
 * Pure logic over an accessor (EntryPages): the caller reads pages before,
 * and writes the ones `put` names after; the index is the inode's, mutated
 * in place.
 */
import { MangroveError } from '../../bus/errors.js';
import { type DirEntry, type EntryPage, type EntryRef, emptyEntryPage, entriesOf, FREE_BYTES_MIN, freeBytes, sameRef, slotFor } from './entry-page.js';
import { BUCKET_BYTES, HASH_BUCKETS, type DirIndex } from './inode.js';
import { compareNames, nameHash } from './names.js';

export interface EntryPages {
  /** Page `page` (< the index's `pages`) of the entries stream. */
  get(page: number): Promise<EntryPage>;
  /** A new page at index `page` (the index's `pages` before it grows), allocated and empty. */
  extend(page: number): Promise<EntryPage>;
  /** `p` changed: write it with the update. */
  put(p: EntryPage): void;
}

export interface Found {
  entry: DirEntry;
  ref: EntryRef;
  /** The entry before it in its bucket's list; null: it is the bucket's first. */
  prev: EntryRef | null;
}

const utf8 = new TextEncoder();

export function bucketOf(name: string): number {
  return nameHash(utf8.encode(name)) % HASH_BUCKETS;
}

export function bucketHead(dir: DirIndex, b: number): EntryRef | null {
  const view = new DataView(dir.buckets.buffer, dir.buckets.byteOffset, dir.buckets.byteLength);
  const page = view.getUint32(b * BUCKET_BYTES);
  return page === 0 ? null : { page: page - 1, slot: view.getUint16(b * BUCKET_BYTES + 4) };
}

function setBucketHead(dir: DirIndex, b: number, r: EntryRef | null): void {
  const view = new DataView(dir.buckets.buffer, dir.buckets.byteOffset, dir.buckets.byteLength);
  view.setUint32(b * BUCKET_BYTES, r ? r.page + 1 : 0);
  view.setUint16(b * BUCKET_BYTES + 4, r ? r.slot : 0);
}

/** The entry at `r`; a reference to nothing is a broken list (E_CORRUPT, repaired by rebuild). */
async function at(dir: DirIndex, pages: EntryPages, r: EntryRef): Promise<DirEntry> {
  const e = r.page < dir.pages ? (await pages.get(r.page)).slots[r.slot] : null;
  if (!e) throw new MangroveError('E_CORRUPT', `a directory's name list points at page ${r.page} slot ${r.slot}, which holds no entry`);
  return e;
}

/** Entries a bucket's list may have before the walk calls it a loop. */
const LIST_STEPS_MAX = 1 << 20;

/** The entry named `name`, or null; with where it sits in its list. */
export async function lookup(dir: DirIndex, pages: EntryPages, name: string): Promise<Found | null> {
  const want = utf8.encode(name);
  let prev: EntryRef | null = null;
  let prevName: Uint8Array | null = null;
  let cur = bucketHead(dir, bucketOf(name));
  for (let steps = 0; cur !== null; steps++) {
    if (steps > LIST_STEPS_MAX) throw new MangroveError('E_CORRUPT', `a directory's name list for ${JSON.stringify(name)} loops`);
    const e = await at(dir, pages, cur);
    const here = utf8.encode(e.name);
    // The list is sorted: a name not past the one before it is a loop (or damage), caught within one lap.
    if (prevName && compareNames(here, prevName) <= 0) throw new MangroveError('E_CORRUPT', `a directory's name list for ${JSON.stringify(name)} loops or is out of order`);
    const c = compareNames(here, want);
    if (c === 0) return { entry: e, ref: cur, prev };
    if (c > 0) return null;
    prev = cur;
    prevName = here;
    cur = e.next;
  }
  return null;
}

/** Inserts `entry` (its `next` is set here); E_EXISTS if the name is taken. Returns where it went. */
export async function insert(dir: DirIndex, pages: EntryPages, entry: DirEntry): Promise<EntryRef> {
  if (await lookup(dir, pages, entry.name)) throw new MangroveError('E_EXISTS', `${JSON.stringify(entry.name)} exists already`);
  const placed = await place(dir, pages, entry);
  await link(dir, pages, entry, placed);
  dir.count++;
  if (entry.type === 'dir') dir.subdirs++;
  return placed;
}

/** A slot for the entry: the first page on the free-space list it fits in whole, else a new page. */
async function place(dir: DirIndex, pages: EntryPages, entry: DirEntry): Promise<EntryRef> {
  let prev: EntryPage | null = null;
  for (let idx = dir.freeHead, steps = 0; idx >= 0; steps++) {
    if (steps > dir.pages) throw new MangroveError('E_CORRUPT', `a directory's free-space list loops`);
    // A page past the directory's own would take the entry where no lookup or rebuild looks.
    if (idx >= dir.pages) throw new MangroveError('E_CORRUPT', `a directory's free-space list points at page ${idx}, past its ${dir.pages} pages`);
    const p = await pages.get(idx);
    const slot = slotFor(p, entry);
    if (slot !== undefined) {
      p.slots[slot] = entry;
      if (freeBytes(p) < FREE_BYTES_MIN) unlinkFree(dir, pages, p, prev);
      pages.put(p);
      return { page: p.page, slot };
    }
    prev = p;
    idx = p.nextFree;
  }
  const p = await pages.extend(dir.pages);
  dir.pages++;
  const slot = slotFor(p, entry);
  if (slot === undefined) throw new MangroveError('E_INTERNAL', 'an entry does not fit an empty page');
  p.slots[slot] = entry;
  if (freeBytes(p) >= FREE_BYTES_MIN) pushFree(dir, p);
  pages.put(p);
  return { page: p.page, slot };
}

function unlinkFree(dir: DirIndex, pages: EntryPages, p: EntryPage, prev: EntryPage | null): void {
  if (prev) {
    prev.nextFree = p.nextFree;
    pages.put(prev);
  } else dir.freeHead = p.nextFree;
  p.onFree = false;
  p.nextFree = -1;
}

function pushFree(dir: DirIndex, p: EntryPage): void {
  p.onFree = true;
  p.nextFree = dir.freeHead;
  dir.freeHead = p.page;
}

/** Links the entry at `r` into its bucket's list, in name order. */
async function link(dir: DirIndex, pages: EntryPages, entry: DirEntry, r: EntryRef): Promise<void> {
  const b = bucketOf(entry.name);
  const want = utf8.encode(entry.name);
  let prev: EntryRef | null = null;
  let cur = bucketHead(dir, b);
  while (cur !== null) {
    const e = await at(dir, pages, cur);
    if (compareNames(utf8.encode(e.name), want) > 0) break;
    prev = cur;
    cur = e.next;
  }
  entry.next = cur;
  if (prev === null) return setBucketHead(dir, b, r);
  const p = await pages.get(prev.page);
  p.slots[prev.slot]!.next = r;
  pages.put(p);
}

/** Removes the entry named `name`; E_NOT_FOUND if there is none. Returns it. */
export async function remove(dir: DirIndex, pages: EntryPages, name: string): Promise<DirEntry> {
  const found = await lookup(dir, pages, name);
  if (!found) throw new MangroveError('E_NOT_FOUND', `no entry ${JSON.stringify(name)}`);
  const { entry, ref, prev } = found;
  if (prev === null) setBucketHead(dir, bucketOf(name), entry.next);
  else {
    const pp = await pages.get(prev.page);
    pp.slots[prev.slot]!.next = entry.next;
    pages.put(pp);
  }
  const p = await pages.get(ref.page);
  p.slots[ref.slot] = null;
  if (!p.onFree && freeBytes(p) >= FREE_BYTES_MIN) pushFree(dir, p);
  pages.put(p);
  dir.count--;
  if (entry.type === 'dir') dir.subdirs--;
  return entry;
}

/** Replaces the attributes of the entry at `r` (its name and list link stay): the sync of M19. */
export async function rewrite(pages: EntryPages, r: EntryRef, attrs: Omit<DirEntry, 'name' | 'next'>): Promise<void> {
  const p = await pages.get(r.page);
  const e = p.slots[r.slot];
  if (!e) throw new MangroveError('E_CORRUPT', `an entry reference (page ${r.page} slot ${r.slot}) holds no entry`);
  p.slots[r.slot] = { ...attrs, name: e.name, next: e.next };
  pages.put(p);
}

/** Up to `max` entries from position `from` (page * SLOT_SPAN + slot) on, and where the next call starts (null: done). */
export async function list(dir: DirIndex, pages: EntryPages, from: number, max: number): Promise<{ entries: DirEntry[]; next: number | null }> {
  const entries: DirEntry[] = [];
  for (let page = Math.floor(from / SLOT_SPAN); page < dir.pages; page++) {
    const p = await pages.get(page);
    for (let slot = page === Math.floor(from / SLOT_SPAN) ? from % SLOT_SPAN : 0; slot < p.slots.length; slot++) {
      const e = p.slots[slot];
      if (!e) continue;
      if (entries.length === max) return { entries, next: page * SLOT_SPAN + slot };
      entries.push(e);
    }
  }
  return { entries, next: null };
}

/** A listing position's stride per page. */
export const SLOT_SPAN = 64;

/**
 * Verify-and-repair (M22): the index and every entry's list link recomputed
 * from the entries the pages hold; with `repair`, what differed is fixed (the
 * pages that change are put). Returns what differed, in words.
 */
export async function rebuild(dir: DirIndex, pages: EntryPages, repair: boolean): Promise<string[]> {
  const found: { entry: DirEntry; ref: EntryRef; page: EntryPage }[] = [];
  const byPage: EntryPage[] = [];
  for (let i = 0; i < dir.pages; i++) {
    const p = await pages.get(i);
    if (p.page !== i) throw new MangroveError('E_CORRUPT', `entry page ${i} says it is page ${p.page}`);
    byPage.push(p);
    for (const f of entriesOf(p)) found.push({ ...f, page: p });
  }
  const names = new Set<string>();
  for (const f of found) {
    if (names.has(f.entry.name)) throw new MangroveError('E_CORRUPT', `two entries are named ${JSON.stringify(f.entry.name)}`);
    names.add(f.entry.name);
  }
  const problems: string[] = [];
  const changed = new Set<EntryPage>();
  // The lists: each bucket's entries in name order, linked.
  const buckets = new Map<number, typeof found>();
  for (const f of found) {
    const b = bucketOf(f.entry.name);
    const list = buckets.get(b) ?? [];
    list.push(f);
    buckets.set(b, list);
  }
  for (let b = 0; b < HASH_BUCKETS; b++) {
    const list = (buckets.get(b) ?? []).sort((x, y) => compareNames(utf8.encode(x.entry.name), utf8.encode(y.entry.name)));
    const head = list[0]?.ref ?? null;
    if (!sameRef(bucketHead(dir, b), head)) {
      problems.push(`hash bucket ${b} started at the wrong entry`);
      if (repair) setBucketHead(dir, b, head);
    }
    list.forEach((f, i) => {
      const next = list[i + 1]?.ref ?? null;
      if (sameRef(f.entry.next, next)) return;
      problems.push(`entry ${JSON.stringify(f.entry.name)} linked to the wrong next entry of its list`);
      if (repair) {
        f.entry.next = next;
        changed.add(f.page);
      }
    });
  }
  problems.push(...checkFreeList(dir, byPage, repair, changed));
  const subdirs = found.filter((f) => f.entry.type === 'dir').length;
  if (dir.count !== found.length || dir.subdirs !== subdirs) {
    problems.push(`the directory counted ${dir.count} entries (${dir.subdirs} directories); its pages hold ${found.length} (${subdirs})`);
    if (repair) {
      dir.count = found.length;
      dir.subdirs = subdirs;
    }
  }
  for (const p of changed) pages.put(p);
  return problems;
}

/** The free-space list recomputed: every page with room, in page order. */
function checkFreeList(dir: DirIndex, byPage: EntryPage[], repair: boolean, changed: Set<EntryPage>): string[] {
  const withRoom = byPage.filter((p) => freeBytes(p) >= FREE_BYTES_MIN);
  const want = withRoom.map((p) => p.page);
  // The list's order is the order pages gained room in; only its members, its end and the flags must be right.
  const seen = new Set<number>();
  let idx = dir.freeHead;
  for (; idx >= 0 && idx < byPage.length && !seen.has(idx); idx = byPage[idx].nextFree) seen.add(idx);
  const ended = idx === -1;
  const wrongFlags = byPage.some((p) => p.onFree !== seen.has(p.page) || (!p.onFree && p.nextFree !== -1));
  if (ended && !wrongFlags && seen.size === want.length && want.every((w) => seen.has(w))) return [];
  if (!repair) return ['the free-space list does not match the pages with room'];
  dir.freeHead = want[0] ?? -1;
  for (const p of byPage) {
    const i = want.indexOf(p.page);
    const onFree = i >= 0;
    const nextFree = onFree ? (want[i + 1] ?? -1) : -1;
    if (p.onFree === onFree && p.nextFree === nextFree) continue;
    p.onFree = onFree;
    p.nextFree = nextFree;
    changed.add(p);
  }
  return ['the free-space list did not match the pages with room'];
}

export { emptyEntryPage };
