/**
 * The connectivity bitmap of one heartbeat domain (M3): 64 slots, bit i set
 * when slot i is alive, sent as 8 bytes, slot 0 in the low bit of byte 0.
 */
import { MEMBERS_PER_GROUP_MAX } from './identity.js';

export const BITMAP_BYTES = MEMBERS_PER_GROUP_MAX / 8;

export function bitmapOf(alive: readonly boolean[]): Uint8Array {
  const out = new Uint8Array(BITMAP_BYTES);
  for (let i = 0; i < MEMBERS_PER_GROUP_MAX; i++) if (alive[i]) out[i >> 3] |= 1 << (i & 7);
  return out;
}

export function hasBit(bitmap: Uint8Array, slot: number): boolean {
  return slot >= 0 && slot < MEMBERS_PER_GROUP_MAX && (bitmap[slot >> 3] & (1 << (slot & 7))) !== 0;
}

export function slotsOf(bitmap: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < MEMBERS_PER_GROUP_MAX; i++) if (hasBit(bitmap, i)) out.push(i);
  return out;
}
