/**
 * What a member pulse carries up (M4, M5): only anchor-computed quorum state
 * is relayed, and only with the lifetime it has left, on the simulated clock.
 */
import { expect } from 'chai';
import type { Body } from '../../../../bus/messages/index.js';
import { anchorQuorum, holdQuorum, memberPulseBody, relayedQuorum } from '../../../../machines/membership/heartbeat-relay.js';
import { SimClock } from '../../../../runtime/world/clock.js';

const pulse = (level: number, quorum?: { has: boolean; ttlMs: number }): Body<'hb.member_pulse'> => ({ level, domain: 0, slot: 1, dbVersion: 4, ...(quorum ? { quorum } : {}) });

describe('heartbeat relay: quorum state on its way up (M5 with M4)', () => {
  it("takes a group member's quorum state only from an anchor, and a transmitter's relay from anyone", () => {
    const q = { has: true, ttlMs: 800 };
    expect(anchorQuorum(pulse(0, q), true)).to.deep.equal(q);
    expect(anchorQuorum(pulse(0, q), false), 'a non-anchor computes no quorum').to.equal(undefined);
    expect(anchorQuorum(pulse(1, q), false), 'transmitters relay only anchor-computed state').to.deep.equal(q);
    expect(anchorQuorum(pulse(1), true)).to.equal(undefined);
  });

  it('relays held state with only the lifetime it has left, and none once it has run out', () => {
    const clock = new SimClock();
    const held = holdQuorum({ has: false, ttlMs: 800 }, clock.now());
    expect(relayedQuorum(held, clock.now())).to.deep.equal({ has: false, ttlMs: 800 });
    clock.advance(300);
    expect(relayedQuorum(held, clock.now())).to.deep.equal({ has: false, ttlMs: 500 });
    clock.advance(499);
    expect(relayedQuorum(held, clock.now())).to.deep.equal({ has: false, ttlMs: 1 });
    clock.advance(1);
    expect(relayedQuorum(held, clock.now()), 'expired at its lifetime').to.equal(undefined);
    expect(relayedQuorum(undefined, clock.now())).to.equal(undefined);
  });
});

describe('heartbeat relay: the member pulse body', () => {
  const at0 = { level: 0, domain: 3, slot: 5 };
  const at1 = { level: 1, domain: 0, slot: 3 };
  const own = { has: true, ttlMs: 8000 };
  const relayed = { has: false, ttlMs: 1200 };
  const pan = { id: 'p', term: 2 };

  it('at level 0: an anchor sends its own quorum state, a non-anchor none, and neither relays or reports', () => {
    const anchor = memberPulseBody(at0, { dbVersion: 7, quorum: own, pan }, true, [9], relayed);
    expect(anchor).to.deep.equal({ level: 0, domain: 3, slot: 5, dbVersion: 7, pan, quorum: own });
    expect(Object.keys(anchor)).to.deep.equal(['level', 'domain', 'slot', 'dbVersion', 'pan', 'quorum']);
    expect(memberPulseBody(at0, { dbVersion: 7, quorum: own }, false, [], relayed)).to.deep.equal({ level: 0, domain: 3, slot: 5, dbVersion: 7 });
  });

  it("above level 0: the group's report, and relayed quorum state unless the transmitter is an anchor with its own", () => {
    const plain = memberPulseBody(at1, { dbVersion: 7, quorum: own }, false, [64, 65], relayed);
    expect(plain).to.deep.equal({ level: 1, domain: 0, slot: 3, dbVersion: 7, failed: [64, 65], quorum: relayed });
    expect(Object.keys(plain)).to.deep.equal(['level', 'domain', 'slot', 'dbVersion', 'failed', 'quorum']);
    const anchor = memberPulseBody(at1, { dbVersion: 7, quorum: own, pan }, true, [], relayed);
    expect(anchor).to.deep.equal({ level: 1, domain: 0, slot: 3, dbVersion: 7, pan, quorum: own, failed: [] });
    expect(Object.keys(anchor)).to.deep.equal(['level', 'domain', 'slot', 'dbVersion', 'pan', 'quorum', 'failed']);
    expect(memberPulseBody(at1, { dbVersion: 7 }, false, [], undefined)).to.deep.equal({ level: 1, domain: 0, slot: 3, dbVersion: 7, failed: [] });
  });
});
