// The Cluster view: every node as it answered for itself, liveness as each
// node sees the others, the rebuild (M14) when one runs, and a log of what
// changed. The feed comes once a period (a second or more) and a rebuild
// takes milliseconds, so the rebuild's phases are also read as they happen
// from this node's own machines (GET /machines/stream?machine=…): its node-state
// machine (every live node takes part in every rebuild) and its
// rebuild-coordinator (when it is the one coordinating).

import { Stream, ago, badge, fill, fmtTime, h, shortId } from './util.js';

const LOG_MAX = 200;
/** How each recovery state (M6) is coloured. */
const STATE_KIND = { normal: 'ok', notified: 'warn', quiescent: 'warn', rebuilding: 'info' };

/** A round is `COORDINATOR-ID/N`: the coordinator's short id keeps it readable. */
function roundLabel(round) {
  const [id, n] = String(round).split('/');
  return n === undefined ? String(round) : `${shortId(id)}/${n}`;
}

export class ClusterView {
  constructor(ctx) {
    this.ctx = ctx;
    /** Every node seen since the page opened, so one that leaves the node database still shows. */
    this.known = new Map();
    /** Facts of the previous message, to log what changed. */
    this.prev = null;
    this.log = [];
    /** The rebuild as this page has seen it: the live phase, and the phases of the latest one. */
    this.rebuild = { live: null, selfState: 'normal', trail: [], startedT: null, endedT: null };
    this.root = document.getElementById('view-cluster');
    this.el = {
      tiles: this.root.querySelector('#cluster-tiles'),
      cards: this.root.querySelector('#node-cards'),
      matrix: this.root.querySelector('#liveness'),
      rebuild: this.root.querySelector('#rebuild-panel'),
      log: this.root.querySelector('#event-log'),
    };
    this.renderRebuild();
  }

  /**
   * The transitions of this node's recovery machines, for the rebuild's
   * phases: one stream a machine, as all machines at once would carry every
   * page's too (many, under load) for two that change only in a rebuild.
   */
  watchTransitions() {
    this.transitions = ['node-state', 'rebuild-coordinator'].map((m) => new Stream(`/machines/stream?machine=${m}`, { onMessage: (r) => this.onTransition(r) }));
  }

  onCluster(msg) {
    const facts = this.factsOf(msg);
    if (this.prev) this.logChanges(this.prev, facts, msg);
    else this.addLog(`watching the cluster from node ${shortId(msg.self)} (${facts.alive.size} nodes)`, 'info');
    this.prev = facts;
    this.renderTiles(msg, facts);
    this.renderCards(msg, facts);
    this.renderMatrix(msg);
    this.renderRebuild();
  }

  /** What the log compares from one message to the next. */
  factsOf(msg) {
    const self = this.ctx.statusOf(msg.self);
    const seen = new Map((self?.nodes ?? []).map((n) => [n.id, n]));
    for (const v of msg.nodes) this.known.set(v.id, { endpoint: v.endpoint, removed: false });
    for (const [id, k] of this.known) if (!msg.nodes.some((v) => v.id === id)) k.removed = true;
    const alive = new Map();
    const quorum = new Map();
    const states = new Map();
    for (const [id] of this.known) {
      const view = msg.nodes.find((v) => v.id === id);
      const st = view?.status ?? null;
      alive.set(id, Boolean(st) && (id === msg.self || seen.get(id)?.alive === true));
      quorum.set(id, st ? st.quorum : null);
      states.set(id, st?.state ?? seen.get(id)?.state ?? 'unknown');
    }
    const coordinating = msg.nodes.filter((v) => v.status?.recovery?.coordinating).map((v) => ({ id: v.id, ...v.status.recovery.coordinating }));
    return { alive, quorum, states, pan: self?.pan ?? null, version: self?.version ?? null, completed: self?.recovery?.completed ?? 0, round: self?.recovery?.round ?? null, coordinating };
  }

  logChanges(a, b, msg) {
    for (const [id, alive] of b.alive) {
      const was = a.alive.get(id);
      const view = msg.nodes.find((v) => v.id === id);
      if (was === true && !alive) this.addLog(`node ${shortId(id)} failed${view?.error ? ` (${view.error})` : this.known.get(id)?.removed ? ' (left the node database)' : ''}`, 'bad');
      if (was === false && alive) this.addLog(`node ${shortId(id)} back`, 'ok');
      if (was === undefined && alive) this.addLog(`node ${shortId(id)} joined`, 'ok');
    }
    for (const [id, q] of b.quorum) {
      const was = a.quorum.get(id);
      if (was === true && q === false) this.addLog(`quorum lost on node ${shortId(id)}`, 'bad');
      if (was === false && q === true) this.addLog(`quorum regained on node ${shortId(id)}`, 'ok');
    }
    if (a.pan !== b.pan) this.addLog(b.pan ? `PAN is now node ${shortId(b.pan)}` : 'no PAN', b.pan ? 'info' : 'bad');
    if (a.version !== null && b.version !== null && b.version !== a.version) this.addLog(`node database version ${b.version}`, 'info');
    // This node's own coordinating is read as it happens from its machines, while that stream is open.
    const live = this.transitions?.[1]?.es?.readyState === EventSource.OPEN;
    for (const c of b.coordinating) if (!(live && c.id === msg.self)) this.seePhase(c.phase, `coordinator ${shortId(c.id)}, round ${roundLabel(c.round)}`, msg.t);
    if (b.completed !== a.completed && b.round) this.addLog(`rebuild round ${roundLabel(b.round)} finished on node ${shortId(msg.self)}`, 'ok');
  }

  /** One record of GET /machines/stream: {t, node, machine, actor, from, to, event}. */
  onTransition(r) {
    if (r.machine === 'rebuild-coordinator') {
      const phase = typeof r.to === 'string' && r.to.startsWith('running.') ? r.to.split('.')[1] : null;
      if (phase) {
        this.rebuild.live = phase;
        this.seePhase(phase, 'coordinated by this node', r.t);
      } else if (r.to === 'idle' && typeof r.from === 'string' && r.from.startsWith('running')) {
        this.rebuild.live = null;
        this.seePhase('done', 'coordinated by this node', r.t);
      }
    } else if (r.machine === 'node-state' && typeof r.to === 'string') {
      this.rebuild.selfState = r.to;
      if (r.to !== 'normal') this.seePhase(r.to, "this node's state", r.t);
      else if (r.from && r.from !== 'normal') this.seePhase('resumed', "this node's state", r.t);
    } else return;
    this.renderRebuild();
  }

  /** A rebuild phase seen, from either source: logged once per rebuild, and added to the panel's trail. */
  seePhase(phase, where, t) {
    const rb = this.rebuild;
    const closing = phase === 'done' || phase === 'resumed';
    // A phase after the last rebuild ended (or the first one seen) starts the trail of a new one.
    if ((rb.endedT !== null || rb.startedT === null) && !closing) {
      rb.trail = [];
      rb.startedT = t;
      rb.endedT = null;
    }
    const key = `${phase}|${where}`;
    if (!rb.trail.some((p) => p.key === key)) {
      rb.trail.push({ key, phase, where, t });
      this.addLog(`rebuild phase: ${phase} (${where})`, closing ? 'ok' : 'warn');
    }
    // Over once this node is back to normal and coordinates nothing: the coordinator's last word can come before a participant's.
    if (rb.endedT === null && rb.live === null && rb.selfState === 'normal') rb.endedT = t;
  }

  addLog(text, kind) {
    this.log.unshift({ t: Date.now(), text, kind });
    this.log.length = Math.min(this.log.length, LOG_MAX);
    fill(this.el.log, ...this.log.map((e) => h('li', { class: `log-${e.kind}` }, h('time', {}, fmtTime(e.t)), ' ', h('span', {}, e.text))));
  }

  renderTiles(msg, facts) {
    const self = this.ctx.statusOf(msg.self);
    const total = facts.alive.size;
    const up = [...facts.alive.values()].filter(Boolean).length;
    const quorate = [...facts.quorum.values()].filter((q) => q === true).length;
    const tile = (label, value, kind, title) => h('div', { class: ['tile', kind ? `tile-${kind}` : ''], title }, h('div', { class: 'tile-value' }, value), h('div', { class: 'tile-label' }, label));
    fill(this.el.tiles,
      tile('nodes alive', `${up} / ${total}`, up === total ? 'ok' : 'bad', 'answered their own status and this node sees them alive'),
      tile('quorate nodes', `${quorate} / ${total}`, quorate === total ? 'ok' : quorate > 0 ? 'warn' : 'bad'),
      tile('PAN', self?.pan ? shortId(self.pan) : 'none', self?.pan ? '' : 'bad', self?.pan ?? 'no primary anchor node'),
      tile('network', self?.recovery?.network ?? '—', STATE_KIND[self?.recovery?.network] ?? ''),
      tile('node database', self ? `v${self.version}` : '—', ''),
      tile('last rebuild round', self?.recovery?.round ? roundLabel(self.recovery.round) : 'none', '', self?.recovery?.round ?? 'no rebuild since this node started'),
    );
  }

  renderCards(msg, facts) {
    const self = this.ctx.statusOf(msg.self);
    const seen = new Map((self?.nodes ?? []).map((n) => [n.id, n]));
    const cards = [...this.known.keys()].map((id) => {
      const view = msg.nodes.find((v) => v.id === id) ?? null;
      const st = view?.status ?? null;
      const alive = facts.alive.get(id);
      const state = facts.states.get(id);
      const own = st?.nodes?.find((n) => n.id === id) ?? seen.get(id);
      const role = own?.role ?? 'member';
      const isPan = self?.pan === id;
      const monitors = new Set([...(self?.monitors ?? []), ...(st?.monitors ?? [])]);
      const badges = [
        badge(role, role === 'monitor' ? 'info' : '', role === 'monitor' ? 'a heartbeat monitor' : 'a member'),
        (st?.anchor ?? own?.anchor) ? badge('anchor', 'anchor', `an anchor node (${own?.votes ?? 1} vote)`) : null,
        isPan ? badge('PAN', 'pan', 'the primary anchor node') : null,
        monitors.has(id) && role !== 'monitor' ? badge('monitor', 'info') : null,
        id === msg.self ? badge('this node', 'self', 'the node serving this page') : null,
      ];
      const row = (k, v, cls) => [h('dt', {}, k), h('dd', { class: cls }, v)];
      const port = st?.http;
      const link = port && id !== msg.self ? h('a', { href: `http://127.0.0.1:${port}/`, title: "open that node's dashboard" }, String(port)) : port ? String(port) : '—';
      return h('article', { class: ['node-card', alive ? 'alive' : 'dead'], dataset: { node: id, alive: String(alive), state } },
        h('header', {},
          h('div', { class: 'node-title' },
            h('span', { class: ['dot', alive ? 'dot-ok' : 'dot-bad'] }),
            h('span', { class: 'mono node-name', title: id }, shortId(id)),
            h('span', { class: 'dim', title: 'short id: group × 64 + slot' }, `#${own?.shortId ?? '?'}`),
            h('span', { class: ['node-verdict', alive ? 'text-ok' : 'text-bad'] }, alive ? 'alive' : 'failed')),
          h('div', { class: 'badges' }, badges)),
        h('dl', {},
          row('endpoint', view?.endpoint ?? this.known.get(id)?.endpoint ?? '—', 'mono'),
          row('state', h('span', { class: `state state-${state}` }, state)),
          row('quorum', st ? (st.quorum ? 'yes' : 'no') : '—', st && !st.quorum ? 'text-bad' : ''),
          row('phase', st?.phase ?? '—'),
          row('group', String(st?.group ?? own?.group ?? '—')),
          row('its monitor', st?.monitor ? h('span', { class: 'mono', title: st.monitor }, st.monitor === id ? 'itself' : shortId(st.monitor)) : '—'),
          row('epoch · db', st ? `${st.epoch} · v${st.version}` : '—'),
          row('pid', String(st?.pid ?? own?.pid ?? '—')),
          row('http', link)),
        st ? null : h('div', { class: 'card-error' },
          h('strong', {}, this.known.get(id)?.removed ? 'not in the node database' : 'unreachable'),
          view?.error ? h('div', {}, view.error) : null,
          h('div', { class: 'dim' }, `last heard ${ago(view?.heardMs, msg.t)}`)),
        st && !alive ? h('div', { class: 'card-error' }, h('strong', {}, `node ${shortId(msg.self)} counts it failed`)) : null,
      );
    });
    fill(this.el.cards, ...cards);
  }

  /** Rows: each node that answered, as an observer; columns: every node; cell: alive as the observer sees it. */
  renderMatrix(msg) {
    const ids = [...this.known.keys()];
    const head = h('tr', {}, h('th', { class: 'corner' }, 'observer ↓ sees →'), ids.map((id) => h('th', { class: 'mono', title: id }, shortId(id))));
    const rows = msg.nodes.map((obs) => {
      const st = obs.status;
      const cells = ids.map((id) => {
        if (!st) return h('td', { class: 'cell-unknown', title: 'the observer did not answer' }, '?');
        const n = st.nodes.find((x) => x.id === id);
        if (!n) return h('td', { class: 'cell-none', title: 'not in its node database' }, '·');
        return h('td', { class: n.alive ? 'cell-ok' : 'cell-bad', dataset: { observer: obs.id, target: id, alive: String(n.alive) }, title: `${shortId(obs.id)} sees ${shortId(id)} ${n.alive ? 'alive' : 'failed'}${n.state ? `, ${n.state}` : ''}` }, n.alive ? '●' : '✕');
      });
      return h('tr', {}, h('th', { class: 'mono', title: obs.id }, shortId(obs.id), st ? null : h('span', { class: 'text-bad' }, ' unreachable')), cells);
    });
    fill(this.el.matrix, h('table', { class: 'matrix' }, h('thead', {}, head), h('tbody', {}, rows)));
  }

  currentPhase() {
    if (this.rebuild.live) return this.rebuild.live;
    const c = this.prev?.coordinating?.[0];
    if (c && c.phase && c.phase !== 'idle') return c.phase;
    const self = this.ctx.selfStatus();
    const state = self?.state ?? this.rebuild.selfState;
    return state && state !== 'normal' ? state : 'none';
  }

  renderRebuild() {
    const phase = this.currentPhase();
    const panel = this.el.rebuild;
    panel.dataset.rebuildPhase = phase;
    panel.classList.toggle('running', phase !== 'none');
    const self = this.ctx.selfStatus();
    const rec = self?.recovery;
    const c = this.prev?.coordinating?.[0];
    const rb = this.rebuild;
    const trail = rb.trail.map((p) => h('li', { class: `phase phase-${p.phase}`, title: p.where }, h('span', { class: 'phase-name' }, p.phase), h('span', { class: 'dim' }, rb.startedT !== null ? ` +${Math.max(0, p.t - rb.startedT)} ms` : '')));
    fill(panel,
      h('div', { class: 'rebuild-head' },
        h('span', { class: 'rebuild-label' }, 'rebuild'),
        h('span', { class: ['rebuild-phase', phase === 'none' ? 'dim' : 'text-warn'] }, phase === 'none' ? 'none running' : phase),
        rec ? h('span', { class: 'dim' }, `network ${rec.network} · this node ${rec.state} · round ${rec.round ? roundLabel(rec.round) : '—'}`) : null),
      c ? h('div', {}, `coordinator ${shortId(c.id)}, round ${roundLabel(c.round)}, waiting for `, c.waiting.length ? c.waiting.map(shortId).join(', ') : 'nobody') : null,
      rb.trail.length
        ? h('div', { class: 'trail' }, h('span', { class: 'dim' }, rb.endedT !== null ? 'latest rebuild: ' : 'this rebuild: '), h('ol', {}, trail),
          rb.endedT !== null && rb.startedT !== null ? h('span', { class: 'dim' }, ` took ${rb.endedT - rb.startedT} ms`) : null)
        : h('div', { class: 'dim' }, 'No rebuild seen since this page opened. A node failure starts one: quiescing, repopulating, resuming.'),
    );
  }
}
