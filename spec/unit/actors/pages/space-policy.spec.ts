/**
 * The policy element (actors/pages/space-policy.ts) and core-holder choice
 * (actors/pages/core-holders.ts): nodes with room first, the emptier disk first,
 * never a full one; other groups before the home's own; reports refreshed
 * only when stale; too few live nodes refused with E_TOO_FEW_NODES.
 */
import { expect } from 'chai';
import { chooseHolders, type CoreHolderDeps } from '../../../../actors/pages/core-holders.js';
import { MemoryPageStore } from '../../../../runtime/storage/memory-pages.js';
import { SpacePolicy } from '../../../../actors/pages/space-policy.js';
import { MangroveError } from '../../../../bus/errors.js';
import type { NodeEntry } from '../../../../bus/messages/index.js';
import type { SpaceReport } from '../../../../bus/messages/page.js';
import { SimClock } from '../../../../runtime/world/clock.js';

const report = (node: string, freePages: number): SpaceReport => ({
  node,
  ram: { budgetBytes: 1 << 20, usedBytes: 0, pages: 0, dirtyPages: 0 },
  disk: { pages: 1000 - freePages, pagesMax: 1000, freePages },
  homePages: 0,
});

const entry = (id: string, shortId: number, group: number): NodeEntry => ({ id, shortId, group, endpoint: `tcp://127.0.0.1:${7400 + shortId}`, anchor: true, votes: 1 });

describe('actors/pages/space-policy', () => {
  it('ranks nodes with room by free disk, unknown ones after, and leaves full ones out', () => {
    const policy = new SpacePolicy(new SimClock(0), 5000);
    policy.note(report('a', 10));
    policy.note(report('b', 500));
    policy.note(report('c', 0));
    const ranked = policy.rank([{ id: 'a' }, { id: 'u' }, { id: 'b' }, { id: 'c' }]).map((x) => x.id);
    expect(ranked).to.deep.equal(['b', 'a', 'u']);
  });

  it('asks again only for reports older than its ttl, and keeps the last one when a node does not answer', async () => {
    const clock = new SimClock(0);
    const policy = new SpacePolicy(clock, 5000);
    const asked: string[] = [];
    const ask = async (id: string) => {
      asked.push(id);
      if (id === 'b') throw new MangroveError('E_TIMEOUT', 'no answer');
      return report(id, 7);
    };
    await policy.refresh(['a', 'b'], ask);
    expect(asked).to.deep.equal(['a', 'b']);
    clock.advance(1000);
    await policy.refresh(['a', 'b'], ask);
    expect(asked, 'a is fresh; b never answered').to.deep.equal(['a', 'b', 'b']);
    clock.advance(5000);
    policy.note(report('b', 3));
    await policy.refresh(['a', 'b'], ask);
    expect(asked.slice(3)).to.deep.equal(['a']);
    expect([policy.freeDisk('a'), policy.freeDisk('b')]).to.deep.equal([7, 3]);
  });
});

describe('actors/pages/core-holders chooseHolders', () => {
  const nodes = [entry('h', 0, 0), entry('x', 1, 0), entry('y', 2, 1), entry('z', 3, 1), entry('dead', 4, 1)];
  const deps = (policy: SpacePolicy): CoreHolderDeps => ({
    self: 'h',
    db: () => ({ version: 1, nodes }),
    isAlive: (id) => id !== 'dead',
    genOf: () => 1,
    store: new MemoryPageStore(),
    call: async () => undefined,
    rank: (c) => policy.rank(c),
  });

  it('puts the home first, then other groups before its own, each by free disk, never a full or dead node', () => {
    const policy = new SpacePolicy(new SimClock(0), 5000);
    policy.note(report('y', 5));
    policy.note(report('z', 50));
    policy.note(report('x', 900));
    expect(chooseHolders(deps(policy), 4)).to.deep.equal(['h', 'z', 'y', 'x']);
    policy.note(report('z', 0));
    expect(chooseHolders(deps(policy), 3)).to.deep.equal(['h', 'y', 'x']);
  });

  it('refuses more copies than live nodes with room, unless partial', () => {
    const policy = new SpacePolicy(new SimClock(0), 5000);
    policy.note(report('x', 0));
    let code = '';
    try {
      chooseHolders(deps(policy), 4);
    } catch (err) {
      code = (err as MangroveError).code;
    }
    expect(code).to.equal('E_TOO_FEW_NODES');
    expect(chooseHolders(deps(policy), 4, [], true)).to.deep.equal(['h', 'y', 'z']);
  });
});
