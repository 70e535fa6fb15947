/**
 * A node's protocol machines as they run (SPEC.md M26): XState inspection
 * events in, transition records out, for `mangrove machines watch` and the
 * dashboard (runtime/http/machines.ts serves them).
 *
 * Only `@xstate.snapshot` is read: it carries the actor, its new snapshot and
 * the event that produced it, which is all a transition record needs
 * (`@xstate.event` comes before the snapshot and says nothing more about the
 * state; XState 5.33 sends no `@xstate.transition`). The state before is the
 * actor's previous snapshot, kept here per actor.
 *
 * Cheap while nobody watches: per snapshot a map lookup and a comparison of
 * state values; a record (a plain object, never encoded here) is made only
 * when the state changed, kept in a bounded ring buffer, and handed to the
 * listeners, of which there are none until a client connects.
 *
 * XState reports a snapshot after the actor's own subscribers have run, so a
 * record made in one of them comes first: a heartbeat-member's `promoted`
 * follows the start of the heartbeat-monitor its actor starts, at the same t.
 */
import type { InspectionEvent, StateValue } from 'xstate';
import { machinesAnswerLimits, type MachinesSnapshot, type MachineTransitionView } from '../../actors/status.js';
import { RingBuffer } from './ring-buffer.js';

/** One transition as the watch records it: what `client.machines` answers, without its number. */
export type TransitionRecord = Omit<MachineTransitionView, 'id'>;

export interface Kept {
  /** Numbers kept records in order, from 1: Server-Sent Event ids. */
  seq: number;
  record: TransitionRecord;
}

export interface RunningActor {
  actor: string;
  machine: string;
  state: string;
  /** When it entered that state. */
  since: number;
}

/**
 * Called with each kept record and its seq; listeners that asked for all
 * events also get unchanged ones, with seq null (those are not kept).
 */
export type WatchListener = (record: TransitionRecord, seq: number | null) => void;

export const machineWatchLimits = {
  /** Records kept for late joiners and reconnecting clients. */
  recordsMax: 1000,
  /** Actors followed at once; a node runs about a dozen, so more means a leak, not load. */
  actorsMax: 4096,
} as const;

export interface MachineWatchOptions {
  node: string;
  now: () => number;
  recordsMax?: number;
  actorsMax?: number;
}

interface Followed {
  machine: string;
  /** The last snapshot's value object: an unchanged one needs no string. */
  value: unknown;
  state: string;
  since: number;
}

export class MachineWatch {
  readonly node: string;
  /** The node's clock. */
  readonly now: () => number;
  private readonly kept: RingBuffer<Kept>;
  private readonly actorsMax: number;
  private readonly followed = new Map<string, Followed>();
  private readonly listeners = new Set<{ fn: WatchListener; allEvents: boolean }>();
  private allEventListeners = 0;
  private seq = 0;
  private notFollowed = 0;

  constructor(opts: MachineWatchOptions) {
    this.node = opts.node;
    this.now = opts.now;
    this.kept = new RingBuffer(opts.recordsMax ?? machineWatchLimits.recordsMax);
    this.actorsMax = opts.actorsMax ?? machineWatchLimits.actorsMax;
  }

  /** The `inspect` option for every createActor of the node. */
  readonly inspect = (e: InspectionEvent): void => {
    if (e.type === '@xstate.snapshot') this.onSnapshot(e.actorRef, e.snapshot as { status: string; value?: StateValue }, e.event.type);
  };

  /** Actors not followed because `actorsMax` already were. */
  get untracked(): number {
    return this.notFollowed;
  }

  /** The actors running now, in the order they started. */
  actors(): RunningActor[] {
    return [...this.followed].map(([actor, f]) => ({ actor, machine: f.machine, state: f.state, since: f.since }));
  }

  /** The newest `n` kept records, oldest first. */
  recent(n: number): Kept[] {
    return this.kept.last(n);
  }

  /** Kept records after `seq`, oldest first (all kept ones when `seq` is older than the oldest). */
  since(seq: number): Kept[] {
    return this.kept.last().filter((k) => k.seq > seq);
  }

  /**
   * The running actors and the kept transitions numbered after `after`
   * (`client.machines`, M26). An `after` past the newest number is from
   * before this process started (the node restarted): every kept one is new.
   */
  snapshot(after = 0, recordsMax: number = machinesAnswerLimits.recordsMax): MachinesSnapshot {
    const from = after > this.seq ? 0 : after;
    const kept = this.since(from).slice(-recordsMax);
    const records = kept.map((k) => ({ id: k.seq, ...k.record }));
    return { node: this.node, t: this.now(), actors: this.actors(), records, last: this.seq, missed: this.seq - from - records.length };
  }

  /** Listens until the returned function is called. */
  subscribe(fn: WatchListener, opts: { allEvents?: boolean } = {}): () => void {
    const entry = { fn, allEvents: opts.allEvents === true };
    this.listeners.add(entry);
    if (entry.allEvents) this.allEventListeners++;
    return () => {
      if (this.listeners.delete(entry) && entry.allEvents) this.allEventListeners--;
    };
  }

  private onSnapshot(ref: { sessionId: string }, snapshot: { status: string; value?: StateValue }, event: string): void {
    // Only state machines have a state value; promise or callback actors are not charts.
    if (snapshot.value === undefined) return;
    const actor = ref.sessionId;
    let f = this.followed.get(actor);
    if (!f) {
      if (this.followed.size >= this.actorsMax) {
        this.notFollowed++;
        return;
      }
      f = { machine: machineIdOf(ref), value: undefined, state: '', since: 0 };
    }
    const live = snapshot.status === 'active' || snapshot.status === 'done';
    const from = this.followed.has(actor) ? f.state : null;
    const to = !live ? null : snapshot.value === f.value ? f.state : stateString(snapshot.value);
    const changed = from !== to;
    if (live) {
      f.value = snapshot.value;
      f.state = to!;
    }
    // A final state ends the actor as surely as a stop.
    if (snapshot.status === 'active') this.followed.set(actor, f);
    else this.followed.delete(actor);
    if (!changed && this.allEventListeners === 0) return;
    const t = this.now();
    if (changed) f.since = t;
    const record: TransitionRecord = { t, node: this.node, machine: f.machine, actor, from, to, event };
    let seq: number | null = null;
    if (changed) {
      seq = ++this.seq;
      this.kept.push({ seq, record });
    }
    this.tell(record, seq);
  }

  private tell(record: TransitionRecord, seq: number | null): void {
    for (const l of this.listeners) {
      if (seq === null && !l.allEvents) continue;
      try {
        l.fn(record, seq);
      } catch {
        // A broken listener must not break the machine whose inspection called us.
        this.listeners.delete(l);
        if (l.allEvents) this.allEventListeners--;
      }
    }
  }
}

/**
 * The machine's id (each protocol machine's createMachine sets `id:
 * machineName`), from the actor's logic: inspection types the actor as an
 * ActorRefLike, but XState hands over the Actor itself.
 */
function machineIdOf(ref: unknown): string {
  const id = (ref as { logic?: { id?: unknown } }).logic?.id;
  return typeof id === 'string' ? id : 'unknown';
}

/**
 * A state value as text: `following`, `monitoring.ticking`; the regions of a
 * parallel state joined by commas (`a.x,b.y`).
 */
export function stateString(value: StateValue): string {
  if (typeof value === 'string') return value;
  const leaves: string[] = [];
  const walk = (v: Record<string, unknown>, prefix: string): void => {
    for (const [key, child] of Object.entries(v)) {
      const path = prefix === '' ? key : `${prefix}.${key}`;
      if (typeof child === 'string') leaves.push(`${path}.${child}`);
      else if (child && typeof child === 'object' && Object.keys(child).length > 0) walk(child as Record<string, unknown>, path);
      else leaves.push(path);
    }
  };
  walk(value as Record<string, unknown>, '');
  return leaves.join(',');
}
