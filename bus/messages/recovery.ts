/**
 * The RAM directory rebuild's messages (SPEC.md M14, docs/recovery.md): a
 * coordinator anchor drives every live node through quiesce, repopulate and
 * resume, one numbered round at a time; each reply names its round, so a
 * late or repeated one never counts for another.
 */
import { z } from 'zod';
import { limits } from '../envelope.js';
import { count, id, list } from './schema.js';

/** A rebuild round: `n` counts rounds, `by` is the coordinator, so two coordinators' rounds never tie. */
export const rebuildRound = z.object({ n: count, by: id });
export type RebuildRoundBody = z.infer<typeof rebuildRound>;

export const recoveryBodies = {
  /** To an anchor: please rebuild; these nodes failed or restarted as this node sees it. */
  'rec.request': z.object({ failed: list(id).max(limits.listItemsMax) }),
  /**
   * Quiesce for recovery: stop, drop the RAM directory. `reset`: drop every
   * copy too (a new incarnation). `after`: the newest round the coordinator
   * knows finished; a node that finished none as new missed it, and drops
   * every copy too. `participants`: the round's nodes; a copy registers with
   * its home only if the home is one (another home is handed on and its
   * copies register in a later round). `dbVersion`: the coordinator's node
   * database; a participant registers only once its own arena table is at
   * least as new, so every node agrees on each page's home.
   */
  'rec.quiesce': z.object({ round: rebuildRound, reset: z.boolean(), after: count, participants: list(id), dbVersion: count }),
  /** `dbVersion`: the replier's node database, so the round rules by the newest any participant has. */
  'rec.quiesced': z.object({ round: rebuildRound, dbVersion: count }),
  /**
   * Start repopulating: register every copy held with its page's home, once
   * this node's node database is at least `dbVersion` (the newest a
   * participant replied quiesced with: a coordinator that restarted may
   * have an older one than the cluster's).
   */
  'rec.repopulate': z.object({ round: rebuildRound, dbVersion: count }),
  'rec.repopulated': z.object({ round: rebuildRound }),
  /** Resume operations. */
  'rec.resume': z.object({ round: rebuildRound }),
  'rec.resumed': z.object({ round: rebuildRound }),
  /**
   * From a node to itself (Transport.loop): its engine finished registering
   * its copies for `round`. The engine's work is outside replay (M27); its
   * completion reaches the participant machine as this recorded input.
   */
  'rec.done': z.object({ round: rebuildRound }),
  /** To a coordinator whose round is lower than the one this node follows: start above `round`. */
  'rec.outranked': z.object({ round: rebuildRound }),
} as const;

/** A round as the engine's messages carry it: its number. */
export type RoundNumber = z.infer<typeof count>;
