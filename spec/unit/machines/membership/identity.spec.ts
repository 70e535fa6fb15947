import { expect } from 'chai';
import {
  compareIds,
  createdAt,
  domainAt,
  formatShortId,
  groupOf,
  isPermanentId,
  levelsFor,
  makePermanentId,
  rankCompare,
  shortIdOf,
  slotAt,
} from '../../../../machines/membership/identity.js';

describe('node identity (M1)', () => {
  it('a permanent id is an address component and a creation time, and never an address', () => {
    const id = makePermanentId(new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]), 0x18b_9716_218d);
    expect(id).to.equal('deadbeef0001-018b9716218d');
    expect(isPermanentId(id)).to.equal(true);
    expect(createdAt(id)).to.equal(0x18b_9716_218d);
    expect(isPermanentId('tcp://127.0.0.1:7400')).to.equal(false);
    expect(() => makePermanentId(new Uint8Array(5), 1)).to.throw(RangeError);
  });

  it('orders ids totally, for "lowest id wins"', () => {
    const ids = ['b00000000000-000000000001', 'a00000000000-000000000002', 'a00000000000-000000000001'];
    expect([...ids].sort(compareIds)).to.deep.equal([ids[2], ids[1], ids[0]]);
  });

  it('short ids take 6 bits a level: 64 members a group, 12 bits for 2 levels, 18 for 3', () => {
    expect(shortIdOf(0, 63)).to.equal(63);
    expect(() => shortIdOf(0, 64)).to.throw(RangeError);
    const s = shortIdOf(2 * 64 + 5, 9); // group 133: slot 5 of supergroup 2
    expect(groupOf(s)).to.equal(133);
    expect([slotAt(s, 0), slotAt(s, 1), slotAt(s, 2)]).to.deep.equal([9, 5, 2]);
    expect([domainAt(s, 0), domainAt(s, 1), domainAt(s, 2)]).to.deep.equal([133, 2, 0]);
    expect(formatShortId(s, 3)).to.equal('2.5.9');
    expect(shortIdOf(63, 63)).to.be.below(2 ** 12);
    expect(shortIdOf(64 * 64 - 1, 63)).to.be.below(2 ** 18);
  });

  it('needs one heartbeat level per group level, so the top domain has at most 64 members', () => {
    expect(levelsFor(0)).to.equal(1);
    expect(levelsFor(1)).to.equal(2);
    expect(levelsFor(63)).to.equal(2);
    expect(levelsFor(64)).to.equal(3);
    expect(levelsFor(159)).to.equal(3);
    expect(levelsFor(4096)).to.equal(4);
  });

  it('ranks candidates: the preference list, then anchors, then the lowest id', () => {
    const a = { id: 'a', anchor: false };
    const b = { id: 'b', anchor: true };
    const c = { id: 'c', anchor: true };
    expect([a, c, b].sort((x, y) => rankCompare(x, y)).map((x) => x.id)).to.deep.equal(['b', 'c', 'a']);
    expect([a, c, b].sort((x, y) => rankCompare(x, y, ['a', 'c'])).map((x) => x.id)).to.deep.equal(['a', 'c', 'b']);
  });
});
