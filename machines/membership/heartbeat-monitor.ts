/**
 * Heartbeat monitor (SPEC.md M3, M4).
 *
 * Safety claim: a monitor pulse never counts a member alive unless the
 * monitor heard that member within its last three deadlines (or, on taking
 * the role, the previous monitor's last bitmap did and the three deadlines
 * since have not yet passed); a member silent for three deadlines is declared
 * failed at once and every member learns it from the pulse sent at that
 * moment. A monitor that hears a better-ranked monitor of its own domain
 * steps down, so healed partitions converge on one monitor.
 *
 * The same machine serves every level: at level 0 the slots are the nodes of
 * a group (fixed by the node database); at level L >= 1 the slots are the
 * level-(L-1) groups, and whichever node pulses for a slot is its transmitter.
 *
 * Emits: `monitor_pulse {to, bitmap}` every period and on every failure;
 * `member_failed {slot, id}` and `member_alive {slot, id}` on each change.
 * Ends in `demoted` (output: the better monitor to follow).
 */
import { assertEvent, assign, emit, enqueueActions, setup } from 'xstate';
import { bitmapOf } from './bitmap.js';
import type { HeartbeatPlace } from './heartbeat-timing.js';
import { MEMBERS_PER_GROUP_MAX, rankCompare, type Candidate } from './identity.js';

export const machineName = 'heartbeat-monitor';

export interface SlotMember {
  slot: number;
  id: string;
}

export interface MonitorInput extends HeartbeatPlace {
  memberSilenceTicksMax: number;
  /** Who holds each slot (level 0: the node database's members of the group). */
  members: readonly SlotMember[];
  /** Slots the previous monitor last counted alive; each gets a full three deadlines to be heard. */
  presumedAlive: readonly number[];
}

export interface MonitorContext extends Omit<MonitorInput, 'members' | 'presumedAlive'> {
  tick: number;
  sinceBroadcast: number;
  ids: (string | null)[];
  lastHeard: number[];
  alive: boolean[];
  /** The better monitor this one stepped down for. */
  better?: Candidate;
}

export type MonitorEvent =
  | { type: 'MEMBER_PULSE'; from: string; slot: number }
  | { type: 'MEMBERS'; members: readonly SlotMember[] }
  | { type: 'MONITOR_PULSE'; from: string; fromAnchor: boolean }
  | { type: 'CLAIM'; from: string; fromAnchor: boolean }
  /** A node named the transmitter of a slot (level >= 1): pulses go there while the slot is silent. */
  | { type: 'TRANSMITTER'; slot: number; id: string };

export type MonitorEmitted =
  | { type: 'monitor_pulse'; to: string[]; bitmap: Uint8Array }
  | { type: 'member_failed'; slot: number; id: string | null }
  | { type: 'member_alive'; slot: number; id: string };

export interface MonitorOutput {
  monitor: Candidate;
}

const SLOTS = MEMBERS_PER_GROUP_MAX;

function bitmapFor(ctx: MonitorContext): Uint8Array {
  return bitmapOf(ctx.alive.map((a, i) => a || i === ctx.slot));
}

function recipients(ctx: MonitorContext): string[] {
  const out: string[] = [];
  for (let i = 0; i < SLOTS; i++) {
    const id = ctx.ids[i];
    if (id !== null && id !== ctx.self) out.push(id);
  }
  return out;
}

export const heartbeatMonitor = setup({
  types: {
    context: {} as MonitorContext,
    input: {} as MonitorInput,
    events: {} as MonitorEvent,
    emitted: {} as MonitorEmitted,
    output: {} as MonitorOutput,
  },
  delays: {
    tick: ({ context }) => context.tickMs,
  },
  guards: {
    isBetterMonitor: ({ context, event }) =>
      event.type === 'MONITOR_PULSE' &&
      event.from !== context.self &&
      rankCompare({ id: event.from, anchor: event.fromAnchor }, { id: context.self, anchor: context.selfAnchor }, context.preference) < 0,
    isOtherNode: ({ context, event }) => 'from' in event && event.from !== context.self,
    isValidSlot: ({ context, event }) =>
      event.type === 'MEMBER_PULSE' && event.slot >= 0 && event.slot < SLOTS && event.slot !== context.slot,
  },
  actions: {
    /** One tick: count silences, declare failures, and pulse when a period is up or something failed. */
    tick: enqueueActions(({ context, enqueue }) => {
      const tick = context.tick + 1;
      const alive = context.alive.slice();
      let failed = false;
      for (let i = 0; i < SLOTS; i++) {
        if (!alive[i] || i === context.slot) continue;
        if (tick - context.lastHeard[i] >= context.memberSilenceTicksMax) {
          alive[i] = false;
          failed = true;
          enqueue.emit({ type: 'member_failed', slot: i, id: context.ids[i] });
        }
      }
      const due = failed || context.sinceBroadcast + 1 >= context.ticksPerPeriod;
      const next = { ...context, tick, alive, sinceBroadcast: due ? 0 : context.sinceBroadcast + 1 };
      enqueue.assign({ tick, alive, sinceBroadcast: next.sinceBroadcast });
      if (due) enqueue.emit({ type: 'monitor_pulse', to: recipients(next), bitmap: bitmapFor(next) });
    }),
    broadcast: emit(({ context }) => ({ type: 'monitor_pulse' as const, to: recipients(context), bitmap: bitmapFor(context) })),
    answerSender: emit(({ context, event }) => {
      assertEvent(event, ['MONITOR_PULSE', 'CLAIM']);
      return { type: 'monitor_pulse' as const, to: [event.from], bitmap: bitmapFor(context) };
    }),
    recordPulse: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'MEMBER_PULSE');
      const { from, slot } = event;
      const ids = context.ids.slice();
      const lastHeard = context.lastHeard.slice();
      const alive = context.alive.slice();
      ids[slot] = from;
      lastHeard[slot] = context.tick;
      if (!alive[slot]) enqueue.emit({ type: 'member_alive', slot, id: from });
      alive[slot] = true;
      enqueue.assign({ ids, lastHeard, alive });
    }),
    /** A live slot's transmitter is known first hand; only a silent slot takes a hint. */
    learnTransmitter: assign({
      ids: ({ context, event }) => {
        assertEvent(event, 'TRANSMITTER');
        const { slot, id } = event;
        if (slot < 0 || slot >= SLOTS || slot === context.slot || context.alive[slot]) return context.ids;
        const ids = context.ids.slice();
        ids[slot] = id;
        return ids;
      },
    }),
    rememberBetter: assign({
      better: ({ event }) => {
        assertEvent(event, 'MONITOR_PULSE');
        return { id: event.from, anchor: event.fromAnchor };
      },
    }),
    setMembers: assign(({ context, event }) => {
      assertEvent(event, 'MEMBERS');
      const { members } = event;
      const ids: (string | null)[] = new Array(SLOTS).fill(null);
      for (const m of members) if (m.slot >= 0 && m.slot < SLOTS) ids[m.slot] = m.id;
      // A slot whose node left the database is no longer counted alive.
      const alive = context.alive.map((a, i) => a && ids[i] !== null);
      return { ids, alive };
    }),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => {
    const ids: (string | null)[] = new Array(SLOTS).fill(null);
    for (const m of input.members) if (m.slot >= 0 && m.slot < SLOTS) ids[m.slot] = m.id;
    const alive = new Array<boolean>(SLOTS).fill(false);
    for (const s of input.presumedAlive) if (s >= 0 && s < SLOTS) alive[s] = true;
    alive[input.slot] = true;
    const { members: _m, presumedAlive: _p, ...rest } = input;
    return { ...rest, tick: 0, sinceBroadcast: 0, ids, lastHeard: new Array<number>(SLOTS).fill(0), alive };
  },
  initial: 'monitoring',
  states: {
    monitoring: {
      entry: 'broadcast',
      on: {
        MEMBER_PULSE: { guard: 'isValidSlot', actions: 'recordPulse' },
        MEMBERS: { actions: 'setMembers' },
        MONITOR_PULSE: [
          { guard: 'isBetterMonitor', target: 'demoted', actions: 'rememberBetter' },
          { guard: 'isOtherNode', actions: 'answerSender' },
        ],
        CLAIM: { guard: 'isOtherNode', actions: 'answerSender' },
        TRANSMITTER: { actions: 'learnTransmitter' },
      },
      initial: 'ticking',
      states: {
        ticking: {
          after: { tick: { target: 'ticking', reenter: true, actions: 'tick' } },
        },
      },
    },
    demoted: {
      type: 'final',
    },
  },
  output: ({ context }) => ({ monitor: context.better ?? { id: context.self, anchor: context.selfAnchor } }),
});
