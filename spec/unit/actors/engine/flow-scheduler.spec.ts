/**
 * The flow scheduler (M13): op-codes dispatched to applets; one key at a
 * time in arrival order, different keys concurrently; nested dispatch on a
 * held key without deadlock; an applet replaced at run time.
 */
import { expect } from 'chai';
import { FlowScheduler, schedulerLimits, type Applet } from '../../../../actors/engine/flow-scheduler.js';
import { MangroveError } from '../../../../bus/errors.js';

/** A promise the spec settles by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface PageInput {
  page: string;
  tag: string;
  wait?: Promise<void>;
}

describe('flow scheduler', () => {
  /**
   * A scheduler whose page.write applet logs its start and end and answers
   * its tag; `write` dispatches one, and with `wait` the applet holds its
   * page until `wait` settles.
   */
  function withLog() {
    const s = new FlowScheduler();
    const log: string[] = [];
    const applet: Applet<PageInput, string> = async ({ tag, wait }) => {
      log.push(`start ${tag}`);
      await wait;
      log.push(`end ${tag}`);
      return tag;
    };
    s.register('page.write', { applet, key: (i) => i.page });
    const write = (page: string, tag: string, wait?: Promise<void>) => s.dispatch('page.write', { page, tag, wait });
    return { s, log, write };
  }

  it('runs requests for one page one at a time, in arrival order', async () => {
    const { log, write } = withLog();
    const g = gate();
    const a = write('p', 'a', g.promise);
    const b = write('p', 'b');
    await tick();
    expect(log).to.deep.equal(['start a']);
    g.open();
    expect(await Promise.all([a, b])).to.deep.equal(['a', 'b']);
    expect(log).to.deep.equal(['start a', 'end a', 'start b', 'end b']);
  });

  it('runs requests for different pages at the same time', async () => {
    const { s, log, write } = withLog();
    const g = gate();
    const a = write('p', 'a', g.promise);
    const b = write('q', 'b');
    expect(await b).to.equal('b');
    expect(log).to.deep.equal(['start a', 'start b', 'end b']);
    expect(s.statsOf('page.write')).to.include({ dispatched: 2, running: 1 });
    g.open();
    await a;
  });

  it('lets an applet dispatch on the key it holds without waiting for itself', async () => {
    const s = new FlowScheduler();
    s.register<{ page: string }, number>('page.read', { applet: async () => 7, key: (i) => i.page });
    s.register<{ page: string }, number>('page.copy', {
      applet: async ({ page }, ctx) => (await ctx.dispatch<number>('page.read', { page })) + 1,
      key: (i) => i.page,
    });
    expect(await s.dispatch('page.copy', { page: 'p' })).to.equal(8);
  });

  it('replaces an applet at run time: running requests finish on the old one, new ones run the new', async () => {
    const { s, write } = withLog();
    const g = gate();
    const running = write('p', 'old', g.promise);
    const queued = write('p', 'queued');
    await tick();
    const old = s.replace<PageInput, string>('page.write', async ({ tag }) => `v2:${tag}`);
    const after = write('p', 'new');
    g.open();
    // Dispatched before the swap: the old applet, even while queued.
    expect(await Promise.all([running, queued, after])).to.deep.equal(['old', 'queued', 'v2:new']);
    expect(s.statsOf('page.write').replaced).to.equal(1);
    // Swapping back restores the first behaviour.
    s.replace('page.write', old);
    expect(await write('p', 'again')).to.equal('again');
  });

  it('keeps going after a failed applet, and counts it', async () => {
    const s = new FlowScheduler();
    let n = 0;
    s.register<{ page: string }, number>('page.flush', {
      applet: async () => {
        if (++n === 1) throw new MangroveError('E_NO_QUORUM', 'no quorum');
        return n;
      },
      key: (i) => i.page,
    });
    const first = s.dispatch('page.flush', { page: 'p' });
    const second = s.dispatch('page.flush', { page: 'p' });
    await first.then(
      () => expect.fail('the first flush should fail'),
      (err: MangroveError) => expect(err.code).to.equal('E_NO_QUORUM'),
    );
    expect(await second).to.equal(2);
    expect(s.statsOf('page.flush')).to.include({ dispatched: 2, failed: 1, running: 0 });
  });

  it('refuses an unknown op-code and a second registration, naming them', async () => {
    const { s } = withLog();
    await s.dispatch('page.frobnicate', {}).then(
      () => expect.fail('should be refused'),
      (err: MangroveError) => {
        expect(err.code).to.equal('E_NOT_FOUND');
        expect(err.message).to.match(/page\.frobnicate.*page\.write/);
      },
    );
    expect(() => s.register('page.write', { applet: async () => 1 })).to.throw(/already registered/);
  });

  it('refuses with E_BUSY past the queue bound for one key, and serves the rest', async () => {
    const s = new FlowScheduler();
    const g = gate();
    s.register<{ page: string }, number>('page.write', { applet: () => g.promise.then(() => 1), key: (i) => i.page });
    const queued = Array.from({ length: schedulerLimits.queuedMax }, () => s.dispatch<number>('page.write', { page: 'p' }));
    await s.dispatch('page.write', { page: 'p' }).then(
      () => expect.fail('should be refused'),
      (err: MangroveError) => expect(err.code).to.equal('E_BUSY'),
    );
    g.open();
    expect((await Promise.all(queued)).length).to.equal(schedulerLimits.queuedMax);
    // The lane drained: a new request runs.
    expect(await s.dispatch('page.write', { page: 'p' })).to.equal(1);
  });

  it('passes the origin to the applet and to its nested requests', async () => {
    const s = new FlowScheduler();
    s.register<unknown, string>('who', { applet: async (_i, ctx) => ctx.origin });
    s.register<unknown, string>('ask', { applet: async (_i, ctx) => ctx.dispatch<string>('who', {}) });
    expect(await s.dispatch('ask', {}, 'node-7')).to.equal('node-7');
    expect(s.opCodes()).to.deep.equal(['who', 'ask']);
  });
});
