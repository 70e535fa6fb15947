/**
 * Heartbeat rules (M3, M4).
 *
 * Level 0 (M3): a monitor reports a member alive only while it hears it,
 * and reports it failed only after the deadlines it was allowed
 * (heartbeat-timing.ts: 13 silent ticks, 3.25 periods, so at least 12 ticks,
 * 3 periods, after the last pulse heard).
 *
 * Levels above 0 (M4): the same two rules for the group-level monitors,
 * whose members are the groups' transmitters and whose slots are groups;
 * they count a group out only after GROUP_DEADLINES_MAX (8) deadlines.
 *
 * Every level: one monitor per group. Two monitors of one domain that have
 * heard each other's pulses have arbitrated, and one has yielded; they do
 * not both go on as monitor past the arbitration window.
 */
import type { TraceRecord } from '../../../bus/transport/transport.js';
import { hasBit } from '../../../machines/membership/bitmap.js';
import { GROUP_DEADLINES_MAX, MISSED_DEADLINES_MAX, timingFor } from '../../../machines/membership/heartbeat-timing.js';
import { MEMBERS_PER_GROUP_MAX } from '../../../machines/membership/identity.js';
import type { CheckContext, Rule, Violation } from '../rule.js';

const SLOTS = MEMBERS_PER_GROUP_MAX;
/** A monitor that starts (or resumes after a gap) carries over its predecessor's
 * bitmap and has a member's whole allowance to find it silent: no alive check yet. */
export const TENURE_GRACE_PERIODS = MISSED_DEADLINES_MAX + 0.5;
/** The same for a group-level (level >= 1) monitor, whose members are allowed GROUP_DEADLINES_MAX deadlines. */
export const UPPER_TENURE_GRACE_PERIODS = GROUP_DEADLINES_MAX + 0.5;
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
  /** Last member pulse of this level and domain this monitor received, per slot. */
  heard: Map<number, TraceRecord>;
  /** The monitor's own slot: from its own sent member pulses of this level, or
   * (level >= 1) the domain of its pulses one level down, whose slot here it is. */
  ownSlot?: number;
  tenure?: Tenure;
}

type Check = (m: {
  node: string;
  level: number;
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

/**
 * Walks the pulses of the levels `levels` selects, keeping per (monitor,
 * level, domain) what it heard and its tenure, and calls `onPulse` for each
 * sent monitor pulse.
 */
function walk(records: readonly TraceRecord[], ctx: CheckContext, levels: (level: number) => boolean, onPulse: Check): Violation[] {
  const out: Violation[] = [];
  const reported = new Set<string>();
  const states = new Map<string, MonitorState>();
  /** Per node, its own slot at each level >= 1 (from the domain of its pulses one level down). */
  const upperSlots = new Map<string, Map<number, number>>();
  const stateOf = (node: string, level: number, domain: number): MonitorState => {
    const key = `${node}\u0000${level}\u0000${domain}`;
    let s = states.get(key);
    if (!s) states.set(key, (s = { heard: new Map() }));
    if (level > 0 && s.ownSlot === undefined) s.ownSlot = upperSlots.get(node)?.get(level);
    return s;
  };
  for (const rec of records) {
    const e = rec.env;
    if (e.kind !== 'hb.member_pulse' && e.kind !== 'hb.monitor_pulse') continue;
    const lvl = (e.body as { level: number }).level;
    if (rec.dir === 'send' && levels(lvl + 1)) {
      // A level-L domain number's low 6 bits are its slot one level up (identity.ts).
      let slots = upperSlots.get(rec.node);
      if (!slots) upperSlots.set(rec.node, (slots = new Map()));
      slots.set(lvl + 1, (e.body as { domain: number }).domain % SLOTS);
    }
    if (!levels(lvl)) continue;
    if (e.kind === 'hb.member_pulse') {
      const b = e.body as MemberPulse;
      if (rec.dir === 'recv') stateOf(rec.node, lvl, b.domain).heard.set(b.slot, rec);
      else stateOf(rec.node, lvl, b.domain).ownSlot = b.slot;
    } else if (rec.dir === 'send') {
      const b = e.body as MonitorPulse;
      const period = ctx.periodOf(rec.node);
      const slack = ctx.slackOf(rec.node);
      if (period === undefined || slack === undefined) continue;
      const state = stateOf(rec.node, lvl, b.domain);
      let tenure = state.tenure;
      if (!tenure || tenure.epoch !== e.epoch || rec.t - tenure.lastT > TENURE_GAP_PERIODS * period) {
        tenure = state.tenure = { epoch: e.epoch, start: rec.t, lastT: rec.t };
      }
      onPulse({ node: rec.node, level: lvl, domain: b.domain, rec, bitmap: b.bitmap, state, tenure, period, slack, out, reported });
      tenure.lastT = rec.t;
      tenure.last = { bitmap: b.bitmap, rec };
    }
  }
  return out;
}

const noPeriod = (ctx: CheckContext): string | undefined =>
  ctx.periodOf('') === undefined ? 'no level-0 monitor pulses to infer the period from (give --period)' : undefined;

interface DeadlineRules {
  /** The monitors checked, for the description: `level-0`, or the group levels. */
  what: string;
  /** Who pulses for a slot, for the description. */
  member: string;
  levels: (level: number) => boolean;
  /** Deadlines a slot may miss before it is counted out (heartbeat-timing.ts). */
  deadlines: number;
  /** Periods at the start of a tenure with no alive check. */
  grace: number;
}
const lowerLevel: DeadlineRules = { what: 'level-0', member: 'member', levels: (l) => l === 0, deadlines: MISSED_DEADLINES_MAX, grace: TENURE_GRACE_PERIODS };
const upperLevels: DeadlineRules = {
  what: 'group-level (level >= 1)',
  member: "group's transmitter",
  levels: (l) => l > 0,
  deadlines: GROUP_DEADLINES_MAX,
  grace: UPPER_TENURE_GRACE_PERIODS,
};

/**
 * A monitor's pulse counts a slot alive only if the monitor received a member
 * pulse for that slot within its last `deadlines` deadlines: the machine
 * clears a slot at the tick `deadlines` periods plus one tick after the
 * tick it was last heard at, so every bit still set was heard less than
 * `deadlines` periods + a tick ago (slack is a tick plus the delivery delay).
 * Not checked in a tenure's first `grace` periods, where the bits carried over
 * from the previous monitor have a full allowance from the tenure's start.
 */
function aliveRule(name: string, r: DeadlineRules): Rule {
  return {
    name,
    protocol: 'heartbeat',
    description: `a ${r.what} monitor reports a slot alive only if it received that ${r.member}'s pulse within the last ${r.deadlines} periods plus slack (not checked in its first ${r.grace} periods as monitor).`,
    needs: noPeriod,
    check: (records, ctx) =>
      walk(records, ctx, r.levels, ({ node, level, domain, rec, bitmap, state, tenure, period, slack, out, reported }) => {
        if (rec.t - tenure.start < r.grace * period) return;
        const limit = r.deadlines * period + slack;
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
          const key = `${node}\u0000${level}\u0000${domain}\u0000${slot}\u0000${heard?.t ?? 'none'}`;
          if (reported.has(key)) continue;
          reported.add(key);
          const since = heard === undefined ? 'never heard from it' : `last heard ${(rec.t - heard.t).toFixed(0)} ms before`;
          out.push({
            rule: name,
            node,
            t: rec.t,
            detail: `level-${level} domain ${domain}: slot ${slot} reported alive, ${since} (limit ${limit.toFixed(0)} ms = ${r.deadlines} periods of ${period} ms + ${slack.toFixed(0)} ms slack)`,
            records: heard === undefined ? [rec] : [heard, rec],
          });
        }
      }),
  };
}

/**
 * A monitor's pulse clears a slot's bit only after `deadlines` deadlines of
 * silence: the machine clears it `deadlines` periods and a tick after the
 * tick it last heard the slot at, so never less than `deadlines` periods
 * minus slack after the last receipt.
 */
function failureRule(name: string, r: DeadlineRules): Rule {
  return {
    name,
    protocol: 'heartbeat',
    description: `a ${r.what} monitor clears a slot's bit only when it has heard nothing from that ${r.member} for at least ${r.deadlines} periods minus slack.`,
    needs: noPeriod,
    check: (records, ctx) =>
      walk(records, ctx, r.levels, ({ node, level, domain, rec, bitmap, state, tenure, period, slack, out }) => {
        const last = tenure.last;
        if (!last) return;
        const limit = r.deadlines * period - slack;
        for (let s = 0; s < SLOTS; s++) {
          if (!hasBit(last.bitmap, s) || hasBit(bitmap, s) || s === state.ownSlot) continue;
          const heard = state.heard.get(s);
          if (heard === undefined || rec.t - heard.t >= limit) continue;
          out.push({
            rule: name,
            node,
            t: rec.t,
            detail: `level-${level} domain ${domain}: slot ${s} cleared ${(rec.t - heard.t).toFixed(0)} ms after its last pulse was received (at least ${limit.toFixed(0)} ms = ${r.deadlines} periods of ${period} ms - ${slack.toFixed(0)} ms slack)`,
            records: [heard, last.rec, rec],
          });
        }
      }),
  };
}

const aliveWithinDeadlines = aliveRule('hb.alive-within-deadlines', lowerLevel);
const failureAfterDeadlines = failureRule('hb.failure-after-deadlines', lowerLevel);
/**
 * hb.upper-alive-within-deadlines (M4, claims 3 and 10): "the group
 * heartbeat transmitter notifies a group level heartbeat monitor that the
 * group it represents is active", and that monitor broadcasts the set of
 * live groups. So a group-level monitor's pulse counts a group (a slot of its
 * level-L domain, a level-(L-1) domain) alive only while some transmitter of
 * that group pulses it: it received a level-L member pulse for that slot
 * within GROUP_DEADLINES_MAX (8) periods plus slack. Eight, not three: upper
 * levels give a group time to replace a failed transmitter (3 periods to
 * notice, one to arbitrate, one for the first report) before the whole group
 * is counted out. The machine clears the slot at 8 periods and a tick after
 * the tick it was heard at, which the slack (a tick plus the delivery delay)
 * covers; a new upper monitor is not checked for 8.5 periods, as it carries
 * over its predecessor's bitmap with a full allowance. The monitor's own slot
 * (its own group, always counted alive) is known from the domain of its
 * pulses one level down.
 */
const upperAliveWithinDeadlines = aliveRule('hb.upper-alive-within-deadlines', upperLevels);
/**
 * hb.upper-failure-after-deadlines (M4): a group-level monitor counts a group
 * out (clears its bit; the other groups then count every node in it failed)
 * only after the group's transmitters have been silent for its 8 deadlines:
 * never less than 8 periods minus slack after the last pulse it received for
 * that slot. Its slots are cleared by silence alone (heartbeat-monitor.ts).
 */
const upperFailureAfterDeadlines = failureRule('hb.upper-failure-after-deadlines', upperLevels);

// ------------------------------------------------------------ one monitor

/** One run of a node's monitor pulses for one (level, domain): same epoch, no gap over TENURE_GAP_PERIODS. */
interface Reign {
  id: number;
  node: string;
  epoch: number;
  level: number;
  domain: number;
  /** The monitor pulses it sent, in time order. */
  pulses: TraceRecord[];
  /** Which of them some other node received. */
  received: Set<TraceRecord>;
  /** Member pulses of its level and domain it received while it reigned: members answering it. */
  answers: TraceRecord[];
}

const reignStart = (r: Reign) => r.pulses[0].t;
const reignEnd = (r: Reign) => r.pulses[r.pulses.length - 1].t;

/**
 * hb.one-monitor-per-group (M3, M4): one node per network, partition or
 * group is its heartbeat monitor, and where several claim the role they
 * arbitrate. Two monitors of one (level, domain) may both be accepted only
 * while they cannot hear each other (a partition); once they can, the
 * worse-ranked yields: a monitor that receives a better monitor's pulse
 * steps down on that pulse, and one that receives a worse monitor's pulse
 * answers it with its own (heartbeat-monitor.ts; after a heal, or after two
 * candidates both took the role because their claims were lost). So once
 * each of two reigning monitors has received a pulse of the other's reign,
 * the worse has received the better's and has stepped down.
 *
 * "Accepted" in a trace: the monitor still sends monitor pulses for the
 * domain and other nodes receive them (a monitor pulses every member it
 * knows of each period, and a member that receives a better monitor's pulse
 * follows it). A violation: after that meeting plus the arbitration window
 * (the claim window, heartbeat-timing.ts: one period) plus slack, both
 * reigns still send monitor pulses that are received. The machine steps
 * down at once, so any tolerance of at least slack is sound; the window is
 * allowed because the invariant is the patent's "after arbitration", and
 * because the two receipts that make the meeting are read on two nodes'
 * clocks. The detail says whether members still answer both (pulse them),
 * that is whether the group is split.
 *
 * Claims and redirects need no part here: a claim comes from a candidate,
 * which sends no monitor pulses until its claim window (the arbitration
 * window) has passed and yields to any monitor pulse it gets meanwhile, and
 * a redirect only names a group's transmitter.
 *
 * Not reported: monitors that hear each other only one way (a one-way link,
 * or every pulse one way lost), which have no grounds to yield; rivals that
 * do not hear each other at all, e.g. two level-1 monitors after a heal, who
 * learn of each other only once the slot a redirect names has gone silent
 * (up to 8 periods); members still pulsing a monitor after its last pulse
 * (they have not noticed yet), as a reign ends at its last monitor pulse.
 */
const oneMonitorPerGroup: Rule = {
  name: 'hb.one-monitor-per-group',
  protocol: 'heartbeat',
  description:
    "two monitors of one level and domain that have each received the other's monitor pulse do not both go on sending received monitor pulses past the arbitration window (one period) plus slack.",
  needs: noPeriod,
  check(records, ctx) {
    const { reigns, bySend } = collectReigns(records, ctx);
    const receipts = collectReceipts(records, reigns, bySend);
    return unyieldedRivals(receipts, ctx);
  },
};

/** A sent monitor pulse and the reign it belongs to, found again from a receipt of it. */
interface SentPulse {
  reign: Reign;
  rec: TraceRecord;
}

/** Reign `listener`'s first receipt of a monitor pulse of reign `speaker`. */
interface Receipt {
  listener: Reign;
  speaker: Reign;
  rec: TraceRecord;
}

/** A receipt names the send it got by sender, epoch and sequence number. */
const sendKey = (record: TraceRecord) => `${record.env.from}\u0000${record.env.epoch}\u0000${record.env.seq}`;

/** Reigns, from sent monitor pulses. */
function collectReigns(records: readonly TraceRecord[], ctx: CheckContext): { reigns: Reign[]; bySend: Map<string, SentPulse> } {
  const reigns: Reign[] = [];
  const current = new Map<string, Reign>();
  const bySend = new Map<string, SentPulse>();
  for (const rec of records) {
    if (rec.dir !== 'send' || rec.env.kind !== 'hb.monitor_pulse') continue;
    const pulse = rec.env.body as MonitorPulse;
    const period = ctx.periodOf(rec.node);
    if (period === undefined) continue;
    const key = `${rec.node}\u0000${pulse.level}\u0000${pulse.domain}`;
    let reign = current.get(key);
    if (!reign || reign.epoch !== rec.env.epoch || rec.t - reignEnd(reign) > TENURE_GAP_PERIODS * period) {
      reign = { id: reigns.length, node: rec.node, epoch: rec.env.epoch, level: pulse.level, domain: pulse.domain, pulses: [], received: new Set(), answers: [] };
      reigns.push(reign);
      current.set(key, reign);
    }
    reign.pulses.push(rec);
    bySend.set(sendKey(rec), { reign, rec });
  }
  return { reigns, bySend };
}

/** The reign of a node's monitor for (level, domain) that spans time t, if any. */
function reignFinder(reigns: readonly Reign[]): (node: string, level: number, domain: number, t: number) => Reign | undefined {
  const reignsOf = new Map<string, Reign[]>();
  for (const reign of reigns) {
    const key = `${reign.node}\u0000${reign.level}\u0000${reign.domain}`;
    const list = reignsOf.get(key);
    if (list) list.push(reign);
    else reignsOf.set(key, [reign]);
  }
  return (node, level, domain, t) => reignsOf.get(`${node}\u0000${level}\u0000${domain}`)?.find((r) => reignStart(r) <= t && t <= reignEnd(r));
}

/**
 * Receipts: the members' answers each reign got, which of its pulses were
 * received, and who heard whom (keyed `${listener.id}:${speaker.id}`).
 */
function collectReceipts(records: readonly TraceRecord[], reigns: readonly Reign[], bySend: Map<string, SentPulse>): Map<string, Receipt> {
  const reignAt = reignFinder(reigns);
  const receipts = new Map<string, Receipt>();
  for (const rec of records) {
    if (rec.dir !== 'recv') continue;
    const envelope = rec.env;
    if (envelope.kind === 'hb.member_pulse') {
      const pulse = envelope.body as MemberPulse;
      reignAt(rec.node, pulse.level, pulse.domain, rec.t)?.answers.push(rec);
    } else if (envelope.kind === 'hb.monitor_pulse') {
      const sent = bySend.get(sendKey(rec));
      if (!sent || sent.reign.node === rec.node) continue;
      const other = sent.reign;
      other.received.add(sent.rec);
      const mine = reignAt(rec.node, other.level, other.domain, rec.t);
      if (!mine) continue;
      const key = `${mine.id}:${other.id}`;
      if (!receipts.has(key)) receipts.set(key, { listener: mine, speaker: other, rec });
    }
  }
  return receipts;
}

/** Each pair of reigns that heard each other both ways, checked once. */
function unyieldedRivals(receipts: Map<string, Receipt>, ctx: CheckContext): Violation[] {
  const out: Violation[] = [];
  for (const receipt of receipts.values()) {
    if (receipt.listener.id > receipt.speaker.id) continue;
    const back = receipts.get(`${receipt.speaker.id}:${receipt.listener.id}`);
    if (!back) continue;
    const violation = bothStillReign(receipt, back, ctx);
    if (violation) out.push(violation);
  }
  return out;
}

/** The violation, if both reigns still send received monitor pulses past the arbitration window after they met. */
function bothStillReign(receipt: Receipt, back: Receipt, ctx: CheckContext): Violation | undefined {
  const { listener: reignA, speaker: reignB, rec: aHeardB } = receipt;
  const met = Math.max(aHeardB.t, back.rec.t);
  const window = (r: Reign) => {
    const t = timingFor(ctx.periodOf(r.node)!, r.level);
    return t.claimWindowTicks * t.tickMs + ctx.slackOf(r.node)!;
  };
  const deadline = met + Math.max(window(reignA), window(reignB));
  const until = Math.min(reignEnd(reignA), reignEnd(reignB));
  const lateReceived = (r: Reign) => r.pulses.find((p) => p.t > deadline && p.t <= until && r.received.has(p));
  const aLate = lateReceived(reignA);
  const bLate = lateReceived(reignB);
  if (!aLate || !bLate) return undefined;
  const bothLateT = Math.max(aLate.t, bLate.t);
  const answered = (r: Reign) => r.answers.some((x) => x.t > deadline && x.t <= until);
  const split =
    answered(reignA) && answered(reignB)
      ? 'members answer both'
      : answered(reignA) || answered(reignB)
        ? `members answer only ${answered(reignA) ? reignA.node : reignB.node}`
        : 'no member answers either';
  // The later to take the role is named; the trace cannot rank them (anchor flags are not in it).
  const [first, second] = reignStart(reignA) <= reignStart(reignB) ? [reignA, reignB] : [reignB, reignA];
  return {
    rule: oneMonitorPerGroup.name,
    node: second.node,
    t: bothLateT,
    detail:
      `level-${reignA.level} domain ${reignA.domain}: ${second.node} and ${first.node} each received the other's monitor pulse ${(bothLateT - met).toFixed(0)} ms before, ` +
      `yet both still send monitor pulses that are received; ${split} (window ${(deadline - met).toFixed(0)} ms = one period + slack)`,
    records: [aHeardB, back.rec, aLate, bLate].sort((x, y) => x.t - y.t),
  };
}

export const heartbeatRules: readonly Rule[] = [
  aliveWithinDeadlines,
  failureAfterDeadlines,
  upperAliveWithinDeadlines,
  upperFailureAfterDeadlines,
  oneMonitorPerGroup,
];
