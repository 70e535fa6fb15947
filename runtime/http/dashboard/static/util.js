// Small helpers every view shares: building elements (text is always set as
// text, never parsed as HTML, so a file name or an error cannot inject
// markup), formatting, and a server-sent-events stream that reports whether
// it is open.

/** An element: h('div', { class: 'x', dataset: { node: id } }, child, 'text', …). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Replaces an element's children; null, undefined and false are left out (the DOM's own replaceChildren writes them as text). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An SVG element (inline charts). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** The first part of a node id (its random half): enough to tell the nodes of one cluster apart. */
export function shortId(id) {
  if (typeof id !== 'string') return '—';
  return id.split('-')[0].slice(0, 8);
}

export function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function fmtNum(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  if (Number.isInteger(n)) return String(n);
  return n >= 10 ? n.toFixed(0) : n.toFixed(n >= 1 ? 1 : 2);
}

export function fmtTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false });
}

/** 2026-12-06 23:41:37, local time. */
export function fmtDateTime(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '—';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${fmtTime(ms)}`;
}

/** "3 s ago", from a time on the same clock as `now`. */
export function ago(ms, now) {
  if (typeof ms !== 'number') return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

export function pct(used, total) {
  return total > 0 ? Math.min(100, Math.max(0, (100 * used) / total)) : 0;
}

/** A horizontal bar showing used of total. */
export function bar(used, total, label) {
  const p = pct(used, total);
  return h('div', { class: ['bar', p > 90 ? 'bar-hot' : p > 70 ? 'bar-warm' : ''], title: label },
    h('div', { class: 'bar-fill', style: { width: `${p.toFixed(1)}%` } }),
    h('span', { class: 'bar-label' }, label));
}

export function badge(text, kind, title) {
  return h('span', { class: ['badge', kind ? `badge-${kind}` : ''], title }, text);
}

/** Fetches JSON from this node; rejects with the node's {code, message} for an error answer. */
export async function getJson(url, init) {
  const res = await fetch(url, { cache: 'no-store', ...init });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { code: `HTTP ${res.status}`, message: text.trim().slice(0, 200) };
  }
  if (!res.ok) {
    const err = new Error(body && body.message ? body.message : `HTTP ${res.status}`);
    err.code = body && body.code ? body.code : `HTTP ${res.status}`;
    throw err;
  }
  return body;
}

/**
 * An EventSource that reports open/closed and comes back after the browser
 * gives up on it (an error answer, such as 503 E_BUSY, closes an EventSource
 * for good; a dropped connection it retries by itself).
 */
export class Stream {
  constructor(url, { onMessage, onEvent, event, onState, reopenMs = 5000 }) {
    this.url = url;
    this.event = event;
    this.onMessage = onMessage;
    this.onEvent = onEvent;
    this.onState = onState ?? (() => {});
    this.reopenMs = reopenMs;
    this.closed = false;
    this.timer = undefined;
    this.open();
  }

  open() {
    if (this.closed) return;
    const es = new EventSource(this.url);
    this.es = es;
    es.onopen = () => this.onState(true);
    es.onerror = () => {
      this.onState(false);
      if (es.readyState === EventSource.CLOSED && !this.closed) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.open(), this.reopenMs);
      }
    };
    const handle = (fn) => (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      try {
        fn(data, e);
      } catch (err) {
        // A view that cannot draw one message must not stop the stream; it says so on the page.
        reportError(err);
      }
    };
    if (this.onMessage) es.onmessage = handle(this.onMessage);
    if (this.event && this.onEvent) es.addEventListener(this.event, handle(this.onEvent));
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.es?.close();
  }
}

const problems = [];

/** Shows a drawing problem in the footer instead of throwing into the event loop. */
export function reportError(err) {
  const text = err instanceof Error ? `${err.message}` : String(err);
  problems.unshift(`${fmtTime(Date.now())} ${text}`);
  problems.length = Math.min(problems.length, 5);
  const el = document.getElementById('problems');
  if (el) {
    el.hidden = false;
    el.textContent = `Dashboard problem: ${problems[0]}`;
    el.title = problems.join('\n');
  }
}
