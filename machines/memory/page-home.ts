/**
 * Coherence of one page at its home, the page's responsible node (SPEC.md
 * M10; docs/engine.md): single writer, many readers, by invalidation. This is
 * Li and Hudak's fixed distributed manager: the home serialises every request
 * for its page, one at a time, and the data itself moves between holders.
 *
 * The home knows the page's `owner` (the node whose copy is the newest; it
 * may write while it is the only holder) and its `readers` (read-only
 * copies). Safety claims, checked at every step of the model specs:
 * - at most one owner, and while a write is granted nobody else holds a copy
 *   (every reader acknowledged its invalidation before the grant);
 * - the version rises by one with every granted write and never goes back;
 * - one request at a time: the next waits until the requester confirms it
 *   holds what it asked for, so a read can never see an older version than
 *   a write the home already granted.
 *
 * A read: the home asks the owner to send a copy to the requester (the
 * owner's own copy becomes read-only: it has readers now), and waits for the
 * requester to confirm. A write: the home first asks the owner to hand the
 * page over and waits for the requester's confirmation that it has it, and
 * only then invalidates the readers' copies; once each has acknowledged,
 * the write is granted (`served`): the requester is the owner and only
 * readable copy, at the next version. Hand-over first, invalidation after:
 * until a copy is confirmed at the requester no copy is dropped, so an owner
 * that dies with the page's newest version unflushed leaves that version on
 * its readers, where the rebuild finds it (M14); a reader may have read it,
 * so it must not go with the owner. The old owner keeps its copy, for
 * nobody to read (`kept`), until the next write: a requester that dies
 * right after confirming (its confirmation still on the way) would
 * otherwise take the only copy of a version others read with it.
 *
 * Lost messages are retried every `retryMs` (a holder answers a repeated
 * request again; a requester confirms a repeated hand-over again; the home
 * answers a repeated request or confirmation of the request it served last
 * with `served` again). A holder
 * the membership reports failed (`HOLDER_FAILED`) is no longer waited for;
 * if it was the owner, the page has no owner until recovery names one
 * (`SET_OWNER`, from the freshest core holder's disk copy, M15) and requests
 * fail with `E_PAGE_LOST` meanwhile: the newest copy may have died with it.
 *
 * The machine emits what the home must send, as semantic events the page
 * actor turns into `page.*` messages:
 * - `invalidate {to, round, version}`: drop your copy and acknowledge. A
 *   holder remembers the round its copy came in (the `forward`'s) and drops
 *   it only for an invalidation of a later round: a late duplicate of an
 *   old invalidation must not destroy a copy granted since;
 * - `forward {to, requester, req, round, mode, version}`: send your copy to
 *   `requester` for its request `req` (mode `read`: keep yours, read-only;
 *   `write`: keep yours, unreadable, until invalidated). A requester takes
 *   data only for the request it is waiting on, so a late duplicate of an
 *   old hand-over never brings back a copy the home has invalidated;
 * - `served {request, version}` when a request is complete, `refused
 *   {request, code}` when it cannot be served.
 */
import { and, assign, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import { present } from '../../bus/assert.js';

export const machineName = 'page-home';

/**
 * Requests one page's home keeps waiting. A holder has one request per page
 * outstanding, so the queue holds about one per node that wants the page;
 * the bound stops requesters that send fresh request numbers and never
 * confirm from growing it without limit. Past it a request is refused with
 * E_BUSY at once (the requester's access fails; it may ask again).
 */
export const PAGE_REQUESTS_QUEUED_MAX = 4096;

export type AccessMode = 'read' | 'write';

export interface PageRequest {
  mode: AccessMode;
  from: string;
  /** The requester's request number: confirmations name it, so a stale one is recognised. */
  req: number;
}

export interface PageHomeContext {
  owner: string | null;
  /** Sorted; never holds the owner. */
  readers: string[];
  /** Old owners holding a copy nobody reads, a backup until the next write invalidates it. */
  kept: string[];
  /** Per reader, the round its copy came in: a reader's word that it dropped a copy counts only for that copy. */
  readSince: Record<string, number>;
  version: number;
  queue: PageRequest[];
  /** The request being served. */
  current: PageRequest | null;
  /** Numbers the requests the home has taken up, from 1; see `invalidate`. */
  round: number;
  /** Holders whose invalidation acknowledgement the current write still needs. */
  waiting: string[];
  /** The owner a write is taking the page from, until it is granted: it gets the page back if the requester dies first. */
  previousOwner: string | null;
  /** Per requester, its last served request: requests are numbered upwards per requester, so an
   * older one arriving late is dropped, and a repeat of the last is answered again (its answer was lost). */
  lastServed: Record<string, { req: number; mode: AccessMode; version: number; round: number }>;
  retryMs: number;
}

export interface PageHomeInput {
  /** The node holding the newest copy (on materialize: the home itself). */
  owner: string | null;
  readers?: string[];
  version?: number;
  retryMs: number;
}

export type PageHomeEvent =
  | ({ type: 'REQUEST' } & PageRequest)
  /** `round`: the invalidation's; an acknowledgement of an earlier round is a late duplicate. */
  | { type: 'INVALIDATED'; from: string; round: number }
  | { type: 'CONFIRMED'; from: string; req: number }
  /** A reader dropped the copy it got in `round` (memory pressure, unreference; M12). */
  | { type: 'DROPPED'; from: string; round: number }
  | { type: 'HOLDER_FAILED'; id: string }
  | { type: 'SET_OWNER'; owner: string; version: number };

export type PageHomeEmitted =
  | { type: 'invalidate'; to: string; round: number; version: number }
  | { type: 'forward'; to: string; requester: string; req: number; round: number; mode: AccessMode; version: number }
  /** `round`: the request's; a holder that already saw a later round knows its grant is superseded. */
  | { type: 'served'; request: PageRequest; version: number; round: number }
  | { type: 'refused'; request: PageRequest; code: 'E_PAGE_LOST' | 'E_BUSY' };

const without = (list: readonly string[], id: string): string[] => list.filter((x) => x !== id);
const withId = (list: readonly string[], id: string): string[] => (list.includes(id) ? [...list] : [...list, id].sort());

function served(ctx: PageHomeContext, r: PageRequest, version: number): PageHomeContext['lastServed'] {
  return { ...ctx.lastServed, [r.from]: { req: r.req, mode: r.mode, version, round: ctx.round } };
}

/** The request being served: only called in the states that serve one. */
function currentOf(ctx: PageHomeContext): PageRequest {
  return present(ctx.current, 'a request is being served in this state');
}

/** Copies that must go before `to` may write: the readers' and the older backups (the owner's own stays kept). */
function toInvalidate(ctx: PageHomeContext, to: string): string[] {
  return [...new Set([...ctx.readers, ...ctx.kept])].filter((id) => id !== to && id !== ctx.owner).sort();
}

export const pageHomeMachine = setup({
  types: {
    context: {} as PageHomeContext,
    input: {} as PageHomeInput,
    events: {} as PageHomeEvent,
    emitted: {} as PageHomeEmitted,
  },
  delays: {
    retry: ({ context }) => context.retryMs,
  },
  guards: {
    hasQueued: ({ context }) => context.queue.length > 0,
    ownerLost: ({ context }) => context.owner === null,
    /** The requester already holds what it asks for: serve at once. */
    alreadyHeld: ({ context }) => {
      const r = currentOf(context);
      if (r.mode === 'read') return context.owner === r.from || context.readers.includes(r.from);
      return context.owner === r.from && context.readers.length === 0 && context.kept.length === 0;
    },
    isWrite: ({ context }) => currentOf(context).mode === 'write',
    requesterOwns: ({ context }) => currentOf(context).from === context.owner,
    allInvalidated: ({ context }) => context.waiting.length === 0,
    confirmsCurrent: ({ context, event }) =>
      event.type === 'CONFIRMED' && context.current !== null && event.from === context.current.from && event.req === context.current.req,
    currentRequesterFailed: ({ context, event }) => event.type === 'HOLDER_FAILED' && context.current?.from === event.id,
  },
  actions: {
    enqueue: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST') return;
      const { mode, from, req } = event;
      const last = context.lastServed[from];
      if (last && req <= last.req) {
        if (req === last.req) enqueue.emit({ type: 'served', request: { mode, from, req }, version: last.version, round: last.round });
        return;
      }
      // A repeated request (the requester retried) is served once.
      const dup = context.queue.some((q) => q.from === from && q.req === req) || (context.current?.from === from && context.current.req === req);
      if (dup) return;
      if (context.queue.length >= PAGE_REQUESTS_QUEUED_MAX) enqueue.emit({ type: 'refused', request: { mode, from, req }, code: 'E_BUSY' });
      else enqueue.assign({ queue: [...context.queue, { mode, from, req }] });
    }),
    /** A reader that dropped its copy is no reader any more, unless the home is invalidating or serving it now. */
    noteDropped: assign(({ context, event }) => {
      if (event.type !== 'DROPPED') return {};
      const { from, round } = event;
      if (!context.readers.includes(from) || context.readSince[from] !== round) return {};
      if (context.waiting.includes(from) || context.current?.from === from) return {};
      const { [from]: _gone, ...readSince } = context.readSince;
      return { readers: without(context.readers, from), readSince };
    }),
    /** A confirmation of the last request served: the `served` was lost, so say it again. */
    reserve: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'CONFIRMED') return;
      const last = context.lastServed[event.from];
      if (last && last.req === event.req) enqueue.emit({ type: 'served', request: { mode: last.mode, from: event.from, req: event.req }, version: last.version, round: last.round });
    }),
    takeNext: assign({
      current: ({ context }) => context.queue[0],
      queue: ({ context }) => context.queue.slice(1),
      round: ({ context }) => context.round + 1,
    }),
    serveHeld: enqueueActions(({ context, enqueue }) => {
      const r = currentOf(context);
      const version = r.mode === 'write' ? context.version + 1 : context.version;
      enqueue.assign({ version, current: null, lastServed: served(context, r, version) });
      enqueue.emit({ type: 'served', request: r, version, round: context.round });
    }),
    refuseLost: enqueueActions(({ context, enqueue }) => {
      enqueue.emit({ type: 'refused', request: currentOf(context), code: 'E_PAGE_LOST' });
      enqueue.assign({ current: null });
    }),
    /** The owner writes: its readers' copies go. */
    startReleasing: assign({ waiting: ({ context }) => toInvalidate(context, currentOf(context).from), previousOwner: ({ context }) => context.owner }),
    sendInvalidations: enqueueActions(({ context, enqueue }) => {
      for (const to of context.waiting) enqueue.emit({ type: 'invalidate', to, round: context.round, version: context.version });
    }),
    noteInvalidated: assign(({ context, event }) => {
      if (event.type !== 'INVALIDATED' && event.type !== 'HOLDER_FAILED') return {};
      if (event.type === 'INVALIDATED' && event.round !== context.round) return {};
      const id = event.type === 'INVALIDATED' ? event.from : event.id;
      return { waiting: without(context.waiting, id), readers: without(context.readers, id), kept: without(context.kept, id) };
    }),
    sendForward: enqueueActions(({ context, enqueue }) => {
      const r = currentOf(context);
      if (context.owner === null || context.owner === r.from) return;
      enqueue.emit({ type: 'forward', to: present(context.owner, 'a forward goes to an owner (ownerLost refuses first)'), requester: r.from, req: r.req, round: context.round, mode: r.mode, version: context.version });
    }),
    completeRead: enqueueActions(({ context, enqueue }) => {
      const r = currentOf(context);
      enqueue.assign({
        readers: r.from === context.owner ? context.readers : withId(context.readers, r.from),
        readSince: r.from === context.owner ? context.readSince : { ...context.readSince, [r.from]: context.round },
        current: null,
        lastServed: served(context, r, context.version),
      });
      enqueue.emit({ type: 'served', request: r, version: context.version, round: context.round });
    }),
    /** The requester died before the write was granted: the old owner, whose copy was kept, has the page again; copies not yet invalidated stay counted. */
    revertHandOver: assign(({ context }) => ({ owner: context.previousOwner, current: null, waiting: [], previousOwner: null })),
    /** The requester has the page: it owns it now, the old owner keeps its copy (unread), and the readers' and older backups go. */
    handOver: assign(({ context }) => ({
      owner: currentOf(context).from,
      readers: without(context.readers, currentOf(context).from),
      kept: without(context.kept, currentOf(context).from),
      waiting: toInvalidate({ ...context, owner: null }, currentOf(context).from).filter((id) => id !== context.owner),
      previousOwner: context.owner,
    })),
    completeWrite: enqueueActions(({ context, enqueue }) => {
      const r = currentOf(context);
      const version = context.version + 1;
      const previous = context.previousOwner;
      const kept = previous !== null && previous !== r.from ? [previous] : [];
      enqueue.assign({ owner: r.from, readers: [], kept, version, current: null, waiting: [], previousOwner: null, lastServed: served(context, r, version) });
      enqueue.emit({ type: 'served', request: r, version, round: context.round });
    }),
    dropRequest: assign({ current: null, waiting: [], previousOwner: null }),
    forgetHolder: assign(({ context, event }) => {
      if (event.type !== 'HOLDER_FAILED') return {};
      return {
        owner: context.owner === event.id ? null : context.owner,
        readers: without(context.readers, event.id),
        kept: without(context.kept, event.id),
        waiting: without(context.waiting, event.id),
        queue: context.queue.filter((q) => q.from !== event.id),
      };
    }),
    setOwner: assign(({ context, event }) => {
      if (event.type !== 'SET_OWNER') return {};
      // Recovery names the holder of the freshest surviving copy; versions never go back.
      return { owner: event.owner, readers: without(context.readers, event.owner), version: Math.max(context.version, event.version) };
    }),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => {
    const readers = [...(input.readers ?? [])].filter((r) => r !== input.owner).sort();
    return {
      owner: input.owner,
      readers,
      kept: [],
      // Readers a rebuild registered hold their copies from round 0, as their holders number them (a drop of one counts).
      readSince: Object.fromEntries(readers.map((r) => [r, 0])),
      version: input.version ?? 0,
      queue: [],
      current: null,
      round: 0,
      waiting: [],
      previousOwner: null,
      lastServed: {},
      retryMs: input.retryMs,
    };
  },
  on: {
    REQUEST: { actions: 'enqueue' },
    CONFIRMED: { actions: 'reserve' },
    DROPPED: { actions: 'noteDropped' },
    SET_OWNER: { actions: 'setOwner' },
  },
  initial: 'idle',
  states: {
    idle: {
      always: { guard: 'hasQueued', target: 'choosing', actions: 'takeNext' },
      on: { HOLDER_FAILED: { actions: 'forgetHolder' } },
    },
    choosing: {
      always: [
        { guard: 'ownerLost', target: 'idle', actions: 'refuseLost' },
        { guard: 'alreadyHeld', target: 'idle', actions: 'serveHeld' },
        // The owner itself writes: nothing to hand over, its readers' copies go.
        { guard: and(['isWrite', 'requesterOwns']), target: 'releasing', actions: 'startReleasing' },
        { target: 'forwarding' },
      ],
    },
    forwarding: {
      entry: 'sendForward',
      always: { guard: 'ownerLost', target: 'idle', actions: 'refuseLost' },
      after: { retry: { target: 'forwarding', reenter: true } },
      on: {
        CONFIRMED: [
          { guard: and(['confirmsCurrent', 'isWrite']), target: 'releasing', actions: 'handOver' },
          { guard: 'confirmsCurrent', target: 'idle', actions: 'completeRead' },
        ],
        HOLDER_FAILED: [
          { guard: 'currentRequesterFailed', target: 'idle', actions: ['dropRequest', 'forgetHolder'] },
          { actions: 'forgetHolder' },
        ],
      },
    },
    /** The new owner holds the page (or the owner writes): every other copy goes, then the write is granted. */
    releasing: {
      entry: 'sendInvalidations',
      always: { guard: 'allInvalidated', target: 'idle', actions: 'completeWrite' },
      after: { retry: { target: 'releasing', reenter: true } },
      on: {
        INVALIDATED: { actions: 'noteInvalidated' },
        HOLDER_FAILED: [
          // The new owner died before the write was granted: whoever still has a copy keeps it.
          { guard: 'currentRequesterFailed', target: 'idle', actions: 'revertHandOver' },
          { actions: ['noteInvalidated', 'forgetHolder'] },
        ],
      },
    },
  },
});

export type PageHomeSnapshot = SnapshotFrom<typeof pageHomeMachine>;
