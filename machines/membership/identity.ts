/**
 * Node identity (SPEC.md M1). The permanent id never changes: an address
 * component (48 random bits, unique in space) and the creation time (unique
 * in time). The short id places a node in the group hierarchy, 6 bits a
 * level: bits 0-5 are its slot in its group, the bits above are the group
 * number, whose base-64 digits are in turn the slots of the group in the
 * levels above. Network addresses are never ids.
 */

export const BITS_PER_LEVEL = 6;
export const MEMBERS_PER_GROUP_MAX = 1 << BITS_PER_LEVEL;
/** Deepest hierarchy we address: 4 levels above nodes (30 bits of short id). */
export const LEVELS_MAX = 5;

const ID_PATTERN = /^[0-9a-f]{12}-[0-9a-f]{12}$/;

/** `aaaaaaaaaaaa-tttttttttttt`: address component, then creation ms, both hex. */
export function makePermanentId(address: Uint8Array, createdMs: number): string {
  if (address.byteLength < 6) throw new RangeError('address component needs 6 bytes');
  const addr = Array.from(address.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join('');
  return `${addr}-${Math.floor(createdMs).toString(16).padStart(12, '0')}`;
}

export function isPermanentId(s: string): boolean {
  return ID_PATTERN.test(s);
}

export function createdAt(id: string): number {
  return parseInt(id.slice(13), 16);
}

/** The total order used wherever "lowest id wins". */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function shortIdOf(group: number, slot: number): number {
  if (!Number.isInteger(slot) || slot < 0 || slot >= MEMBERS_PER_GROUP_MAX) {
    throw new RangeError(`slot ${slot} is outside 0..${MEMBERS_PER_GROUP_MAX - 1}`);
  }
  return group * MEMBERS_PER_GROUP_MAX + slot;
}

export function groupOf(shortId: number): number {
  return Math.floor(shortId / MEMBERS_PER_GROUP_MAX);
}

/** The slot a node (level 0) or its ancestor group (level L) holds in its level-L domain. */
export function slotAt(shortId: number, level: number): number {
  return Math.floor(shortId / MEMBERS_PER_GROUP_MAX ** level) % MEMBERS_PER_GROUP_MAX;
}

/** The level-L domain a short id falls in: all short ids sharing the bits above level L's slot. */
export function domainAt(shortId: number, level: number): number {
  return Math.floor(shortId / MEMBERS_PER_GROUP_MAX ** (level + 1));
}

/** The number of heartbeat levels needed so that the top domain is one group of at most 64. */
export function levelsFor(maxGroup: number): number {
  let levels = 1;
  let g = maxGroup;
  while (g > 0 && levels < LEVELS_MAX) {
    levels++;
    g = Math.floor(g / MEMBERS_PER_GROUP_MAX);
  }
  return levels;
}

/** Short ids as dotted hierarchy, most significant level first: group 2, slot 5 is "2.5". */
export function formatShortId(shortId: number, levels = 2): string {
  const parts: number[] = [];
  for (let l = levels - 1; l >= 0; l--) parts.push(slotAt(shortId, l));
  return parts.join('.');
}

/** Who wins an arbitration among candidates: first by a configured preference
 * list, then anchors before others, then the lowest permanent id (M3). */
export interface Candidate {
  id: string;
  anchor: boolean;
}

export function rankCompare(a: Candidate, b: Candidate, preference: readonly string[] = []): number {
  const pa = preference.indexOf(a.id);
  const pb = preference.indexOf(b.id);
  const ra = pa < 0 ? Infinity : pa;
  const rb = pb < 0 ? Infinity : pb;
  if (ra !== rb) return ra < rb ? -1 : 1;
  if (a.anchor !== b.anchor) return a.anchor ? -1 : 1;
  return compareIds(a.id, b.id);
}
