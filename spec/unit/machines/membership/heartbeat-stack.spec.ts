/**
 * The pure reads over a node's heartbeat stack (M4): what a monitor
 * announces, what a transmitter reports up, redirects, and whom each level
 * talks to. Levels hold real
 * member and monitor machines on a simulated clock, so the silence rule is
 * the machines' own.
 */
import { expect } from 'chai';
import { createActor } from 'xstate';
import type { NodeDbSnapshot } from '../../../../bus/messages/index.js';
import { bitmapOf } from '../../../../machines/membership/bitmap.js';
import { announce, ownSubtreeFailed, reportUp } from '../../../../machines/membership/heartbeat-announce.js';
import { heartbeatMember } from '../../../../machines/membership/heartbeat-member.js';
import { heartbeatMonitor, type SlotMember } from '../../../../machines/membership/heartbeat-monitor.js';
import { claimPeers, groupMembers, upperHint, upperMembers, uppersOf } from '../../../../machines/membership/heartbeat-peers.js';
import { redirectedLevel, redirectFor } from '../../../../machines/membership/heartbeat-redirect.js';
import { monitorAt, type MemberLevel, type MonitorLevel } from '../../../../machines/membership/heartbeat-stack.js';
import { domainAt, slotAt } from '../../../../machines/membership/identity.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { nodeInGroup } from '../../../fixtures/node-entries.js';

const TICK = 25;

const node = nodeInGroup;

// Groups 0-2 form the level-1 domain 0; group 64 is in level-1 domain 1.
const db: NodeDbSnapshot = {
  version: 3,
  nodes: [node('a0', 0, 0, true), node('a1', 0, 1), node('a2', 0, 2), node('b0', 1, 0), node('b1', 1, 1), node('c0', 2, 0), node('c1', 2, 1), node('z0', 64, 0)],
};
const sid = (id: string) => db.nodes.find((n) => n.id === id)!.shortId;
const sorted = (...ids: string[]) => ids.map(sid).sort((x, y) => x - y);
const bits = (...slots: number[]) => bitmapOf(Array.from({ length: 64 }, (_, i) => slots.includes(i)));

function place(self: string, level: number) {
  const s = sid(self);
  return { self, selfAnchor: false, level, domain: domainAt(s, level), slot: slotAt(s, level), tickMs: TICK, ticksPerPeriod: 4, preference: [] };
}

function monitorLevel(clock: SimClock, self: string, level: number, members: SlotMember[], presumedAlive: number[]): MonitorLevel {
  const p = place(self, level);
  const actor = createActor(heartbeatMonitor, { clock, input: { ...p, memberSilenceTicksMax: 13, members, presumedAlive } });
  actor.start();
  return { level, domain: p.domain, slot: p.slot, role: 'monitor', actor, uppers: [], reports: new Map() };
}

function memberLevel(clock: SimClock, self: string, level: number, monitor?: string): MemberLevel {
  const p = place(self, level);
  const actor = createActor(heartbeatMember, {
    clock,
    input: { ...p, monitorSilenceTicksMax: 13, claimWindowTicks: 4, monitor: monitor ? { id: monitor, anchor: false } : undefined },
  });
  actor.start();
  return { level, domain: p.domain, slot: p.slot, role: 'member', actor, uppers: [], failed: [], peers: [], horizon: level };
}

const group0: SlotMember[] = [
  { slot: 0, id: 'a0' },
  { slot: 1, id: 'a1' },
  { slot: 2, id: 'a2' },
];
const upper0: SlotMember[] = [
  { slot: 0, id: 'a0' },
  { slot: 1, id: 'b1' },
  { slot: 2, id: 'c0' },
];

describe('heartbeat stack: what a monitor announces (M4)', () => {
  it('a group monitor with nothing above knows only its group, and says so with horizon 0', () => {
    const clock = new SimClock();
    const l0 = monitorLevel(clock, 'a0', 0, group0, [1]);
    expect(announce(db, [l0], l0)).to.deep.equal({ failed: [sid('a2')], horizon: 0 });
  });

  it('adds what the upper monitor it follows announces, outside its own group, while it hears that monitor', () => {
    const clock = new SimClock();
    const l0 = monitorLevel(clock, 'a0', 0, group0, [1]);
    const l1 = memberLevel(clock, 'a0', 1, 'b1');
    // The upper monitor says a1 is failed too; a1 is in our group, where we know better.
    l1.failed = sorted('a1', 'b0');
    l1.horizon = 1;
    const levels = [l0, l1];
    // Not yet heard: a monitor we were told of has said nothing we can vouch for.
    expect(announce(db, levels, l0)).to.deep.equal({ failed: [sid('a2')], horizon: 0 });
    l1.actor.send({ type: 'MONITOR_PULSE', from: 'b1', fromAnchor: false, bitmap: bits(0, 1) });
    expect(announce(db, levels, l0)).to.deep.equal({ failed: sorted('a2', 'b0'), horizon: 1 });
    clock.advance(8 * TICK);
    expect(announce(db, levels, l0), 'two silent periods').to.deep.equal({ failed: sorted('a2', 'b0'), horizon: 1 });
    clock.advance(TICK);
    expect(announce(db, levels, l0), 'past two silent periods').to.deep.equal({ failed: [sid('a2')], horizon: 0 });
    l1.actor.send({ type: 'MONITOR_PULSE', from: 'b1', fromAnchor: false, bitmap: bits(0, 1) });
    expect(announce(db, levels, l0)).to.deep.equal({ failed: sorted('a2', 'b0'), horizon: 1 });
  });

  it("as monitor of the next level too, announces that level's view, and takes its own group's slot first hand", () => {
    const clock = new SimClock();
    const l0 = monitorLevel(clock, 'a0', 0, group0, [1]);
    const l1 = monitorLevel(clock, 'a0', 1, upper0, [1]);
    l1.reports.set(1, [sid('b0')]);
    // A stale report for our own slot (its old transmitter's): we know our group first hand.
    l1.reports.set(0, [sid('a1')]);
    const levels = [l0, l1];
    // Slot 0 first hand (a2), slot 1 as reported (b0), slot 2 silent: all of group 2.
    expect(ownSubtreeFailed(db, levels, l1)).to.deep.equal([sid('a2'), sid('b0'), sid('c0'), sid('c1')]);
    expect(announce(db, levels, l1)).to.deep.equal({ failed: sorted('a2', 'b0', 'c0', 'c1'), horizon: 1 });
    expect(announce(db, levels, l0)).to.deep.equal({ failed: sorted('a2', 'b0', 'c0', 'c1'), horizon: 1 });
    expect([...l1.reports], 'reading leaves the reports as heard').to.deep.equal([
      [1, [sid('b0')]],
      [0, [sid('a1')]],
    ]);
  });

  it("a transmitter reports up its own group's failures, and nothing when it monitors no level below", () => {
    const clock = new SimClock();
    const l0 = monitorLevel(clock, 'a0', 0, group0, [1]);
    expect(reportUp(db, [l0, memberLevel(clock, 'a0', 1, 'b1')], 1)).to.deep.equal([sid('a2')]);
    expect(reportUp(db, [memberLevel(clock, 'a1', 0, 'a0')], 1)).to.deep.equal([]);
  });
});

describe('heartbeat stack: redirects (M4)', () => {
  it('answers a pulse or claim for an upper level of our domain with the monitor we follow one level down', () => {
    const clock = new SimClock();
    const levels = [memberLevel(clock, 'a1', 0, 'a0')];
    expect(redirectFor(levels, sid('a1'), 'b1', { level: 1, domain: 0 })).to.deep.equal({ level: 1, domain: 0, monitor: 'a0' });
    expect(redirectFor(levels, sid('a1'), 'a0', { level: 1, domain: 0 }), 'never names the sender to itself').to.equal(undefined);
    expect(redirectFor(levels, sid('a1'), 'b1', { level: 0, domain: 0 }), 'level 0 has no transmitter').to.equal(undefined);
    expect(redirectFor(levels, sid('a1'), 'z0', { level: 1, domain: 1 }), 'not our domain').to.equal(undefined);
    expect(redirectFor(levels, sid('a1'), 'b1', { level: 2, domain: 0 }), 'no level below it').to.equal(undefined);
  });

  it('does not redirect as the transmitter, nor when it follows no monitor', () => {
    const clock = new SimClock();
    expect(redirectFor([monitorLevel(clock, 'a0', 0, group0, [])], sid('a0'), 'b1', { level: 1, domain: 0 })).to.equal(undefined);
    expect(redirectFor([memberLevel(clock, 'a1', 0)], sid('a1'), 'b1', { level: 1, domain: 0 })).to.equal(undefined);
  });

  it('acts on a redirect only for a level of ours whose domain the node database places the named node in', () => {
    const clock = new SimClock();
    const l0 = monitorLevel(clock, 'a0', 0, group0, []);
    const l1 = monitorLevel(clock, 'a0', 1, upper0, []);
    const levels = [l0, l1];
    expect(redirectedLevel(db, levels, { level: 1, domain: 0, monitor: 'b0' })).to.deep.equal({ level: l1, slot: 1 });
    expect(redirectedLevel(db, levels, { level: 1, domain: 0, monitor: 'z0' }), 'named node elsewhere').to.equal(undefined);
    expect(redirectedLevel(db, levels, { level: 1, domain: 0, monitor: 'nobody' }), 'named node unknown').to.equal(undefined);
    expect(redirectedLevel(db, levels, { level: 1, domain: 1, monitor: 'z0' }), 'not our domain').to.equal(undefined);
    expect(redirectedLevel(db, levels, { level: 2, domain: 0, monitor: 'b0' }), 'no such level').to.equal(undefined);
  });

  it('knows who monitors each level: itself, or the monitor its member follows', () => {
    const clock = new SimClock();
    const levels = [monitorLevel(clock, 'a0', 0, group0, []), memberLevel(clock, 'a0', 1, 'b1')];
    expect([0, 1, 2].map((i) => monitorAt(levels, i, 'a0'))).to.deep.equal(['a0', 'b1', undefined]);
  });
});

describe('heartbeat stack: whom each level talks to (M3, M4)', () => {
  it("a group's slots are its nodes in the node database", () => {
    expect(groupMembers(db, 0)).to.deep.equal(group0);
    expect(groupMembers(db, 5)).to.deep.equal([]);
  });

  it('a claim goes to the rest of the group at level 0, and above to every transmitter we know of', () => {
    const clock = new SimClock();
    expect(claimPeers(db, [memberLevel(clock, 'a1', 0)], memberLevel(clock, 'a1', 0), 'a1', [])).to.deep.equal(['a0', 'a2']);
    const l0 = monitorLevel(clock, 'a0', 0, group0, []);
    l0.uppers = ['c1', 'b0'];
    const l1 = memberLevel(clock, 'a0', 1);
    l1.peers = ['b1', 'a0'];
    // Natural transmitters (anchors first, then the lowest id), those our monitor named, and the nearest upper we heard of; never ourselves.
    expect(claimPeers(db, [l0, l1], l1, 'a0', [])).to.deep.equal(['b0', 'c0', 'b1', 'c1']);
  });

  it('names the monitors above a level, nearest first, at most four', () => {
    const clock = new SimClock();
    const l0 = monitorLevel(clock, 'a0', 0, group0, []);
    const l1 = memberLevel(clock, 'a0', 1, 'b1');
    l1.uppers = ['u2', 'u3', 'u4', 'u5'];
    expect(uppersOf([l0, l1], 0, 'a0')).to.deep.equal(['b1', 'u2', 'u3', 'u4']);
    expect(uppersOf([l0, l1], 1, 'a0'), 'nothing above the top level').to.deep.equal([]);
    expect(uppersOf([l0], 0, 'a0')).to.deep.equal([]);
  });

  it('a new member one level up starts by following the nearest upper monitor it heard of', () => {
    expect(upperHint(db, ['a0', 'b1'])).to.deep.equal({ id: 'a0', anchor: true });
    expect(upperHint(db, ['b1'])).to.deep.equal({ id: 'b1', anchor: false });
    expect(upperHint(db, [])).to.equal(undefined);
  });

  it("a new upper monitor's slots: natural transmitters, overridden by those its predecessor heard, but not the one it replaces", () => {
    const clock = new SimClock();
    const was = memberLevel(clock, 'a0', 1, 'b0');
    was.peers = ['b0', 'c1', 'z0', 'nobody'];
    expect(upperMembers(db, was, 'b0', [])).to.deep.equal([
      { slot: 0, id: 'a0' },
      { slot: 1, id: 'b0' },
      { slot: 2, id: 'c1' },
    ]);
    was.peers = ['b1'];
    expect(upperMembers(db, was, undefined, ['c1'])).to.deep.equal([
      { slot: 0, id: 'a0' },
      { slot: 1, id: 'b1' },
      { slot: 2, id: 'c1' },
    ]);
  });
});
