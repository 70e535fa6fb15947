import { expect } from 'chai';
import { heartbeatMember, hearsMonitor, type MemberEmitted, type MemberInput } from '../../../../machines/membership/heartbeat-member.js';
import { bitmapOf } from '../../../../machines/membership/bitmap.js';
import { Running } from '../../../helpers/machine-harness.js';
import { levelZeroPlace } from '../../../fixtures/heartbeat-place.js';

const TICK = 25;
const PERIOD = 4 * TICK;

function member(over: Partial<MemberInput> = {}) {
  const place = levelZeroPlace({ self: 'b', slot: 1, tickMs: TICK, ticksPerPeriod: 4 });
  const { actor, clock, emitted } = new Running(heartbeatMember, { ...place, monitorSilenceTicksMax: 13, claimWindowTicks: 4, ...over });
  const out = emitted as unknown as MemberEmitted[];
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

describe('heartbeat member: the silence rule and redirects (M4)', () => {
  const hears = (m: ReturnType<typeof member>) => hearsMonitor(m.actor.getSnapshot());
  const claimsTo = (m: ReturnType<typeof member>) => m.out.filter((e) => e.type === 'claim_to');

  it('hears its monitor once it has taken a pulse, and for two silent periods after, not a tick longer', () => {
    const m = member({ monitor: { id: 'a', anchor: false } });
    expect(hears(m), 'told of a monitor, not yet heard').to.equal(false);
    m.pulse('a', [0, 1]);
    expect(hears(m)).to.equal(true);
    m.clock.advance(8 * TICK);
    expect(m.actor.getSnapshot().context.silence).to.equal(8);
    expect(hears(m)).to.equal(true);
    m.clock.advance(TICK);
    expect(hears(m)).to.equal(false);
    m.pulse('a', [0, 1]);
    expect(hears(m)).to.equal(true);
  });

  it('keeps the bitmap of the last pulse it took; a claimant it follows has sent none, so it keeps the previous one', () => {
    const m = member({ monitor: { id: 'm', anchor: false } });
    const taken = [...bitmapOf(Array.from({ length: 64 }, (_, i) => i < 2))];
    const bitmap = () => [...(m.actor.getSnapshot().context.bitmap ?? [])];
    m.pulse('m', [0, 1]);
    m.pulse('z', [1, 2]);
    expect(bitmap(), 'a worse monitor while ours is heard is not taken').to.deep.equal(taken);
    m.clock.advance(13 * TICK);
    expect(m.actor.getSnapshot().value).to.equal('candidate');
    m.actor.send({ type: 'CLAIM', from: 'a', fromAnchor: false });
    expect(m.actor.getSnapshot().value).to.equal('following');
    expect(m.actor.getSnapshot().context.monitor?.id).to.equal('a');
    expect(bitmap()).to.deep.equal(taken);
    expect(hears(m), 'the claimant is just heard').to.equal(true);
  });

  it('a candidate or a searching member never hears a monitor', () => {
    const searching = member();
    expect(searching.actor.getSnapshot().value).to.equal('searching');
    expect(hears(searching)).to.equal(false);
    const m = member({ monitor: { id: 'a', anchor: false } });
    m.pulse('a', [0, 1]);
    m.clock.advance(13 * TICK);
    expect(m.actor.getSnapshot().value).to.equal('candidate');
    expect(hears(m)).to.equal(false);
  });

  it('claims from a node it is redirected to only while it does not hear its monitor', () => {
    const m = member({ monitor: { id: 'a', anchor: false } });
    m.pulse('a', [0, 1]);
    m.actor.send({ type: 'REDIRECT', monitor: 'x' });
    expect(claimsTo(m), 'hears its monitor').to.deep.equal([]);
    m.clock.advance(9 * TICK);
    m.actor.send({ type: 'REDIRECT', monitor: 'x' });
    expect(claimsTo(m)).to.deep.equal([{ type: 'claim_to', to: 'x' }]);
    expect(m.actor.getSnapshot().context.monitor?.id, 'a redirect names a node to ask, not one to follow').to.equal('a');
    m.clock.advance(4 * TICK);
    expect(m.actor.getSnapshot().value).to.equal('candidate');
    m.actor.send({ type: 'REDIRECT', monitor: 'y' });
    expect(claimsTo(m).at(-1)).to.deep.equal({ type: 'claim_to', to: 'y' });
    const searching = member();
    searching.actor.send({ type: 'REDIRECT', monitor: 'x' });
    expect(claimsTo(searching)).to.deep.equal([{ type: 'claim_to', to: 'x' }]);
  });
});
