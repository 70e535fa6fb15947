// The Traffic view: the last five minutes (since the page opened, while
// that is shorter), one sample per feed message.
// Message rates by kind are the difference of this node's counters
// (`traffic.sentByKind` / `receivedByKind`) between two messages divided by
// the time between them; file-system calls and rejected messages are summed
// over the nodes that answered both times; failures detected is this node's
// `mangrove_failures_detected_total` (GET /metrics). Charts are inline SVG.
// Requests are a program's page and file-system calls to this node
// (`requests`: per op-code, totals since the node started, with a latency
// histogram over `requestBoundsMs`; runtime/http/dashboard/feed.ts): a rate
// is the difference of `n` between two messages over the time between them,
// the mean latency that of `sumMs` over that of `n`, and the p99 is read off
// the difference of the buckets (linear within a bucket, as Prometheus's
// histogram_quantile does). Fast-path reads and writes are not timed.

import { fill, fmtNum, h, svg } from './util.js';

const WINDOW_MS = 5 * 60 * 1000;
/** The shortest span a chart shows, while the page is young. */
const SPAN_MS_MIN = 10_000;
/** Samples kept: the window at the fastest feed (one a second), and some. */
const SAMPLES_MAX = 360;
/** The by-kind grid: a chart's narrowest width and the gap (style.css .chart-grid), and a card's border and padding across. */
const KIND_W = 300;
const GRID_GAP = 12;
const CARD_INSET = 18;
const COLORS = { sent: '#5794f2', received: '#ff9830', calls: '#73bf69', failed: '#f2495c', detected: '#f2495c', seen: '#fade2a', rejected: '#b877d9' };
/** Ops charted: the busiest by requests in the window. */
const RATE_OPS_MAX = 6;
const LATENCY_OPS_MAX = 3;
/** One color an op, kept while the page is open; red is the failures'. */
const OP_COLORS = ['#5794f2', '#ff9830', '#73bf69', '#b877d9', '#fade2a', '#8ab8ff', '#ffb357', '#96d98d'];
const P99 = 0.99;

export class TrafficView {
  constructor(ctx) {
    this.ctx = ctx;
    this.root = document.getElementById('view-traffic');
    this.el = {
      totals: this.root.querySelector('#traffic-totals'),
      kinds: this.root.querySelector('#traffic-kinds'),
      quiet: this.root.querySelector('#traffic-quiet'),
      fs: this.root.querySelector('#traffic-fs'),
      failures: this.root.querySelector('#traffic-failures'),
      requestRates: this.root.querySelector('#traffic-request-rates'),
      requestLatency: this.root.querySelector('#traffic-request-latency'),
    };
    /** The latency buckets' upper bounds, ms (the feed's `requestBoundsMs`); one more bucket past the last. */
    this.boundsMs = [];
    this.opColors = new Map();
    this.samples = [];
    this.failuresDetected = null;
    this.metricsBusy = false;
  }

  show() {
    this.render();
  }

  onCluster(msg, visible) {
    const perNode = new Map();
    let seenFailed = 0;
    for (const v of msg.nodes) {
      const s = v.status;
      if (!s) continue;
      perNode.set(v.id, { epoch: s.epoch, fsCalls: s.fs?.calls ?? null, fsFailed: s.fs?.failed ?? null, rejected: s.rejected ?? 0 });
      seenFailed = Math.max(seenFailed, s.nodes.filter((n) => !n.alive).length);
    }
    // Browser time: the samples' spacing is what the rates divide by, and the feed's `t` is the node's clock, which is fine too, but one clock for all.
    if (Array.isArray(msg.requestBoundsMs)) this.boundsMs = msg.requestBoundsMs;
    this.samples.push({ t: Date.now(), sent: { ...msg.traffic.sentByKind }, received: { ...msg.traffic.receivedByKind }, requests: msg.requests ?? {}, perNode, seenFailed, detected: this.failuresDetected });
    const cut = Date.now() - WINDOW_MS;
    while (this.samples.length > SAMPLES_MAX || (this.samples.length > 0 && this.samples[0].t < cut)) this.samples.shift();
    void this.readMetrics();
    if (visible) this.render();
  }

  /** This node's failures-detected counter, read at most one at a time. */
  async readMetrics() {
    if (this.metricsBusy) return;
    this.metricsBusy = true;
    try {
      const res = await fetch('/metrics', { cache: 'no-store' });
      if (res.ok) {
        const m = /^mangrove_failures_detected_total(?:\{[^}]*\})? ([0-9.eE+-]+)$/m.exec(await res.text());
        if (m) this.failuresDetected = Number(m[1]);
      }
    } catch {
      // The node is away; the feed's own state says so in the header.
    } finally {
      this.metricsBusy = false;
    }
  }

  /** Per interval between two samples: [t, value] from `read(a, b, seconds)`, null where it cannot be told. */
  series(read) {
    const out = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1];
      const b = this.samples[i];
      const s = (b.t - a.t) / 1000;
      out.push([b.t, s > 0 ? read(a, b, s) : null]);
    }
    return out;
  }

  render() {
    const now = Date.now();
    // The window fills as samples come: five minutes once the page has been open that long.
    const t0 = Math.min(now - SPAN_MS_MIN, Math.max(now - WINDOW_MS, this.samples[0]?.t ?? now));
    if (this.samples.length < 2) {
      const wait = h('p', { class: 'dim' }, 'Collecting: a rate needs two feed messages.');
      fill(this.el.totals, wait);
      return;
    }
    const rate = (field, kind) => (a, b, s) => {
      const d = (b[field][kind] ?? 0) - (a[field][kind] ?? 0);
      return d >= 0 ? d / s : null;
    };
    const total = (field) => (a, b, s) => {
      let d = 0;
      for (const [k, v] of Object.entries(b[field])) d += v - (a[field][k] ?? 0);
      return d >= 0 ? d / s : null;
    };
    // Charts are drawn at the size they are shown, so their text is the page's size.
    const wide = (el) => Math.max(280, el.clientWidth);
    const gridW = wide(this.el.kinds);
    const perRow = Math.max(1, Math.floor((gridW + GRID_GAP) / (KIND_W + GRID_GAP)));
    const kindW = Math.floor((gridW - GRID_GAP * (perRow - 1)) / perRow);
    fill(this.el.totals, card('all messages, this node', 'per second', [
      { name: 'sent', color: COLORS.sent, points: this.series(total('sent')) },
      { name: 'received', color: COLORS.received, points: this.series(total('received')) },
    ], t0, now, wide(this.el.totals), 150));

    const last = this.samples[this.samples.length - 1];
    const first = this.samples[0];
    const kinds = [...new Set([...Object.keys(last.sent), ...Object.keys(last.received)])];
    const moved = (k) => (last.sent[k] ?? 0) - (first.sent[k] ?? 0) + (last.received[k] ?? 0) - (first.received[k] ?? 0);
    kinds.sort((a, b) => moved(b) - moved(a) || a.localeCompare(b));
    const quiet = kinds.filter((k) => moved(k) === 0);
    fill(this.el.kinds, ...kinds.filter((k) => moved(k) > 0).map((k) => card(k, 'msg/s', [
      { name: 'sent', color: COLORS.sent, points: this.series(rate('sent', k)) },
      { name: 'received', color: COLORS.received, points: this.series(rate('received', k)) },
    ], t0, now, kindW, 96, { kind: k })));
    fill(this.el.quiet, quiet.length ? [h('span', { class: 'dim' }, 'Not sent or received in the window: '), quiet.map((k) => h('span', { class: 'chip mono', dataset: { kind: k } }, k))] : null);

    const perNode = (field) => (a, b, s) => {
      let d = 0;
      let any = false;
      for (const [id, nb] of b.perNode) {
        const na = a.perNode.get(id);
        if (!na || na.epoch !== nb.epoch || nb[field] === null || na[field] === null) continue;
        d += Math.max(0, nb[field] - na[field]);
        any = true;
      }
      return any ? d / s : null;
    };
    const hasFs = [...last.perNode.values()].some((n) => n.fsCalls !== null);
    fill(this.el.fs, hasFs
      ? card('file-system calls, all nodes', 'per second', [
        { name: 'calls', color: COLORS.calls, points: this.series(perNode('fsCalls')) },
        { name: 'failed', color: COLORS.failed, points: this.series(perNode('fsFailed')) },
      ], t0, now, wide(this.el.fs), 120)
      : h('p', { class: 'dim' }, 'No node reports file-system calls.'));

    this.renderRequests(t0, now, wide);

    const fw = wide(this.el.failures);
    fill(this.el.failures,
      card('failures detected, this node (total)', 'count', [{ name: 'detected', color: COLORS.detected, points: this.samples.filter((s) => s.detected !== null).map((s) => [s.t, s.detected]) }], t0, now, fw, 96),
      card('nodes counted failed (most any node sees)', 'nodes', [{ name: 'failed', color: COLORS.seen, points: this.samples.map((s) => [s.t, s.seenFailed]) }], t0, now, fw, 96),
      card('messages rejected, all nodes', 'per second', [{ name: 'rejected', color: COLORS.rejected, points: this.series(perNode('rejected')) }], t0, now, fw, 96),
    );
  }

  /** Request rates by op, and the mean and p99 latency of the busiest ops, per interval between two samples. */
  renderRequests(t0, now, wide) {
    const first = this.samples[0].requests;
    const last = this.samples[this.samples.length - 1].requests;
    const moved = (op) => (last[op]?.n ?? 0) - (first[op]?.n ?? 0);
    const ops = Object.keys(last).filter((op) => moved(op) > 0).sort((a, b) => moved(b) - moved(a) || a.localeCompare(b));
    if (ops.length === 0) {
      fill(this.el.requestRates, h('p', { class: 'dim' }, 'No requests in the window.'));
      fill(this.el.requestLatency);
      return;
    }
    const color = (op) => {
      if (!this.opColors.has(op)) this.opColors.set(op, OP_COLORS[this.opColors.size % OP_COLORS.length]);
      return this.opColors.get(op);
    };
    // An op missing from the earlier sample had no request yet; a count that went down is a restarted node: not told.
    const delta = (a, b, op, field) => {
      const d = (b.requests[op]?.[field] ?? 0) - (a.requests[op]?.[field] ?? 0);
      return d >= 0 ? d : null;
    };
    const rate = (op) => (a, b, s) => {
      const d = delta(a, b, op, 'n');
      return d === null ? null : d / s;
    };
    const failed = (a, b, s) => {
      let d = 0;
      for (const op of Object.keys(b.requests)) d += delta(a, b, op, 'failed') ?? 0;
      return d / s;
    };
    const mean = (op) => (a, b) => {
      const n = delta(a, b, op, 'n');
      const sumMs = delta(a, b, op, 'sumMs');
      return n && sumMs !== null ? sumMs / n : null;
    };
    const p99 = (op) => (a, b) => {
      const bb = b.requests[op]?.buckets;
      if (!bb || !(delta(a, b, op, 'n') > 0)) return null;
      const ab = a.requests[op]?.buckets ?? [];
      return quantileMs(bb.map((v, i) => v - (ab[i] ?? 0)), this.boundsMs, P99);
    };
    fill(this.el.requestRates, card('requests per second, by op', 'requests per second', [
      ...ops.slice(0, RATE_OPS_MAX).map((op) => ({ name: op, color: color(op), points: this.series(rate(op)) })),
      { name: 'failed (all ops)', color: COLORS.failed, dash: true, points: this.series(failed) },
    ], t0, now, wide(this.el.requestRates), 150, { chart: 'request-rates' }));
    fill(this.el.requestLatency, card('latency per interval: mean (solid), p99 (dashed)', 'milliseconds, log scale', ops.slice(0, LATENCY_OPS_MAX).flatMap((op) => [
      { name: `${op} mean`, color: color(op), points: this.series(mean(op)) },
      { name: `${op} p99`, color: color(op), dash: true, points: this.series(p99(op)) },
    ]), t0, now, wide(this.el.requestLatency), 150, { chart: 'request-latency' }, { fmt: fmtMs, yLog: true }));
  }
}

/**
 * One chart with its title and latest values, `width` wide (border and
 * padding included). `opts.fmt` formats the values (the y axis's labels
 * too), `opts.yLog` puts the y axis on a log scale; `dataset` marks the card.
 */
function card(title, unit, series, t0, t1, width, height, dataset, opts = {}) {
  const fmt = opts.fmt ?? fmtNum;
  const latest = series.map((s) => {
    const v = [...s.points].reverse().find((p) => p[1] !== null)?.[1];
    return h('span', { class: 'chart-value', style: { color: s.color } }, `${s.name} ${v === undefined ? '—' : fmt(v)}`);
  });
  // Many series: their values wrap under the title rather than run off the card.
  const wrap = series.length > 3 ? { flexWrap: 'wrap' } : undefined;
  return h('figure', { class: 'chart-card', dataset },
    h('figcaption', { style: wrap }, h('span', { class: 'chart-title mono' }, title), h('span', { class: 'chart-values', style: wrap }, latest)),
    lineChart(series, t0, t1, unit, width - CARD_INSET, height, { fmt, yLog: opts.yLog }));
}

/** Polylines over [t0, t1]; a null value breaks its line; a series with `dash` is drawn dashed. */
export function lineChart(series, t0, t1, unit, W, H, opts = {}) {
  const pad = { l: 44, r: 8, t: 8, b: 18 };
  const w = W - pad.l - pad.r;
  const hgt = H - pad.t - pad.b;
  const values = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null && Number.isFinite(v)));
  const axis = opts.yLog ? logAxis(values) : linearAxis(values);
  const fmt = opts.fmt ?? fmtNum;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * w;
  const y = (v) => pad.t + hgt - axis.at(v) * hgt;
  const parts = [];
  for (const v of axis.ticks) {
    const yy = y(v);
    parts.push(svg('line', { x1: pad.l, x2: pad.l + w, y1: yy, y2: yy, class: 'grid-line' }));
    parts.push(svg('text', { x: pad.l - 4, y: yy + 3, 'text-anchor': 'end', class: 'axis' }, fmt(v)));
  }
  for (const [f, label] of [[0, `−${span(t1 - t0)}`], [0.5, `−${span((t1 - t0) / 2)}`], [1, 'now']]) {
    parts.push(svg('text', { x: pad.l + f * w, y: H - 4, 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle', class: 'axis' }, label));
  }
  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length === 1) parts.push(svg('circle', { cx: run[0][0], cy: run[0][1], r: 2, fill: s.color, 'data-series': s.name }));
      if (run.length > 1) parts.push(svg('polyline', { points: run.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(' '), fill: 'none', stroke: s.color, 'stroke-width': 1.5, 'stroke-linejoin': 'round', 'stroke-dasharray': s.dash ? '5 3' : undefined, 'data-series': s.name }));
      run = [];
    };
    for (const [t, v] of s.points) {
      if (t < t0) continue;
      if (v === null || !Number.isFinite(v)) flush();
      else run.push([x(t), y(v)]);
    }
    flush();
  }
  return svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'line-chart', role: 'img', 'aria-label': unit }, ...parts);
}

function span(ms) {
  return ms >= 60_000 ? `${+(ms / 60_000).toFixed(1)} min` : `${Math.round(ms / 1000)} s`;
}

/** 0 to a round maximum: ticks at 0, half and the top. */
function linearAxis(values) {
  const yMax = niceMax(Math.max(0, ...values));
  return { ticks: [0, yMax / 2, yMax], at: (v) => v / yMax };
}

/** Whole decades around the values (at least one); a value at or below the bottom sits on it. */
function logAxis(values) {
  const positive = values.filter((v) => v > 0);
  const lo = positive.length ? Math.floor(Math.log10(Math.min(...positive))) : -1;
  const hi = Math.max(lo + 1, positive.length ? Math.ceil(Math.log10(Math.max(...positive))) : lo + 2);
  const step = Math.ceil((hi - lo) / 4);
  const ticks = [];
  for (let e = lo; e <= hi; e += step) ticks.push(10 ** e);
  return { ticks, at: (v) => (Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo) };
}

/** Milliseconds, in the unit that reads best: 0.25 ms, 3.1 ms, 40 ms, 1.5 s. */
function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms >= 1000) return `${+(ms / 1000).toFixed(ms >= 10_000 ? 0 : 1)} s`;
  if (ms >= 10) return `${Math.round(ms)} ms`;
  return `${+ms.toFixed(ms >= 1 ? 1 : 2)} ms`;
}

/**
 * The `q` quantile of the requests counted in `d` (per bucket, over `boundsMs`
 * and one bucket past them), linear within its bucket; in the last bucket,
 * the last bound (all that can be told is "more than that").
 */
export function quantileMs(d, boundsMs, q) {
  const total = d.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < d.length; i++) {
    if (d[i] > 0 && below + d[i] >= rank) {
      if (i >= boundsMs.length) return boundsMs[boundsMs.length - 1] ?? null;
      const lo = i === 0 ? 0 : boundsMs[i - 1];
      return lo + ((boundsMs[i] - lo) * (rank - below)) / d[i];
    }
    below += d[i];
  }
  return null;
}

/** 1, 2 or 5 times a power of ten, at least the value (and at least 1). */
function niceMax(v) {
  if (!(v > 1)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

