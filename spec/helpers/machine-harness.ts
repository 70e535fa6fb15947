/**
 * Shared scaffolding for machine specs: run a machine on a SimClock and
 * record what it emits, pull emitted events out of `transition()` actions,
 * and replay generated paths.
 */
import {
  createActor,
  initialTransition,
  transition,
  type Actor,
  type AnyStateMachine,
  type EventFromLogic,
  type InputFrom,
  type SnapshotFrom,
} from 'xstate';
import { getStateNodes } from 'xstate/graph';
import { SimClock } from '../../runtime/world/clock.js';
import type { SendOut } from '../../machines/outbox.js';

export type Emitted = { type: string } & Record<string, unknown>;

/** A started actor on virtual time that records every emitted event. */
export class Running<M extends AnyStateMachine> {
  readonly clock: SimClock;
  readonly actor: Actor<M>;
  readonly emitted: Emitted[] = [];

  constructor(machine: M, input: InputFrom<M>, clock = new SimClock()) {
    this.clock = clock;
    this.actor = createActor(machine, { input, clock });
    this.actor.on('*', (e: Emitted) => this.emitted.push(e));
    this.actor.start();
  }

  send(event: EventFromLogic<M>): this {
    this.actor.send(event);
    return this;
  }

  get snapshot(): SnapshotFrom<M> {
    return this.actor.getSnapshot();
  }

  get value(): unknown {
    return (this.actor.getSnapshot() as { value: unknown }).value;
  }

  /** Emitted events of one type, in order. */
  of<T extends string>(type: T): (Emitted & { type: T })[] {
    return this.emitted.filter((e): e is Emitted & { type: T } => e.type === type);
  }

  sends(kind?: string): SendOut[] {
    return (this.of('send') as unknown as SendOut[]).filter((s) => kind === undefined || s.kind === kind);
  }

  /** Forgets what was emitted so far, so a step's output can be asserted alone. */
  drain(): Emitted[] {
    return this.emitted.splice(0, this.emitted.length);
  }
}

/** Emitted events among the actions `transition()` returned. */
export function emittedBy(actions: readonly { type: string; params?: unknown }[]): Emitted[] {
  return actions
    .filter((a) => a.type === 'xstate.emit')
    .map((a) => (a.params as { event: Emitted }).event);
}

/**
 * Replays events through the pure `transition()` from the initial state,
 * returning each snapshot and what each step emitted.
 */
export function replay<M extends AnyStateMachine>(
  machine: M,
  input: InputFrom<M>,
  events: readonly EventFromLogic<M>[],
): { snapshots: SnapshotFrom<M>[]; emitted: Emitted[][] } {
  const [first, firstActions] = initialTransition(machine, input);
  const snapshots = [first as SnapshotFrom<M>];
  const emitted = [emittedBy(firstActions)];
  let s = first;
  for (const e of events) {
    const [next, actions] = transition(machine, s, e);
    snapshots.push(next as SnapshotFrom<M>);
    emitted.push(emittedBy(actions));
    s = next;
  }
  return { snapshots, emitted };
}

/** Every atomic or final state node's path, as the value string a flat machine reports. */
export function leafStates(machine: AnyStateMachine): string[] {
  return getStateNodes(machine.root)
    .filter((n) => n.type === 'atomic' || n.type === 'final')
    .map((n) => n.path.join('.'));
}

/** The event XState raises when a named `after` delay of a state fires. */
export function afterEvent(machineId: string, delay: string, state: string): { type: string } {
  return { type: `xstate.after.${delay}.${machineId}.${state}` };
}

/** The generated paths' events, without XState's own `xstate.init`. */
export function pathEvents<E extends { type: string }>(steps: readonly { event: E }[]): E[] {
  return steps.map((s) => s.event).filter((e) => e.type !== 'xstate.init');
}
