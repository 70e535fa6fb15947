import { expect } from 'chai';
import type { NodeDbSnapshot } from '../../../../bus/messages/index.js';
import { mergeFailed, naturalTransmitters, nodesUnder, subtreeFailed } from '../../../../machines/membership/heartbeat-view.js';
import { nodeInGroup } from '../../../fixtures/node-entries.js';

const node = nodeInGroup;

// Groups 0-2 (one supergroup) and group 64 (the next supergroup).
const db: NodeDbSnapshot = {
  version: 5,
  nodes: [node('a0', 0, 0, true), node('a1', 0, 1), node('b0', 1, 0), node('b1', 1, 1, true), node('c0', 2, 0), node('z0', 64, 0), node('z1', 64, 3)],
};
const sid = (id: string) => db.nodes.find((n) => n.id === id)!.shortId;
const alive = (...slots: number[]) => Array.from({ length: 64 }, (_, i) => slots.includes(i));

describe('hierarchical heartbeat views (M4)', () => {
  it('finds the nodes under a domain at any level', () => {
    expect(nodesUnder(db, 0, 1).map((n) => n.id)).to.deep.equal(['b0', 'b1']);
    expect(nodesUnder(db, 1, 0).map((n) => n.id).sort()).to.deep.equal(['a0', 'a1', 'b0', 'b1', 'c0']);
    expect(nodesUnder(db, 1, 1).map((n) => n.id)).to.deep.equal(['z0', 'z1']);
  });

  it('a group monitor counts failed the group members its bitmap does not hold', () => {
    expect(subtreeFailed(db, 0, 0, alive(0), new Map())).to.deep.equal([sid('a1')]);
  });

  it('an upper monitor takes live groups from their reports and counts silent groups failed whole', () => {
    const reports = new Map([[0, [sid('a1')]]]);
    const failed = subtreeFailed(db, 1, 0, alive(0, 2), reports);
    expect(failed.sort((x, y) => x - y)).to.deep.equal([sid('a1'), sid('b0'), sid('b1')].sort((x, y) => x - y));
  });

  it("trusts news from above only outside the monitor's own subtree", () => {
    const own = [sid('a1')];
    const above = [sid('a0'), sid('z1'), sid('b0')];
    // A group-0 monitor knows a0 is alive first hand; z1 and b0 are outside its group.
    expect(mergeFailed(own, above, 0, 0)).to.deep.equal([sid('a1'), sid('b0'), sid('z1')].sort((x, y) => x - y));
  });

  it("each slot's natural transmitter is its best-ranked node: anchors first, then lowest id", () => {
    expect(naturalTransmitters(db, 1, 0, [])).to.deep.equal([
      { slot: 0, id: 'a0' },
      { slot: 1, id: 'b1' },
      { slot: 2, id: 'c0' },
    ]);
    expect(naturalTransmitters(db, 1, 0, ['b0'])[1]).to.deep.equal({ slot: 1, id: 'b0' });
    expect(naturalTransmitters(db, 2, 0, [])).to.deep.equal([
      { slot: 0, id: 'a0' },
      { slot: 1, id: 'z0' },
    ]);
  });
});
