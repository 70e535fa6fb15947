/**
 * Heartbeat rules (M3) over level-0 pulses: a monitor reports a member
 * alive only while it hears it, and reports it failed only after the
 * deadlines it was allowed (heartbeat-timing.ts: 13 silent ticks, 3.25
 * periods, so at least 12 ticks, 3 periods, after the last pulse heard).
 */
import type { TraceRecord } from '../../bus/transport.js';
import { hasBit } from '../../machines/bitmap.js';
import { MISSED_DEADLINES_MAX } from '../../machines/heartbeat-timing.js';
import type { CheckContext, Rule, Violation } from './check.js';

const SLOTS = 64;
/** A monitor that starts (or resumes after a gap) carries over its predecessor's
 * bitmap and has a member's whole allowance to find it silent: no alive check yet. */
export const TENURE_GRACE_PERIODS = MISSED_DEADLINES_MAX + 0.5;
/** Sent monitor pulses further apart than this (in periods) start a new tenure. */
export const TENURE_GAP_PERIODS = 1.5;

interface MemberPulse {
  level: number;
  domain: number;
  slot: number;
}
interface MonitorPulse {
  level: number;
  domain: number;
  bitmap: Uint8Array;
}

interface Tenure {
  epoch: number;
  start: number;
  lastT: number;
  last?: { bitmap: Uint8Array; rec: TraceRecord };
}

interface MonitorState {
  /** Last level-0 member pulse this monitor received, per slot. */
  heard: Map<number, TraceRecord>;
  /** The monitor's own slot, from its own sent member pulses. */
  ownSlot?: number;
  tenure?: Tenure;
}

type Check = (m: {
  node: string;
  domain: number;
  rec: TraceRecord;
  bitmap: Uint8Array;
  state: MonitorState;
  tenure: Tenure;
  period: number;
  slack: number;
  out: Violation[];
  reported: Set<string>;
}) => void;

/** Walks the level-0 pulses, keeping per (monitor, domain) what it heard and its tenure, and calls `onPulse` for each sent monitor pulse. */
function walk(records: readonly TraceRecord[], ctx: CheckContext, onPulse: Check): Violation[] {
  const out: Violation[] = [];
  const reported = new Set<string>();
  const states = new Map<string, MonitorState>();
  const stateOf = (node: string, domain: number): MonitorState => {
    const key = `${node}\u0000${domain}`;
    let s = states.get(key);
    if (!s) states.set(key, (s = { heard: new Map() }));
    return s;
  };
  for (const rec of records) {
    const e = rec.env;
    if (e.kind === 'hb.member_pulse') {
      const b = e.body as MemberPulse;
      if (b.level !== 0) continue;
      if (rec.dir === 'recv') stateOf(rec.node, b.domain).heard.set(b.slot, rec);
      else stateOf(rec.node, b.domain).ownSlot = b.slot;
    } else if (e.kind === 'hb.monitor_pulse' && rec.dir === 'send') {
      const b = e.body as MonitorPulse;
      if (b.level !== 0) continue;
      const period = ctx.periodOf(rec.node);
      const slack = ctx.slackOf(rec.node);
      if (period === undefined || slack === undefined) continue;
      const state = stateOf(rec.node, b.domain);
      let tenure = state.tenure;
      if (!tenure || tenure.epoch !== e.epoch || rec.t - tenure.lastT > TENURE_GAP_PERIODS * period) {
        tenure = state.tenure = { epoch: e.epoch, start: rec.t, lastT: rec.t };
      }
      onPulse({ node: rec.node, domain: b.domain, rec, bitmap: b.bitmap, state, tenure, period, slack, out, reported });
      tenure.lastT = rec.t;
      tenure.last = { bitmap: b.bitmap, rec };
    }
  }
  return out;
}

const noPeriod = (ctx: CheckContext): string | undefined =>
  ctx.periodOf('') === undefined ? 'no level-0 monitor pulses to infer the period from (give --period)' : undefined;

const aliveWithinDeadlines: Rule = {
  name: 'hb.alive-within-deadlines',
  protocol: 'heartbeat',
  description: `a level-0 monitor reports a slot alive only if it received that member's pulse within the last ${MISSED_DEADLINES_MAX} periods plus slack (not checked in its first ${TENURE_GRACE_PERIODS} periods as monitor).`,
  needs: noPeriod,
  check: (records, ctx) =>
    walk(records, ctx, ({ node, domain, rec, bitmap, state, tenure, period, slack, out, reported }) => {
      if (rec.t - tenure.start < TENURE_GRACE_PERIODS * period) return;
      const limit = MISSED_DEADLINES_MAX * period + slack;
      const unbacked: { slot: number; heard?: TraceRecord }[] = [];
      for (let s = 0; s < SLOTS; s++) {
        if (!hasBit(bitmap, s) || s === state.ownSlot) continue;
        const heard = state.heard.get(s);
        if (heard === undefined || rec.t - heard.t > limit) unbacked.push({ slot: s, heard });
      }
      // Without its own slot known (it never sent a member pulse), the one
      // bit it never heard a pulse for is taken as its own; two such bits
      // cannot be attributed and both are reported.
      const neverHeard = unbacked.filter((u) => u.heard === undefined);
      const reportable = state.ownSlot === undefined && neverHeard.length === 1 ? unbacked.filter((u) => u.heard !== undefined) : unbacked;
      for (const { slot, heard } of reportable) {
        const key = `${node}\u0000${domain}\u0000${slot}\u0000${heard?.t ?? 'none'}`;
        if (reported.has(key)) continue;
        reported.add(key);
        const since = heard === undefined ? 'never heard from it' : `last heard ${(rec.t - heard.t).toFixed(0)} ms before`;
        out.push({
          rule: aliveWithinDeadlines.name,
          node,
          t: rec.t,
          detail: `level-0 domain ${domain}: slot ${slot} reported alive, ${since} (limit ${limit.toFixed(0)} ms = ${MISSED_DEADLINES_MAX} periods of ${period} ms + ${slack.toFixed(0)} ms slack)`,
          records: heard === undefined ? [rec] : [heard, rec],
        });
      }
    }),
};

const failureAfterDeadlines: Rule = {
  name: 'hb.failure-after-deadlines',
  protocol: 'heartbeat',
  description: `a level-0 monitor clears a slot's bit only when it has heard nothing from that member for at least ${MISSED_DEADLINES_MAX} periods minus slack.`,
  needs: noPeriod,
  check: (records, ctx) =>
    walk(records, ctx, ({ node, domain, rec, bitmap, state, tenure, period, slack, out }) => {
      const last = tenure.last;
      if (!last) return;
      const limit = MISSED_DEADLINES_MAX * period - slack;
      for (let s = 0; s < SLOTS; s++) {
        if (!hasBit(last.bitmap, s) || hasBit(bitmap, s) || s === state.ownSlot) continue;
        const heard = state.heard.get(s);
        if (heard === undefined || rec.t - heard.t >= limit) continue;
        out.push({
          rule: failureAfterDeadlines.name,
          node,
          t: rec.t,
          detail: `level-0 domain ${domain}: slot ${s} cleared ${(rec.t - heard.t).toFixed(0)} ms after its last pulse was received (at least ${limit.toFixed(0)} ms = ${MISSED_DEADLINES_MAX} periods of ${period} ms - ${slack.toFixed(0)} ms slack)`,
          records: [heard, last.rec, rec],
        });
      }
    }),
};

export const heartbeatRules: readonly Rule[] = [aliveWithinDeadlines, failureAfterDeadlines];
