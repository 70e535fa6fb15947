// The Machines view (M26): a protocol machine's chart, drawn with
// Cytoscape from its definition (GET /dashboard/charts), with the state of
// each running actor of that machine on a node highlighted and moved as it
// changes. This node's: GET /machines, then its live stream
// (GET /machines/stream?machine=NAME). Any other node's: asked over the bus
// through this node (GET /dashboard/machines?node=ID&after=N, once a feed
// period): its actors, and the transitions since the last answer, replayed
// on the chart as the stream's are. A page never calls another node's HTTP
// port, which may be loopback-only, token-protected, or refuse the origin.

import { CHART_STYLE, drawnChart, placeLabels, segmentsThrough, trigger } from './chart-layout.js';
import { Stream, ago, badge, fill, fmtTime, getJson, h, shortId } from './util.js';

const RECENT_MAX = 14;
const FLASH_MS = 900;
/** After a stream opens, how long its messages count as the replay of what came before. */
const REPLAY_MS = 400;

export class MachinesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.root = document.getElementById('view-machines');
    this.el = {
      list: this.root.querySelector('#machine-list'),
      node: this.root.querySelector('#machine-node'),
      head: this.root.querySelector('#machine-head'),
      notice: this.root.querySelector('#machine-notice'),
      chart: this.root.querySelector('#machine-chart'),
      actors: this.root.querySelector('#machine-actors'),
      recent: this.root.querySelector('#machine-recent'),
      state: this.root.querySelector('#machine-state'),
    };
    this.charts = null;
    this.name = null;
    /** The node whose actors are shown (null: this one). */
    this.nodeId = null;
    this.cy = null;
    /** actor id → {state, since} of the machine shown, on the node shown. */
    this.actors = new Map();
    /** machine name → actors running, on the node shown (the list's counts). */
    this.running = new Map();
    this.recent = [];
    this.stream = null;
    /** The next ask of another node's machines (a timeout), while one is shown. */
    this.pollTimer = null;
    this.visible = false;
    /** Bumped at each connect: answers for an older choice are dropped. */
    this.seq = 0;
    this.replayUntil = 0;
    this.el.node.addEventListener('change', () => {
      this.nodeId = this.el.node.value || null;
      this.forget();
      this.connect();
    });
    window.addEventListener('resize', () => {
      if (this.cy && this.visible) {
        this.cy.resize();
        this.cy.fit(undefined, 24);
      }
    });
  }

  async show(arg) {
    this.visible = true;
    if (!this.charts) await this.loadCharts();
    const name = arg && this.charts?.some((c) => c.machine === arg) ? arg : this.name ?? this.charts?.[0]?.machine;
    if (name && name !== this.name) this.pick(name);
    else if (this.cy) {
      this.cy.resize();
      this.cy.fit(undefined, 24);
      this.connect();
    }
  }

  hide() {
    this.visible = false;
    // A read still on its way must not open a stream once the view is gone.
    this.seq++;
    this.disconnect();
  }

  onCluster(msg) {
    // The node list follows the cluster; the choice stays while its node does.
    const prev = this.el.node.value;
    const options = msg.nodes.map((v) => h('option', { value: v.id === msg.self ? '' : v.id },
      `${shortId(v.id)}${v.id === msg.self ? ' (this node)' : ''}${v.status ? '' : ' · unreachable'}`));
    const same = this.el.node.options.length === options.length && [...this.el.node.options].every((o, i) => o.textContent === options[i].textContent);
    if (!same) {
      fill(this.el.node, ...options);
      this.el.node.value = [...this.el.node.options].some((o) => o.value === prev) ? prev : '';
      // The node shown left the cluster's list: back to this one.
      if (this.el.node.value !== prev && this.nodeId !== null) {
        this.nodeId = null;
        this.forget();
        this.connect();
      }
    }
  }

  async loadCharts() {
    fill(this.el.list, h('li', { class: 'dim' }, 'loading…'));
    try {
      this.charts = (await getJson('/dashboard/charts')).machines;
    } catch (err) {
      fill(this.el.list, h('li', { class: 'text-bad' }, `${err.code ?? 'error'}: ${err.message}`));
      return;
    }
    this.renderList();
  }

  renderList() {
    fill(this.el.list, ...this.charts.map((c) => h('li', {},
      h('button', { type: 'button', class: ['pick', c.machine === this.name ? 'picked' : ''], dataset: { pickMachine: c.machine }, title: c.summary, onclick: () => (location.hash = `#machines/${c.machine}`) },
        h('span', { class: 'pick-name' }, c.machine),
        this.running.get(c.machine) ? badge(`${this.running.get(c.machine)} running`, 'ok') : null,
        h('div', { class: 'dim small' }, `${c.spec} · ${c.states.length} states`)))));
  }

  pick(name) {
    this.name = name;
    for (const b of this.el.list.querySelectorAll('[data-pick-machine]')) b.classList.toggle('picked', b.dataset.pickMachine === name);
    const chart = this.charts.find((c) => c.machine === name);
    fill(this.el.head,
      h('h2', {}, chart.machine, ' ', h('span', { class: 'dim small' }, `${chart.type} · ${chart.spec}`)),
      h('p', { class: 'dim' }, chart.summary),
      h('p', { class: 'legend small' }, h('span', { class: 'lg lg-active' }), ' current state of a running actor  ', h('span', { class: 'lg lg-event' }), ' on an event  ',
        h('span', { class: 'lg lg-after' }), ' after a delay  ', h('span', { class: 'lg lg-always' }), ' eventless  ', h('span', { class: 'lg lg-init' }), ' initial'));
    this.forget();
    this.draw(chart);
    this.connect();
  }

  /** What was shown of the previous machine or node. */
  forget() {
    this.actors.clear();
    this.recent = [];
    delete this.el.chart.dataset.node;
    this.renderRecent();
    this.highlight();
  }

  draw(chart) {
    const box = this.el.chart;
    this.cy?.destroy();
    this.cy = null;
    box.dataset.machine = chart.machine;
    box.dataset.rendered = 'false';
    box.dataset.nodes = '0';
    fill(box);
    fill(this.el.state, h('p', { class: 'dim' }, 'Click a state for its transitions.'));
    if (typeof window.cytoscape !== 'function') {
      fill(box, h('p', { class: 'text-bad' }, 'Cytoscape did not load (/dashboard/lib/cytoscape.min.js).'));
      return;
    }
    const placed = drawnChart(chart);
    const elements = placed.elements;
    // As tall as the chart needs at the width there is, within reason.
    const scale = Math.min(1.3, (box.clientWidth - 48) / placed.width);
    box.style.height = `${Math.round(Math.min(760, Math.max(280, placed.height * scale + 48)))}px`;
    const cy = window.cytoscape({ container: box, elements, style: CHART_STYLE, minZoom: 0.2, maxZoom: 3, boxSelectionEnabled: false });
    this.cy = cy;
    const layout = cy.layout({ name: 'preset', positions: (n) => placed.positions.get(n.id()), fit: false, animate: false });
    layout.one('layoutstop', () => {
      if (this.cy !== cy) return;
      routeArrows(cy, placed.routes);
      placeArrowLabels(cy);
      cy.fit(undefined, 24);
      if (cy.zoom() > 1.3) {
        cy.zoom(1.3);
        cy.center();
      }
      box.dataset.nodes = String(cy.nodes('.state').length);
      box.dataset.rendered = 'true';
      this.highlight();
    });
    layout.run();
    this.chart = chart;
    this.tapped = false;
    cy.on('tap', 'node.state', (e) => {
      this.tapped = true;
      this.showState(chart, e.target.data('path'));
    });
    // An arrow's whole label (a long one is cut on the chart, and past three triggers counted), as the chart's tooltip.
    cy.on('mouseover', 'edge', (e) => {
      const all = e.target.data('all');
      if (all) box.title = `${e.target.source().data('label')} → ${e.target.target().data('label')}\n${all}`;
    });
    cy.on('mouseout', 'edge', () => box.removeAttribute('title'));
  }

  /** Reads the actors of the node shown, then follows its transitions of the machine shown. */
  connect() {
    this.disconnect();
    if (!this.name || !this.visible) return;
    const name = this.name;
    fill(this.el.notice);
    const seq = ++this.seq;
    if (this.nodeId !== null) return this.poll(this.nodeId, name, seq);
    // The newest few first, so the list of transitions does not start empty.
    this.stream = new Stream(`/machines/stream?machine=${encodeURIComponent(name)}&replay=${RECENT_MAX}`, {
      onMessage: (r) => this.onTransition(r),
      // (Re)opened: what happened while it was closed is read again.
      onState: (up) => {
        if (!up) return this.note('The machine stream is closed; it reconnects by itself.', 'warn');
        this.replayUntil = performance.now() + REPLAY_MS;
        void this.snapshot(name, seq);
      },
    });
  }

  disconnect() {
    this.stream?.close();
    this.stream = null;
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  /** This node's running actors, from its /machines. */
  async snapshot(name, seq) {
    let body;
    try {
      body = await getJson('/machines');
    } catch (err) {
      if (seq === this.seq) this.note(`Cannot read /machines: ${err.code ?? 'error'}: ${err.message}`, 'bad');
      return;
    }
    if (seq !== this.seq || this.name !== name) return;
    fill(this.el.notice);
    this.showActors(body, name);
  }

  /**
   * Another node's machines, asked over the bus through this node once a
   * feed period (a second at least), each ask resuming after the newest
   * transition the last answer had; stops when the view, machine or node
   * changes (`seq`).
   */
  poll(id, name, seq) {
    const periodMs = Math.max(1000, Number(this.ctx.periodMs) || 1000);
    let after = null;
    const tick = async () => {
      try {
        const body = await getJson(`/dashboard/machines?node=${encodeURIComponent(id)}${after === null ? '' : `&after=${after}`}`);
        if (seq !== this.seq) return;
        // The first answer, or one from a node restarted since (its numbers start again): history, not news.
        const history = after === null || body.last < after;
        after = body.last;
        for (const r of body.records.filter((x) => x.machine === name).slice(-RECENT_MAX)) this.remember(r, !history);
        this.showActors(body, name);
        const behind = !history && body.missed > 0 ? ` (${body.missed} transitions came faster than this view asks; the newest are shown)` : '';
        fill(this.el.notice, h('p', { class: 'dim small', dataset: { source: 'bus' } },
          `Node ${shortId(id)}'s machines, asked over the bus through this node every ${(periodMs / 1000).toFixed(periodMs % 1000 ? 1 : 0)} s${behind}.`));
      } catch (err) {
        if (seq !== this.seq) return;
        this.note(`Cannot read node ${shortId(id)}'s machines: ${err.code ?? 'error'}: ${err.message}`, 'bad');
      }
      if (seq === this.seq) this.pollTimer = setTimeout(tick, periodMs);
    };
    void tick();
  }

  /** The running actors of a node's answer: the list's counts, and the chart's lit states for the machine shown. */
  showActors(body, name) {
    this.running = new Map();
    for (const a of body.actors) this.running.set(a.machine, (this.running.get(a.machine) ?? 0) + 1);
    this.renderList();
    this.actors = new Map(body.actors.filter((a) => a.machine === name).map((a) => [a.actor, { state: a.state, since: a.since }]));
    this.now = body.t;
    // Whose machines these are, for whoever reads the page without seeing the canvas.
    this.el.chart.dataset.node = body.node;
    this.highlight();
  }

  note(content, kind) {
    fill(this.el.notice, h('div', { class: ['notice', `notice-${kind}`] }, content));
  }

  onTransition(r) {
    if (r.machine !== this.name) return;
    if (r.to === null) this.actors.delete(r.actor);
    else this.actors.set(r.actor, { state: r.to, since: r.t });
    this.now = r.t;
    this.highlight();
    // What the node replays as the stream opens is history: only what happens now is animated.
    this.remember(r, performance.now() > this.replayUntil);
  }

  /** A transition into the list, and onto the chart as a flash when it is news. */
  remember(r, animate) {
    this.recent.unshift(r);
    this.recent.length = Math.min(this.recent.length, RECENT_MAX);
    this.renderRecent();
    if (animate) this.flash(r.from, r.to);
  }

  highlight() {
    const counts = new Map();
    for (const a of this.actors.values()) for (const leaf of leaves(a.state)) counts.set(leaf, (counts.get(leaf) ?? 0) + 1);
    if (this.cy) {
      this.cy.batch(() => {
        this.cy.nodes().removeClass('active').data('count', 0);
        for (const [leaf, n] of counts) {
          for (const path of withAncestors(leaf)) this.cy.getElementById(`s:${path}`).addClass('active');
          this.cy.getElementById(`s:${leaf}`).data('count', n);
        }
      });
    }
    // Until a state is clicked, the panel tells of the state the first actor is in.
    const first = [...counts.keys()][0];
    if (this.cy && !this.tapped && first) this.showState(this.chart, first);
    // What is lit, for whoever reads the page without seeing the canvas (a test, a screen reader).
    this.el.chart.dataset.active = [...counts.keys()].sort().join(',');
    this.el.chart.setAttribute('aria-label', counts.size ? `current states: ${[...counts.keys()].join(', ')}` : 'no actor running');
    this.renderActors();
  }

  flash(from, to) {
    if (!this.cy || !to) return;
    const targets = new Set(leaves(to).flatMap(withAncestors).map((p) => `s:${p}`));
    const sources = new Set(from ? leaves(from).flatMap(withAncestors).map((p) => `s:${p}`) : []);
    for (const leaf of leaves(to)) this.cy.getElementById(`s:${leaf}`).flashClass('flash', FLASH_MS);
    this.cy.edges().filter((e) => sources.has(e.data('source')) && targets.has(e.data('target'))).flashClass('flash', FLASH_MS);
  }

  renderActors() {
    const now = this.now ?? Date.now();
    const rows = [...this.actors.entries()].map(([actor, a]) => h('tr', { dataset: { actor } },
      h('td', { class: 'mono' }, actor), h('td', { class: 'mono' }, a.state.split(',').join(', ')), h('td', { class: 'dim' }, ago(a.since, now))));
    fill(this.el.actors, rows.length
      ? h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, h('th', {}, 'actor'), h('th', {}, 'state'), h('th', {}, 'since'))), h('tbody', {}, rows))
      : h('p', { class: 'dim' }, 'No actor of this machine runs on this node now.'));
  }

  renderRecent() {
    fill(this.el.recent, this.recent.length
      ? h('ul', { class: 'recent' }, this.recent.map((r) => h('li', {}, h('time', {}, fmtTime(r.t)), ' ', h('span', { class: 'mono' }, r.actor), ' ',
        h('span', { class: 'mono' }, r.from?.split(',').join(', ') ?? '(start)'), ' → ', h('span', { class: 'mono' }, r.to?.split(',').join(', ') ?? '(stop)'), ' ', h('span', { class: 'dim' }, r.event))))
      : h('p', { class: 'dim' }, 'No transition of this machine recorded on this node.'));
  }

  showState(chart, path) {
    const s = chart.states.find((x) => x.id === path);
    if (!s) return;
    const out = chart.transitions.filter((t) => t.source === path);
    const into = chart.transitions.filter((t) => t.target?.includes(path));
    const row = (t, dir) => h('li', {}, h('span', { class: 'mono' }, trigger(t)), ' ', dir === 'out' ? `→ ${t.target ? t.target.join(', ') : '(stays)'}` : `← ${t.source || 'any state'}`,
      t.actions.length ? h('span', { class: 'dim' }, ` / ${t.actions.join(', ')}`) : null);
    fill(this.el.state,
      h('h3', { class: 'mono' }, s.id, ' ', h('span', { class: 'dim small' }, s.type), this.tapped ? null : h('span', { class: 'dim small' }, ' · an actor is here; click a state for another')),
      s.entry.length ? h('p', { class: 'small' }, 'entry: ', h('span', { class: 'mono' }, s.entry.join(', '))) : null,
      s.exit.length ? h('p', { class: 'small' }, 'exit: ', h('span', { class: 'mono' }, s.exit.join(', '))) : null,
      s.invoke.length ? h('p', { class: 'small' }, 'invokes: ', h('span', { class: 'mono' }, s.invoke.join(', '))) : null,
      h('p', { class: 'small dim' }, 'leaves on'), h('ul', { class: 'small' }, out.length ? out.map((t) => row(t, 'out')) : h('li', { class: 'dim' }, 'nothing')),
      h('p', { class: 'small dim' }, 'entered on'), h('ul', { class: 'small' }, into.length ? into.map((t) => row(t, 'in')) : h('li', { class: 'dim' }, 'nothing')));
  }
}

/** Bends each arrow that skips layers through the slots the layout kept for it (chart-layout.js). */
function routeArrows(cy, routes) {
  cy.batch(() => {
    for (const [id, points] of routes) {
      const e = cy.getElementById(id);
      if (e.empty() || e.source().same(e.target())) continue;
      const { weights, distances } = segmentsThrough(points, e.source().position(), e.target().position());
      e.data({ bendWeights: weights, bendDistances: distances }).addClass('routed');
    }
  });
}

/** Slides each arrow's label along its arrow to where it covers no state and no other label (chart-layout.js `placeLabels`). */
function placeArrowLabels(cy) {
  const box = (bb) => ({ x1: bb.x1, y1: bb.y1, x2: bb.x2, y2: bb.y2 });
  const labelOnly = { includeNodes: false, includeEdges: false, includeLabels: true, includeMainLabels: true, includeSourceLabels: false, includeTargetLabels: false, includeOverlays: false, includeUnderlays: false };
  const obstacles = cy.nodes().filter((n) => !n.isParent()).map((n) => box(n.boundingBox({ includeLabels: false, includeOverlays: false, includeUnderlays: false })));
  // A compound state's name, above its box; and the labels of loops, which stay where Cytoscape puts them.
  for (const n of cy.nodes(':parent')) obstacles.push(box(n.boundingBox(labelOnly)));
  for (const e of cy.edges('.loop')) if (e.data('label')) obstacles.push(box(e.boundingBox(labelOnly)));
  const labels = cy.edges().filter((e) => e.data('label') && !e.hasClass('loop')).map((e) => {
    const bb = e.boundingBox(labelOnly);
    return { id: e.id(), w: bb.w, h: bb.h, at: { x: (bb.x1 + bb.x2) / 2, y: (bb.y1 + bb.y2) / 2 }, path: arrowPath(e) };
  });
  const shifts = placeLabels(labels, obstacles);
  cy.batch(() => {
    for (const [id, { dx, dy }] of shifts) cy.getElementById(id).style({ 'text-margin-x': dx, 'text-margin-y': dy });
  });
}

/** An arrow as Cytoscape draws it, as a polyline: straight, bent through its route, or a curve (sampled). */
function arrowPath(e) {
  const s = e.sourceEndpoint();
  const t = e.targetEndpoint();
  if (e.hasClass('routed')) return [s, ...(e.segmentPoints() ?? []), t];
  const c = e.controlPoints();
  if (!c?.length) return [s, t];
  if (c.length > 1) return [s, ...c, t];
  const at = (u) => ({ x: (1 - u) ** 2 * s.x + 2 * (1 - u) * u * c[0].x + u ** 2 * t.x, y: (1 - u) ** 2 * s.y + 2 * (1 - u) * u * c[0].y + u ** 2 * t.y });
  return Array.from({ length: 17 }, (_, i) => at(i / 16));
}

/** `node.normal,coordinator.quiet` (a parallel machine's state) → its leaf paths. */
function leaves(state) {
  return typeof state === 'string' ? state.split(',').filter(Boolean) : [];
}

/** `a.b.c` → a, a.b, a.b.c. */
function withAncestors(path) {
  const parts = path.split('.');
  return parts.map((_, i) => parts.slice(0, i + 1).join('.'));
}
