import { expect } from 'chai';
import { createActor } from 'xstate';
import { heartbeatMember, type MemberEmitted, type MemberInput } from '../../../../machines/membership/heartbeat-member.js';
import { bitmapOf } from '../../../../machines/membership/bitmap.js';
import { SimClock } from '../../../../runtime/world/clock.js';

const TICK = 25;
const PERIOD = 4 * TICK;

function member(over: Partial<MemberInput> = {}) {
  const clock = new SimClock();
  const out: MemberEmitted[] = [];
  const actor = createActor(heartbeatMember, {
    clock,
    input: {
      self: 'b',
      selfAnchor: false,
      level: 0,
      domain: 0,
      slot: 1,
      tickMs: TICK,
      ticksPerPeriod: 4,
      monitorSilenceTicksMax: 13,
      claimWindowTicks: 4,
      preference: [],
      ...over,
    },
  });
  actor.on('*', (e) => out.push(e as MemberEmitted));
  actor.start();
  const pulse = (from: string, slots: number[], fromAnchor = false) =>
    actor.send({ type: 'MONITOR_PULSE', from, fromAnchor, bitmap: bitmapOf(Array.from({ length: 64 }, (_, i) => slots.includes(i))) });
  return { actor, clock, out, pulse, types: () => out.map((e) => e.type) };
}

describe('heartbeat member (M3)', () => {
  it('pulses its monitor once a period, starting at once', () => {
    const m = member({ monitor: { id: 'a', anchor: true } });
    m.clock.advance(TICK);
    expect(m.out).to.deep.equal([{ type: 'member_pulse', to: 'a' }]);
    for (let i = 0; i < 8; i++) {
      m.clock.advance(PERIOD / 2);
      m.pulse('a', [0, 1]);
    }
    expect(m.out.filter((e) => e.type === 'member_pulse')).to.have.length(5);
    expect(m.actor.getSnapshot().value).to.equal('following');
  });

  it('claims the monitor role after three missed monitor pulses, not before', () => {
    const m = member({ monitor: { id: 'a', anchor: false } });
    m.clock.advance(12 * TICK);
    expect(m.actor.getSnapshot().value).to.equal('following');
    m.clock.advance(TICK);
    expect(m.actor.getSnapshot().value).to.equal('candidate');
    expect(m.types()).to.include('claim');
  });

  it('takes the role when no better claim comes within the window', () => {
    const m = member({ monitor: { id: 'a', anchor: false } });
    m.clock.advance(13 * TICK);
    m.actor.send({ type: 'CLAIM', from: 'c', fromAnchor: false });
    m.clock.advance(4 * TICK);
    const snap = m.actor.getSnapshot();
    expect(snap.status).to.equal('done');
    expect(snap.output).to.deep.equal({ replaced: 'a' });
  });

  it('yields to a better-ranked claimant: anchors first, then the lowest id', () => {
    const m = member();
    m.clock.advance(13 * TICK);
    expect(m.actor.getSnapshot().value).to.equal('candidate');
    m.actor.send({ type: 'CLAIM', from: 'z', fromAnchor: true });
    expect(m.actor.getSnapshot().value).to.equal('following');
    expect(m.actor.getSnapshot().context.monitor).to.deep.equal({ id: 'z', anchor: true });
  });

  it('obeys a configured preference list over anchors and ids', () => {
    const m = member({ preference: ['y'], selfAnchor: true });
    m.clock.advance(13 * TICK);
    m.actor.send({ type: 'CLAIM', from: 'c', fromAnchor: true });
    expect(m.actor.getSnapshot().value).to.equal('candidate');
    m.actor.send({ type: 'CLAIM', from: 'y', fromAnchor: false });
    expect(m.actor.getSnapshot().context.monitor?.id).to.equal('y');
  });

  it('a candidate follows any live monitor it hears', () => {
    const m = member();
    m.clock.advance(13 * TICK);
    m.pulse('z', [1]);
    expect(m.actor.getSnapshot().value).to.equal('following');
    expect(m.out.at(-1)).to.deep.equal({ type: 'member_pulse', to: 'z' });
  });

  it('learns from the bitmap that it is out, and that it is back', () => {
    const m = member({ monitor: { id: 'a', anchor: false } });
    m.pulse('a', [0, 1]);
    m.pulse('a', [0]);
    m.pulse('a', [0]);
    m.pulse('a', [0, 1]);
    expect(m.types().filter((t) => t === 'included' || t === 'excluded')).to.deep.equal(['included', 'excluded', 'included']);
  });

  it('switches to a better monitor, and to any monitor once its own has missed a pulse', () => {
    const m = member({ monitor: { id: 'm', anchor: false } });
    m.pulse('m', [1]);
    m.pulse('z', [1]);
    expect(m.actor.getSnapshot().context.monitor?.id).to.equal('m');
    m.pulse('c', [1]);
    expect(m.actor.getSnapshot().context.monitor?.id).to.equal('c');
    m.clock.advance(7 * TICK);
    m.pulse('z', [1]);
    expect(m.actor.getSnapshot().context.monitor?.id).to.equal('z');
    expect(m.types().filter((t) => t === 'monitor')).to.have.length(2);
  });

  it('ignores pulses and claims of its own', () => {
    const m = member();
    m.clock.advance(13 * TICK);
    m.actor.send({ type: 'CLAIM', from: 'b', fromAnchor: true });
    expect(m.actor.getSnapshot().value).to.equal('candidate');
  });
});
