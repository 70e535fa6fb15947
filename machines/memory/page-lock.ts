/**
 * One page's lock at its home (SPEC.md M7 lock and unlock; the basis of M21's
 * file-system locks): shared or exclusive, held per client with re-entrant
 * counts, with an optional bounded FIFO of waiting requests.
 *
 * Safety claim, checked at every step of the model spec:
 * - never an exclusive holder beside any other holder, and shared holders
 *   only with shared ones (`mode` is exclusive only with one holder);
 * - a waiter is granted only when compatible with the holders, and only in
 *   queue order: a queued exclusive request blocks later shared ones, even
 *   while the shared holders would admit them;
 * - a cancelled or released waiter is never granted (it leaves the queue);
 * - every LOCK and UNLOCK gets exactly one answer, `granted` or `refused`:
 *   at once, or for a waiter when it is granted, cancelled (E_TIMEOUT) or
 *   released (E_CLOSED).
 *
 * Without waiting the rules are those page locks always had: a free page is
 * granted to anyone; shared beside shared; the sole holder may take the lock
 * again or upgrade it (it never downgrades); anyone else gets E_LOCKED at
 * once. UNLOCK takes one hold back (answered `granted`); a non-holder's is
 * refused E_BAD_ARGUMENT, and so is a LOCK naming a ticket that waits.
 *
 * A request that says `wait` queues instead of failing, at most `waitersMax`
 * (past it E_BUSY at once), and is granted when it reaches the head of the
 * queue and is compatible. No client both holds and waits, and none waits
 * twice: a holder's request is granted at once or refused (an upgrade beside
 * other shared holders), since a holder waiting for the others deadlocks as
 * soon as one of them does the same, and a waiter ahead of it would be
 * waiting for it. A client's second wait would queue behind its own first,
 * and once the first is granted it would be a holder waiting. Both are
 * E_LOCKED; the caller unlocks (or its wait ends) and asks again.
 *
 * Each holder and waiter records `via`, the node its client called through,
 * updated on every grant (a client that reconnected elsewhere is reachable
 * there). `RELEASE_VIA` (that node failed or restarted) drops every hold and
 * wait that came through it, `RELEASE_CLIENT` one client's (it went away);
 * the waiters that become compatible are granted.
 *
 * `free` (no holder, hence no waiter: once nobody holds, the head of the
 * queue is granted) lets the owner delete the actor; `held` otherwise.
 * Emits `granted {ticket, client}`, `refused {ticket, client, code, holders,
 * mode}` (`holders`: the other holders, who block, for the message) and
 * `released {client}` when a client's last hold goes.
 */
import { assertEvent, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import { assert } from '../../bus/assert.js';

export const machineName = 'page-lock';

/**
 * Requests one page's lock keeps waiting. A client waits at most once per
 * page, so this is about the number of clients contending for one page; a
 * waiter costs the home a pending call until it is granted or its caller
 * times out. Past it a waiting request is refused E_BUSY at once.
 */
export const PAGE_LOCK_WAITERS_MAX = 1024;

export type LockMode = 'shared' | 'exclusive';

export interface Hold {
  /** How many grants the client has not yet given back. */
  count: number;
  /** The node the client called through when last granted. */
  via: string;
}

export interface LockWaiter {
  client: string;
  via: string;
  mode: LockMode;
  /** Names the request: its answer and a CANCEL carry it. */
  ticket: number;
}

export interface PageLockContext {
  /** Client → its hold; read it through `holdOf`, never by indexing (client ids come off the wire). */
  holders: Record<string, Hold>;
  /** null exactly when nobody holds. */
  mode: LockMode | null;
  /** In arrival order; never a holder, never one client twice. */
  waiting: LockWaiter[];
  waitersMax: number;
}

export interface PageLockInput {
  /** Default PAGE_LOCK_WAITERS_MAX. */
  waitersMax?: number;
}

export type PageLockEvent =
  | { type: 'LOCK'; client: string; via: string; mode: LockMode; wait: boolean; ticket: number }
  | { type: 'UNLOCK'; client: string; ticket: number }
  /** The waiter's caller gave up: it leaves the queue, answered E_TIMEOUT. Unknown tickets change nothing. */
  | { type: 'CANCEL'; ticket: number }
  | { type: 'RELEASE_VIA'; node: string }
  | { type: 'RELEASE_CLIENT'; client: string };

export type LockRefusalCode = 'E_LOCKED' | 'E_BUSY' | 'E_BAD_ARGUMENT' | 'E_TIMEOUT' | 'E_CLOSED';

export type PageLockEmitted =
  | { type: 'granted'; ticket: number; client: string }
  | { type: 'refused'; ticket: number; client: string; code: LockRefusalCode; holders: string[]; mode: LockMode | null }
  | { type: 'released'; client: string };

type Ctx = PageLockContext;

/** The client's hold, if it has one (an own property: a client named `__proto__` is a client like any other). */
export function holdOf(ctx: Pick<Ctx, 'holders'>, client: string): Hold | undefined {
  return Object.hasOwn(ctx.holders, client) ? ctx.holders[client] : undefined;
}

const holderIds = (ctx: Pick<Ctx, 'holders'>): string[] => Object.keys(ctx.holders).sort();
const othersThan = (ctx: Ctx, client: string): string[] => holderIds(ctx).filter((c) => c !== client);

/** Whether `client` may hold `mode` beside the present holders (the queue aside). */
function compatible(ctx: Ctx, client: string, mode: LockMode): boolean {
  const ids = Object.keys(ctx.holders);
  if (ids.length === 0 || (ids.length === 1 && ids[0] === client)) return true;
  return ctx.mode === 'shared' && mode === 'shared';
}

/** The holders and mode once `client` is granted `mode`: an exclusive lock stays exclusive. */
function withGrant(ctx: Ctx, client: string, via: string, mode: LockMode): Pick<Ctx, 'holders' | 'mode'> {
  assert(compatible(ctx, client, mode), 'a lock is granted only beside compatible holders');
  const count = (holdOf(ctx, client)?.count ?? 0) + 1;
  return {
    holders: { ...ctx.holders, [client]: { count, via } },
    mode: ctx.mode === 'exclusive' || mode === 'exclusive' ? 'exclusive' : 'shared',
  };
}

/** Holders and waiters matching `drop` removed: what is left, who lost their last hold, which waits ended. */
function without(ctx: Ctx, drop: (client: string, via: string) => boolean): { next: Ctx; released: string[]; ended: LockWaiter[] } {
  const released = holderIds(ctx).filter((c) => drop(c, ctx.holders[c].via));
  const holders = Object.fromEntries(Object.entries(ctx.holders).filter(([c, h]) => !drop(c, h.via)));
  const ended = ctx.waiting.filter((w) => drop(w.client, w.via));
  const waiting = ctx.waiting.filter((w) => !drop(w.client, w.via));
  const mode = Object.keys(holders).length === 0 ? null : ctx.mode;
  return { next: { ...ctx, holders, mode, waiting }, released, ended };
}

const refusal = (ctx: Ctx, ticket: number, client: string, code: LockRefusalCode): PageLockEmitted => ({
  type: 'refused',
  ticket,
  client,
  code,
  holders: othersThan(ctx, client),
  mode: ctx.mode,
});

export const pageLockMachine = setup({
  types: {
    context: {} as PageLockContext,
    input: {} as PageLockInput,
    events: {} as PageLockEvent,
    emitted: {} as PageLockEmitted,
  },
  guards: {
    /** A LOCK naming a ticket that waits already (tickets are the owner's, one per request). */
    ticketInUse: ({ context, event }) => {
      assertEvent(event, 'LOCK');
      return context.waiting.some((w) => w.ticket === event.ticket);
    },
    /** A holder's compatible request, or anyone's when compatible and nobody waits ahead. */
    mayTakeNow: ({ context, event }) => {
      assertEvent(event, 'LOCK');
      const queueAhead = holdOf(context, event.client) === undefined && context.waiting.length > 0;
      return !queueAhead && compatible(context, event.client, event.mode);
    },
    /** The requester holds the lock or waits for it already: it does not wait (again). */
    holdsOrWaits: ({ context, event }) => {
      assertEvent(event, 'LOCK');
      return holdOf(context, event.client) !== undefined || context.waiting.some((w) => w.client === event.client);
    },
    mayWait: ({ context, event }) => {
      assertEvent(event, 'LOCK');
      return event.wait && context.waiting.length < context.waitersMax;
    },
    asksToWait: ({ event }) => {
      assertEvent(event, 'LOCK');
      return event.wait;
    },
    holdsLock: ({ context, event }) => {
      assertEvent(event, 'UNLOCK');
      return holdOf(context, event.client) !== undefined;
    },
    isWaiting: ({ context, event }) => {
      assertEvent(event, 'CANCEL');
      return context.waiting.some((w) => w.ticket === event.ticket);
    },
    nobodyHolds: ({ context }) => {
      const none = Object.keys(context.holders).length === 0;
      assert(!none || context.waiting.length === 0, 'a waiter at the head of the queue is granted once nobody holds');
      return none;
    },
  },
  actions: {
    grant: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'LOCK');
      enqueue.assign(withGrant(context, event.client, event.via, event.mode));
      enqueue.emit({ type: 'granted', ticket: event.ticket, client: event.client });
    }),
    enqueueWaiter: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'LOCK');
      assert(context.waiting.length < context.waitersMax, 'the queue has room (mayWait)');
      const { client, via, mode, ticket } = event;
      enqueue.assign({ waiting: [...context.waiting, { client, via, mode, ticket }] });
    }),
    refuseLocked: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'LOCK');
      enqueue.emit(refusal(context, event.ticket, event.client, 'E_LOCKED'));
    }),
    refuseBusy: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'LOCK');
      enqueue.emit(refusal(context, event.ticket, event.client, 'E_BUSY'));
    }),
    refuseBadRequest: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, ['LOCK', 'UNLOCK']);
      enqueue.emit(refusal(context, event.ticket, event.client, 'E_BAD_ARGUMENT'));
    }),
    /** One hold given back; the client's last releases it (locks never downgrade while held). */
    unlockOne: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'UNLOCK');
      const held = holdOf(context, event.client);
      assert(held !== undefined, 'only a holder unlocks (holdsLock)');
      if (held.count > 1) {
        enqueue.assign({ holders: { ...context.holders, [event.client]: { ...held, count: held.count - 1 } } });
        enqueue.emit({ type: 'granted', ticket: event.ticket, client: event.client });
        return;
      }
      const holders = Object.fromEntries(Object.entries(context.holders).filter(([c]) => c !== event.client));
      enqueue.assign({ holders, mode: Object.keys(holders).length === 0 ? null : context.mode });
      enqueue.emit({ type: 'granted', ticket: event.ticket, client: event.client });
      enqueue.emit({ type: 'released', client: event.client });
    }),
    withdrawWaiter: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'CANCEL');
      const w = context.waiting.find((x) => x.ticket === event.ticket);
      assert(w !== undefined, 'only a waiting ticket is withdrawn (isWaiting)');
      enqueue.assign({ waiting: context.waiting.filter((x) => x !== w) });
      enqueue.emit(refusal(context, w.ticket, w.client, 'E_TIMEOUT'));
    }),
    /** Every hold and wait that came through a failed or restarted node goes. */
    releaseVia: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'RELEASE_VIA');
      const { next, released, ended } = without(context, (_c, via) => via === event.node);
      enqueue.assign({ holders: next.holders, mode: next.mode, waiting: next.waiting });
      for (const w of ended) enqueue.emit(refusal(next, w.ticket, w.client, 'E_CLOSED'));
      for (const client of released) enqueue.emit({ type: 'released', client });
    }),
    /** Every hold and wait of a client that went away goes. */
    releaseClient: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'RELEASE_CLIENT');
      const { next, released, ended } = without(context, (c) => c === event.client);
      enqueue.assign({ holders: next.holders, mode: next.mode, waiting: next.waiting });
      for (const w of ended) enqueue.emit(refusal(next, w.ticket, w.client, 'E_CLOSED'));
      for (const client of released) enqueue.emit({ type: 'released', client });
    }),
    /** Grants from the head of the queue while the head is compatible: FIFO, so one blocked waiter blocks all behind it. */
    grantWaiters: enqueueActions(({ context, enqueue }) => {
      let ctx = context;
      while (ctx.waiting.length > 0 && compatible(ctx, ctx.waiting[0].client, ctx.waiting[0].mode)) {
        const [w, ...rest] = ctx.waiting;
        ctx = { ...ctx, ...withGrant(ctx, w.client, w.via, w.mode), waiting: rest };
        enqueue.emit({ type: 'granted', ticket: w.ticket, client: w.client });
      }
      if (ctx !== context) enqueue.assign({ holders: ctx.holders, mode: ctx.mode, waiting: ctx.waiting });
    }),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({ holders: {}, mode: null, waiting: [], waitersMax: input.waitersMax ?? PAGE_LOCK_WAITERS_MAX }),
  initial: 'free',
  states: {
    free: {
      on: {
        LOCK: { target: 'held', actions: 'grant' },
        UNLOCK: { actions: 'refuseBadRequest' },
      },
    },
    held: {
      always: { guard: 'nobodyHolds', target: 'free' },
      on: {
        LOCK: [
          { guard: 'ticketInUse', actions: 'refuseBadRequest' },
          { guard: 'mayTakeNow', actions: 'grant' },
          { guard: 'holdsOrWaits', actions: 'refuseLocked' },
          { guard: 'mayWait', actions: 'enqueueWaiter' },
          { guard: 'asksToWait', actions: 'refuseBusy' },
          { actions: 'refuseLocked' },
        ],
        UNLOCK: [{ guard: 'holdsLock', actions: ['unlockOne', 'grantWaiters'] }, { actions: 'refuseBadRequest' }],
        CANCEL: { guard: 'isWaiting', actions: ['withdrawWaiter', 'grantWaiters'] },
        RELEASE_VIA: { actions: ['releaseVia', 'grantWaiters'] },
        RELEASE_CLIENT: { actions: ['releaseClient', 'grantWaiters'] },
      },
    },
  },
});

export type PageLockSnapshot = SnapshotFrom<typeof pageLockMachine>;
