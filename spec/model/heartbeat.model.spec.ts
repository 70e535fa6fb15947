/**
 * Generated paths through the heartbeat member and monitor machines (M3),
 * with tiny timing (a period of one tick, failure after two silent ticks) so
 * every state is reachable in a few steps. Each path is replayed through
 * `transition()` and checked against the safety claims read straight from
 * SPEC.md: a monitor counts a member alive only within its deadlines; a
 * member pulses only the monitor it follows, claims only after silence, and
 * acts on a redirect only while it does not hear its monitor.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import { hasBit, bitmapOf } from '../../machines/membership/bitmap.js';
import { heartbeatMember, machineName as memberName, type MemberEvent, type MemberInput } from '../../machines/membership/heartbeat-member.js';
import { heartbeatMonitor, machineName as monitorName, type MonitorEvent, type MonitorInput } from '../../machines/membership/heartbeat-monitor.js';
import { afterEvent, leafStates, pathEvents, replay } from '../helpers/machine-harness.js';
import { levelZeroPlace } from '../fixtures/heartbeat-place.js';

const bits = (...slots: number[]) => bitmapOf(Array.from({ length: 64 }, (_, i) => slots.includes(i)));

describe('heartbeat member (M3), generated paths', () => {
  const input: MemberInput = { ...levelZeroPlace({ self: 'b', slot: 1, tickMs: 10, ticksPerPeriod: 1 }), monitorSilenceTicksMax: 2, claimWindowTicks: 1 };
  const events = [
    { type: 'MONITOR_PULSE', from: 'm', fromAnchor: false, bitmap: bits(0, 1) },
    { type: 'MONITOR_PULSE', from: 'm', fromAnchor: false, bitmap: bits(0) },
    { type: 'MONITOR_PULSE', from: 'c', fromAnchor: false, bitmap: bits(1) },
    { type: 'MONITOR_PULSE', from: 'z', fromAnchor: false, bitmap: bits(1) },
    { type: 'CLAIM', from: 'a', fromAnchor: false },
    { type: 'CLAIM', from: 'z', fromAnchor: false },
    { type: 'REDIRECT', monitor: 'x' },
    afterEvent(memberName, 'tick', 'searching'),
    afterEvent(memberName, 'tick', 'following'),
    afterEvent(memberName, 'claimWindow', 'candidate'),
  ] as MemberEvent[];
  const paths = getShortestPaths(heartbeatMember, {
    input,
    events,
    serializeState: (s) =>
      JSON.stringify([s.value, s.context.monitor?.id, s.context.silence, Math.min(s.context.sincePulse, 2), s.context.included, s.context.bitmap !== undefined]),
  });

  it('reaches every state', () => {
    const reached = new Set(paths.map((p) => (typeof p.state.value === 'string' ? p.state.value : JSON.stringify(p.state.value))));
    for (const leaf of leafStates(heartbeatMember).filter((l) => l !== 'choosing')) expect(reached).to.include(leaf);
  });

  it('pulses only the monitor it follows, claims only after silence, and reads its own bit', () => {
    for (const p of paths) {
      const evs = pathEvents(p.steps);
      const { snapshots, emitted } = replay(heartbeatMember, input, evs);
      for (let i = 1; i < snapshots.length; i++) {
        const before = snapshots[i - 1];
        const after = snapshots[i];
        for (const e of emitted[i]) {
          if (e.type === 'member_pulse') expect(e.to, JSON.stringify(evs)).to.equal(after.context.monitor?.id);
          if (e.type === 'claim') expect(before.value, JSON.stringify(evs)).to.not.equal('candidate');
        }
        if (after.value === 'candidate' && before.value !== 'candidate') {
          expect(evs[i - 1].type, JSON.stringify(evs)).to.match(/^xstate\.after\.tick/);
          expect(emitted[i].map((e) => e.type)).to.include('claim');
        }
        const ev = evs[i - 1];
        if (ev.type === 'MONITOR_PULSE' && after.context.monitor?.id === ev.from) {
          expect(after.context.included, JSON.stringify(evs)).to.equal(hasBit(ev.bitmap, input.slot));
        }
        if (after.value === 'following') expect(after.context.monitor).to.not.equal(undefined);
      }
    }
  });

  it('claims from the node a redirect names only while it does not hear its monitor, and follows no one for it', () => {
    // A redirect leaves the state as it was, so no shortest path takes one: send one at the end of every path.
    const redirect: MemberEvent = { type: 'REDIRECT', monitor: 'x' };
    const heard = new Set<boolean>();
    for (const p of paths) {
      const evs = [...pathEvents(p.steps), redirect];
      const { snapshots, emitted } = replay(heartbeatMember, input, evs);
      // Independent reading of the silence rule: following, having taken a pulse, within two periods of silence.
      const tookPulse = evs.some((ev, i) => ev.type === 'MONITOR_PULSE' && snapshots[i + 1].context.monitor?.id === ev.from);
      const before = snapshots[evs.length - 1];
      const after = snapshots[evs.length];
      const hears = before.value === 'following' && tookPulse && before.context.silence <= 2 * input.ticksPerPeriod;
      const claims = emitted[evs.length].filter((e) => e.type === 'claim_to');
      // A promoted member is done (its actor has started a monitor in its place): it takes no more events.
      const claimsFrom = before.status === 'done' || hears ? [] : [{ type: 'claim_to', to: 'x' }];
      if (before.status !== 'done') heard.add(hears);
      expect(claims, JSON.stringify(evs)).to.deep.equal(claimsFrom);
      expect(after.value).to.equal(before.value);
      expect(after.context.monitor).to.deep.equal(before.context.monitor);
    }
    expect([...heard].sort()).to.deep.equal([false, true]);
  });
});

describe('heartbeat monitor (M3), generated paths', () => {
  const input: MonitorInput = {
    ...levelZeroPlace({ self: 'm', slot: 0, tickMs: 10, ticksPerPeriod: 1 }),
    memberSilenceTicksMax: 2,
    members: [
      { slot: 0, id: 'm' },
      { slot: 1, id: 'p' },
      { slot: 2, id: 'q' },
    ],
    presumedAlive: [1],
  };
  const tick = afterEvent(monitorName, 'tick', 'monitoring.ticking');
  const events = [
    { type: 'MEMBER_PULSE', from: 'p', slot: 1 },
    { type: 'MEMBER_PULSE', from: 'q', slot: 2 },
    { type: 'CLAIM', from: 'q', fromAnchor: false },
    { type: 'MONITOR_PULSE', from: 'z', fromAnchor: false },
    { type: 'MONITOR_PULSE', from: 'a', fromAnchor: false },
    tick,
  ] as MonitorEvent[];
  const paths = getShortestPaths(heartbeatMonitor, {
    input,
    events,
    serializeState: (s) => JSON.stringify([s.value, s.context.alive.slice(0, 3), s.context.lastHeard.slice(0, 3).map((t) => Math.min(s.context.tick - t, 3)), s.context.sinceBroadcast]),
  });

  it('reaches every state', () => {
    const reached = new Set(paths.map((p) => JSON.stringify(p.state.value)));
    expect(reached).to.include(JSON.stringify({ monitoring: 'ticking' }));
    expect(reached).to.include(JSON.stringify('demoted'));
  });

  it('never counts a member alive past its deadlines, and pulses every member when it declares a failure', () => {
    for (const p of paths) {
      const evs = pathEvents(p.steps);
      const { emitted } = replay(heartbeatMonitor, input, evs);
      // Independent model: ticks since each slot was last heard (presumed slots as if heard at the start).
      const heardAgo: (number | null)[] = [0, 0, null];
      for (let i = 0; i <= evs.length; i++) {
        const ev = evs[i - 1];
        if (ev?.type === tick.type) heardAgo.forEach((h, s) => (heardAgo[s] = h === null ? null : h + 1));
        if (ev?.type === 'MEMBER_PULSE') heardAgo[ev.slot] = 0;
        for (const e of emitted[i]) {
          if (e.type !== 'monitor_pulse') continue;
          for (const s of [1, 2]) {
            const ago = heardAgo[s];
            if (hasBit(e.bitmap as Uint8Array, s)) {
              expect(ago, `slot ${s} after ${JSON.stringify(evs.slice(0, i))}`).to.not.equal(null);
              expect(ago!, `slot ${s} after ${JSON.stringify(evs.slice(0, i))}`).to.be.below(input.memberSilenceTicksMax);
            }
          }
          expect(hasBit(e.bitmap as Uint8Array, 0)).to.equal(true);
        }
        if (emitted[i].some((e) => e.type === 'member_failed')) {
          expect(emitted[i].filter((e) => e.type === 'monitor_pulse').map((e) => e.to)).to.deep.include(['p', 'q']);
        }
      }
    }
  });
});
