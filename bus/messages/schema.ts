/**
 * The building blocks every message family's schemas share: ids, counts,
 * bounded lists and byte strings, each with its limit (bus/envelope.ts), so
 * a hostile frame is refused by the codec before any element sees it.
 */
import { z } from 'zod';
import { limits } from '../envelope.js';

export const id = z.string().min(1).max(limits.idCharsMax);
export const endpoint = z.string().min(1).max(limits.endpointCharsMax);
export const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
export const shortId = z.number().int().nonnegative().max(2 ** 30);
export const list = <T extends z.ZodType>(item: T) => z.array(item).max(limits.listItemsMax);
/** A byte string whose length passes `test`; the error says `what` must be `rule`. */
export const bytes = (what: string, test: (n: number) => boolean, rule: string) =>
  z.custom<Uint8Array>((b) => b instanceof Uint8Array && test(b.byteLength), `${what} must be ${rule}`);
export const errorCode = z.string().max(40);
export const errorMessage = z.string().max(1000);
