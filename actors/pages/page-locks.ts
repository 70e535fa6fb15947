/**
 * Page locks at their home (M7 lock and unlock, the basis of M21): one
 * page-lock machine (machines/memory/page-lock.ts) per page that has holders
 * or waiters, started on the page's first lock and stopped when the page is
 * free again, so an unlocked page costs nothing.
 *
 * The API the home's applets use:
 * - `lock(addr, client, via, mode, wait)` answers with a promise: it
 *   resolves once the lock is held; it rejects E_LOCKED (naming who holds
 *   it), E_BUSY, E_BAD_ARGUMENT, or for a waiter that never got the lock
 *   E_TIMEOUT (cancelled), E_CLOSED (released, or the node stopping) or
 *   E_NOT_MATERIALIZED (the page was freed). The promise carries `cancel()`
 *   for a caller that stops waiting:
 *
 *       const pending = locks.lock(page, client, via, mode, wait);
 *       await within(pending, 'locking', ms).catch((err: unknown) => {
 *         if (pending.cancel() !== 'granted') throw err;
 *       });
 *
 *   `cancel()` withdraws a request still waiting (it leaves the queue and
 *   is never granted: 'withdrawn'), and otherwise says how it was answered.
 *   'granted' means the grant raced the timeout (both in one turn of the
 *   clock): the client holds the lock, so the applet reports success, not
 *   E_TIMEOUT, and nothing is ever held that its client does not know of.
 * - `unlock(addr, client)` gives one hold back at once, or throws
 *   E_BAD_ARGUMENT; `lockOf(addr)` is what `stat` shows.
 * - `releaseVia(node)` (the node failed or restarted) and
 *   `releaseClient(client)` (it went away) drop their holds and waits
 *   everywhere, granting the waiters that become compatible.
 * - `dropRange(first, last)` forgets the locks of freed pages; `stop()`
 *   rejects every waiter E_CLOSED.
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { assert, present } from '../../bus/assert.js';
import type { Clock } from '../../bus/clock.js';
import { MangroveError } from '../../bus/errors.js';
import { formatAddress } from '../../machines/memory/address.js';
import {
  PAGE_LOCK_WAITERS_MAX,
  pageLockMachine,
  type LockMode,
  type PageLockEmitted,
  type PageLockEvent,
} from '../../machines/memory/page-lock.js';

export type { LockMode } from '../../machines/memory/page-lock.js';

/**
 * Pages one home keeps locked (or waited for) at once. Each costs a started
 * machine; a client that locks page after page and never unlocks must not
 * grow this without limit. Past it a lock of one more page is refused
 * E_BUSY; pages already locked take more holders and waiters as before.
 */
export const LOCKED_PAGES_MAX = 65_536;

export interface PageLocksDeps {
  /** The machines' clock (they have no delays today; it keeps them on the node's virtual time). */
  clock: Clock;
  inspect?: (e: InspectionEvent) => void;
  /** Default LOCKED_PAGES_MAX. */
  lockedPagesMax?: number;
}

/** What `cancel()` found: the request still waited (now withdrawn), or how it had been answered. */
export type LockOutcome = 'withdrawn' | 'granted' | 'refused';

/** A lock request: a promise that settles with its answer, and the caller's way to withdraw it. */
export type PendingLock = Promise<void> & {
  /** Withdraws the request if it still waits (it is then never granted); otherwise reports its answer. Idempotent. */
  cancel(): LockOutcome;
};

type PageLockActor = Actor<typeof pageLockMachine>;

/** How a ticket's answer reaches its caller: undefined for granted, the error for refused. */
type Answer = (refused: MangroveError | undefined) => void;

interface Ticketed {
  op: 'lock' | 'unlock';
  wait: boolean;
  answer: Answer;
}

export class PageLocks {
  private readonly actors = new Map<bigint, PageLockActor>();
  /** Requests not yet answered, by ticket: at most the waiters of every locked page, plus the one being sent. */
  private readonly pending = new Map<number, Ticketed>();
  private nextTicket = 1;
  private stopped = false;

  constructor(private readonly deps: PageLocksDeps) {}

  lock(addr: bigint, client: string, via: string, mode: LockMode, wait: boolean): PendingLock {
    let settle!: Answer; // set at once: a promise's executor runs before the constructor returns
    const promise = new Promise<void>((resolve, reject) => {
      settle = (refused) => (refused ? reject(refused) : resolve());
    });
    const ticket = this.nextTicket++;
    let outcome: LockOutcome | undefined;
    const cancel = (): LockOutcome => {
      if (outcome === undefined) {
        // The caller has given up on the promise: its rejection (E_TIMEOUT) is expected.
        promise.catch(() => undefined);
        this.send(addr, { type: 'CANCEL', ticket });
      }
      assert(outcome !== undefined, 'a waiting request is answered when it is cancelled');
      return outcome;
    };
    const refused = this.refusedAtOnce(addr);
    if (refused) {
      outcome = 'refused';
      settle(refused);
      return Object.assign(promise, { cancel });
    }
    this.pending.set(ticket, {
      op: 'lock',
      wait,
      answer: (err) => {
        // A cancelled waiter's refusal (E_TIMEOUT) comes while `cancel()` runs: it reports the withdrawal.
        outcome = err?.code === 'E_TIMEOUT' ? 'withdrawn' : err ? 'refused' : 'granted';
        settle(err);
      },
    });
    this.send(addr, { type: 'LOCK', client, via, mode, wait, ticket });
    return Object.assign(promise, { cancel });
  }

  /** Gives one of the client's holds back; throws E_BAD_ARGUMENT if it holds none. */
  unlock(addr: bigint, client: string): void {
    if (!this.actors.has(addr)) throw notLockedBy(addr);
    const ticket = this.nextTicket++;
    let answered = false;
    let refused: MangroveError | undefined;
    this.pending.set(ticket, {
      op: 'unlock',
      wait: false,
      answer: (err) => {
        answered = true;
        refused = err;
      },
    });
    this.send(addr, { type: 'UNLOCK', client, ticket });
    assert(answered, 'the page-lock machine answers every UNLOCK at once');
    if (refused) throw refused;
  }

  /** The page's lock as `stat` shows it, or null when nobody holds it. */
  lockOf(addr: bigint): { mode: LockMode; holders: string[] } | null {
    const actor = this.actors.get(addr);
    if (!actor) return null;
    const { mode, holders } = actor.getSnapshot().context;
    return mode === null ? null : { mode, holders: Object.keys(holders) };
  }

  /**
   * The pages in [first, last] were freed: every hold goes, and every
   * waiter is rejected E_NOT_MATERIALIZED rather than granted, since what
   * it waited to lock is gone (a grant on the freed page would hide that
   * until its next access failed anyway).
   */
  dropRange(first: bigint, last: bigint): void {
    for (const addr of [...this.actors.keys()]) {
      if (addr < first || addr > last) continue;
      this.discard(addr, () => new MangroveError('E_NOT_MATERIALIZED', `${formatAddress(addr)} was freed while this lock request waited; allocate it again, then lock it`));
    }
  }

  /** `node` failed or restarted: every hold and wait of clients that called through it goes. */
  releaseVia(node: string): void {
    for (const addr of [...this.actors.keys()]) this.send(addr, { type: 'RELEASE_VIA', node });
  }

  /** The nodes clients hold or wait for locks through. */
  vias(): Set<string> {
    const out = new Set<string>();
    for (const actor of this.actors.values()) {
      const { holders, waiting } = actor.getSnapshot().context;
      for (const h of Object.values(holders)) out.add(h.via);
      for (const w of waiting) out.add(w.via);
    }
    return out;
  }

  /** `client` went away: its holds and waits go. */
  releaseClient(client: string): void {
    for (const addr of [...this.actors.keys()]) this.send(addr, { type: 'RELEASE_CLIENT', client });
  }

  /** Pages held or waited for. */
  count(): number {
    return this.actors.size;
  }

  /** The node stops: every waiter is rejected E_CLOSED, and so is every later request. */
  stop(): void {
    this.stopped = true;
    for (const addr of [...this.actors.keys()]) {
      this.discard(addr, () => new MangroveError('E_CLOSED', `the node is stopping; the wait to lock ${formatAddress(addr)} ended`));
    }
  }

  private refusedAtOnce(addr: bigint): MangroveError | undefined {
    if (this.stopped) return new MangroveError('E_CLOSED', 'the node is stopping');
    const max = this.deps.lockedPagesMax ?? LOCKED_PAGES_MAX;
    if (this.actors.has(addr) || this.actors.size < max) return undefined;
    return new MangroveError('E_BUSY', `${max} pages are locked at this home already; try ${formatAddress(addr)} again once some are unlocked`);
  }

  /** Delivers one event to the page's machine (started for a LOCK), and stops it once the page is free. */
  private send(addr: bigint, event: PageLockEvent): void {
    const actor = this.actors.get(addr) ?? (event.type === 'LOCK' ? this.start(addr) : undefined);
    if (!actor) return;
    actor.send(event);
    if (actor.getSnapshot().value === 'free') {
      actor.stop();
      this.actors.delete(addr);
    }
  }

  private start(addr: bigint): PageLockActor {
    const { clock, inspect } = this.deps;
    const actor = createActor(pageLockMachine, { clock, inspect, input: {} });
    actor.on('*', (e) => this.emitted(addr, e));
    this.actors.set(addr, actor);
    actor.start();
    return actor;
  }

  /** Stops the page's machine without its answers, and rejects its waiters with `why`. */
  private discard(addr: bigint, why: () => MangroveError): void {
    const actor = this.actors.get(addr);
    assert(actor !== undefined, 'only a page with a machine is discarded');
    const waiters = actor.getSnapshot().context.waiting;
    actor.stop();
    this.actors.delete(addr);
    for (const w of waiters) this.answer(w.ticket, why());
  }

  private emitted(addr: bigint, e: PageLockEmitted): void {
    if (e.type === 'granted') this.answer(e.ticket, undefined);
    else if (e.type === 'refused') this.answer(e.ticket, this.refusal(addr, e));
  }

  private answer(ticket: number, refused: MangroveError | undefined): void {
    const p = this.pending.get(ticket);
    assert(p !== undefined, `ticket ${ticket} is answered once, while pending`);
    this.pending.delete(ticket);
    p.answer(refused);
  }

  /** Why a request was refused, in words a user can act on. */
  private refusal(addr: bigint, e: Extract<PageLockEmitted, { type: 'refused' }>): MangroveError {
    const page = formatAddress(addr);
    const req = this.pending.get(e.ticket);
    switch (e.code) {
      case 'E_LOCKED': {
        const again = req?.wait ? ' (a client that holds this lock, or waits for it already, does not wait again)' : '';
        const mode = present(e.mode, 'a lock is refused E_LOCKED only while held');
        return new MangroveError('E_LOCKED', `${page} is locked ${mode} by ${e.holders.join(', ')}; try again after they unlock${again}`);
      }
      case 'E_BUSY':
        return new MangroveError('E_BUSY', `${PAGE_LOCK_WAITERS_MAX} requests already wait to lock ${page}; try again`);
      case 'E_BAD_ARGUMENT':
        return req?.op === 'lock' ? new MangroveError('E_BAD_ARGUMENT', `lock request ${e.ticket} for ${page} is already waiting`) : notLockedBy(addr);
      case 'E_TIMEOUT':
        return new MangroveError('E_TIMEOUT', `the wait to lock ${page} was withdrawn: its caller stopped waiting`);
      case 'E_CLOSED':
        return new MangroveError('E_CLOSED', `the wait to lock ${page} ended: its client, or the node it called through, went away`);
    }
  }
}

function notLockedBy(addr: bigint): MangroveError {
  return new MangroveError('E_BAD_ARGUMENT', `${formatAddress(addr)} is not locked by this client`);
}
