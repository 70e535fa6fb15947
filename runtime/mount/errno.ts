/**
 * How a mount answers the kernel when a call fails (SPEC.md M28): the
 * negative errno of the POSIX code beside Mangrove's (bus/errors.ts
 * posixOf); EIO for what has none (a node that never answered, a bug).
 */
import { constants } from 'node:os';
import { isMangroveError, posixOf } from '../../bus/errors.js';

const errnos = constants.errno as Record<string, number>;

export const ENOENT = -errnos.ENOENT!;
export const EIO = -errnos.EIO!;
export const EEXIST = -errnos.EEXIST!;
export const ENOTSUP = -errnos.ENOTSUP!;
export const EAGAIN = -errnos.EAGAIN!;
export const EINTR = -errnos.EINTR!;
/** "Look the name up again": the kernel retries an open once with its cached name checked. */
export const ESTALE = -errnos.ESTALE!;
/** "No such attribute" (Linux's ENODATA). */
export const ENODATA = -errnos.ENODATA!;

/** The negative errno the kernel is given for `err`. */
export function errnoOf(err: unknown): number {
  if (!isMangroveError(err)) return EIO;
  const name = posixOf(err.code);
  const n = name === undefined ? undefined : errnos[name];
  return n === undefined ? EIO : -n;
}

/** The POSIX name of a negative errno (for logs), e.g. ENOENT. */
export function errnoName(n: number): string {
  for (const [name, v] of Object.entries(errnos)) if (v === -n) return name;
  return String(n);
}
