/**
 * Heartbeat member, the patent's "slave" role (SPEC.md M3, M4).
 *
 * Safety claim: a member never follows a monitor it has not heard within
 * three monitor-pulse deadlines; when it stops hearing its monitor it claims
 * the role and yields to any better-ranked claimant or live monitor, so that
 * of the members that hear each other exactly one ends up monitor (the best
 * ranked by `rankCompare`: preference list, anchors first, lowest id).
 *
 * A member pulses its monitor every period. It learns from the bitmap in each
 * monitor pulse whether it is counted alive; a member that can receive but
 * not send learns there that it is out (`excluded`), and is counted in again
 * as soon as one of its pulses gets through. The same machine serves every
 * level of the hierarchy: at level L >= 1 the members are the transmitters
 * (monitors) of the level-(L-1) groups.
 *
 * A member hears its monitor (`hearsMonitor`, the silence rule) while it
 * follows one whose pulses it has taken, and has missed at most two periods
 * of them. Only then does it vouch for what that monitor announces (the
 * actor relays it down as news from above), and only a member that does not
 * hear its monitor acts on a redirect (M4: a node named the live transmitter
 * of the domain): it claims from that node alone, which answers with a pulse
 * if it is the live monitor.
 *
 * Emits: `member_pulse {to}` each period; `claim` when it claims the role
 * (the actor sends `hb.claim` to every member of the domain); `claim_to {to}`
 * when it acts on a redirect (the actor sends `hb.claim` to that node only);
 * `excluded` and `included` when its own bit changes; `monitor {id}` when it
 * follows a new monitor. Ends in `promoted` (output: the monitor it
 * replaces), after which the actor starts a heartbeat-monitor machine for the
 * same domain.
 */
import { assertEvent, assign, emit, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import { hasBit } from './bitmap.js';
import type { HeartbeatPlace } from './heartbeat-timing.js';
import { rankCompare, type Candidate } from './identity.js';

export const machineName = 'heartbeat-member';

export interface MemberInput extends HeartbeatPlace {
  monitorSilenceTicksMax: number;
  claimWindowTicks: number;
  /** A monitor already known (from a node-db reply or a lower level's pulse). */
  monitor?: Candidate;
}

export interface MemberContext extends MemberInput {
  monitor?: Candidate;
  /** Ticks since the current monitor (or the claimant we defer to) was last heard. */
  silence: number;
  /** Ticks since our last member pulse. */
  sincePulse: number;
  /** Whether the current monitor's last bitmap counted us alive. */
  included: boolean;
  /** The bitmap of the last monitor pulse taken; after following a claimant,
   * which has sent none yet, still its predecessor's. None: no pulse taken yet. */
  bitmap?: Uint8Array;
}

export type MemberEvent =
  | { type: 'MONITOR_PULSE'; from: string; fromAnchor: boolean; bitmap: Uint8Array }
  | { type: 'CLAIM'; from: string; fromAnchor: boolean }
  /** `hb.redirect`: a node no longer in this level named its group's transmitter, our domain's live monitor or one who knows it. */
  | { type: 'REDIRECT'; monitor: string };

export type MemberEmitted =
  | { type: 'member_pulse'; to: string }
  | { type: 'claim' }
  | { type: 'claim_to'; to: string }
  | { type: 'monitor'; id: string }
  | { type: 'excluded' }
  | { type: 'included' };

export interface MemberOutput {
  /** The monitor this member replaces, if it followed one. */
  replaced?: string;
}

const better = (ctx: MemberContext, c: Candidate, than: Candidate | undefined): boolean =>
  than === undefined || rankCompare(c, than, ctx.preference) < 0;

/** Monitor pulses missed before a follower stops vouching for what its monitor says. */
const HEARD_PERIODS_MAX = 2;

/** The silence rule, for a member that follows: it has taken a pulse, and missed at most two periods since. */
function hearsFollowed(ctx: MemberContext): boolean {
  return ctx.bitmap !== undefined && ctx.silence <= ctx.ticksPerPeriod * HEARD_PERIODS_MAX;
}

export const heartbeatMember = setup({
  types: {
    context: {} as MemberContext,
    input: {} as MemberInput,
    events: {} as MemberEvent,
    emitted: {} as MemberEmitted,
    output: {} as MemberOutput,
  },
  delays: {
    tick: ({ context }) => context.tickMs,
    claimWindow: ({ context }) => context.tickMs * context.claimWindowTicks,
  },
  guards: {
    knowsMonitor: ({ context }) => context.monitor !== undefined,
    isFromMonitor: ({ context, event }) => 'from' in event && event.from === context.monitor?.id,
    isBetterMonitor: ({ context, event }) =>
      event.type === 'MONITOR_PULSE' &&
      event.from !== context.self &&
      better(context, { id: event.from, anchor: event.fromAnchor }, context.monitor),
    isBetterClaim: ({ context, event }) =>
      event.type === 'CLAIM' &&
      event.from !== context.self &&
      better(context, { id: event.from, anchor: event.fromAnchor }, { id: context.self, anchor: context.selfAnchor }),
    /** Another monitor while ours has already missed a pulse: ours is likely gone. */
    isReplacementMonitor: ({ context, event }) =>
      event.type === 'MONITOR_PULSE' && event.from !== context.self && context.silence > context.ticksPerPeriod + 1,
    monitorSilent: ({ context }) => context.silence + 1 >= context.monitorSilenceTicksMax,
    missesMonitor: ({ context }) => !hearsFollowed(context),
  },
  actions: {
    countTick: assign({
      silence: ({ context }) => context.silence + 1,
      sincePulse: ({ context }) => context.sincePulse + 1,
    }),
    /** Pulses the monitor once a period. */
    pulseIfDue: enqueueActions(({ context, enqueue }) => {
      if (context.sincePulse < context.ticksPerPeriod || !context.monitor) return;
      enqueue.emit({ type: 'member_pulse', to: context.monitor.id });
      enqueue.assign({ sincePulse: 0 });
    }),
    pulseNow: enqueueActions(({ context, enqueue }) => {
      if (!context.monitor) return;
      enqueue.emit({ type: 'member_pulse', to: context.monitor.id });
      enqueue.assign({ sincePulse: 0 });
    }),
    followSender: assign(({ event }) => {
      assertEvent(event, ['MONITOR_PULSE', 'CLAIM']);
      return { monitor: { id: event.from, anchor: event.fromAnchor }, silence: 0, included: false };
    }),
    announceMonitor: emit(({ event }) => {
      assertEvent(event, ['MONITOR_PULSE', 'CLAIM']);
      return { type: 'monitor' as const, id: event.from };
    }),
    heardMonitor: assign({ silence: 0 }),
    /** Reads our own bit; says so only when it changes, so the actor logs a fact, not a pulse. */
    readBitmap: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'MONITOR_PULSE');
      enqueue.assign({ bitmap: event.bitmap });
      const counted = hasBit(event.bitmap, context.slot);
      if (counted === context.included) return;
      enqueue.assign({ included: counted });
      enqueue.emit(counted ? { type: 'included' } : { type: 'excluded' });
    }),
    sendClaim: emit({ type: 'claim' as const }),
    /** A live monitor answers a claim with a pulse, so the named node shows whether it is one. */
    claimNamed: emit(({ event }) => {
      assertEvent(event, 'REDIRECT');
      return { type: 'claim_to' as const, to: event.monitor };
    }),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({
    ...input,
    monitor: input.monitor,
    silence: 0,
    // Pulse at the first tick when a monitor is known, so a new member is counted in sooner.
    sincePulse: input.ticksPerPeriod,
    included: false,
  }),
  initial: 'choosing',
  states: {
    choosing: {
      always: [{ guard: 'knowsMonitor', target: 'following' }, { target: 'searching' }],
    },
    /** No monitor known: wait to hear one, then claim the role. */
    searching: {
      on: {
        MONITOR_PULSE: { target: 'following', actions: ['followSender', 'announceMonitor', 'readBitmap', 'pulseNow'] },
        CLAIM: { guard: 'isBetterClaim', target: 'following', actions: ['followSender', 'announceMonitor'] },
        REDIRECT: { actions: 'claimNamed' },
      },
      after: {
        tick: [{ guard: 'monitorSilent', target: 'candidate' }, { target: 'searching', reenter: true, actions: 'countTick' }],
      },
    },
    following: {
      on: {
        MONITOR_PULSE: [
          { guard: 'isFromMonitor', actions: ['heardMonitor', 'readBitmap'] },
          { guard: 'isBetterMonitor', actions: ['followSender', 'announceMonitor', 'readBitmap', 'pulseNow'] },
          { guard: 'isReplacementMonitor', actions: ['followSender', 'announceMonitor', 'readBitmap', 'pulseNow'] },
        ],
        REDIRECT: { guard: 'missesMonitor', actions: 'claimNamed' },
      },
      after: {
        tick: [
          { guard: 'monitorSilent', target: 'candidate' },
          { target: 'following', reenter: true, actions: ['countTick', 'pulseIfDue'] },
        ],
      },
    },
    /** Claiming the monitor role: yield to a better claimant or to any live monitor. */
    candidate: {
      entry: 'sendClaim',
      on: {
        MONITOR_PULSE: { target: 'following', actions: ['followSender', 'announceMonitor', 'readBitmap', 'pulseNow'] },
        CLAIM: { guard: 'isBetterClaim', target: 'following', actions: ['followSender', 'announceMonitor'] },
        REDIRECT: { actions: 'claimNamed' },
      },
      after: { claimWindow: 'promoted' },
    },
    promoted: {
      type: 'final',
    },
  },
  output: ({ context }) => ({ replaced: context.monitor?.id }),
});

export type MemberSnapshot = SnapshotFrom<typeof heartbeatMember>;

/**
 * Whether this member hears its monitor (the silence rule): it follows one,
 * has taken a pulse with a bitmap, and has missed at most two periods since.
 * What such a monitor announces holds; a silent one's may be stale.
 */
export function hearsMonitor(s: MemberSnapshot): boolean {
  return s.matches('following') && hearsFollowed(s.context);
}
