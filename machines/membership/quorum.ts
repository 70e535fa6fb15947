/**
 * Quorum (SPEC.md M5). Safety claim: a node believes it has quorum only while
 * the state it last accepted by its role's rule said so, and that state was
 * computed by an anchor from a view in which the reachable anchors' votes
 * were MORE than half of all configured votes (exactly half is not quorum).
 * Since two disjoint sides cannot both hold more than half of the votes, at
 * most one side of a partition is quorate once stale beliefs have expired;
 * the expiry timer bounds how long a stale belief can last after the last
 * anchor falls silent.
 *
 * The four role cases (patent, "Each node's responsibilities"):
 * - monitor + anchor: recomputes from its own bitmap at every member-pulse
 *   deadline (`CONNECTIVITY` source 'own'); ignores quorum state it hears;
 * - monitor, not anchor: adopts at once the state in a member pulse from an
 *   anchor (`QUORUM_HEARD` via 'member_pulse', fromAnchor);
 * - member + anchor: recomputes from the monitor pulse's bitmap on every
 *   connectivity change (`CONNECTIVITY` source 'monitor_pulse'); ignores the
 *   monitor's quorum state;
 * - member, not anchor: sends none (`quorumToSend` is undefined) and adopts
 *   the state in monitor pulses.
 * With groups (M4) a group's monitor that is not an anchor also adopts the
 * state in the pulses of the monitor one level up (via 'upper_pulse'), since
 * that is how quorum computed in other groups reaches it.
 *
 * Expiry: quorum state travels with its remaining lifetime (`ttlMs`). An
 * anchor's own computation lives `quorumTimeoutMs`; an adopted state lives
 * only what its sender had left, so relaying it through monitors and group
 * transmitters never extends it, and a node cut off from every anchor loses
 * quorum within `quorumTimeoutMs` of the last anchor computation it heard,
 * however many hops it came through. Every receipt restarts the timer: an
 * anchor's (which ignores the state heard) to a full timeout, since the pulse
 * shows its view still stands; a non-anchor's to the lifetime it adopts.
 *
 * Emits `{ type: 'quorum', has }` whenever the has-flag changes; the flag is
 * the state (`noQuorum` | `quorate`) so the chart shows it.
 */
import { assign, emit, setup, type SnapshotFrom } from 'xstate';

export const machineName = 'quorum';

export type QuorumRole = 'monitor' | 'member';

export interface QuorumContext {
  anchor: boolean;
  role: QuorumRole;
  quorumTimeoutMs: number;
  /** Lifetime of the current state from `since`. */
  ttlMs: number;
  /** Actor clock time the current state was computed or adopted. */
  since: number;
}

export interface QuorumInput {
  anchor: boolean;
  role: QuorumRole;
  /** How long quorum state lives without being heard or recomputed. */
  quorumTimeoutMs: number;
}

export type QuorumEvent =
  | { type: 'ROLE'; role: QuorumRole }
  | {
      type: 'CONNECTIVITY';
      reachableVotes: number;
      totalVotes: number;
      /** 'own': a monitor's bitmap at a member-pulse deadline; 'monitor_pulse': the bitmap a member received. */
      source: 'own' | 'monitor_pulse';
      /** The actor's clock, for the lifetime it hands on. */
      at: number;
    }
  | {
      type: 'QUORUM_HEARD';
      has: boolean;
      via: 'member_pulse' | 'monitor_pulse' | 'upper_pulse';
      /** The state was computed by an anchor (possibly relayed by a group transmitter). */
      fromAnchor: boolean;
      /** What is left of the state's lifetime. */
      ttlMs: number;
      at: number;
    };

export type QuorumEmitted = { type: 'quorum'; has: boolean };

/** M5: more than half; exactly half is not quorum, and no votes configured is never quorum. */
export function hasMajority(reachableVotes: number, totalVotes: number): boolean {
  return totalVotes > 0 && 2 * reachableVotes > totalVotes;
}

/** The votes of the anchors that `alive` reports reachable. */
export function reachableVotes(
  alive: ReadonlySet<string> | ((id: string) => boolean),
  anchors: readonly { id: string; votes: number }[],
): number {
  const isAlive = typeof alive === 'function' ? alive : (id: string) => alive.has(id);
  let sum = 0;
  for (const a of anchors) if (isAlive(a.id)) sum += a.votes;
  return sum;
}

type Ctx = { context: QuorumContext; event: QuorumEvent };

/** Whether this node's role computes quorum from this view (anchors only, each from its own source). */
function recomputesFrom({ context, event }: Ctx): boolean {
  if (event.type !== 'CONNECTIVITY' || !context.anchor) return false;
  return context.role === 'monitor' ? event.source === 'own' : event.source === 'monitor_pulse';
}

/** Whether this node's role takes the heard state as its own (non-anchors only). */
function adoptsHeard({ context, event }: Ctx): boolean {
  if (event.type !== 'QUORUM_HEARD' || context.anchor || event.ttlMs <= 0) return false;
  if (context.role === 'member') return event.via === 'monitor_pulse';
  return (event.via === 'member_pulse' && event.fromAnchor) || event.via === 'upper_pulse';
}

const viewHasMajority = (event: QuorumEvent): boolean =>
  event.type === 'CONNECTIVITY' && hasMajority(event.reachableVotes, event.totalVotes);

const heardHas = (event: QuorumEvent): boolean => event.type === 'QUORUM_HEARD' && event.has;

export const quorumMachine = setup({
  types: {
    context: {} as QuorumContext,
    input: {} as QuorumInput,
    events: {} as QuorumEvent,
    emitted: {} as QuorumEmitted,
  },
  actions: {
    takeRole: assign({ role: ({ context, event }) => (event.type === 'ROLE' ? event.role : context.role) }),
    announceQuorum: emit({ type: 'quorum' as const, has: true }),
    announceNoQuorum: emit({ type: 'quorum' as const, has: false }),
    /** An anchor's own view: good for a full timeout from now. */
    stampOwn: assign({
      ttlMs: ({ context }) => context.quorumTimeoutMs,
      since: ({ context, event }) => ('at' in event ? event.at : context.since),
    }),
    /** An adopted state: good for what its sender had left, never longer than our own timeout. */
    stampHeard: assign({
      ttlMs: ({ context, event }) => (event.type === 'QUORUM_HEARD' ? Math.min(event.ttlMs, context.quorumTimeoutMs) : context.ttlMs),
      since: ({ context, event }) => ('at' in event ? event.at : context.since),
    }),
  },
  guards: {
    recomputesToQuorum: (a) => recomputesFrom(a) && viewHasMajority(a.event),
    recomputesToNoQuorum: (a) => recomputesFrom(a) && !viewHasMajority(a.event),
    adoptsQuorum: (a) => adoptsHeard(a) && heardHas(a.event),
    adoptsNoQuorum: (a) => adoptsHeard(a) && !heardHas(a.event),
    isAnchor: ({ context }) => context.anchor,
  },
  delays: {
    quorumExpiry: ({ context }) => context.ttlMs,
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({
    anchor: input.anchor,
    role: input.role,
    quorumTimeoutMs: input.quorumTimeoutMs,
    ttlMs: input.quorumTimeoutMs,
    since: 0,
  }),
  initial: 'noQuorum',
  on: {
    // A role change alters which inputs count from now on, not the has-flag.
    ROLE: { actions: 'takeRole' },
  },
  states: {
    noQuorum: {
      on: {
        CONNECTIVITY: { guard: 'recomputesToQuorum', target: 'quorate', actions: ['stampOwn', 'announceQuorum'] },
        QUORUM_HEARD: { guard: 'adoptsQuorum', target: 'quorate', actions: ['stampHeard', 'announceQuorum'] },
      },
    },
    // The expiry timer could change nothing in noQuorum, so it runs here
    // alone; a receipt or a recompute restarts it by re-entering the state.
    quorate: {
      after: { quorumExpiry: { target: 'noQuorum', actions: 'announceNoQuorum' } },
      on: {
        CONNECTIVITY: [
          { guard: 'recomputesToQuorum', target: 'quorate', reenter: true, actions: 'stampOwn' },
          { guard: 'recomputesToNoQuorum', target: 'noQuorum', actions: 'announceNoQuorum' },
        ],
        QUORUM_HEARD: [
          { guard: 'adoptsNoQuorum', target: 'noQuorum', actions: 'announceNoQuorum' },
          { guard: 'adoptsQuorum', target: 'quorate', reenter: true, actions: 'stampHeard' },
          // An anchor ignores what it hears, but the pulse shows its view still stands.
          { guard: 'isAnchor', target: 'quorate', reenter: true, actions: 'stampOwn' },
        ],
      },
    },
  },
});

export type QuorumSnapshot = SnapshotFrom<typeof quorumMachine>;

export function isQuorate(snapshot: QuorumSnapshot): boolean {
  return snapshot.value === 'quorate';
}

/**
 * The quorum field of this node's outgoing pulses (M5): monitors send their
 * state (computed or adopted), member anchors send what they computed,
 * member non-anchors send nothing. It carries what is left of its lifetime
 * at `now`, so no relay makes it last longer.
 */
export function quorumToSend(snapshot: QuorumSnapshot, now: number): { has: boolean; ttlMs: number } | undefined {
  const { role, anchor, ttlMs, since, quorumTimeoutMs } = snapshot.context;
  if (role === 'member' && !anchor) return undefined;
  if (!isQuorate(snapshot)) return { has: false, ttlMs: quorumTimeoutMs };
  return { has: true, ttlMs: Math.max(0, ttlMs - (now - since)) };
}
