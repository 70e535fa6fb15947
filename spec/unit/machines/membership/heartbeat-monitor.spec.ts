import { expect } from 'chai';
import { heartbeatMonitor, type MonitorEmitted, type MonitorInput } from '../../../../machines/membership/heartbeat-monitor.js';
import { hasBit, slotsOf } from '../../../../machines/membership/bitmap.js';
import { Running } from '../../../helpers/machine-harness.js';
import { levelZeroPlace } from '../../../fixtures/heartbeat-place.js';

const TICK = 25;

const members = [
  { slot: 0, id: 'a' },
  { slot: 1, id: 'b' },
  { slot: 2, id: 'c' },
  { slot: 5, id: 'f' },
];

function monitor(over: Partial<MonitorInput> = {}) {
  const place = levelZeroPlace({ self: 'b', selfAnchor: true, slot: 1, tickMs: TICK, ticksPerPeriod: 4 });
  const { actor, clock, emitted } = new Running(heartbeatMonitor, { ...place, memberSilenceTicksMax: 13, members, presumedAlive: [0, 2, 5], ...over });
  const out = emitted as unknown as MonitorEmitted[];
  const pulses = () => out.filter((e): e is Extract<MonitorEmitted, { type: 'monitor_pulse' }> => e.type === 'monitor_pulse');
  return { actor, clock, out, pulses };
}

describe('heartbeat monitor (M3)', () => {
  it('broadcasts its bitmap to every member on taking the role and every period after', () => {
    const m = monitor();
    expect(m.pulses()).to.have.length(1);
    expect(m.pulses()[0].to).to.deep.equal(['a', 'c', 'f']);
    expect(slotsOf(m.pulses()[0].bitmap)).to.deep.equal([0, 1, 2, 5]);
    m.clock.advance(4 * TICK * 3);
    expect(m.pulses()).to.have.length(4);
  });

  it('declares a silent member failed after three missed deadlines, at once in a pulse', () => {
    const m = monitor();
    for (let t = 1; t <= 12; t++) {
      m.clock.advance(TICK);
      m.actor.send({ type: 'MEMBER_PULSE', from: 'a', slot: 0 });
      m.actor.send({ type: 'MEMBER_PULSE', from: 'f', slot: 5 });
    }
    expect(m.out.filter((e) => e.type === 'member_failed')).to.deep.equal([]);
    const before = m.pulses().length;
    m.clock.advance(TICK);
    expect(m.out.filter((e) => e.type === 'member_failed')).to.deep.equal([{ type: 'member_failed', slot: 2, id: 'c' }]);
    const last = m.pulses().at(-1)!;
    expect(m.pulses().length).to.equal(before + 1);
    expect(hasBit(last.bitmap, 2)).to.equal(false);
    expect(hasBit(last.bitmap, 0)).to.equal(true);
  });

  it('counts a failed member in again on its next pulse', () => {
    const m = monitor();
    m.clock.advance(14 * TICK);
    m.actor.send({ type: 'MEMBER_PULSE', from: 'c', slot: 2 });
    expect(m.out.filter((e) => e.type === 'member_alive')).to.deep.equal([{ type: 'member_alive', slot: 2, id: 'c' }]);
    m.clock.advance(4 * TICK);
    expect(hasBit(m.pulses().at(-1)!.bitmap, 2)).to.equal(true);
  });

  it('never counts alive a slot the previous monitor did not', () => {
    const m = monitor({ presumedAlive: [0] });
    expect(slotsOf(m.pulses()[0].bitmap)).to.deep.equal([0, 1]);
  });

  it('steps down for a better-ranked monitor and answers a worse one', () => {
    const m = monitor({ self: 'm', selfAnchor: false });
    m.actor.send({ type: 'MONITOR_PULSE', from: 'z', fromAnchor: false });
    expect(m.pulses().at(-1)!.to).to.deep.equal(['z']);
    expect(m.actor.getSnapshot().status).to.equal('active');
    m.actor.send({ type: 'MONITOR_PULSE', from: 'q', fromAnchor: true });
    expect(m.actor.getSnapshot().status).to.equal('done');
    expect(m.actor.getSnapshot().output).to.deep.equal({ monitor: { id: 'q', anchor: true } });
  });

  it('answers a claim with a pulse so the claimant follows it', () => {
    const m = monitor();
    m.actor.send({ type: 'CLAIM', from: 'a', fromAnchor: false });
    expect(m.pulses().at(-1)!.to).to.deep.equal(['a']);
  });

  it('follows the node database: a removed node is no longer a member', () => {
    const m = monitor();
    m.actor.send({ type: 'MEMBERS', members: members.filter((x) => x.id !== 'c') });
    m.clock.advance(4 * TICK);
    const last = m.pulses().at(-1)!;
    expect(last.to).to.deep.equal(['a', 'f']);
    expect(hasBit(last.bitmap, 2)).to.equal(false);
  });

  it('ignores a pulse for its own slot or outside the domain', () => {
    const m = monitor({ presumedAlive: [] });
    m.actor.send({ type: 'MEMBER_PULSE', from: 'x', slot: 1 });
    m.actor.send({ type: 'MEMBER_PULSE', from: 'x', slot: 64 });
    expect(m.out.filter((e) => e.type === 'member_alive')).to.deep.equal([]);
  });
});
