/**
 * A fileset's inode directory (SPEC.md M19, M22; patent, "the Inode directory
 * … the free Inode list and the Inode bit map"): where every inode of the
 * fileset lives, which are in use, and where a free one is found at once.
 *
 * Inodes live in groups of GROUP_INODES pages, each group one reservation
 * materialized whole when its first inode is handed out (inodes are taken
 * from the global pool in groups). The table is a run of pages in the
 * fileset's table range; page `p` describes GROUPS_PER_PAGE groups: each
 * group's base address (null until reserved), its bitmap (bit set: in use),
 * and the free list of groups with a free inode, through `nextFree`, headed
 * in the page. Inode `ino` is group `ino / GROUP_INODES`, slot
 * `ino % GROUP_INODES`, at `base + slot * 4096`. Inode 0 is never handed out;
 * inode 1 is the fileset's root directory. Pure.
 */
import { z } from 'zod';
import { MangroveError } from '../../bus/errors.js';
import { addressFromKey, addressKey, PAGE_BYTES } from '../memory/address.js';
import { decodeFsPage, sealFsPage } from './fs-page.js';

export const GROUP_INODES = 64;
export const GROUPS_PER_PAGE = 96;
export const INODES_PER_TABLE_PAGE = GROUP_INODES * GROUPS_PER_PAGE;
/** Pages of a fileset's table range: at most 25 million inodes per fileset. */
export const TABLE_PAGES_MAX = 4096;
export const ROOT_INO = 1;

export interface InodeGroup {
  base: bigint | null;
  /** GROUP_INODES bits, bit `slot` of byte `slot >> 3`. */
  used: Uint8Array;
  /** The next group of this page with a free inode; -1: none. */
  nextFree: number;
}

export interface TablePage {
  page: number;
  /** The first group with a free inode; -1: the page is full. */
  freeHead: number;
  groups: InodeGroup[];
}

const group = z.tuple([
  z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.byteLength === 16, 'an address').nullable(),
  z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.byteLength === GROUP_INODES / 8, 'a bitmap'),
  z.number().int().min(-1).max(GROUPS_PER_PAGE - 1),
]);
const pageWire = z.tuple([z.number().int().min(0).max(TABLE_PAGES_MAX - 1), z.number().int().min(-1).max(GROUPS_PER_PAGE - 1), z.array(group).length(GROUPS_PER_PAGE)]);

export function emptyTablePage(page: number): TablePage {
  return {
    page,
    freeHead: 0,
    groups: Array.from({ length: GROUPS_PER_PAGE }, (_, g) => ({ base: null, used: new Uint8Array(GROUP_INODES / 8), nextFree: g + 1 < GROUPS_PER_PAGE ? g + 1 : -1 })),
  };
}

export function encodeTablePage(t: TablePage, addr: bigint): Uint8Array {
  return sealFsPage('inode_table', [t.page, t.freeHead, t.groups.map((g) => [g.base === null ? null : addressKey(g.base), g.used, g.nextFree])], addr);
}

/** Table page `page` read from `addr`; a page never written is a fresh one. */
export function decodeTablePage(data: Uint8Array, addr: bigint, page: number): TablePage {
  const w = decodeFsPage('inode_table', data, addr, pageWire);
  if (w === null) return emptyTablePage(page);
  if (w[0] !== page) throw new MangroveError('E_CORRUPT', `inode table page ${page} says it is page ${w[0]}`);
  return { page: w[0], freeHead: w[1], groups: w[2].map(([base, used, nextFree]) => ({ base: base === null ? null : addressFromKey(base), used, nextFree })) };
}

export function locate(ino: number): { page: number; group: number; slot: number } {
  if (!Number.isSafeInteger(ino) || ino < 1 || ino >= TABLE_PAGES_MAX * INODES_PER_TABLE_PAGE) throw new MangroveError('E_BAD_ARGUMENT', `inode ${ino} is out of range`);
  const page = Math.floor(ino / INODES_PER_TABLE_PAGE);
  const inPage = ino % INODES_PER_TABLE_PAGE;
  return { page, group: Math.floor(inPage / GROUP_INODES), slot: inPage % GROUP_INODES };
}

export function isUsed(t: TablePage, ino: number): boolean {
  const { group, slot } = locate(ino);
  return (t.groups[group].used[slot >> 3] & (1 << (slot & 7))) !== 0;
}

export function inodeAddress(t: TablePage, ino: number): bigint | null {
  const { group, slot } = locate(ino);
  const base = t.groups[group].base;
  return base === null ? null : base + BigInt(slot * PAGE_BYTES);
}

/**
 * The next free inode of the page: its number and its group, which the
 * caller reserves and materializes first if it has no base yet. Null: the
 * page is full. Nothing changes until `take`.
 */
export function nextFree(t: TablePage): { ino: number; group: number; needsGroup: boolean } | null {
  if (t.freeHead < 0) return null;
  const g = t.groups[t.freeHead];
  for (let slot = 0; slot < GROUP_INODES; slot++) {
    const ino = t.page * INODES_PER_TABLE_PAGE + t.freeHead * GROUP_INODES + slot;
    if (ino === 0) continue;
    if (!(g.used[slot >> 3] & (1 << (slot & 7)))) return { ino, group: t.freeHead, needsGroup: g.base === null };
  }
  throw new MangroveError('E_CORRUPT', `inode table page ${t.page} lists group ${t.freeHead} as free, and it is full`);
}

/** Marks `ino` in use; a group left full leaves the free list. */
export function take(t: TablePage, ino: number): void {
  const { group, slot } = locate(ino);
  const g = t.groups[group];
  if (g.used[slot >> 3] & (1 << (slot & 7))) throw new MangroveError('E_CORRUPT', `inode ${ino} is in use already`);
  g.used[slot >> 3] |= 1 << (slot & 7);
  if (!isFull(t, group)) return;
  // A group left full leaves the free list, wherever it is on it (nextFree hands out the head's; recovery may take others).
  if (t.freeHead === group) t.freeHead = g.nextFree;
  else {
    let at = t.freeHead;
    for (let steps = 0; at >= 0 && steps < GROUPS_PER_PAGE && t.groups[at].nextFree !== group; steps++) at = t.groups[at].nextFree;
    if (at >= 0 && t.groups[at].nextFree === group) t.groups[at].nextFree = g.nextFree;
  }
  g.nextFree = -1;
}

/** Marks `ino` free; a group that was full goes back on the free list. */
export function release(t: TablePage, ino: number): void {
  const { group, slot } = locate(ino);
  const g = t.groups[group];
  const wasFull = isFull(t, group);
  g.used[slot >> 3] &= ~(1 << (slot & 7));
  if (wasFull) {
    g.nextFree = t.freeHead;
    t.freeHead = group;
  }
}

function isFull(t: TablePage, group: number): boolean {
  const g = t.groups[group];
  for (let slot = 0; slot < GROUP_INODES; slot++) {
    const ino = t.page * INODES_PER_TABLE_PAGE + group * GROUP_INODES + slot;
    if (ino !== 0 && !(g.used[slot >> 3] & (1 << (slot & 7)))) return false;
  }
  return true;
}

/** The inodes the page marks in use. */
export function usedInodes(t: TablePage): number[] {
  const out: number[] = [];
  t.groups.forEach((g, group) => {
    for (let slot = 0; slot < GROUP_INODES; slot++) if (g.used[slot >> 3] & (1 << (slot & 7))) out.push(t.page * INODES_PER_TABLE_PAGE + group * GROUP_INODES + slot);
  });
  return out;
}

/** Verify-and-repair of the free list: exactly the groups with a free inode, each once. Returns what differed. */
export function rebuildFreeList(t: TablePage, repair: boolean): string[] {
  const want = t.groups.map((_, g) => g).filter((g) => !isFull(t, g));
  const seen = new Set<number>();
  let g = t.freeHead;
  for (; g >= 0 && !seen.has(g); g = t.groups[g].nextFree) seen.add(g);
  if (g === -1 && seen.size === want.length && want.every((w) => seen.has(w))) return [];
  if (repair) {
    t.freeHead = want[0] ?? -1;
    t.groups.forEach((grp) => (grp.nextFree = -1));
    want.forEach((w, i) => (t.groups[w].nextFree = want[i + 1] ?? -1));
  }
  return [`inode table page ${t.page}: the free-inode list did not match the bitmap`];
}
