/**
 * The Machines view's chart layout (runtime/http/dashboard/static/
 * chart-layout.js), its pure parts without a browser: an arrow that skips
 * a layer is routed through a slot of its own, clear of the state in that
 * layer; the states of a layer are ordered to cross few arrows, and two
 * states joined within a layer end up side by side; a label is slid along
 * its arrow off states and other labels; a route becomes Cytoscape's
 * segment weights and distances; long label lines are cut with the event
 * kept whole. The pictures themselves are spec/e2e's.
 */
import { expect } from 'chai';

interface Point {
  x: number;
  y: number;
}
interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}
interface LayoutInput {
  ids: string[];
  parentOf: Map<string, string | null>;
  labelOf: Map<string, string>;
  edges: { id: string; source: string; target: string; label?: string; layered?: boolean }[];
  parallel: Set<string | null>;
  pseudo: Set<string>;
}
/** What the browser module exports (it is plain JavaScript, served as is: no types to import). */
interface ChartLayout {
  layoutChart(input: LayoutInput): { positions: Map<string, Point>; routes: Map<string, Point[]>; width: number; height: number };
  placeLabels(labels: { id: string; w: number; h: number; at: Point; path: Point[] }[], obstacles: Box[]): Map<string, { dx: number; dy: number }>;
  segmentsThrough(points: Point[], s: Point, t: Point): { weights: string; distances: string };
  pointAlong(path: Point[], f: number): Point;
  clip(line: string): string;
}

const MODULE: string = '../../../../runtime/http/dashboard/static/chart-layout.js';
/** A state's box as layoutChart sizes it: its name's width (6 px a character here) and padding, 34 px high. */
const NODE_H = 34;

/** A flat chart (no compound states): an initial dot and the states named, arrows as [source, target, label?]. */
function flat(states: string[], arrows: [string, string, string?][]): LayoutInput {
  const ids = ['i:', ...states];
  return {
    ids,
    parentOf: new Map(ids.map((id) => [id, null])),
    labelOf: new Map(ids.map((id) => [id, id === 'i:' ? '' : id])),
    edges: [{ id: 'ei:', source: 'i:', target: states[0] }, ...arrows.map(([source, target, label], n) => ({ id: `t${n}`, source, target, label }))],
    parallel: new Set(),
    pseudo: new Set(['i:']),
  };
}

describe('runtime/http/dashboard/static/chart-layout', () => {
  let layout: ChartLayout;
  let hadDocument: boolean;

  before(async () => {
    // labelWidth measures names on a canvas: a stand-in, 6 px a character.
    hadDocument = 'document' in globalThis;
    if (!hadDocument) {
      (globalThis as Record<string, unknown>).document = {
        createElement: () => ({ getContext: () => ({ font: '', measureText: (text: string) => ({ width: text.length * 6 }) }) }),
      };
    }
    layout = (await import(MODULE)) as ChartLayout;
  });

  after(() => {
    if (!hadDocument) delete (globalThis as Record<string, unknown>).document;
  });

  it('routes an arrow that skips a layer through a slot clear of the state in that layer', () => {
    const { positions, routes } = layout.layoutChart(flat(['a', 'b', 'c'], [['a', 'b'], ['b', 'c'], ['c', 'a', 'BACK']]));
    const [a, b, c] = ['a', 'b', 'c'].map((k) => positions.get(k)!);
    // Left to right, one layer each.
    expect(a.x).to.be.below(b.x);
    expect(b.x).to.be.below(c.x);
    const route = routes.get('t2')!;
    expect(route, 'c → a bends once, in b’s layer').to.have.length(1);
    expect(route[0].x).to.be.closeTo(b.x, 1);
    expect(Math.abs(route[0].y - b.y), 'the slot is beside b, not on it').to.be.above(NODE_H / 2);
    expect(routes.has('t0') || routes.has('t1'), 'arrows between neighbouring layers go straight').to.equal(false);
    expect(positions.has(`slot:t2:1`), 'slots are no states').to.equal(false);
  });

  it('orders a layer to uncross the arrows from the one before it', () => {
    // Found in this order, q (x's) would stand above p (y's) only if the order were kept as listed: p, q.
    const { positions } = layout.layoutChart(flat(['s', 'x', 'y', 'p', 'q'], [['s', 'x'], ['s', 'y'], ['x', 'q'], ['y', 'p']]));
    const y = (k: string) => positions.get(k)!.y;
    expect(Math.sign(y('x') - y('y')), 'x → q and y → p do not cross').to.equal(Math.sign(y('q') - y('p')));
  });

  it('puts two states joined by an arrow within a layer side by side, no state between them', () => {
    const { positions } = layout.layoutChart(flat(['s', 'a', 'm', 'b'], [['s', 'a'], ['s', 'm'], ['s', 'b'], ['a', 'b', 'ACROSS']]));
    const [a, m, b] = ['a', 'm', 'b'].map((k) => positions.get(k)!.y);
    expect(a === b, 'one layer').to.equal(false);
    expect(Math.min(a, b) < m && m < Math.max(a, b), `m (${m}) is not between a (${a}) and b (${b})`).to.equal(false);
  });

  it('slides labels that would cover each other or a state along their arrows', () => {
    // Two arrows crossing at (100, 100), each label 80 × 14 drawn at the crossing; a state sits on a third arrow's middle.
    const labels = [
      { id: 'one', w: 80, h: 14, at: { x: 100, y: 100 }, path: [{ x: 0, y: 0 }, { x: 200, y: 200 }] },
      { id: 'two', w: 80, h: 14, at: { x: 100, y: 100 }, path: [{ x: 0, y: 200 }, { x: 200, y: 0 }] },
      { id: 'three', w: 60, h: 14, at: { x: 100, y: 400 }, path: [{ x: 0, y: 400 }, { x: 200, y: 400 }] },
    ];
    const state = { x1: 80, y1: 385, x2: 120, y2: 415 };
    const shifts = layout.placeLabels(labels, [state]);
    const boxOf = (id: string): Box => {
      const l = labels.find((x) => x.id === id)!;
      const { dx, dy } = shifts.get(id)!;
      return { x1: l.at.x + dx - l.w / 2, y1: l.at.y + dy - l.h / 2, x2: l.at.x + dx + l.w / 2, y2: l.at.y + dy + l.h / 2 };
    };
    const overlaps = (p: Box, q: Box) => p.x1 < q.x2 && q.x1 < p.x2 && p.y1 < q.y2 && q.y1 < p.y2;
    expect(overlaps(boxOf('one'), boxOf('two')), 'the crossing labels apart').to.equal(false);
    expect(overlaps(boxOf('three'), state), 'the label off the state').to.equal(false);
    // Each stays on its own arrow: its centre on the line.
    for (const id of ['one', 'two', 'three']) {
      const l = labels.find((x) => x.id === id)!;
      const [p, q] = l.path;
      const c = { x: l.at.x + shifts.get(id)!.dx, y: l.at.y + shifts.get(id)!.dy };
      const cross = (q.x - p.x) * (c.y - p.y) - (q.y - p.y) * (c.x - p.x);
      expect(Math.abs(cross) / Math.hypot(q.x - p.x, q.y - p.y), `${id} on its arrow`).to.be.below(1);
    }
    // A label with room where Cytoscape puts it stays there.
    const alone = layout.placeLabels([labels[0]], []);
    expect(alone.get('one')).to.deep.equal({ dx: 0, dy: 0 });
  });

  it('turns a route into segment weights and distances that land on its points', () => {
    const s = { x: 10, y: 20 };
    const t = { x: 210, y: 120 };
    const points = [{ x: 60, y: 140 }, { x: 150, y: -30 }];
    const { weights, distances } = layout.segmentsThrough(points, s, t);
    const w = weights.split(' ').map(Number);
    const d = distances.split(' ').map(Number);
    const len = Math.hypot(t.x - s.x, t.y - s.y);
    const normal = { x: -(t.y - s.y) / len, y: (t.x - s.x) / len };
    points.forEach((p, i) => {
      // As Cytoscape computes a segment point (edge-distances: node-position).
      expect(s.x + w[i] * (t.x - s.x) + d[i] * normal.x).to.be.closeTo(p.x, 0.01);
      expect(s.y + w[i] * (t.y - s.y) + d[i] * normal.y).to.be.closeTo(p.y, 0.01);
    });
  });

  it('finds the point a fraction of the way along a polyline', () => {
    const path = [{ x: 0, y: 0 }, { x: 100, y: 0 }, { x: 100, y: 100 }];
    expect(layout.pointAlong(path, 0)).to.deep.equal({ x: 0, y: 0 });
    expect(layout.pointAlong(path, 0.25)).to.deep.equal({ x: 50, y: 0 });
    expect(layout.pointAlong(path, 0.75)).to.deep.equal({ x: 100, y: 50 });
    expect(layout.pointAlong(path, 1)).to.deep.equal({ x: 100, y: 100 });
  });

  it('cuts a long label line in its guard first, keeping the event whole', () => {
    expect(layout.clip('PAGE_READ [isRelease]')).to.equal('PAGE_READ [isRelease]');
    const cut = layout.clip('PAGE_UNLOCKED [and(hasConflict, waits, somethingElse)]');
    expect(cut).to.match(/^PAGE_UNLOCKED \[and\(hasConflict.*…\]$/);
    expect(cut.length).to.be.at.most(34);
    const bare = layout.clip('A_VERY_LONG_EVENT_NAME_WITH_NO_GUARD_AT_ALL_IN_IT');
    expect(bare).to.have.length(34);
    expect(bare.endsWith('…')).to.equal(true);
  });
});
