// A protocol machine's chart as the Machines view draws it: Cytoscape
// elements (a node per state, compound states holding their children, an
// arrow per source → target with its triggers), their style, and where each
// state goes: a layered layout inside every compound state, from its
// initial child (breadth first over the transitions between its children),
// the axis turning at each level, and a parallel state's regions side by
// side. An arrow that skips layers passes each of them through a slot of
// its own, and the states of a layer are ordered to cross few arrows
// (Sugiyama's layered drawing, as Graphviz's dot and dagre do it). Once
// Cytoscape has drawn the arrows, each label is slid along its arrow to
// where it covers no state and no other label (placeLabels). Cytoscape's
// own layouts either ignore compound states (breadthfirst) or scatter them
// (cose); this one is deterministic, so a chart looks the same every time
// it is drawn.

/** Gaps between layers (room for edge labels) left to right and top to bottom, between the nodes of a layer, and around a compound's children. */
const GAP_X = 140;
const GAP_Y_LAYERS = 80;
const GAP_Y = 60;
const GAP_X_NODES = 50;
/** Across a layer, the room a slot for an arrow that skips the layer takes, and the gap beside it. */
const SLOT = 16;
const SLOT_GAP = 14;
/** Sweeps of the ordering of the states in each layer (each one down and back). */
const ORDER_SWEEPS = 6;
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
 * and the bends of the arrows that skip layers (edge id → points), from the
 * tree of elements: `parentOf` (id → parent id or null), `labelOf`, `edges`
 * ({id, source, target, label, layered}: `layered: false` for an arrow that
 * is given a route but does not decide the layers) and which ids are
 * parallel states.
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
  for (const { id, source, target, label, layered = true } of edges) {
    const a = chain(source);
    const b = chain(target);
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    if (i >= a.length || i >= b.length) continue;
    const at = i === 0 ? null : a[i - 1];
    const list = lifted.get(at) ?? [];
    list.push({ id, a: a[i], b: b[i], label: label ?? '', layered });
    lifted.set(at, list);
  }
  const boxes = new Map();
  /** Edge id → the slots its arrow passes, in order from its source. */
  const slotsOf = new Map();
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
    let columns = parallel.has(id) ? kids.map((k) => [k]) : layers(kids, edgesHere.filter((e) => e.layered), pseudo);
    // Room for the labels of the arrows between two layers, and between two nodes of one layer.
    const room = (label, dir) => (dir === 'w' ? Math.max(0, ...label.split('\n').map(edgeLabelWidth)) + 36 : label.split('\n').length * 13 + 28);
    const layerOf = new Map(columns.flatMap((col, c) => col.map((k) => [k, c])));
    const gaps = columns.map(() => (along === 'w' ? GAP_X : GAP_Y_LAYERS));
    let gapAcross = across === 'h' ? GAP_Y : GAP_X_NODES;
    // Top to bottom, the labels in one gap between layers stand one above another: the gap takes them all.
    const stacked = columns.map(() => 0);
    for (const { a, b, label } of edgesHere) {
      if (!label || !layerOf.has(a) || !layerOf.has(b)) continue;
      const [ca, cb] = [layerOf.get(a), layerOf.get(b)].sort((x, y) => x - y);
      if (ca === cb) gapAcross = Math.min(GAP_MAX, Math.max(gapAcross, room(label, across)));
      else {
        const mid = Math.floor((ca + cb - 1) / 2);
        gaps[mid] = Math.min(GAP_MAX, Math.max(gaps[mid], room(label, along)));
        stacked[mid] += label.split('\n').length * 13 + 10;
      }
    }
    if (along === 'h') stacked.forEach((h, c) => (gaps[c] = Math.min(GAP_MAX, Math.max(gaps[c], h + 24))));
    const slots = new Set();
    const gapBetween = (x, y) => (slots.has(x) || slots.has(y) ? SLOT_GAP : gapAcross);
    if (!parallel.has(id)) {
      // An arrow that skips layers gets a slot in each: it bends through them rather than across the states there.
      const links = [];
      for (const e of edgesHere) {
        if (!layerOf.has(e.a) || !layerOf.has(e.b) || e.a === e.b) continue;
        const [ca, cb] = [layerOf.get(e.a), layerOf.get(e.b)];
        if (ca === cb) continue;
        const step = ca < cb ? 1 : -1;
        const path = [e.a];
        for (let c = ca + step; c !== cb; c += step) {
          const slot = `slot:${e.id}:${c}`;
          columns[c].push(slot);
          sizes.set(slot, { w: SLOT, h: SLOT });
          layerOf.set(slot, c);
          slots.add(slot);
          path.push(slot);
        }
        path.push(e.b);
        if (path.length > 2) slotsOf.set(e.id, path.slice(1, -1));
        for (let i = 1; i < path.length; i++) links.push(step > 0 ? [path[i - 1], path[i]] : [path[i], path[i - 1]]);
      }
      // Arrows between two states of one layer: best between neighbours, passing no state.
      const sides = edgesHere.filter((e) => e.a !== e.b && layerOf.has(e.a) && layerOf.get(e.a) === layerOf.get(e.b)).map((e) => [e.a, e.b]);
      columns = ordered(columns, links, sides, layerOf, (k) => sizes.get(k)[across], gapBetween);
    }
    const colAlong = columns.map((col) => Math.max(...col.map((k) => sizes.get(k)[along])));
    const colAcross = columns.map((col) => col.reduce((sum, k, i) => sum + sizes.get(k)[across] + (i ? gapBetween(col[i - 1], k) : 0), 0));
    const innerAlong = colAlong.reduce((a, b) => a + b, 0) + gaps.slice(0, -1).reduce((a, b) => a + b, 0);
    const innerAcross = Math.max(...colAcross);
    const offsets = new Map();
    let at = 0;
    columns.forEach((col, c) => {
      let cross = parallel.has(id) ? 0 : (innerAcross - colAcross[c]) / 2;
      col.forEach((k, i) => {
        const s = sizes.get(k);
        if (i) cross += gapBetween(col[i - 1], k);
        // A parallel state's regions, side by side, are centred on one line.
        const len = s[along];
        const o = { [along]: len, [across]: parallel.has(id) ? innerAcross : s[across] };
        o[along === 'w' ? 'x' : 'y'] = at + (colAlong[c] - len) / 2;
        o[across === 'h' ? 'y' : 'x'] = cross;
        offsets.set(k, o);
        cross += s[across];
      });
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
  const routes = new Map([...slotsOf].map(([edge, path]) => [edge, path.map((slot) => positions.get(slot))]));
  for (const path of slotsOf.values()) for (const slot of path) positions.delete(slot);
  return { positions, routes, width: root.w, height: root.h };
}

/**
 * The layers in an order that crosses few arrows: sweeps down and back up,
 * each placing a layer's members at the mean position of their neighbours
 * in the layer before it (the barycentre heuristic), keeping the order
 * with the fewest crossings seen; then neighbours in a layer are swapped
 * while that lowers the cost (dot's transpose step). `links` join members
 * of adjacent layers (earlier layer first); `sides` join two members of
 * one layer, and each member between them costs as two crossings;
 * `thickness(k)` is a member's size across the layer and `gap(a, b)` the
 * room between two neighbours.
 */
function ordered(columns, links, sides, layerOf, thickness, gap) {
  const before = new Map();
  const after = new Map();
  for (const [u, v] of links) {
    (after.get(u) ?? after.set(u, []).get(u)).push(v);
    (before.get(v) ?? before.set(v, []).get(v)).push(u);
  }
  const centres = (cols) => {
    const pos = new Map();
    for (const col of cols) {
      const total = col.reduce((sum, k, i) => sum + thickness(k) + (i ? gap(col[i - 1], k) : 0), 0);
      let at = -total / 2;
      col.forEach((k, i) => {
        if (i) at += gap(col[i - 1], k);
        pos.set(k, at + thickness(k) / 2);
        at += thickness(k);
      });
    }
    return pos;
  };
  const crossings = (cols) => {
    const pos = centres(cols);
    let n = 0;
    for (let i = 0; i < links.length; i++) {
      const [u1, v1] = links[i];
      for (let j = i + 1; j < links.length; j++) {
        const [u2, v2] = links[j];
        if (layerOf.get(u1) !== layerOf.get(u2) || u1 === u2 || v1 === v2) continue;
        if ((pos.get(u1) - pos.get(u2)) * (pos.get(v1) - pos.get(v2)) < 0) n++;
      }
    }
    for (const [a, b] of sides) {
      const col = cols[layerOf.get(a)];
      n += 2 * Math.max(0, Math.abs(col.indexOf(a) - col.indexOf(b)) - 1);
    }
    return n;
  };
  let cols = columns.map((col) => [...col]);
  let best = cols;
  let fewest = crossings(cols);
  for (let sweep = 0; sweep < 2 * ORDER_SWEEPS && fewest > 0; sweep++) {
    const down = sweep % 2 === 0;
    cols = cols.map((col) => [...col]);
    for (let step = 1; step < cols.length; step++) {
      const c = down ? step : cols.length - 1 - step;
      const pos = centres(cols);
      const near = down ? before : after;
      const mean = (k) => {
        const ns = near.get(k) ?? [];
        return ns.length ? ns.reduce((sum, n) => sum + pos.get(n), 0) / ns.length : pos.get(k);
      };
      const keys = new Map(cols[c].map((k) => [k, mean(k)]));
      // Stable: members with the same mean keep their order.
      cols[c] = cols[c].map((k, i) => [k, i]).sort((x, y) => keys.get(x[0]) - keys.get(y[0]) || x[1] - y[1]).map(([k]) => k);
    }
    const n = crossings(cols);
    if (n < fewest) {
      fewest = n;
      best = cols;
    }
  }
  for (let round = 0, better = true; better && fewest > 0 && round < 20; round++) {
    better = false;
    for (const col of best) {
      for (let i = 0; i + 1 < col.length; i++) {
        [col[i], col[i + 1]] = [col[i + 1], col[i]];
        const n = crossings(best);
        if (n < fewest) {
          fewest = n;
          better = true;
        } else [col[i], col[i + 1]] = [col[i + 1], col[i]];
      }
    }
  }
  return best;
}

/** Columns of `kids`: breadth first from the pseudo nodes (the initial dot, `any state`), or the first child. */
function layers(kids, edges, pseudo) {
  const next = new Map(kids.map((k) => [k, []]));
  for (const { a, b } of edges) if (a !== b && next.has(a) && next.has(b)) next.get(a).push(b);
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

/** A line of an arrow's label longer than this is cut (the whole is its tooltip, and the state panel's). */
const LINE_MAX = 34;

/** A chart as Cytoscape elements, where each goes and how the arrows that skip layers bend: {elements, positions, routes, width, height}. */
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
    // `any state` stands to the left; its many arrows would pull every state into one layer, so they only get routes.
    edges: elements.filter((e) => e.group === 'edges').map((e) => ({ id: e.data.id, source: e.data.source, target: e.data.target, label: e.data.label, layered: e.data.source !== 'any' })),
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
    const shown = (p.labels.length > LABELS_MAX ? [...p.labels.slice(0, LABELS_MAX - 1), `+${p.labels.length - LABELS_MAX + 1} more`] : p.labels).map(clip);
    const kind = p.kinds.has('event') ? 'event' : p.kinds.has('after') ? 'after' : 'always';
    elements.push({ group: 'edges', data: { id: `t${n++}`, source: p.source, target: p.target, label: shown.join('\n'), all: p.labels.join('\n') }, classes: [kind, p.source === p.target ? 'loop' : ''].join(' ') });
  }
  return { elements };
}

/** A label's line cut to LINE_MAX characters: the guard first, so the event stays whole. */
export function clip(line) {
  if (line.length <= LINE_MAX) return line;
  const guarded = /^(.*?) \[(.*)\]$/.exec(line);
  if (guarded && guarded[1].length + 6 <= LINE_MAX) return `${guarded[1]} [${guarded[2].slice(0, LINE_MAX - guarded[1].length - 4)}…]`;
  return `${line.slice(0, LINE_MAX - 1)}…`;
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
  // Through the slots the layout kept for it (machines.js routeArrows): a bend at each, rounded.
  { selector: 'edge.routed', style: { 'curve-style': 'round-segments', 'edge-distances': 'node-position', 'segment-weights': (e) => e.data('bendWeights'), 'segment-distances': (e) => e.data('bendDistances'), 'segment-radii': 18 } },
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

/**
 * How Cytoscape draws an arrow through `points` (a route of layoutChart):
 * `segment-weights` and `segment-distances` of each point relative to the
 * line from the source's centre `s` to the target's `t` (`edge-distances:
 * node-position`), as space-separated lists.
 */
export function segmentsThrough(points, s, t) {
  const dx = t.x - s.x;
  const dy = t.y - s.y;
  const len2 = dx * dx + dy * dy || 1;
  const len = Math.sqrt(len2);
  const weights = [];
  const distances = [];
  for (const p of points) {
    weights.push(((p.x - s.x) * dx + (p.y - s.y) * dy) / len2);
    // Cytoscape's normal to the line points to (-dy, dx).
    distances.push(((p.x - s.x) * -dy + (p.y - s.y) * dx) / len);
  }
  const fmt = (xs) => xs.map((x) => x.toFixed(3)).join(' ');
  return { weights: fmt(weights), distances: fmt(distances) };
}

/** The point `f` of the way along a polyline (0: its start, 1: its end). */
export function pointAlong(path, f) {
  const lengths = [];
  let total = 0;
  for (let i = 1; i < path.length; i++) {
    const l = Math.hypot(path[i].x - path[i - 1].x, path[i].y - path[i - 1].y);
    lengths.push(l);
    total += l;
  }
  let left = f * total;
  for (let i = 1; i < path.length; i++) {
    const l = lengths[i - 1];
    if (left <= l || i === path.length - 1) {
      const r = l === 0 ? 0 : Math.min(1, left / l);
      return { x: path[i - 1].x + (path[i].x - path[i - 1].x) * r, y: path[i - 1].y + (path[i].y - path[i - 1].y) * r };
    }
    left -= l;
  }
  return { ...path[0] };
}

/** Where along its arrow a label is tried, in turn: the middle first. */
const LABEL_AT = [0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8, 0.14, 0.86];
/** Room kept around a label. */
const LABEL_MARGIN = 3;

/**
 * Where each arrow's label goes so that it covers no state and no label
 * placed before it: each label, those of the shortest arrows first (they
 * have the least room), is tried at points along its arrow, the middle
 * first, then beside the arrow; the first point where it covers nothing
 * wins, or else the one where it covers least (a state counting double).
 * `labels`: {id, w, h, at: {x, y} (its centre as Cytoscape draws it),
 * path: [{x, y}…] (its arrow)}; `obstacles`: boxes {x1, y1, x2, y2} of
 * the states and of labels already placed. Returns id → {dx, dy}, the
 * label's shift (`text-margin-x`, `text-margin-y`).
 */
export function placeLabels(labels, obstacles) {
  const length = (path) => path.slice(1).reduce((sum, p, i) => sum + Math.hypot(p.x - path[i].x, p.y - path[i].y), 0);
  const placed = [];
  const overlap = (a, b) => Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1)) * Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const cost = (box) => obstacles.reduce((sum, o) => sum + 2 * overlap(box, o), 0) + placed.reduce((sum, o) => sum + overlap(box, o), 0);
  const shifts = new Map();
  for (const l of [...labels].sort((a, b) => length(a.path) - length(b.path))) {
    const hw = l.w / 2 + LABEL_MARGIN;
    const hh = l.h / 2 + LABEL_MARGIN;
    const candidates = LABEL_AT.map((f) => pointAlong(l.path, f));
    // Then beside the arrow (above and below it, or left and right of a steep one), near the middle.
    for (const f of LABEL_AT.slice(0, 5)) {
      const p = pointAlong(l.path, f);
      const q = pointAlong(l.path, Math.min(1, f + 0.01));
      const steep = Math.abs(q.y - p.y) > Math.abs(q.x - p.x);
      for (const side of [-1, 1]) candidates.push(steep ? { x: p.x + side * (hw + 2), y: p.y } : { x: p.x, y: p.y + side * (hh + 2) });
    }
    let best = null;
    for (const c of candidates) {
      const box = { x1: c.x - hw, y1: c.y - hh, x2: c.x + hw, y2: c.y + hh };
      const n = cost(box);
      if (best === null || n < best.n) best = { c, box, n };
      if (n === 0) break;
    }
    placed.push(best.box);
    shifts.set(l.id, { dx: best.c.x - l.at.x, dy: best.c.y - l.at.y });
  }
  return shifts;
}
