/**
 * A machine's chart as a diagram (SPEC.md M26): Mermaid `stateDiagram-v2`,
 * SCXML, or the chart's own JSON. Each is written from `chartOf(machine)`,
 * which reads the machine definition, so a diagram shows what the code does.
 *
 * Transitions are labelled `EVENT [guard]`; a delay is `after NAME`, an
 * eventless transition `always`. Self-loops (targetless ones, whose state is
 * not left, and re-entries, which restart the state's timers) also list their
 * actions, since the actions are all they do. Transitions of the machine
 * itself, taken in every state (node-db-subordinate's ACCEPT, COMMIT, ADOPT),
 * leave the border of a superstate named after the machine, as statecharts
 * draw them.
 */
import type { Chart, ChartState, ChartTransition } from './chart.js';

export const DIAGRAM_FORMATS = ['mermaid', 'scxml', 'json'] as const;
export type DiagramFormat = (typeof DIAGRAM_FORMATS)[number];

export function renderChart(chart: Chart, format: DiagramFormat): string {
  switch (format) {
    case 'mermaid':
      return toMermaid(chart);
    case 'scxml':
      return toScxml(chart);
    case 'json':
      return `${JSON.stringify(chart, null, 2)}\n`;
  }
}

/** What a transition is taken on: `MONITOR_PULSE`, `after tick`, `always`. */
export function triggerOf(t: ChartTransition): string {
  if (t.kind === 'always') return 'always';
  if (t.kind === 'after') return typeof t.delay === 'number' ? `after ${t.delay}ms` : `after ${t.delay}`;
  return t.event ?? '';
}

function isSelfLoop(t: ChartTransition): boolean {
  return t.target === null || (t.target.length === 1 && t.target[0] === t.source);
}

function labelOf(t: ChartTransition): string {
  let label = triggerOf(t);
  if (t.guard !== null) label += ` [${t.guard}]`;
  if (t.reenter && t.target !== null) label += ' (reenter)';
  if (isSelfLoop(t) && t.actions.length > 0) label += ` / ${t.actions.join(', ')}`;
  return label;
}

// ---------------------------------------------------------------- Mermaid

/** Words Mermaid's state grammar reads as keywords, never as state ids. */
const MERMAID_RESERVED = new Set(['state', 'note', 'end', 'as', 'direction', 'class', 'classDef', 'style', 'click', 'default']);

/** The id of the superstate drawn around a machine with transitions of its own, or a parallel one. */
const MERMAID_ROOT = 'machine_';
/** The edges drawn outside that superstate. */
const OUTSIDE = '#outside';

function mermaidId(stateId: string): string {
  const id = stateId.replace(/[^A-Za-z0-9_]/g, '_');
  return MERMAID_RESERVED.has(id) || /^\d/.test(id) ? `s_${id}` : id;
}

/** Mermaid ends a statement at `;`, a label at a newline, and a quoted name at `"`. */
function mermaidText(s: string): string {
  return s.replace(/[;\n\r]/g, ' ').replace(/"/g, "'");
}

export function toMermaid(chart: Chart): string {
  const children = childrenByParent(chart);
  const byId = new Map(chart.states.map((s) => [s.id, s]));
  const wrapped = isWrapped(chart);
  const idOf = (stateId: string) => (stateId === '' ? MERMAID_ROOT : mermaidId(stateId));
  // Each edge goes in the innermost composite holding both its ends, as Mermaid wants;
  // the machine's own edges leave the wrapping superstate, so they go outside it.
  const edges = new Map<string, string[]>();
  for (const t of chart.transitions) {
    for (const target of t.target ?? [t.source]) {
      const scope = t.source === '' ? OUTSIDE : commonScope(chart, t.source, target);
      const list = edges.get(scope) ?? [];
      list.push(`${idOf(t.source)} --> ${idOf(target)} : ${mermaidText(labelOf(t))}`);
      edges.set(scope, list);
    }
  }
  const out = ['stateDiagram-v2', `  %% ${mermaidText(chart.machine)}: generated from the machine definition (mangrove machines export)`];
  const body = (parent: string, indent: string): void => {
    const kids = children.get(parent) ?? [];
    const initial = parent === '' ? chart.initial : byId.get(parent)?.initial;
    if (initial) out.push(`${indent}[*] --> ${idOf(initial)}`);
    kids.forEach((s, i) => {
      // Mermaid separates the regions of a parallel state with `--`.
      if (i > 0 && (parent === '' ? chart.type : byId.get(parent)?.type) === 'parallel') out.push(`${indent}--`);
      declare(s, indent);
    });
    for (const e of edges.get(parent) ?? []) out.push(`${indent}${e}`);
    for (const s of kids) if (s.type === 'final') out.push(`${indent}${idOf(s.id)} --> [*]`);
  };
  const declare = (s: ChartState, indent: string): void => {
    const id = idOf(s.id);
    const label = s.type === 'history' ? `${s.key} (history)` : s.key;
    if (label !== id) out.push(`${indent}state "${mermaidText(label)}" as ${id}`);
    if ((children.get(s.id) ?? []).length > 0) {
      out.push(`${indent}state ${id} {`);
      body(s.id, `${indent}  `);
      out.push(`${indent}}`);
    } else if (label === id) {
      out.push(`${indent}${id}`);
    }
  };
  if (wrapped) {
    out.push(`  state "${mermaidText(chart.machine)}" as ${MERMAID_ROOT}`, `  state ${MERMAID_ROOT} {`);
    body('', '    ');
    out.push('  }');
    for (const e of edges.get(OUTSIDE) ?? []) out.push(`  ${e}`);
  } else {
    body('', '  ');
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------- SCXML

const SCXML_NS = 'http://www.w3.org/2005/07/scxml';
/** Our namespace for actions: SCXML lets executable content come from other namespaces. */
const ACTION_NS = 'urn:mangrove:machine-action';

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** SCXML ids are XML names: dotted paths are fine, a leading digit is not. */
function scxmlId(stateId: string): string {
  const id = stateId.replace(/[^A-Za-z0-9_.-]/g, '_');
  return /^[A-Za-z_]/.test(id) ? id : `_${id}`;
}

export function toScxml(chart: Chart): string {
  const children = childrenByParent(chart);
  const wrapped = isWrapped(chart);
  const idOf = (stateId: string) => (stateId === '' ? scxmlId(chart.machine) : scxmlId(stateId));
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<!-- ${xml(chart.machine)}: generated from the machine definition (mangrove machines export). A cond names a guard and`,
    '     an m:action an action of the machine\'s code; an after-delay is the send that XState schedules on entry. -->',
  ];
  const top = wrapped ? idOf('') : chart.initial ? idOf(chart.initial) : undefined;
  out.push(`<scxml xmlns="${SCXML_NS}" xmlns:m="${ACTION_NS}" version="1.0" name="${xml(chart.machine)}"${top ? ` initial="${xml(top)}"` : ''}>`);
  const state = (s: { id: string; type: ChartState['type']; initial: string | null; entry: string[]; exit: string[] }, indent: string): void => {
    const tag = s.type === 'final' ? 'final' : s.type === 'parallel' ? 'parallel' : s.type === 'history' ? 'history' : 'state';
    const initial = s.type === 'compound' && s.initial ? ` initial="${xml(idOf(s.initial))}"` : '';
    const inner: string[] = [];
    const delays = chart.transitions.filter((t) => t.source === s.id && t.kind === 'after');
    const afterEvents = [...new Set(delays.map((t) => t.event!))];
    const onEntry = [
      ...s.entry.map((a) => `<m:action name="${xml(a)}"/>`),
      ...afterEvents.map((e) => {
        const d = delays.find((t) => t.event === e)!.delay;
        const when = typeof d === 'number' ? `delay="${d}ms"` : `delayexpr="${xml(String(d))}"`;
        return `<send id="${xml(e)}" event="${xml(e)}" ${when}/>`;
      }),
    ];
    const onExit = [...s.exit.map((a) => `<m:action name="${xml(a)}"/>`), ...afterEvents.map((e) => `<cancel sendid="${xml(e)}"/>`)];
    if (onEntry.length > 0) inner.push(`<onentry>${onEntry.join('')}</onentry>`);
    if (onExit.length > 0) inner.push(`<onexit>${onExit.join('')}</onexit>`);
    for (const t of chart.transitions) if (t.source === s.id) inner.push(scxmlTransition(chart, t, idOf));
    const kids = s.id === '' || s.type === 'compound' || s.type === 'parallel' ? (children.get(s.id) ?? []) : [];
    const open = `${indent}<${tag} id="${xml(idOf(s.id))}"${initial}`;
    if (inner.length === 0 && kids.length === 0) return void out.push(`${open}/>`);
    out.push(`${open}>`, ...inner.map((l) => `${indent}  ${l}`));
    for (const k of kids) state(k, `${indent}  `);
    out.push(`${indent}</${tag}>`);
  };
  if (wrapped) state({ id: '', type: chart.type, initial: chart.initial, entry: [], exit: [] }, '  ');
  else for (const k of children.get('') ?? []) state(k, '  ');
  out.push('</scxml>');
  return `${out.join('\n')}\n`;
}

function scxmlTransition(chart: Chart, t: ChartTransition, idOf: (id: string) => string): string {
  const attrs: string[] = [];
  if (t.event !== null) attrs.push(`event="${xml(t.event)}"`);
  if (t.guard !== null) attrs.push(`cond="${xml(t.guard)}"`);
  if (t.target !== null) {
    attrs.push(`target="${xml(t.target.map(idOf).join(' '))}"`);
    // XState leaves a source whose descendants it targets only on reenter; SCXML's "internal" says the same.
    if (!t.reenter && t.target.every((x) => isProperDescendant(chart, x, t.source))) attrs.push('type="internal"');
  }
  const actions = t.actions.map((a) => `<m:action name="${xml(a)}"/>`).join('');
  return actions.length === 0 ? `<transition ${attrs.join(' ')}/>` : `<transition ${attrs.join(' ')}>${actions}</transition>`;
}

// ---------------------------------------------------------------- tree helpers

/**
 * Whether the machine is drawn as a superstate of its own: when it has
 * transitions of its own, or is parallel (both formats put regions inside a state).
 */
function isWrapped(chart: Chart): boolean {
  return chart.type === 'parallel' || chart.transitions.some((t) => t.source === '');
}

function childrenByParent(chart: Chart): Map<string, ChartState[]> {
  const m = new Map<string, ChartState[]>();
  for (const s of chart.states) {
    const p = s.parent ?? '';
    m.set(p, [...(m.get(p) ?? []), s]);
  }
  return m;
}

function isProperDescendant(chart: Chart, id: string, ancestor: string): boolean {
  if (id === ancestor) return false;
  return ancestor === '' || id.startsWith(`${ancestor}.`) || ancestorsOf(chart, id).includes(ancestor);
}

function ancestorsOf(chart: Chart, id: string): string[] {
  const out: string[] = [];
  let s = chart.states.find((x) => x.id === id);
  while (s?.parent) {
    out.push(s.parent);
    s = chart.states.find((x) => x.id === s!.parent);
  }
  return out;
}

/** The innermost composite strictly holding both states ('' for the top level). */
function commonScope(chart: Chart, a: string, b: string): string {
  const up = (id: string) => chart.states.find((s) => s.id === id)?.parent ?? '';
  const holdersOfA = ['', ...ancestorsOf(chart, a)];
  let scope = up(b);
  while (scope !== '' && !holdersOfA.includes(scope)) scope = up(scope);
  return scope;
}
