// A protocol machine's chart as the Machines view draws it: Cytoscape
// elements (a node per state, compound states holding their children, an
// arrow per source → target with its triggers), their style, and where each
// state goes: a layered layout inside every compound state, from its
// initial child (breadth first over the transitions between its children),
// the axis turning at each level, and a parallel state's regions side by
// side. Cytoscape's own layouts either ignore compound states
// (breadthfirst) or scatter them (cose); this one is deterministic, so a
// chart looks the same every time it is drawn.

/** Gaps between layers (room for edge labels) left to right and top to bottom, between the nodes of a layer, and around a compound's children. */
const GAP_X = 120;
const GAP_Y_LAYERS = 70;
const GAP_Y = 60;
const GAP_X_NODES = 50;
/** The most room an arrow's label gets: past it, labels may overlap. */
const GAP_MAX = 240;
const PAD = 18;
const LABEL_H = 18;
const NODE_H = 34;
const NODE_PAD = 6;
const PSEUDO = 12;
/** The font of a state's name: the Machines view's chart style uses it too. */
export const NODE_FONT = '12px ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif';

let measure;
/** The width of a state's name as the chart draws it, in pixels. */
export function labelWidth(text, font = NODE_FONT) {
  measure ??= document.createElement('canvas').getContext('2d');
  measure.font = font;
  return Math.ceil(measure.measureText(text).width);
}

/** The width of a line of an arrow's label (10 px). */
function edgeLabelWidth(text) {
  return labelWidth(text, NODE_FONT.replace(/^\d+px/, '10px'));
}

/**
 * Positions of the leaves (atomic states and pseudo nodes) by element id,
 * from the tree of elements: `parentOf` (id → parent id or null), `labelOf`,
 * `edges` ([source id, target id, label]) and which ids are parallel states.
 */
export function layoutChart({ ids, parentOf, labelOf, edges, parallel, pseudo }) {
  const children = new Map([[null, []]]);
  for (const id of ids) children.set(id, []);
  for (const id of ids) children.get(parentOf.get(id) ?? null).push(id);
  const chain = (id) => {
    const out = [];
    for (let at = id; at !== null && at !== undefined; at = parentOf.get(at) ?? null) out.unshift(at);
    return out;
  };
  // Each edge lifted to the compound where its ends part: between two of that compound's children.
  const lifted = new Map();
  for (const [s, t, label] of edges) {
    const a = chain(s);
    const b = chain(t);
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    if (i >= a.length || i >= b.length) continue;
    const at = i === 0 ? null : a[i - 1];
    const list = lifted.get(at) ?? [];
    list.push([a[i], b[i], label ?? '']);
    lifted.set(at, list);
  }
  const boxes = new Map();
  const size = (id, depth) => {
    if (children.get(id)?.length) return box(id, depth);
    if (pseudo.has(id)) return { w: PSEUDO, h: PSEUDO };
    return { w: labelWidth(labelOf.get(id)) + 2 * NODE_PAD, h: NODE_H };
  };
  /**
   * Lays out the children of `id` (null: the chart) in layers along one
   * axis, nodes of a layer side by side across it; the axis turns at each
   * level (the chart's top level left to right, inside a top-level
   * compound top to bottom, and so on), which keeps a chart near square.
   * A parallel state's regions are one layer each, side by side along the
   * axis. Returns its size with padding and label.
   */
  const box = (id, depth) => {
    const kids = children.get(id);
    const across = depth % 2 === 0 ? 'h' : 'w';
    const along = across === 'h' ? 'w' : 'h';
    const sizes = new Map(kids.map((k) => [k, size(k, depth + 1)]));
    const edgesHere = lifted.get(id) ?? [];
    const columns = parallel.has(id) ? kids.map((k) => [k]) : layers(kids, edgesHere, pseudo);
    // Room for the labels of the arrows between two layers, and between two nodes of one layer.
    const room = (label, dir) => (dir === 'w' ? Math.max(0, ...label.split('\n').map(edgeLabelWidth)) + 36 : label.split('\n').length * 13 + 28);
    const layerOf = new Map(columns.flatMap((col, c) => col.map((k) => [k, c])));
    const gaps = columns.map(() => (along === 'w' ? GAP_X : GAP_Y_LAYERS));
    let gapAcross = across === 'h' ? GAP_Y : GAP_X_NODES;
    for (const [a, b, label] of edgesHere) {
      if (!label || !layerOf.has(a) || !layerOf.has(b)) continue;
      const [ca, cb] = [layerOf.get(a), layerOf.get(b)].sort((x, y) => x - y);
      if (ca === cb) gapAcross = Math.min(GAP_MAX, Math.max(gapAcross, room(label, across)));
      else {
        const mid = Math.floor((ca + cb - 1) / 2);
        gaps[mid] = Math.min(GAP_MAX, Math.max(gaps[mid], room(label, along)));
      }
    }
    const colAlong = columns.map((col) => Math.max(...col.map((k) => sizes.get(k)[along])));
    const colAcross = columns.map((col) => col.reduce((sum, k) => sum + sizes.get(k)[across], 0) + gapAcross * (col.length - 1));
    const innerAlong = colAlong.reduce((a, b) => a + b, 0) + gaps.slice(0, -1).reduce((a, b) => a + b, 0);
    const innerAcross = Math.max(...colAcross);
    const offsets = new Map();
    let at = 0;
    columns.forEach((col, c) => {
      let cross = parallel.has(id) ? 0 : (innerAcross - colAcross[c]) / 2;
      for (const k of col) {
        const s = sizes.get(k);
        // A parallel state's regions, side by side, are centred on one line.
        const len = s[along];
        const o = { [along]: len, [across]: parallel.has(id) ? innerAcross : s[across] };
        o[along === 'w' ? 'x' : 'y'] = at + (colAlong[c] - len) / 2;
        o[across === 'h' ? 'y' : 'x'] = cross;
        offsets.set(k, o);
        cross += s[across] + gapAcross;
      }
      at += colAlong[c] + gaps[c];
    });
    const innerW = along === 'w' ? innerAlong : innerAcross;
    const innerH = along === 'h' ? innerAlong : innerAcross;
    const b = { w: innerW + 2 * PAD, h: innerH + 2 * PAD + LABEL_H, offsets };
    boxes.set(id, b);
    return b;
  };
  box(null, 0);
  const positions = new Map();
  const place = (id, ox, oy) => {
    for (const [k, o] of boxes.get(id).offsets) {
      if (children.get(k)?.length) {
        const inner = boxes.get(k);
        // Centred in the slot its parent gave it (a region may be given more room than it needs).
        place(k, ox + o.x + (o.w - inner.w) / 2 + PAD, oy + o.y + (o.h - inner.h) / 2 + PAD + LABEL_H);
      } else positions.set(k, { x: ox + o.x + o.w / 2, y: oy + o.y + o.h / 2 });
    }
  };
  place(null, 0, 0);
  const root = boxes.get(null);
  return { positions, width: root.w, height: root.h };
}

/** Columns of `kids`: breadth first from the pseudo nodes (the initial dot, `any state`), or the first child. */
function layers(kids, edges, pseudo) {
  const next = new Map(kids.map((k) => [k, []]));
  for (const [a, b] of edges) if (a !== b && next.has(a) && next.has(b)) next.get(a).push(b);
  const layer = new Map();
  let queue = kids.filter((k) => pseudo.has(k));
  if (queue.length === 0 && kids.length) queue = [kids[0]];
  for (const k of queue) layer.set(k, 0);
  for (;;) {
    while (queue.length) {
      const k = queue.shift();
      for (const n of next.get(k)) {
        if (layer.has(n)) continue;
        layer.set(n, layer.get(k) + 1);
        queue.push(n);
      }
    }
    const rest = kids.find((k) => !layer.has(k));
    if (rest === undefined) break;
    // Not reached from the start: a column of its own after the others.
    layer.set(rest, Math.max(0, ...layer.values()) + 1);
    queue = [rest];
  }
  const columns = [];
  for (const k of kids) (columns[layer.get(k)] ??= []).push(k);
  return columns.filter(Boolean);
}

/** Edge labels on one arrow beyond which the rest are counted, not written. */
const LABELS_MAX = 3;

/** A chart as Cytoscape elements, and where each goes: {elements, positions, width, height}. */
export function drawnChart(chart) {
  const { elements } = elementsOf(chart);
  return { elements, ...layoutOf(chart, elements) };
}

/** What starts a transition, as an edge's label: its event, delay or `always`, and its guard. */
export function trigger(t) {
  const what = t.kind === 'after' ? `after ${t.delay}` : t.kind === 'always' ? 'always' : t.event;
  return t.guard ? `${what} [${t.guard}]` : what;
}

/** Positions for a chart's elements, from the element list. */
function layoutOf(chart, elements) {
  const nodes = elements.filter((e) => e.group === 'nodes');
  const parallel = new Set(chart.states.filter((s) => s.type === 'parallel').map((s) => `s:${s.id}`));
  if (chart.type === 'parallel') parallel.add(null);
  return layoutChart({
    ids: nodes.map((n) => n.data.id),
    parentOf: new Map(nodes.map((n) => [n.data.id, n.data.parent ?? null])),
    labelOf: new Map(nodes.map((n) => [n.data.id, n.data.label])),
    // `any state` stands to the left; its many arrows would pull every state into one layer.
    edges: elements.filter((e) => e.group === 'edges' && e.data.source !== 'any').map((e) => [e.data.source, e.data.target, e.data.label]),
    parallel,
    pseudo: new Set(nodes.filter((n) => !n.data.id.startsWith('s:')).map((n) => n.data.id)),
  });
}

/** Cytoscape elements for a chart: a node per state (compound states hold their children), an edge per source → target with its triggers. */
function elementsOf(chart) {
  const elements = [];
  const ids = new Set(chart.states.map((s) => s.id));
  for (const s of chart.states) {
    elements.push({ group: 'nodes', data: { id: `s:${s.id}`, path: s.id, label: s.key, count: 0, ...(s.parent ? { parent: `s:${s.parent}` } : {}) }, classes: `state ${s.type}` });
  }
  const initials = [[null, chart.initial], ...chart.states.filter((s) => s.initial).map((s) => [s.id, s.initial])];
  for (const [parent, target] of initials) {
    if (!target || !ids.has(target)) continue;
    const id = `i:${parent ?? ''}`;
    elements.push({ group: 'nodes', data: { id, label: '', ...(parent ? { parent: `s:${parent}` } : {}) }, classes: 'pseudo-initial' });
    elements.push({ group: 'edges', data: { id: `e${id}`, source: id, target: `s:${target}`, label: '' }, classes: 'initial-edge' });
  }
  const pairs = new Map();
  for (const t of chart.transitions) {
    if (!t.target) continue;
    const source = t.source === '' ? 'any' : `s:${t.source}`;
    for (const target of t.target) {
      if (!ids.has(target)) continue;
      const key = `${source}\u0000${target}`;
      const p = pairs.get(key) ?? { source, target: `s:${target}`, labels: [], kinds: new Set() };
      const label = trigger(t);
      if (!p.labels.includes(label)) p.labels.push(label);
      p.kinds.add(t.kind);
      pairs.set(key, p);
    }
  }
  if ([...pairs.values()].some((p) => p.source === 'any')) {
    elements.push({ group: 'nodes', data: { id: 'any', label: 'any state' }, classes: 'pseudo-any' });
  }
  let n = 0;
  for (const p of pairs.values()) {
    const shown = p.labels.length > LABELS_MAX ? [...p.labels.slice(0, LABELS_MAX - 1), `+${p.labels.length - LABELS_MAX + 1} more`] : p.labels;
    const kind = p.kinds.has('event') ? 'event' : p.kinds.has('after') ? 'after' : 'always';
    elements.push({ group: 'edges', data: { id: `t${n++}`, source: p.source, target: p.target, label: shown.join('\n'), all: p.labels.join('\n') }, classes: [kind, p.source === p.target ? 'loop' : ''].join(' ') });
  }
  return { elements };
}

const FONT = NODE_FONT.replace(/^\d+px /, '');
const stateLabel = (e) => (e.data('count') > 1 ? `${e.data('label')} ×${e.data('count')}` : e.data('label'));

/** How the Machines view draws a chart (Cytoscape's style sheet). */
export const CHART_STYLE = [
  { selector: 'node', style: { label: 'data(label)', 'font-family': FONT, 'font-size': 12, color: '#d8d9da', 'text-valign': 'center', 'text-halign': 'center', shape: 'round-rectangle', width: (e) => labelWidth(e.data('label')), height: 22, padding: '6px', 'background-color': '#22252b', 'border-width': 1.5, 'border-color': '#5794f2' } },
  { selector: 'node.state', style: { label: stateLabel, width: (e) => labelWidth(stateLabel(e)) } },
  { selector: ':parent', style: { 'text-valign': 'top', 'text-halign': 'center', 'text-margin-y': -4, 'font-weight': 'bold', 'background-color': '#181b20', 'background-opacity': 0.9, 'border-color': '#4a505a', padding: '18px' } },
  { selector: 'node.parallel', style: { 'border-style': 'dashed' } },
  { selector: 'node.final', style: { 'border-width': 4, 'border-style': 'double' } },
  { selector: 'node.pseudo-initial', style: { shape: 'ellipse', width: 12, height: 12, padding: '0px', 'background-color': '#d8d9da', 'border-width': 0 } },
  { selector: 'node.pseudo-any', style: { 'border-style': 'dotted', 'border-color': '#8e8e8e', color: '#a8aab5', 'font-style': 'italic' } },
  { selector: 'edge', style: { 'curve-style': 'bezier', 'control-point-step-size': 64, width: 1.3, 'line-color': '#6e7380', 'target-arrow-color': '#6e7380', 'target-arrow-shape': 'triangle', 'arrow-scale': 0.9, label: 'data(label)', 'font-family': FONT, 'font-size': 10, color: '#b7b9c2', 'text-wrap': 'wrap', 'text-background-color': '#111217', 'text-background-opacity': 0.85, 'text-background-padding': '2px', 'text-background-shape': 'round-rectangle' } },
  { selector: 'edge.loop', style: { 'loop-direction': '150deg', 'loop-sweep': '-60deg', 'control-point-step-size': 40 } },
  { selector: 'edge.after', style: { 'line-style': 'dashed', 'line-color': '#8c7a43', 'target-arrow-color': '#8c7a43' } },
  { selector: 'edge.always', style: { 'line-style': 'dotted', 'line-color': '#7e6a9e', 'target-arrow-color': '#7e6a9e' } },
  { selector: 'edge.initial-edge', style: { 'line-color': '#d8d9da', 'target-arrow-color': '#d8d9da', width: 1.5 } },
  { selector: 'node.state.active', style: { 'background-color': '#1d3b1a', 'border-color': '#73bf69', 'border-width': 3, color: '#ffffff' } },
  { selector: ':parent.active', style: { 'background-color': '#16241a', 'border-color': '#73bf69', 'border-width': 2 } },
  { selector: 'node.flash', style: { 'background-color': '#fade2a', color: '#111217', 'border-color': '#fade2a' } },
  { selector: 'edge.flash', style: { 'line-color': '#fade2a', 'target-arrow-color': '#fade2a', width: 3.5, color: '#fade2a' } },
  { selector: 'node:selected', style: { 'overlay-color': '#5794f2', 'overlay-opacity': 0.15 } },
];

