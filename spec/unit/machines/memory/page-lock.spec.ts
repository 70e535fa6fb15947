/**
 * The page-lock machine (M7 lock and unlock), one rule at a time: today's
 * rules without waiting, then waiting (FIFO, bounded, cancellable), then the
 * release of a failed node's or a departed client's holds and waits.
 */
import { expect } from 'chai';
import { PAGE_LOCK_WAITERS_MAX, pageLockMachine, type LockMode } from '../../../../machines/memory/page-lock.js';
import { Running } from '../../../helpers/machine-harness.js';

const lockOf = (waitersMax?: number) => new Running(pageLockMachine, waitersMax === undefined ? {} : { waitersMax });

/** Client x calls through node n-x unless told otherwise. */
const lock = (client: string, mode: LockMode, ticket: number, wait = false, via = `n-${client}`) =>
  ({ type: 'LOCK', client, via, mode, wait, ticket }) as const;
const unlock = (client: string, ticket: number) => ({ type: 'UNLOCK', client, ticket }) as const;

/** The answers, as `ticket:granted` or `ticket:CODE`, in order. */
const answers = (r: Running<typeof pageLockMachine>): string[] =>
  r.emitted.flatMap((e) => (e.type === 'granted' ? [`${String(e.ticket)}:granted`] : e.type === 'refused' ? [`${String(e.ticket)}:${String(e.code)}`] : []));
const holders = (r: Running<typeof pageLockMachine>) => r.snapshot.context.holders;
const waiting = (r: Running<typeof pageLockMachine>) => r.snapshot.context.waiting.map((w) => w.ticket);

describe('page-lock machine', () => {
  describe('without waiting (the rules locks had before)', () => {
    it('grants a free page, and an exclusive holder excludes everyone else at once', () => {
      const r = lockOf().send(lock('a', 'exclusive', 1));
      expect(r.value).to.equal('held');
      expect(r.snapshot.context).to.deep.include({ mode: 'exclusive', holders: { a: { count: 1, via: 'n-a' } } });
      r.send(lock('b', 'shared', 2)).send(lock('b', 'exclusive', 3));
      expect(answers(r)).to.deep.equal(['1:granted', '2:E_LOCKED', '3:E_LOCKED']);
      expect(r.of('refused')[0]).to.deep.include({ client: 'b', holders: ['a'], mode: 'exclusive' });
      expect(Object.keys(holders(r))).to.deep.equal(['a']);
    });

    it('shares a shared lock, and refuses an exclusive one beside it', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('b', 'shared', 2)).send(lock('c', 'exclusive', 3));
      expect(answers(r)).to.deep.equal(['1:granted', '2:granted', '3:E_LOCKED']);
      expect(r.of('refused')[0].holders).to.deep.equal(['a', 'b']);
      expect(r.snapshot.context.mode).to.equal('shared');
    });

    it('lets the sole holder take the lock again and upgrade it, never downgrading', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('a', 'shared', 2)).send(lock('a', 'exclusive', 3)).send(lock('a', 'shared', 4));
      expect(answers(r)).to.deep.equal(['1:granted', '2:granted', '3:granted', '4:granted']);
      expect(r.snapshot.context).to.deep.include({ mode: 'exclusive', holders: { a: { count: 4, via: 'n-a' } } });
      r.send(unlock('a', 5)).send(unlock('a', 6)).send(unlock('a', 7));
      expect(r.snapshot.context).to.deep.include({ mode: 'exclusive', holders: { a: { count: 1, via: 'n-a' } } });
      expect(r.of('released')).to.deep.equal([]);
      r.send(unlock('a', 8));
      expect(r.value).to.equal('free');
      expect(r.snapshot.context).to.deep.include({ mode: null, holders: {} });
      expect(r.of('released')).to.deep.equal([{ type: 'released', client: 'a' }]);
    });

    it('refuses an upgrade while another client shares the lock', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('b', 'shared', 2)).send(lock('a', 'exclusive', 3));
      expect(answers(r)).to.deep.equal(['1:granted', '2:granted', '3:E_LOCKED']);
      expect(r.of('refused')[0].holders).to.deep.equal(['b']);
    });

    it('answers an unlock granted, and refuses one by a client that holds nothing', () => {
      const r = lockOf().send(unlock('a', 1));
      expect(r.value).to.equal('free');
      r.send(lock('a', 'shared', 2)).send(unlock('b', 3)).send(unlock('a', 4));
      expect(answers(r)).to.deep.equal(['1:E_BAD_ARGUMENT', '2:granted', '3:E_BAD_ARGUMENT', '4:granted']);
      expect(r.value).to.equal('free');
    });

    it('keeps a client named like an object property apart from the others', () => {
      const r = lockOf().send(lock('b', 'shared', 1)).send(unlock('__proto__', 2)).send(unlock('constructor', 3));
      expect(answers(r)).to.deep.equal(['1:granted', '2:E_BAD_ARGUMENT', '3:E_BAD_ARGUMENT']);
      r.send(lock('__proto__', 'shared', 4)).send(lock('toString', 'exclusive', 5));
      expect(answers(r).slice(3)).to.deep.equal(['4:granted', '5:E_LOCKED']);
      expect(r.snapshot.context.holders['__proto__']).to.deep.equal({ count: 1, via: 'n-__proto__' });
      r.send(unlock('__proto__', 6)).send(unlock('b', 7));
      expect(r.value).to.equal('free');
    });
  });

  describe('waiting', () => {
    it('queues conflicting waiters in order and grants them first come, first served', () => {
      const r = lockOf().send(lock('a', 'exclusive', 1));
      r.send(lock('b', 'exclusive', 2, true)).send(lock('c', 'exclusive', 3, true));
      expect(answers(r)).to.deep.equal(['1:granted']);
      expect(waiting(r)).to.deep.equal([2, 3]);
      r.send(unlock('a', 4));
      expect(answers(r)).to.deep.equal(['1:granted', '4:granted', '2:granted']);
      expect(Object.keys(holders(r))).to.deep.equal(['b']);
      r.send(unlock('b', 5));
      expect(answers(r).slice(3)).to.deep.equal(['5:granted', '3:granted']);
      expect(waiting(r)).to.deep.equal([]);
    });

    it('grants every shared waiter at the head together, up to the first exclusive', () => {
      const r = lockOf().send(lock('a', 'exclusive', 1));
      for (const [c, mode, t] of [['b', 'shared', 2], ['c', 'shared', 3], ['d', 'exclusive', 4], ['e', 'shared', 5]] as const) r.send(lock(c, mode, t, true));
      r.send(unlock('a', 6));
      expect(answers(r)).to.deep.equal(['1:granted', '6:granted', '2:granted', '3:granted']);
      expect(r.snapshot.context.mode).to.equal('shared');
      expect(waiting(r)).to.deep.equal([4, 5]);
    });

    it('a queued exclusive request blocks later shared ones, though the shared holders would admit them', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('x', 'exclusive', 2, true));
      r.send(lock('b', 'shared', 3, true)).send(lock('c', 'shared', 4));
      expect(answers(r)).to.deep.equal(['1:granted', '4:E_LOCKED']);
      expect(waiting(r)).to.deep.equal([2, 3]);
      // A holder's own request is not behind the queue: it is waited for anyway.
      r.send(lock('a', 'shared', 5));
      expect(answers(r).at(-1)).to.equal('5:granted');
      r.send(unlock('a', 6)).send(unlock('a', 7));
      expect(answers(r).slice(-2)).to.deep.equal(['7:granted', '2:granted']);
      expect(r.snapshot.context.mode).to.equal('exclusive');
      r.send(unlock('x', 8));
      expect(answers(r).slice(-2)).to.deep.equal(['8:granted', '3:granted']);
    });

    it('grants at once a waiting request that is compatible and has nobody ahead', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('b', 'shared', 2, true));
      expect(answers(r)).to.deep.equal(['1:granted', '2:granted']);
    });

    it('never lets a client hold and wait, or wait twice', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('b', 'shared', 2));
      r.send(lock('a', 'exclusive', 3, true)); // an upgrade beside b: a waiting would deadlock with b doing the same
      r.send(lock('c', 'exclusive', 4, true)).send(lock('c', 'shared', 5, true));
      expect(answers(r)).to.deep.equal(['1:granted', '2:granted', '3:E_LOCKED', '5:E_LOCKED']);
      expect(waiting(r)).to.deep.equal([4]);
    });

    it('withdraws a cancelled waiter, answered E_TIMEOUT and never granted, and lets those behind it go', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('x', 'exclusive', 2, true)).send(lock('b', 'shared', 3, true));
      r.send({ type: 'CANCEL', ticket: 2 });
      expect(answers(r)).to.deep.equal(['1:granted', '2:E_TIMEOUT', '3:granted']);
      expect(r.of('refused')[0]).to.deep.include({ client: 'x' });
      r.send({ type: 'CANCEL', ticket: 2 }).send({ type: 'CANCEL', ticket: 3 }); // no longer waiting: nothing happens
      r.send(unlock('a', 4)).send(unlock('b', 5));
      expect(answers(r)).to.deep.equal(['1:granted', '2:E_TIMEOUT', '3:granted', '4:granted', '5:granted']);
      expect(r.value).to.equal('free');
    });

    it('refuses a ticket that waits already', () => {
      const r = lockOf().send(lock('a', 'exclusive', 1)).send(lock('b', 'exclusive', 2, true)).send(lock('c', 'shared', 2, true));
      expect(answers(r)).to.deep.equal(['1:granted', '2:E_BAD_ARGUMENT']);
      expect(r.snapshot.context.waiting).to.deep.equal([{ client: 'b', via: 'n-b', mode: 'exclusive', ticket: 2 }]);
    });

    it(`keeps at most ${PAGE_LOCK_WAITERS_MAX} waiters and refuses the next with E_BUSY at once`, () => {
      const r = lockOf().send(lock('a', 'exclusive', 0));
      for (let i = 1; i <= PAGE_LOCK_WAITERS_MAX; i++) r.send(lock(`c${i}`, 'shared', i, true));
      expect(r.snapshot.context.waiting).to.have.length(PAGE_LOCK_WAITERS_MAX);
      r.send(lock('late', 'shared', 9999, true)).send(lock('later', 'shared', 10000));
      expect(answers(r).slice(1)).to.deep.equal(['9999:E_BUSY', '10000:E_LOCKED']);
      expect(r.snapshot.context.waiting).to.have.length(PAGE_LOCK_WAITERS_MAX);
      // Every waiter is shared: one unlock grants them all.
      r.send(unlock('a', 0));
      expect(r.of('granted')).to.have.length(2 + PAGE_LOCK_WAITERS_MAX);
      expect(Object.keys(holders(r))).to.have.length(PAGE_LOCK_WAITERS_MAX);
    });

    it('takes a smaller bound from its input', () => {
      const r = lockOf(1).send(lock('a', 'exclusive', 1)).send(lock('b', 'exclusive', 2, true)).send(lock('c', 'exclusive', 3, true));
      expect(answers(r)).to.deep.equal(['1:granted', '3:E_BUSY']);
    });
  });

  describe('release on failure', () => {
    it('RELEASE_VIA drops every hold and wait that came through the node, and grants the next waiter', () => {
      const r = lockOf();
      r.send(lock('a', 'exclusive', 1, false, 'n1'));
      r.send(lock('b', 'exclusive', 2, true, 'n1'));
      r.send(lock('c', 'shared', 3, true, 'n2'));
      r.send(lock('d', 'shared', 4, true, 'n3'));
      r.drain();
      r.send({ type: 'RELEASE_VIA', node: 'n1' });
      expect(r.emitted).to.deep.equal([
        { type: 'refused', ticket: 2, client: 'b', code: 'E_CLOSED', holders: [], mode: null },
        { type: 'released', client: 'a' },
        { type: 'granted', ticket: 3, client: 'c' },
        { type: 'granted', ticket: 4, client: 'd' },
      ]);
      expect(r.snapshot.context).to.deep.include({ mode: 'shared', holders: { c: { count: 1, via: 'n2' }, d: { count: 1, via: 'n3' } }, waiting: [] });
    });

    it('RELEASE_VIA of a node nobody came through changes nothing', () => {
      const r = lockOf().send(lock('a', 'exclusive', 1)).send(lock('b', 'shared', 2, true));
      r.drain();
      r.send({ type: 'RELEASE_VIA', node: 'elsewhere' });
      expect(r.emitted).to.deep.equal([]);
      expect(waiting(r)).to.deep.equal([2]);
    });

    it('a hold is released through the node the client was last granted through', () => {
      const r = lockOf().send(lock('a', 'shared', 1, false, 'n1')).send(lock('a', 'shared', 2, false, 'n2'));
      r.send({ type: 'RELEASE_VIA', node: 'n1' });
      expect(holders(r)).to.deep.equal({ a: { count: 2, via: 'n2' } });
      r.send({ type: 'RELEASE_VIA', node: 'n2' });
      expect(r.value).to.equal('free');
    });

    it('RELEASE_CLIENT drops one client\'s holds (all its counts) and waits, and grants who can go', () => {
      const r = lockOf().send(lock('a', 'shared', 1)).send(lock('a', 'shared', 2)).send(lock('b', 'shared', 3));
      r.send(lock('x', 'exclusive', 4, true)).send(lock('y', 'shared', 5, true));
      r.drain();
      r.send({ type: 'RELEASE_CLIENT', client: 'x' });
      expect(r.emitted).to.deep.equal([
        { type: 'refused', ticket: 4, client: 'x', code: 'E_CLOSED', holders: ['a', 'b'], mode: 'shared' },
        { type: 'granted', ticket: 5, client: 'y' },
      ]);
      r.drain();
      r.send(lock('z', 'exclusive', 6, true)).send({ type: 'RELEASE_CLIENT', client: 'a' });
      expect(r.emitted).to.deep.equal([{ type: 'released', client: 'a' }]);
      expect(waiting(r)).to.deep.equal([6]);
      r.send({ type: 'RELEASE_CLIENT', client: 'b' }).send({ type: 'RELEASE_CLIENT', client: 'y' });
      expect(answers(r).at(-1)).to.equal('6:granted');
      expect(holders(r)).to.deep.equal({ z: { count: 1, via: 'n-z' } });
    });
  });
});
