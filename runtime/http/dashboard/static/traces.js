// The Traces view: a recorded trace file (mangrove start --trace FILE,
// mangrove local --trace DIR) as a sequence diagram, with what `mangrove
// trace check` finds in it marked. The file goes to this node
// (POST /dashboard/trace), which reads it, runs the protocol rules and
// answers the messages and violations; nothing is kept there.

import { badge, getJson, h, shortId, svg } from './util.js';

/** Rows the diagram draws at most (the first messages); the rest are counted. */
const ROWS_MAX = 1500;
const ROW = 16;
const LANE = 150;
const TOP = 46;

export class TracesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.root = document.getElementById('view-traces');
    this.input = h('input', { type: 'file', id: 'trace-file', accept: '.trace,application/octet-stream', onchange: () => this.load() });
    this.summary = h('div', { class: 'trace-summary', id: 'trace-summary' }, h('p', { class: 'dim' }, 'Choose a trace file: the node checks it against the protocol rules and draws its messages.'));
    this.violations = h('ul', { class: 'trace-violations', id: 'trace-violations' });
    this.diagram = h('div', { class: 'trace-diagram scroll-x', id: 'trace-diagram' });
    this.root.replaceChildren(
      h('div', { class: 'panel' }, h('h2', { class: 'panel-title' }, 'Trace'), h('div', { class: 'inline-form' }, this.input), this.summary),
      h('div', { class: 'two-col trace-cols' }, h('div', { class: 'panel' }, h('h2', { class: 'panel-title' }, 'Violations'), this.violations), h('div', { class: 'panel trace-diagram-panel' }, h('h2', { class: 'panel-title' }, 'Messages'), this.diagram)),
    );
  }

  async load() {
    const file = this.input.files?.[0];
    if (!file) return;
    this.root.dataset.state = 'loading';
    this.summary.replaceChildren(h('p', { class: 'dim' }, `Checking ${file.name} (${file.size} bytes)…`));
    try {
      const result = await getJson('/dashboard/trace', { method: 'POST', body: file, headers: { 'Content-Type': 'application/octet-stream' } });
      this.draw(file.name, result);
      this.root.dataset.state = 'loaded';
    } catch (err) {
      this.root.dataset.state = 'failed';
      this.summary.replaceChildren(h('p', { class: 'error' }, `${err.code ?? 'error'}: ${err.message}`));
      this.violations.replaceChildren();
      this.diagram.replaceChildren();
    }
  }

  draw(name, r) {
    this.root.dataset.messages = String(r.total);
    this.root.dataset.violations = String(r.violations.length);
    const origin = r.messages[0]?.t ?? 0;
    const at = (t) => `+${((t - origin) / 1000).toFixed(3)} s`;
    const sendsTotal = r.messages.filter((m) => m.dir === 'send').length;
    this.summary.replaceChildren(
      h('p', {}, h('strong', {}, name), ': ', `${r.total} messages between ${r.nodes.length} nodes; ${r.rules.length} rules checked; `,
        r.violations.length === 0 ? badge('no violation', 'ok') : badge(`${r.violations.length} violation${r.violations.length === 1 ? '' : 's'}`, 'bad')),
      h('p', { class: 'dim small' }, `Each arrow is a message sent, top to bottom in time${r.total > r.messages.length || sendsTotal > ROWS_MAX ? `; the diagram shows the first ${Math.min(sendsTotal, ROWS_MAX)}` : ''}. Click a violation to find it.`),
    );
    const lanes = new Map(r.nodes.map((id, i) => [id, 40 + i * LANE]));
    // Sends only: each is one arrow, from its sender to its receiver (a reply to a client has no lane).
    const sends = r.messages.filter((m) => m.dir === 'send').slice(0, ROWS_MAX);
    const rowOf = (t) => {
      let lo = 0;
      let hi = sends.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (sends[mid].t < t) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    const width = 80 + Math.max(1, r.nodes.length) * LANE;
    const height = TOP + sends.length * ROW + 20;
    const out = svg('svg', { width, height, class: 'sequence', 'data-rows': sends.length });
    for (const [id, x] of lanes) {
      out.append(svg('line', { x1: x, y1: TOP - 8, x2: x, y2: height, class: 'lane' }), svg('text', { x, y: 18, class: 'lane-name', 'text-anchor': 'middle' }, shortId(id)));
    }
    sends.forEach((m, i) => {
      const y = TOP + i * ROW;
      // The lanes named again every so often, for a long diagram scrolled down.
      if (i > 0 && i % 60 === 0) for (const [id, x] of lanes) out.append(svg('text', { x, y: y - 4, class: 'lane-name lane-repeat', 'text-anchor': 'middle' }, shortId(id)));
      const x1 = lanes.get(m.from) ?? lanes.get(m.node);
      const x2 = lanes.get(m.to);
      const title = svg('title', {}, `${at(m.t)} ${m.kind} ${shortId(m.from)} → ${m.to ? shortId(m.to) : '(client)'}`);
      if (x1 === undefined) return;
      if (x2 === undefined || x2 === x1) out.append(svg('g', { class: `msg kind-${m.kind.split('.')[0]}` }, title, svg('circle', { cx: x1, cy: y, r: 3 }), svg('text', { x: x1 + 6, y: y + 4, class: 'msg-label' }, m.kind)));
      else {
        const dir = x2 > x1 ? 1 : -1;
        out.append(svg('g', { class: `msg kind-${m.kind.split('.')[0]}` }, title,
          svg('line', { x1, y1: y, x2: x2 - dir * 4, y2: y, class: 'arrow' }),
          svg('path', { d: `M${x2} ${y} l${-dir * 6} -3 v6 z`, class: 'head' }),
          svg('text', { x: Math.min(x1, x2) + 6, y: y - 3, class: 'msg-label' }, m.kind)));
      }
    });
    const items = r.violations.map((v, k) => {
      const row = rowOf(v.t);
      const x = lanes.get(v.node) ?? 40;
      const y = TOP + row * ROW;
      const mark = svg('g', { class: 'violation-mark', id: `violation-${k}` }, svg('title', {}, `${v.rule}: ${v.detail}`), svg('rect', { x: x - 9, y: y - 9, width: 18, height: 18, rx: 4 }));
      out.append(mark);
      return h('li', { class: 'trace-violation', dataset: { rule: v.rule }, onclick: () => mark.scrollIntoView({ block: 'center', inline: 'center' }) },
        h('div', {}, h('strong', { class: 'mono' }, v.rule), ' ', h('span', { class: 'dim' }, `${shortId(v.node)} at ${at(v.t)}`)),
        h('div', { class: 'small' }, v.detail));
    });
    this.violations.replaceChildren(...(items.length > 0 ? items : [h('li', { class: 'dim' }, 'None: every rule held.')]));
    this.diagram.replaceChildren(out);
  }
}
