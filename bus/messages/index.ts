/**
 * Every message kind on the bus, its body schema, and the one validator the
 * codec runs on every inbound envelope. Kinds are namespaced by protocol,
 * one file a family: `hb.` heartbeat (M3, M4), `ndb.` node database (M2) and
 * `pan.` primary anchor election (M16) in membership.ts; `page.` the memory
 * engine (M7-M13) in page.ts; `rec.` the rebuild (M14) in recovery.ts; `client.` requests from the CLI and client
 * library and `reply.` their answers in client.ts (and `client.page` in
 * page.ts, `client.fs` in fs.ts); `auth.` a link's proof of its key, in auth.ts. Sizes are bounded in the schemas so a hostile frame cannot make
 * a node allocate without limit.
 */
import type { z } from 'zod';
import { authBodies } from './auth.js';
import { clientBodies } from './client.js';
import { fsBodies } from './fs.js';
import { membershipBodies } from './membership.js';
import { pageBodies } from './page.js';
import { recoveryBodies } from './recovery.js';

export * from './membership.js';

/** The body schema of every kind. Add a kind to its family's file and nowhere else. */
export const bodies = {
  ...membershipBodies,
  ...clientBodies,
  ...pageBodies,
  ...recoveryBodies,
  ...fsBodies,
  ...authBodies,
} as const;

export type Kind = keyof typeof bodies;
export type Body<K extends Kind> = z.infer<(typeof bodies)[K]>;
export const KINDS = Object.keys(bodies) as Kind[];

export function isKind(k: unknown): k is Kind {
  return typeof k === 'string' && Object.prototype.hasOwnProperty.call(bodies, k);
}

/** Validates a body for its kind; returns the parsed body or an error text. */
export function checkBody(kind: Kind, body: unknown): { ok: true; body: unknown } | { ok: false; error: string } {
  const r = bodies[kind].safeParse(body);
  return r.success ? { ok: true, body: r.data } : { ok: false, error: r.error.issues[0]?.message ?? 'invalid body' };
}
