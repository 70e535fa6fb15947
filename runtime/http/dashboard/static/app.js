// The Mangrove dashboard: one page served by every node on its HTTP port.
// This file wires the views to the node's live feed (GET /dashboard/stream,
// one `cluster` message a period: every node's own status, and this node's
// message counts) and keeps the header and the navigation; each view lives
// in the file named after it.

import { ClusterView } from './cluster.js';
import { FilesView } from './files.js';
import { MachinesView } from './machines.js';
import { StoreView } from './store.js';
import { TracesView } from './traces.js';
import { TrafficView } from './traffic.js';
import { Stream, badge, fill, fmtTime, h, reportError, shortId } from './util.js';

/** What every view reads: the latest message, and helpers. */
const ctx = {
  /** The latest `cluster` message, or null before the first. */
  last: null,
  /** The feed's period (the node's heartbeat's, at least a second). */
  periodMs: 1000,
  connected: false,
  /** Node id → the node's own status from the latest message (null: it did not answer). */
  statusOf(id) {
    return this.last?.nodes.find((n) => n.id === id)?.status ?? null;
  },
  selfStatus() {
    return this.last ? this.statusOf(this.last.self) : null;
  },
};

const views = {
  cluster: new ClusterView(ctx),
  store: new StoreView(ctx),
  files: new FilesView(ctx),
  machines: new MachinesView(ctx),
  traffic: new TrafficView(ctx),
  traces: new TracesView(ctx),
};
let current = null;

function route() {
  const [name, arg] = decodeURIComponent(location.hash.replace(/^#/, '')).split('/');
  const next = Object.hasOwn(views, name) ? name : 'cluster';
  if (current !== next) {
    if (current) views[current].hide?.();
    for (const el of document.querySelectorAll('.view')) el.hidden = el.dataset.view !== next;
    for (const a of document.querySelectorAll('nav a[data-view]')) a.classList.toggle('active', a.dataset.view === next);
    current = next;
    document.body.dataset.view = next;
    safely(() => views[next].show?.(arg));
  } else if (arg !== undefined) {
    safely(() => views[next].show?.(arg));
  }
}

function safely(fn) {
  try {
    const r = fn();
    if (r && typeof r.catch === 'function') r.catch(reportError);
  } catch (err) {
    reportError(err);
  }
}

function header(msg) {
  const self = ctx.selfStatus();
  const node = document.getElementById('hdr-node');
  fill(node, h('span', { class: 'mono' }, shortId(msg.self)), h('span', { class: 'dim mono hdr-full' }, msg.self));
  node.title = msg.self;
  const q = document.getElementById('hdr-quorum');
  const has = Boolean(self?.quorum);
  fill(q, badge(has ? 'quorum' : 'no quorum', has ? 'ok' : 'bad', has ? 'this node sees a quorum of anchor votes' : 'this node has lost quorum: it serves nothing until it is back'));
  q.dataset.quorum = String(has);
  const net = document.getElementById('hdr-network');
  const network = self?.recovery?.network ?? 'unknown';
  fill(net, badge(`network ${network}`, network === 'normal' ? 'ok' : 'warn', 'the network state (M6) from the node states this node knows'));
  const pan = document.getElementById('hdr-pan');
  fill(pan, self?.pan ? h('span', { title: self.pan }, 'PAN ', h('span', { class: 'mono' }, shortId(self.pan))) : 'no PAN');
  document.getElementById('hdr-updated').textContent = `updated ${fmtTime(msg.t)}`;
  document.title = `Mangrove · ${shortId(msg.self)}${has ? '' : ' · no quorum'}`;
}

/** When the feed closed (browser clock), while it is closed; and whether it was ever open. */
let closedAt = null;
let everOpen = false;

/** The feed opened or closed; `initial`: the page is only starting to connect. */
function connection(open, initial = false) {
  const was = ctx.connected;
  ctx.connected = open;
  if (!open && !initial && closedAt === null) {
    closedAt = Date.now();
    if (was) views.cluster.addLog('lost the feed from this node; reconnecting', 'bad');
  }
  if (open) {
    if (closedAt !== null && everOpen) views.cluster.addLog('the feed from this node is back', 'ok');
    closedAt = null;
    everOpen = true;
  }
  const banner = document.getElementById('offline');
  banner.hidden = open || closedAt === null;
  if (closedAt !== null) banner.textContent = `Disconnected from this node since ${fmtTime(closedAt)}: what you see is what it last sent. The page reconnects by itself when the node is back; another node's dashboard shows the cluster meanwhile.`;
  const el = document.getElementById('hdr-conn');
  el.dataset.connected = String(open);
  const label = open ? 'live' : closedAt === null ? 'connecting…' : 'disconnected';
  fill(el, badge(label, open ? 'ok' : closedAt === null ? 'warn' : 'bad', open ? 'the live feed from this node is open' : 'the feed from this node is closed; it reconnects by itself'));
  document.body.classList.toggle('offline', !open);
}

function onCluster(msg) {
  ctx.last = msg;
  ctx.periodMs = Math.max(1000, Number(msg.periodMs) || 1000);
  header(msg);
  for (const v of Object.values(views)) {
    try {
      v.onCluster?.(msg, v === views[current]);
    } catch (err) {
      reportError(err);
    }
  }
}

function start() {
  // Shown on the page too; still an error in the console, where it belongs.
  window.addEventListener('unhandledrejection', (e) => reportError(e.reason));
  window.addEventListener('hashchange', route);
  connection(false, true);
  route();
  new Stream('/dashboard/stream', { event: 'cluster', onEvent: onCluster, onState: connection });
  views.cluster.watchTransitions();
}

start();
