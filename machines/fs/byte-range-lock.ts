/**
 * One byte-range lock request through the patent's FS-lock protocol (SPEC.md
 * M21; "FILE ACCESS AND RESOURCE SHARING — LOCKING"), over the volatile page
 * holding the file stream's lock table (machines/fs/byte-ranges.ts).
 *
 * Safety claim: no two incompatible byte-range locks are ever both granted.
 * Every change to the table is written under the exclusive page lock, and is
 * decided on a table read under that same lock, so no other change falls
 * between the decision and the write; the table therefore only ever holds
 * compatible records, and a lock is granted only once its record is in it.
 *
 * Taking a lock: (a) take the page lock shared, read the table, unlock; (b)
 * if the request is compatible, take the page lock exclusive, read the table
 * again, and if it is still compatible write it with the new record, unlock,
 * `granted`; (c) if not, `refused` (the caller reports E_LOCKED, POSIX
 * EAGAIN) or, when the request waits, `waiting` for the page to change, then
 * (a) again, at most `attemptsMax` times (then `failed` E_BUSY). The engine's
 * page locks do not upgrade from shared to exclusive, so the shared lock is
 * given back before the exclusive one is asked for. Releasing one
 * (`op: 'release'`) takes the page exclusive at once, reads, writes the
 * table without the record when it is there (`found`), unlocks, `released`.
 *
 * The shared pass spares a busy page exclusive locks (a request that
 * conflicts learns so beside the other readers); only the exclusive read
 * decides. A page change
 * noticed after the read (PAGE_CHANGED in any state) is remembered, so a
 * release written between the read and `waiting` is not a lost wake-up.
 *
 * FAILED (the engine's answer to the command out, or its page-change watch
 * gone) ends in `failed`, giving back a page lock held first. A failure of
 * the write leaves its fate unknown: the caller drops the handle's records on
 * close (withoutOwner). A failure of the last unlock after a write that
 * landed still ends `granted`/`released`: the table says so, and the engine
 * drops a departed client's page locks. CANCEL (the caller gave up, the
 * handle closed) ends a lock request in `cancelled` at its next step, after
 * giving back a page lock held; once the write is out it is too late, and the
 * request ends `granted` for the caller to release.
 *
 * Emits `lockPage {mode}`, `readPage`, `writePage {table}` and `unlockPage`;
 * each is answered by PAGE_LOCKED, PAGE_READ {table} (the runner decodes the
 * page; a corrupt one is FAILED E_CORRUPT), PAGE_WRITTEN, PAGE_UNLOCKED, or
 * FAILED.
 */
import { and, assertEvent, assign, emit, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { ErrorCode } from '../../bus/errors.js';
import { checkRangeLock, conflicts, RANGE_LOCKS_MAX, withLock, withoutLock, type RangeLock, type RangeLockMode } from './byte-ranges.js';

export const machineName = 'byte-range-lock';

/**
 * Passes (a) one request makes. Each pass after the first follows a change
 * of the page, so this bounds how long a waiter chases a busy file; past it
 * the request fails E_BUSY and the caller may ask again.
 */
export const ATTEMPTS_MAX = 1000;

export type ByteRangeOp = 'lock' | 'release';
export type PageLockHeld = 'none' | RangeLockMode;

export interface ByteRangeLockInput {
  /** For `release`, the record to remove: owner, start and end name it. */
  request: RangeLock;
  /** Default `lock`. */
  op?: ByteRangeOp;
  /** Whether a conflicting lock request waits (default false: refused at once). */
  wait?: boolean;
  /** Default ATTEMPTS_MAX. */
  attemptsMax?: number;
}

export interface ByteRangeLockContext {
  op: ByteRangeOp;
  request: RangeLock;
  wait: boolean;
  attemptsMax: number;
  attempts: number;
  /** The page lock granted and not yet given back. */
  heldPageLock: PageLockHeld;
  /** The table last read. */
  table: RangeLock[] | null;
  /** The first record in `table` that the request conflicts with. */
  conflict: RangeLock | null;
  /** For `release`: whether the last table read held the record. */
  found: boolean;
  /** The page changed after the last read was asked for. */
  changedSinceRead: boolean;
  cancelAsked: boolean;
  failure: { code: ErrorCode; message: string } | null;
}

export type ByteRangeLockEvent =
  | { type: 'START' }
  | { type: 'PAGE_LOCKED' }
  | { type: 'PAGE_READ'; table: RangeLock[] }
  | { type: 'PAGE_WRITTEN' }
  | { type: 'PAGE_UNLOCKED' }
  | { type: 'PAGE_CHANGED' }
  | { type: 'FAILED'; code: ErrorCode; message: string }
  | { type: 'CANCEL' };

export type ByteRangeCommand =
  | { type: 'lockPage'; mode: RangeLockMode }
  | { type: 'readPage' }
  | { type: 'writePage'; table: RangeLock[] }
  | { type: 'unlockPage' };

type Ctx = ByteRangeLockContext;

const readTable = (event: ByteRangeLockEvent): RangeLock[] => {
  assertEvent(event, 'PAGE_READ');
  return event.table;
};
const removal = (ctx: Ctx, table: readonly RangeLock[]) => withoutLock(table, ctx.request.owner, ctx.request.start, ctx.request.end);

const held = (mode: PageLockHeld) => ({ type: 'noteHeld', params: { mode } }) as const;
const lockPage = (mode: RangeLockMode) => ({ type: 'lockPage', params: { mode } }) as const;

export const byteRangeLockMachine = setup({
  types: {
    context: {} as ByteRangeLockContext,
    input: {} as ByteRangeLockInput,
    events: {} as ByteRangeLockEvent,
    emitted: {} as ByteRangeCommand,
  },
  guards: {
    isRelease: ({ context }) => context.op === 'release',
    cancelAsked: ({ context }) => context.cancelAsked,
    hasConflict: ({ context }) => context.conflict !== null,
    waits: ({ context }) => context.wait,
    changedSinceRead: ({ context }) => context.changedSinceRead,
    hasAttemptsLeft: ({ context }) => context.attempts < context.attemptsMax,
    holdsPageLock: ({ context }) => context.heldPageLock !== 'none',
    readsConflict: ({ context, event }) => conflicts(readTable(event), context.request).length > 0,
    readsFullTable: ({ event }) => readTable(event).length >= RANGE_LOCKS_MAX,
    readsRecord: ({ context, event }) => removal(context, readTable(event)).removed,
  },
  actions: {
    lockPage: emit((_, params: { mode: RangeLockMode }) => ({ type: 'lockPage' as const, mode: params.mode })),
    countAttempt: assign(({ context }) => ({ attempts: context.attempts + 1 })),
    noteHeld: assign((_, params: { mode: PageLockHeld }) => ({ heldPageLock: params.mode })),
    /** Changes noticed from here on are changes the read may not show. */
    read: enqueueActions(({ enqueue }) => {
      enqueue.assign({ changedSinceRead: false });
      enqueue.emit({ type: 'readPage' });
    }),
    noteTable: assign(({ context, event }) => {
      const table = readTable(event);
      if (context.op === 'release') return { table, conflict: null, found: removal(context, table).removed };
      return { table, conflict: conflicts(table, context.request)[0] ?? null };
    }),
    writeWithLock: emit(({ context, event }) => ({ type: 'writePage' as const, table: withLock(readTable(event), context.request) })),
    writeWithoutLock: emit(({ context, event }) => ({ type: 'writePage' as const, table: removal(context, readTable(event)).table })),
    unlock: emit({ type: 'unlockPage' }),
    noteChange: assign({ changedSinceRead: true }),
    noteCancel: assign({ cancelAsked: true }),
    noteFailure: assign(({ event }) => {
      assertEvent(event, 'FAILED');
      return { failure: { code: event.code, message: event.message } };
    }),
    failTableFull: assign({
      failure: { code: 'E_BUSY', message: `too many byte-range locks on one file: its lock page holds at most ${RANGE_LOCKS_MAX}` },
    }),
    failTooManyAttempts: assign(({ context }) => ({
      failure: { code: 'E_BUSY' as const, message: `a byte-range lock still conflicted after ${context.attempts} attempts on a busy file; ask again` },
    })),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => {
    checkRangeLock(input.request);
    return {
      op: input.op ?? 'lock',
      request: { ...input.request },
      wait: input.wait ?? false,
      attemptsMax: input.attemptsMax ?? ATTEMPTS_MAX,
      attempts: 0,
      heldPageLock: 'none',
      table: null,
      conflict: null,
      found: false,
      changedSinceRead: false,
      cancelAsked: false,
      failure: null,
    };
  },
  initial: 'idle',
  on: {
    FAILED: [
      { guard: 'holdsPageLock', target: '.unlocking.failed', actions: ['noteFailure', 'unlock'] },
      { target: '.failed', actions: 'noteFailure' },
    ],
    // A release is cleanup: nobody waits on it, so it runs to its end.
    CANCEL: { guard: ({ context }) => context.op === 'lock', actions: 'noteCancel' },
    PAGE_CHANGED: { actions: 'noteChange' },
  },
  states: {
    idle: {
      on: {
        START: [
          { guard: 'isRelease', target: 'exclusiveLocking', actions: ['countAttempt', lockPage('exclusive')] },
          { target: 'retrying' },
        ],
        CANCEL: 'cancelled',
      },
    },
    /** Step (a) again, while attempts are left. */
    retrying: {
      always: [
        { guard: 'hasAttemptsLeft', target: 'sharedLocking', actions: ['countAttempt', lockPage('shared')] },
        { target: 'failed', actions: 'failTooManyAttempts' },
      ],
    },
    sharedLocking: {
      on: {
        PAGE_LOCKED: [
          { guard: 'cancelAsked', target: 'unlocking.cancelled', actions: [held('shared'), 'unlock'] },
          { target: 'sharedReading', actions: [held('shared'), 'read'] },
        ],
      },
    },
    sharedReading: {
      on: { PAGE_READ: { target: 'unlocking.afterRead', actions: ['noteTable', 'unlock'] } },
    },
    exclusiveLocking: {
      on: {
        PAGE_LOCKED: [
          { guard: 'cancelAsked', target: 'unlocking.cancelled', actions: [held('exclusive'), 'unlock'] },
          { target: 'exclusiveReading', actions: [held('exclusive'), 'read'] },
        ],
      },
    },
    // Read again: between giving back the shared lock and getting the
    // exclusive one, another handle may have taken the exclusive lock and
    // written a conflicting record, so the shared read decides nothing.
    exclusiveReading: {
      on: {
        PAGE_READ: [
          { guard: and(['isRelease', 'readsRecord']), target: 'writing', actions: ['noteTable', 'writeWithoutLock'] },
          { guard: 'isRelease', target: 'unlocking.done', actions: ['noteTable', 'unlock'] },
          { guard: 'cancelAsked', target: 'unlocking.cancelled', actions: ['noteTable', 'unlock'] },
          { guard: 'readsConflict', target: 'unlocking.afterRead', actions: ['noteTable', 'unlock'] },
          { guard: 'readsFullTable', target: 'unlocking.failed', actions: ['noteTable', 'failTableFull', 'unlock'] },
          { target: 'writing', actions: ['noteTable', 'writeWithLock'] },
        ],
      },
    },
    writing: {
      on: { PAGE_WRITTEN: { target: 'unlocking.done', actions: 'unlock' } },
    },
    unlocking: {
      initial: 'afterRead',
      // The unlock itself failed: no second unlock (see above).
      on: { FAILED: { target: 'failed', actions: 'noteFailure' } },
      states: {
        /** After a read that found a conflict, or (shared pass only) none. */
        afterRead: {
          on: {
            PAGE_UNLOCKED: [
              { guard: 'cancelAsked', target: '#byte-range-lock.cancelled', actions: held('none') },
              { guard: and(['hasConflict', 'waits']), target: '#byte-range-lock.waiting', actions: held('none') },
              { guard: 'hasConflict', target: '#byte-range-lock.refused', actions: held('none') },
              { target: '#byte-range-lock.exclusiveLocking', actions: [held('none'), lockPage('exclusive')] },
            ],
          },
        },
        /** After the write (or a release that found nothing to remove). */
        done: {
          on: {
            PAGE_UNLOCKED: [
              { guard: 'isRelease', target: '#byte-range-lock.released', actions: held('none') },
              { target: '#byte-range-lock.granted', actions: held('none') },
            ],
            FAILED: [
              { guard: 'isRelease', target: '#byte-range-lock.released', actions: 'noteFailure' },
              { target: '#byte-range-lock.granted', actions: 'noteFailure' },
            ],
          },
        },
        failed: { on: { PAGE_UNLOCKED: { target: '#byte-range-lock.failed', actions: held('none') } } },
        cancelled: { on: { PAGE_UNLOCKED: { target: '#byte-range-lock.cancelled', actions: held('none') } } },
      },
    },
    waiting: {
      always: { guard: 'changedSinceRead', target: 'retrying' },
      on: { PAGE_CHANGED: 'retrying', CANCEL: 'cancelled' },
    },
    granted: { type: 'final' },
    refused: { type: 'final' },
    released: { type: 'final' },
    cancelled: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type ByteRangeLockSnapshot = SnapshotFrom<typeof byteRangeLockMachine>;
