/**
 * PageLocks, the home's table of page-lock machines (M7 lock and unlock), on
 * a SimClock: the answers an applet gets, a waiter withdrawn by its caller's
 * timeout the way an applet does it, release on failure, freed pages and
 * the node stopping. Absence is proved by settling what would have come.
 */
import { expect } from 'chai';
import type { Clock } from '../../../../bus/clock.js';
import { MangroveError } from '../../../../bus/errors.js';
import { formatAddress } from '../../../../machines/memory/address.js';
import { PageLocks } from '../../../../actors/pages/page-locks.js';
import { PAGE_LOCK_WAITERS_MAX } from '../../../../machines/memory/page-lock.js';
import { SimClock } from '../../../../runtime/world/clock.js';

const P = 0x1000n;
const Q = 0x2000n;

/** Settles on the microtask queue: what has an answer by now shows it. */
const settled = async <T>(p: Promise<T>): Promise<'pending' | 'granted' | string> => {
  let state = 'pending';
  p.then(
    () => (state = 'granted'),
    (err: unknown) => (state = err instanceof MangroveError ? err.code : String(err)),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return state;
};

/** The applet's timeout (page-engine's `within`): E_TIMEOUT after `ms` of the clock, leaving the work running. */
function within<T>(clock: Clock, work: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(() => reject(new MangroveError('E_TIMEOUT', `locking took more than ${ms} ms`)), ms);
    work.then(
      (v) => {
        clock.clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clock.clearTimeout(timer);
        reject(err);
      },
    );
  });
}

const errorOf = async (p: Promise<unknown>): Promise<MangroveError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof MangroveError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
};

describe('PageLocks', () => {
  let clock: SimClock;
  let locks: PageLocks;
  beforeEach(() => {
    clock = new SimClock();
    locks = new PageLocks({ clock });
  });
  afterEach(() => locks.stop());

  it('grants, shares and refuses with the wording stat and the CLI show, keeping one machine per locked page', async () => {
    await locks.lock(P, 'a', 'n1', 'shared', false);
    await locks.lock(P, 'b', 'n2', 'shared', false);
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'shared', holders: ['a', 'b'] });
    const err = await errorOf(locks.lock(P, 'c', 'n2', 'exclusive', false));
    expect(err.code).to.equal('E_LOCKED');
    expect(err.message).to.equal(`${formatAddress(P)} is locked shared by a, b; try again after they unlock`);
    expect(locks.lockOf(Q)).to.equal(null);
    expect(locks.count()).to.equal(1);
  });

  it('unlocks one hold at a time, throws E_BAD_ARGUMENT for a non-holder, and forgets a free page', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    expect(() => locks.unlock(P, 'b')).to.throw(MangroveError, `${formatAddress(P)} is not locked by this client`).with.property('code', 'E_BAD_ARGUMENT');
    expect(() => locks.unlock(Q, 'a')).to.throw(MangroveError).with.property('code', 'E_BAD_ARGUMENT');
    locks.unlock(P, 'a');
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'exclusive', holders: ['a'] });
    locks.unlock(P, 'a');
    expect(locks.lockOf(P)).to.equal(null);
    expect(locks.count()).to.equal(0);
    expect(() => locks.unlock(P, 'a')).to.throw(MangroveError).with.property('code', 'E_BAD_ARGUMENT');
  });

  it('keeps a waiter pending until the holder unlocks, then grants it', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    const b = locks.lock(P, 'b', 'n2', 'exclusive', true);
    expect(await settled(b)).to.equal('pending');
    locks.unlock(P, 'a');
    expect(await settled(b)).to.equal('granted');
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'exclusive', holders: ['b'] });
  });

  it('grants the waiter when the holder\'s node is released (it failed), and not a moment before', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    await locks.lock(Q, 'a', 'n1', 'shared', false);
    const b = locks.lock(P, 'b', 'n2', 'exclusive', true);
    locks.releaseVia('n2-other');
    expect(await settled(b)).to.equal('pending');
    locks.releaseVia('n1');
    expect(await settled(b)).to.equal('granted');
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'exclusive', holders: ['b'] });
    expect(locks.lockOf(Q)).to.equal(null);
    expect(locks.count()).to.equal(1);
  });

  it('releases a departed client\'s holds on every page and ends its waits with E_CLOSED', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    await locks.lock(Q, 'b', 'n1', 'exclusive', false);
    const aWaits = locks.lock(Q, 'a', 'n1', 'shared', true);
    const cWaits = locks.lock(P, 'c', 'n2', 'shared', true);
    locks.releaseClient('a');
    expect((await errorOf(aWaits)).code).to.equal('E_CLOSED');
    expect(await settled(cWaits)).to.equal('granted');
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'shared', holders: ['c'] });
    expect(locks.lockOf(Q)).to.deep.equal({ mode: 'exclusive', holders: ['b'] });
  });

  /** The applet's way to lock (page-locks.ts): a grant that raced the timeout counts as the lock taken. */
  const lockWithin = (addr: bigint, client: string, via: string, wait: boolean, ms: number) => {
    const pending = locks.lock(addr, client, via, 'exclusive', wait);
    const applet = within(clock, pending, ms).catch((err: unknown) => {
      if (pending.cancel() !== 'granted') throw err;
    });
    return { pending, applet };
  };

  it('withdraws a waiter whose caller timed out: it is never granted, and the next waiter is', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    const { pending, applet } = lockWithin(P, 'b', 'n2', true, 500);
    const c = locks.lock(P, 'c', 'n3', 'shared', true);
    clock.advance(499);
    expect(await settled(applet)).to.equal('pending');
    clock.advance(1);
    const timedOut = await errorOf(applet);
    expect(timedOut.code).to.equal('E_TIMEOUT');
    expect(timedOut.message).to.equal('locking took more than 500 ms');
    expect((await errorOf(pending)).message).to.match(/^the wait to lock 0x.* was withdrawn/);
    expect(pending.cancel()).to.equal('withdrawn');
    // The holder goes: the withdrawn b is not granted; c, behind it, is.
    locks.unlock(P, 'a');
    expect(await settled(c)).to.equal('granted');
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'shared', holders: ['c'] });
  });

  it('takes a grant that raced its caller\'s timeout as the lock taken, so no hold goes unknown', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    const { pending, applet } = lockWithin(P, 'b', 'n2', true, 500);
    // The holder's unlock and the timeout fire in one turn of the clock: the timer settles the applet's race first.
    clock.setTimeout(() => locks.unlock(P, 'a'), 500);
    clock.advance(500);
    expect(await settled(applet)).to.equal('granted');
    expect(pending.cancel()).to.equal('granted');
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'exclusive', holders: ['b'] });
  });

  it('reports a refused request as refused when cancelled, changing nothing', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    const { pending, applet } = lockWithin(P, 'b', 'n2', false, 500);
    expect((await errorOf(applet)).code).to.equal('E_LOCKED');
    expect(pending.cancel()).to.equal('refused');
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'exclusive', holders: ['a'] });
  });

  it(`keeps at most ${PAGE_LOCK_WAITERS_MAX} waiters a page, refusing the next E_BUSY`, async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    const waiters = Array.from({ length: PAGE_LOCK_WAITERS_MAX }, (_, i) => locks.lock(P, `c${i}`, 'n2', 'shared', true));
    const err = await errorOf(locks.lock(P, 'late', 'n2', 'shared', true));
    expect(err.code).to.equal('E_BUSY');
    expect(err.message).to.equal(`${PAGE_LOCK_WAITERS_MAX} requests already wait to lock ${formatAddress(P)}; try again`);
    locks.unlock(P, 'a');
    await Promise.all(waiters);
    expect(locks.lockOf(P)?.holders).to.have.length(PAGE_LOCK_WAITERS_MAX);
  });

  it('keeps at most lockedPagesMax pages locked, refusing a lock of one more E_BUSY but not more holders of one locked', async () => {
    const few = new PageLocks({ clock, lockedPagesMax: 2 });
    await few.lock(P, 'a', 'n1', 'shared', false);
    await few.lock(Q, 'a', 'n1', 'shared', false);
    const err = await errorOf(few.lock(0x3000n, 'a', 'n1', 'shared', false));
    expect(err.code).to.equal('E_BUSY');
    expect(err.message).to.contain('2 pages are locked at this home already');
    await few.lock(P, 'b', 'n1', 'shared', false);
    few.unlock(Q, 'a');
    await few.lock(0x3000n, 'a', 'n1', 'shared', false);
    expect(few.count()).to.equal(2);
    few.stop();
  });

  it('refuses a holder asking to wait for an upgrade beside another holder with E_LOCKED, saying why', async () => {
    await locks.lock(P, 'a', 'n1', 'shared', false);
    await locks.lock(P, 'b', 'n1', 'shared', false);
    const err = await errorOf(locks.lock(P, 'a', 'n1', 'exclusive', true));
    expect(err.code).to.equal('E_LOCKED');
    expect(err.message).to.match(/is locked shared by b; try again after they unlock \(a client that holds this lock, or waits for it already, does not wait again\)$/);
  });

  it('drops the locks of freed pages, rejecting their waiters E_NOT_MATERIALIZED', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    await locks.lock(Q, 'a', 'n1', 'exclusive', false);
    const b = locks.lock(P, 'b', 'n2', 'shared', true);
    const outside = locks.lock(Q, 'b', 'n2', 'shared', true);
    locks.dropRange(P, P + 0xfffn);
    const err = await errorOf(b);
    expect(err.code).to.equal('E_NOT_MATERIALIZED');
    expect(err.message).to.contain(formatAddress(P));
    expect(locks.lockOf(P)).to.equal(null);
    expect(await settled(outside)).to.equal('pending');
    expect(locks.count()).to.equal(1);
    // The page can be locked afresh.
    await locks.lock(P, 'c', 'n3', 'exclusive', false);
    expect(locks.lockOf(P)).to.deep.equal({ mode: 'exclusive', holders: ['c'] });
  });

  it('stop() rejects every waiter E_CLOSED, and every later request', async () => {
    await locks.lock(P, 'a', 'n1', 'exclusive', false);
    const waiters = [locks.lock(P, 'b', 'n2', 'shared', true), locks.lock(P, 'c', 'n2', 'shared', true)];
    locks.stop();
    for (const w of waiters) expect((await errorOf(w)).code).to.equal('E_CLOSED');
    expect(locks.count()).to.equal(0);
    expect((await errorOf(locks.lock(Q, 'a', 'n1', 'shared', false))).code).to.equal('E_CLOSED');
  });
});
