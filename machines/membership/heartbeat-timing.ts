/**
 * Heartbeat timing in ticks, so the machines count deadlines instead of
 * reading a clock. A tick is a quarter period: members pulse every
 * TICKS_PER_PERIOD ticks, and a deadline is missed a tick after it is due,
 * which leaves one tick of slack for delivery and scheduling jitter.
 */
export const TICKS_PER_PERIOD = 4;
/** Deadlines missed in a row before a member (or monitor) is declared failed (M3). */
export const MISSED_DEADLINES_MAX = 3;
/** Upper levels (M4) give a group time to replace its transmitter before the
 * whole group is counted out: its members need 3 periods to notice, one to
 * arbitrate, and one for the new transmitter's first report. */
export const GROUP_DEADLINES_MAX = 8;

export interface HeartbeatTiming {
  tickMs: number;
  ticksPerPeriod: number;
  /** Ticks a monitor waits without a member's pulse before declaring it failed. */
  memberSilenceTicksMax: number;
  /** Ticks a member waits without a monitor pulse before it claims the role. */
  monitorSilenceTicksMax: number;
  /** Ticks a candidate waits for a better claim before it takes the monitor role. */
  claimWindowTicks: number;
}

export function timingFor(periodMs: number, level: number): HeartbeatTiming {
  const memberDeadlines = level === 0 ? MISSED_DEADLINES_MAX : GROUP_DEADLINES_MAX;
  return {
    tickMs: periodMs / TICKS_PER_PERIOD,
    ticksPerPeriod: TICKS_PER_PERIOD,
    memberSilenceTicksMax: memberDeadlines * TICKS_PER_PERIOD + 1,
    monitorSilenceTicksMax: MISSED_DEADLINES_MAX * TICKS_PER_PERIOD + 1,
    claimWindowTicks: TICKS_PER_PERIOD,
  };
}

/** Where a node stands in one heartbeat domain, as both roles' machines are told it. */
export interface HeartbeatPlace {
  self: string;
  selfAnchor: boolean;
  level: number;
  domain: number;
  /** This node's (or, above level 0, its group's) slot in the domain's bitmap. */
  slot: number;
  tickMs: number;
  ticksPerPeriod: number;
  /** Monitor arbitration order (M3); empty: anchors first, lowest id. */
  preference: readonly string[];
}
