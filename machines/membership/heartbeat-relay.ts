/**
 * What a member pulse carries up the hierarchy (M4, M5). A transmitter tells
 * the monitor above the failures in the group it monitors, and relays quorum
 * state up, so quorum an anchor computed in one group reaches the others.
 * It relays only state an anchor below it computed, never what came from
 * above (which would go round in circles), and only with the lifetime the
 * state has left, so relaying never extends it (machines/membership/quorum.ts).
 */
import type { Body, PanRef, QuorumState } from '../../bus/messages/index.js';

/** What the rest of the node adds to every pulse. */
export interface PulseExtras {
  dbVersion: number;
  quorum?: QuorumState;
  pan?: PanRef;
  /** The newest rebuild round this node finished (M14); 0 for none. Level-0 pulses carry it. */
  rr?: number;
  /** This node's state (M6). Level-0 pulses carry it when it is not normal. */
  ns?: 'normal' | 'notified' | 'quiescent' | 'rebuilding';
}

/** Anchor-computed quorum state heard from below, and when its lifetime runs out. */
export interface HeldQuorum {
  has: boolean;
  expiresAt: number;
}

/**
 * The quorum state in a member pulse if an anchor computed it: at level 0
 * only an anchor's own, above it a transmitter's relay (which is only ever
 * of anchor-computed state, below).
 */
export function anchorQuorum(pulse: Body<'hb.member_pulse'>, senderAnchor: boolean): QuorumState | undefined {
  return pulse.quorum !== undefined && (senderAnchor || pulse.level > 0) ? pulse.quorum : undefined;
}

/** Keeps quorum state heard at `now` for as long as it has left. */
export function holdQuorum(q: QuorumState, now: number): HeldQuorum {
  return { has: q.has, expiresAt: now + q.ttlMs };
}

/** The held state as it is relayed at `now`: with the lifetime it has left, or none once that has run out. */
export function relayedQuorum(held: HeldQuorum | undefined, now: number): QuorumState | undefined {
  const left = held ? held.expiresAt - now : 0;
  return held && left > 0 ? { has: held.has, ttlMs: left } : undefined;
}

/**
 * A member pulse at `at`. Only an anchor sends quorum state of its own; above
 * level 0 the pulse carries `failedBelow` (the group's report) and, if it has
 * no quorum state of its own, the `relayed` one.
 */
export function memberPulseBody(
  at: { level: number; domain: number; slot: number },
  x: PulseExtras,
  selfAnchor: boolean,
  failedBelow: number[],
  relayed: QuorumState | undefined,
): Body<'hb.member_pulse'> {
  const body: Body<'hb.member_pulse'> = { level: at.level, domain: at.domain, slot: at.slot, dbVersion: x.dbVersion };
  if (x.pan) body.pan = x.pan;
  if (selfAnchor && x.quorum !== undefined) body.quorum = x.quorum;
  if (at.level === 0 && x.rr) body.rr = x.rr;
  if (at.level === 0 && x.ns && x.ns !== 'normal') body.ns = x.ns;
  if (at.level > 0) {
    body.failed = failedBelow;
    if (relayed && body.quorum === undefined) body.quorum = relayed;
  }
  return body;
}
