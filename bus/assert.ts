/**
 * Invariants (DESIGN.md, house style): `assert(cond, why)` states at the top
 * of a function what must hold for it to be correct, where a `!` or a silent
 * fallback would hide a broken one. A failed assertion is a bug, never a
 * refusal a caller should handle: it throws E_INTERNAL with the reason, and
 * in a simulation the run's seed is printed beside it, so it can be replayed.
 */
import { MangroveError } from './errors.js';

export function assert(cond: unknown, why: string): asserts cond {
  if (!cond) throw new MangroveError('E_INTERNAL', `invariant broken: ${why}`);
}

/** `value`, which must be there: the non-null assertion with its reason said. */
export function present<T>(value: T | null | undefined, why: string): T {
  if (value === null || value === undefined) throw new MangroveError('E_INTERNAL', `invariant broken: ${why}`);
  return value;
}
