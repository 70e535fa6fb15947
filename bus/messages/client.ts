/**
 * What the CLI and the client library ask any node (`client.`), and the two
 * answers every request gets (`reply.ok`, `reply.err`).
 */
import { z } from 'zod';
import { count, errorCode, errorMessage, id, list } from './schema.js';
import { ndbOp } from './membership.js';

export const clientBodies = {
  // Client requests, answered with `reply.ok` or `reply.err`.
  'client.status': z.object({}),
  /** The node's protocol machines (M26): its running actors, and the transitions it keeps numbered after `after`. */
  'client.machines': z.object({ after: count.optional() }),
  'client.fault': z.object({ drop: list(id).optional(), heal: z.boolean().optional() }),
  'client.ndb_update': z.object({ change: ndbOp }),
  'reply.ok': z.object({ result: z.unknown() }),
  'reply.err': z.object({ code: errorCode, message: errorMessage }),
} as const;
