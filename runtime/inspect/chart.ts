/**
 * A protocol machine's chart as plain data, read from the machine itself
 * (XState's tree of StateNodes, `machine.root`), never drawn by hand. It is
 * the JSON export of `mangrove machines export NAME --format json` as is, and
 * the one source the Mermaid and SCXML exports are written from, so the three
 * formats cannot disagree.
 *
 * State ids are paths from the machine's root joined with dots (`following`,
 * `monitoring.ticking`): the same strings `machines watch` prints as states.
 * XState's own parts of a chart are kept out: the raise/cancel actions it adds
 * to a state for each `after` delay show as the delayed transition itself.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';

export const CHART_FORMAT = 'mangrove.chart/1';

export type StateType = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

export interface ChartState {
  /** Dotted path from the root: `monitoring.ticking`. */
  id: string;
  /** The state's own name: `ticking`. */
  key: string;
  /** The enclosing state's id; null for a top-level state. */
  parent: string | null;
  type: StateType;
  /** The child a compound state enters first. */
  initial: string | null;
  entry: string[];
  exit: string[];
  /** Actors the state invokes, by source name. */
  invoke: string[];
}

export interface ChartTransition {
  /** The state it leaves from; '' is the machine itself: the transition applies in every state. */
  source: string;
  /** 'event': on a named event; 'after': a delay ran out; 'always': eventless, taken as soon as its guard holds. */
  kind: 'event' | 'after' | 'always';
  /** The event type ('after' ones: XState's `xstate.after.DELAY.STATE`); null for 'always'. */
  event: string | null;
  /** For 'after': the delay's name in the machine (`tick`), or milliseconds. */
  delay: string | number | null;
  guard: string | null;
  actions: string[];
  /** Target state ids; null when targetless: the state is not left, only the actions run. */
  target: string[] | null;
  /** Whether a target that is the source (or an ancestor) is exited and entered again. */
  reenter: boolean;
}

export interface Chart {
  format: typeof CHART_FORMAT;
  machine: string;
  /** The machine itself: one top-level state at a time (compound), or all at once (parallel). */
  type: 'compound' | 'parallel';
  /** The top-level state entered first (none for a parallel machine). */
  initial: string | null;
  /** Depth first, in the order the machine defines them. */
  states: ChartState[];
  /** Per state in `states` order (the machine's own first): events, then delays, then eventless. */
  transitions: ChartTransition[];
}

/** The chart of a machine, as its definition says. */
export function chartOf(machine: AnyStateMachine): Chart {
  const root = machine.root;
  const states: ChartState[] = [];
  const transitions: ChartTransition[] = [...transitionsOf(root)];
  const walk = (node: AnyStateNode): void => {
    for (const child of Object.values<AnyStateNode>(node.states)) {
      states.push(stateOf(child));
      transitions.push(...transitionsOf(child));
      walk(child);
    }
  };
  walk(root);
  return { format: CHART_FORMAT, machine: machine.id, type: root.type === 'parallel' ? 'parallel' : 'compound', initial: initialOf(root), states, transitions };
}

export function pathOf(node: AnyStateNode): string {
  return node.path.join('.');
}

function stateOf(node: AnyStateNode): ChartState {
  return {
    id: pathOf(node),
    key: node.key,
    parent: node.parent && node.parent.parent ? pathOf(node.parent) : null,
    type: node.type as StateType,
    initial: initialOf(node),
    entry: actionNames(node.entry),
    exit: actionNames(node.exit),
    invoke: node.invoke.map((i) => (typeof i.src === 'string' ? i.src : i.id)),
  };
}

function initialOf(node: AnyStateNode): string | null {
  if (node.type !== 'compound') return null;
  const target = node.initial?.target?.[0];
  return target ? pathOf(target) : null;
}

interface TransitionLike {
  target?: readonly AnyStateNode[];
  guard?: unknown;
  actions: readonly unknown[];
  reenter: boolean;
  eventType: string;
  delay?: unknown;
}

function* transitionsOf(node: AnyStateNode): Generator<ChartTransition> {
  const source = pathOf(node);
  for (const list of node.transitions.values()) {
    for (const t of list as TransitionLike[]) {
      const after = t.delay !== undefined;
      yield transition(source, t, after ? 'after' : 'event', t.eventType, after ? delayName(t.delay) : null);
    }
  }
  for (const t of (node.always ?? []) as TransitionLike[]) yield transition(source, t, 'always', null, null);
}

function transition(source: string, t: TransitionLike, kind: ChartTransition['kind'], event: string | null, delay: string | number | null): ChartTransition {
  return {
    source,
    kind,
    event,
    delay,
    guard: t.guard === undefined ? null : guardName(t.guard),
    actions: actionNames(t.actions),
    target: t.target ? t.target.map(pathOf) : null,
    reenter: t.reenter,
  };
}

function delayName(delay: unknown): string | number {
  if (typeof delay === 'number' || typeof delay === 'string') return delay;
  return nameOfFunction(delay);
}

/** A named guard, a parameterised one, or XState's and/or/not of them. */
export function guardName(guard: unknown): string {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    // and([...]), or([...]) and not(...) are functions named so, holding their guards.
    const g = guard as { guards?: unknown[] };
    if (Array.isArray(g.guards)) return `${nameOfFunction(guard)}(${g.guards.map(guardName).join(', ')})`;
    return nameOfFunction(guard);
  }
  if (typeof guard === 'object' && guard !== null && 'type' in guard) return withParams(String(guard.type), (guard as { params?: unknown }).params);
  return String(guard);
}

/** Named actions as written in the machine; XState's scheduling of `after` delays left out. */
export function actionNames(actions: readonly unknown[]): string[] {
  const out: string[] = [];
  for (const a of actions) {
    if (isDelaySchedule(a)) continue;
    if (typeof a === 'string') out.push(a);
    else if (typeof a === 'object' && a !== null && 'type' in a) out.push(withParams(String(a.type), (a as { params?: unknown }).params));
    else if (typeof a === 'function') {
      const type = (a as { type?: unknown }).type;
      out.push(typeof type === 'string' ? type.replace(/^xstate\./, '') : nameOfFunction(a));
    }
  }
  return out;
}

/** The raise XState adds on entry and the cancel on exit for each `after` delay. */
function isDelaySchedule(a: unknown): boolean {
  if (typeof a !== 'function') return false;
  const f = a as { type?: unknown; id?: unknown; sendId?: unknown };
  const id = f.type === 'xstate.raise' ? f.id : f.type === 'xstate.cancel' ? f.sendId : undefined;
  return typeof id === 'string' && id.startsWith('xstate.after.');
}

/** `announce(state=notified)`: parameters inline, in a form every export format can carry. */
function withParams(name: string, params: unknown): string {
  if (params === undefined || params === null || typeof params !== 'object') return name;
  const parts = Object.entries(params as Record<string, unknown>).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return parts.length === 0 ? name : `${name}(${parts.join(', ')})`;
}

function nameOfFunction(f: unknown): string {
  const name = (f as { name?: unknown }).name;
  return typeof name === 'string' && name.length > 0 ? name : 'inline';
}
