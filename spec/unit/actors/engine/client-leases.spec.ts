/**
 * Lock leases at the node a client calls through (actors/engine/client-leases.ts):
 * when a silent client's locks are released, at which homes, that a rebuild's
 * pause is not held against it, and that a home that cannot be reached is
 * asked again. The homes are a stand-in recording `release_client` calls:
 * the home's side is page-locks.ts's `releaseClient`, specified beside it.
 */
import { expect } from 'chai';
import { ClientLeases } from '../../../../actors/engine/client-leases.js';
import { MangroveError } from '../../../../bus/errors.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { errorOf } from '../../../helpers/error-of.js';

const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet; } } as never;

function setup(opts: { failing?: Set<string> } = {}) {
  const clock = new SimClock(1000);
  const released: string[] = [];
  let serving = true;
  const leases = new ClientLeases({
    clock,
    intervalMs: 100,
    serving: () => serving,
    release: async (home, client) => {
      if (opts.failing?.has(home)) throw new MangroveError('E_RECOVERING', `${home} is rebuilding`);
      released.push(`${client}@${home}`);
    },
    log: quiet,
  });
  leases.start();
  const advance = (ms: number) => clock.runUntilAsync(clock.now() + ms);
  return { clock, leases, released, advance, setServing: (v: boolean) => (serving = v) };
}

describe('actors/engine/client-leases', () => {
  it('releases a silent client\'s locks at every home it locked at once its lease runs out, and not before', async () => {
    const { leases, released, advance } = setup();
    leases.locked('a', 2000, 'h1');
    leases.locked('a', 1000, 'h2');
    leases.locked('b', 5000, 'h1');
    await advance(1900);
    expect(released, 'the longest lease asked for counts').to.deep.equal([]);
    await advance(200);
    expect(released.sort()).to.deep.equal(['a@h1', 'a@h2']);
    expect(leases.holds('a')).to.equal(false);
    expect(leases.holds('b')).to.equal(true);
    leases.stop();
  });

  it('keeps the locks of a client it hears from, however long', async () => {
    const { leases, released, advance } = setup();
    leases.locked('a', 1000, 'h1');
    for (let i = 0; i < 20; i++) {
      await advance(600);
      leases.heard('a');
    }
    expect(released).to.deep.equal([]);
    expect(leases.holds('a')).to.equal(true);
    await advance(1100);
    expect(released).to.deep.equal(['a@h1']);
    leases.stop();
  });

  it('does not hold a rebuild against a lease: the pause is added to it', async () => {
    const { leases, released, advance, setServing } = setup();
    leases.locked('a', 1000, 'h1');
    await advance(500);
    setServing(false);
    await advance(5000);
    setServing(true);
    await advance(300);
    expect(released, 'silent 800 ms while serving').to.deep.equal([]);
    await advance(400);
    expect(released).to.deep.equal(['a@h1']);
    leases.stop();
  });

  it('asks a home that cannot be reached again at the next sweep, and refuses the client\'s leased locks until every home has released it', async () => {
    const failing = new Set(['h2']);
    const { leases, released, advance } = setup({ failing });
    leases.locked('a', 1000, 'h1');
    leases.locked('a', 1000, 'h2');
    await advance(1200);
    expect(released).to.deep.equal(['a@h1']);
    expect(errorOf(() => leases.mayLock('a'))).to.match(/^E_BUSY: client a went silent for longer than its lock lease/);
    // A lock that was on its way when the lease ran out goes too.
    leases.locked('a', 1000, 'h1');
    failing.clear();
    await advance(200);
    expect(released.sort()).to.deep.equal(['a@h1', 'a@h1', 'a@h2']);
    expect(errorOf(() => leases.mayLock('a'))).to.equal('no error');
    leases.heard('a');
    expect(leases.holds('a'), 'a call after the release starts no lease').to.equal(false);
    leases.stop();
  });
});
