/**
 * Failover of an arena (SPEC.md M16, M8; docs/recovery.md "Failover of an
 * arena" and "Responsibility that moves"): the PAN hands each arena of a
 * failed or deleted home to a live node, one generation up, by a
 * node-database update (`{op: 'arena', arena, home, gen}`).
 *
 * Safety claim: a new home is named for an arena only after the old home's
 * grace: while this anchor was the PAN and quorate, it counted the old home
 * not alive continuously for `graceMs` (or the old home is no longer in the
 * node database; one that is back in it starts a clock afresh). The actor passes graceMs = quorumTimeoutMs +
 * FAILOVER_GRACE_PERIODS heartbeat periods (`failoverGraceMs`), and that is
 * the argument that the old home writes nothing by then: a node counted
 * failed hears no quorum state naming it alive, so its quorum lease runs out
 * within quorumTimeoutMs (quorum.ts: relays never extend a lifetime), and a
 * home grants no write ownership and writes no directory page without
 * quorum (M17); the two periods cover the pulse that may still have been on
 * its way when it was counted out. A home back before its grace ends keeps
 * its arenas: being seen alive clears its clock, and so does being seen
 * alive after its grace, for the arenas not yet handed over (a proposal
 * already sent is not called back; the generation fences the old home).
 *
 * The clocks run only while the anchor is the PAN and quorate: an anchor
 * without quorum may be on the small side of a partition, where "not alive"
 * says nothing of the cluster, so leaving that state drops every clock and
 * all pending work, and coming back starts every clock afresh. A new PAN
 * therefore waits a whole grace from its election, never less.
 *
 * The work, one hand-over at a time, lowest arena first, read afresh from
 * the view each time (`nextHandOver`): emit `propose {change}`, wait for the
 * OUTCOME of that arena; on success the next; on failure (E_STALE_GEN: the
 * table moved; a lost race; no quorum) wait `retryMs`, then read the view
 * again. A hand-over that succeeded is remembered until the view's database
 * shows it, so the next choice already counts it and no stale proposal
 * follows it. The new home is `chooseHome`: among live nodes, the one
 * serving the fewest arenas.
 *
 * Grace clocks are one delayed `GRACE_ELAPSED` a home, raised on the actor's
 * clock (what `after` is made of; `after` belongs to a state, and a clock
 * here belongs to a home) and cancelled by its id when the home is seen
 * alive again or the anchor stops being an active PAN.
 *
 * Emits `propose {change}` (the actor runs the node-database update and
 * answers with OUTCOME) and `due {home, arenas}` when a home's grace runs
 * out or it is found deleted (for logs).
 */
import { enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import { assert, present } from '../../bus/assert.js';
import { NODES_MAX, applyChange, arenaEntryOf, arenasOf, arenasServedBy, emptyDb, findNode } from '../membership/node-db.js';

export const machineName = 'arena-failover';

/** Heartbeat periods added to quorumTimeoutMs for the grace: see the claim above. */
export const FAILOVER_GRACE_PERIODS = 2;

/** The grace the actor passes: quorumTimeoutMs + FAILOVER_GRACE_PERIODS heartbeat periods. */
export function failoverGraceMs(quorumTimeoutMs: number, heartbeatPeriodMs: number): number {
  return quorumTimeoutMs + FAILOVER_GRACE_PERIODS * heartbeatPeriodMs;
}

/**
 * Homes watched at once, and hand-overs remembered: both are homes or arenas
 * of one snapshot, whose lists hold at most `limits.listItemsMax` entries
 * (NODES_MAX, node-db.ts), so the bound is checked, never reached.
 */
export const HOMES_WATCHED_MAX = NODES_MAX;

export type ArenaChange = { op: 'arena'; arena: number; home: string; gen: number };

export interface FailoverView {
  db: NodeDbSnapshot;
  /** The node ids the heartbeat counts alive now. */
  alive: string[];
  isPan: boolean;
  quorate: boolean;
}

export interface ArenaFailoverInput {
  self: string;
  /** How long a home must be counted not alive before its arenas move (`failoverGraceMs`). */
  graceMs: number;
  /** Wait after a failed hand-over before reading the view again. */
  retryMs: number;
}

export interface ArenaFailoverContext extends ArenaFailoverInput {
  view: FailoverView;
  /** Homes not alive whose grace clock runs; sorted. */
  waiting: string[];
  /** Homes whose grace ran out: their arenas are handed over; sorted. */
  due: string[];
  /** Homes no longer in the database: their arenas are handed over at once; one back in it starts a clock afresh. Sorted. */
  gone: string[];
  /** The hand-over asked for, until its OUTCOME. */
  inFlight: ArenaChange | null;
  /** Hand-overs that succeeded and the view's database does not show yet. */
  committed: ArenaChange[];
}

export type ArenaFailoverEvent =
  /** Sent on every change of membership, quorum, PAN or node database. */
  | ({ type: 'VIEW' } & FailoverView)
  /** The result of the update asked for by `propose`. */
  | { type: 'OUTCOME'; arena: number; ok: boolean; code?: string }
  /** Raised by the machine itself, `graceMs` after it started `home`'s clock; never sent by the actor. */
  | { type: 'GRACE_ELAPSED'; home: string };

export type ArenaFailoverEmitted =
  | { type: 'propose'; change: ArenaChange }
  | { type: 'due'; home: string; arenas: number[] };

const isActive = (v: FailoverView): boolean => v.isPan && v.quorate;
const graceId = (home: string): string => `grace:${home}`;
const sorted = (ids: Iterable<string>): string[] => [...new Set(ids)].sort();

/**
 * The new home for `arena`: among its directory replicas that are alive (M8,
 * M15: each holds every acknowledged change of the arena's directory, so it
 * can serve the arena from its own disk), the one serving the fewest arenas,
 * ties to the lowest short id; never the arena's current home. None if the
 * arena is unknown or no replica is alive: a node without the directory
 * would start it empty and hand out addresses again, so the arena waits for
 * its home or a replica to come back.
 */
export function chooseHome(db: NodeDbSnapshot, arena: number, alive: readonly string[] | ReadonlySet<string>): string | undefined {
  const entry = arenaEntryOf(db, arena);
  if (!entry) return undefined;
  const live = alive instanceof Set ? alive : new Set(alive as readonly string[]);
  const replicas = new Set(entry.replicas ?? []);
  const served = new Map<string, number>();
  for (const a of arenasOf(db)) served.set(a.home, (served.get(a.home) ?? 0) + 1);
  let best: { id: string; load: number; shortId: number } | undefined;
  for (const n of db.nodes) {
    if (n.id === entry.home || !live.has(n.id) || !replicas.has(n.id)) continue;
    const load = served.get(n.id) ?? 0;
    if (!best || load < best.load || (load === best.load && n.shortId < best.shortId)) best = { id: n.id, load, shortId: n.shortId };
  }
  return best?.id;
}

/** Hand-overs that succeeded and `db` does not show yet. */
function stillAhead(db: NodeDbSnapshot, committed: readonly ArenaChange[]): ArenaChange[] {
  return committed.filter((c) => (arenaEntryOf(db, c.arena)?.gen ?? Infinity) < c.gen);
}

/** The view's database as it is once the hand-overs that succeeded are in it. */
export function effectiveDb(db: NodeDbSnapshot, committed: readonly ArenaChange[]): NodeDbSnapshot {
  let out = db;
  for (const c of stillAhead(db, committed)) {
    const r = applyChange(out, c);
    if (r.ok) out = r.db;
  }
  return out;
}

/** The view's alive set, this anchor counted in: it is running, whatever its own heartbeat view says. */
const aliveOf = (c: ArenaFailoverContext): Set<string> => new Set([...c.view.alive, c.self]);

/** Homes of arenas that are not alive, sorted. */
function homesAtRisk(db: NodeDbSnapshot, alive: ReadonlySet<string>): string[] {
  const homes = sorted(arenasOf(db).map((a) => a.home).filter((h) => !alive.has(h)));
  assert(homes.length <= HOMES_WATCHED_MAX, `at most ${HOMES_WATCHED_MAX} homes are watched`);
  return homes;
}

/** The next hand-over to ask for: the lowest arena of a due home that some live replica can take, to `chooseHome`'s pick. */
export function nextHandOver(c: ArenaFailoverContext): ArenaChange | undefined {
  if (!isActive(c.view) || c.due.length + c.gone.length === 0) return undefined;
  const db = effectiveDb(c.view.db, c.committed);
  const due = new Set([...c.due, ...c.gone]);
  const alive = aliveOf(c);
  for (const a of arenasOf(db)) {
    if (!due.has(a.home)) continue;
    const home = chooseHome(db, a.arena, alive);
    // No live replica of this arena's directory: it waits for one; the next may have one.
    if (home === undefined) continue;
    return { op: 'arena', arena: a.arena, home, gen: a.gen + 1 };
  }
  return undefined;
}

export interface ClockPlan {
  waiting: string[];
  due: string[];
  gone: string[];
  /** Homes whose clock starts now. */
  start: string[];
  /** Homes whose clock is cancelled (alive again, or deleted: due at once). */
  stop: string[];
  /** Homes found deleted, not due before: due now. */
  dueNow: string[];
}

/** What the clocks become for the context's (new) view. */
export function planClocks(c: ArenaFailoverContext): ClockPlan {
  const db = effectiveDb(c.view.db, c.committed);
  const wasWaiting = new Set(c.waiting);
  const wasDue = new Set([...c.due, ...c.gone]);
  const plan: ClockPlan = { waiting: [], due: [], gone: [], start: [], stop: [], dueNow: [] };
  for (const h of homesAtRisk(db, aliveOf(c))) {
    if (!findNode(c.view.db, h)) {
      plan.gone.push(h);
      if (!wasDue.has(h)) plan.dueNow.push(h);
    } else if (c.due.includes(h)) plan.due.push(h);
    else if (wasWaiting.has(h)) plan.waiting.push(h);
    else {
      plan.waiting.push(h);
      plan.start.push(h);
    }
  }
  const keeps = new Set(plan.waiting);
  plan.stop = c.waiting.filter((h) => !keeps.has(h));
  return plan;
}

const arenasDue = (c: ArenaFailoverContext, home: string): number[] =>
  arenasServedBy(effectiveDb(c.view.db, c.committed), home).map((a) => a.arena);

type Ctx = { context: ArenaFailoverContext; event: ArenaFailoverEvent };

const outcomeOfInFlight = ({ context, event }: Ctx): boolean => event.type === 'OUTCOME' && context.inFlight?.arena === event.arena;

export const arenaFailoverMachine = setup({
  types: {
    context: {} as ArenaFailoverContext,
    input: {} as ArenaFailoverInput,
    events: {} as ArenaFailoverEvent,
    emitted: {} as ArenaFailoverEmitted,
  },
  actions: {
    takeView: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'VIEW') return;
      const view = { db: event.db, alive: event.alive, isPan: event.isPan, quorate: event.quorate };
      enqueue.assign({ view, committed: stillAhead(event.db, context.committed) });
    }),
    /** Starts the clocks of homes newly not alive, cancels those alive again, and makes deleted homes due. */
    retime: enqueueActions(({ context, enqueue }) => {
      const plan = planClocks(context);
      for (const h of plan.stop) enqueue.cancel(graceId(h));
      for (const h of plan.start) enqueue.raise({ type: 'GRACE_ELAPSED', home: h }, { id: graceId(h), delay: context.graceMs });
      enqueue.assign({ waiting: plan.waiting, due: plan.due, gone: plan.gone });
      for (const h of plan.dueNow) enqueue.emit({ type: 'due', home: h, arenas: arenasDue(context, h) });
    }),
    /** No longer the PAN, or no quorum: nothing carries over. */
    dropAll: enqueueActions(({ context, enqueue }) => {
      for (const h of context.waiting) enqueue.cancel(graceId(h));
      enqueue.assign({ waiting: [], due: [], gone: [], inFlight: null, committed: [] });
    }),
    markDue: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'GRACE_ELAPSED') return;
      enqueue.assign({ waiting: context.waiting.filter((h) => h !== event.home), due: sorted([...context.due, event.home]) });
      enqueue.emit({ type: 'due', home: event.home, arenas: arenasDue(context, event.home) });
    }),
    propose: enqueueActions(({ context, enqueue }) => {
      const change = present(nextHandOver(context), 'proposing is entered only when a hand-over is due');
      enqueue.assign({ inFlight: change });
      enqueue.emit({ type: 'propose', change });
    }),
    recordCommitted: enqueueActions(({ context, enqueue }) => {
      const done = present(context.inFlight, 'an outcome is recorded only for the hand-over in flight');
      const committed = [...context.committed.filter((c) => c.arena !== done.arena), done];
      assert(committed.length <= HOMES_WATCHED_MAX, `at most ${HOMES_WATCHED_MAX} hand-overs are remembered`);
      enqueue.assign({ inFlight: null, committed });
    }),
    clearInFlight: enqueueActions(({ enqueue }) => enqueue.assign({ inFlight: null })),
  },
  guards: {
    viewIsActive: ({ event }) => event.type === 'VIEW' && isActive(event),
    graceOfWaitingHome: ({ context, event }) => event.type === 'GRACE_ELAPSED' && context.waiting.includes(event.home),
    handOverDue: ({ context }) => nextHandOver(context) !== undefined,
    handedOver: (a) => outcomeOfInFlight(a) && a.event.type === 'OUTCOME' && a.event.ok,
    handOverFailed: (a) => outcomeOfInFlight(a) && a.event.type === 'OUTCOME' && !a.event.ok,
  },
  delays: {
    retry: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({
    self: input.self,
    graceMs: input.graceMs,
    retryMs: input.retryMs,
    view: { db: emptyDb(), alive: [], isPan: false, quorate: false },
    waiting: [],
    due: [],
    gone: [],
    inFlight: null,
    committed: [],
  }),
  initial: 'inactive',
  states: {
    // Not the PAN, or no quorum: no clock runs and nothing is proposed; an OUTCOME is late and ignored.
    inactive: {
      on: {
        VIEW: [{ guard: 'viewIsActive', target: 'active', actions: ['takeView', 'retime'] }, { actions: 'takeView' }],
      },
    },
    active: {
      initial: 'watching',
      on: {
        VIEW: [
          { guard: 'viewIsActive', actions: ['takeView', 'retime'] },
          { target: 'inactive', actions: ['takeView', 'dropAll'] },
        ],
        GRACE_ELAPSED: { guard: 'graceOfWaitingHome', actions: 'markDue' },
      },
      states: {
        watching: {
          always: { guard: 'handOverDue', target: 'proposing' },
        },
        // One update at a time: the next is chosen from the table this one leaves.
        proposing: {
          entry: 'propose',
          on: {
            OUTCOME: [
              { guard: 'handedOver', target: 'watching', actions: 'recordCommitted' },
              { guard: 'handOverFailed', target: 'backoff', actions: 'clearInFlight' },
            ],
          },
        },
        // A failed update says the view may be stale: wait for a newer one, then read it again.
        backoff: {
          after: { retry: 'watching' },
        },
      },
    },
  },
});

export type ArenaFailoverSnapshot = SnapshotFrom<typeof arenaFailoverMachine>;
