// The Store view: the arenas of the address space and their homes (M8) as
// each node's node database has them, RAM and disk use per node (M24),
// re-replication (M15), and a page watch: where one page lives and its
// first bytes, read through this node once per feed period
// (GET /dashboard/page?addr=0x…), marked when its version or bytes change;
// and each arena's directory to browse (directory.js).

import { DirectoryBrowser } from './directory.js';
import { badge, bar, fill, fmtBytes, fmtNum, fmtTime, getJson, h, shortId } from './util.js';

/** An address as the CLI and JSON write it: 0x and up to 32 hex digits (128 bits). */
const ADDRESS = /^0x[0-9a-fA-F]{1,32}$/;
const FLASH_MS = 2500;

export class StoreView {
  constructor(ctx) {
    this.ctx = ctx;
    this.root = document.getElementById('view-store');
    this.el = {
      arenas: this.root.querySelector('#arenas'),
      usage: this.root.querySelector('#usage'),
      replication: this.root.querySelector('#replication'),
      form: this.root.querySelector('#page-form'),
      input: this.root.querySelector('#page-addr'),
      stop: this.root.querySelector('#page-stop'),
      watch: this.root.querySelector('#page-watch'),
      head: this.root.querySelector('#page-head'),
      ascii: this.root.querySelector('#page-ascii'),
      info: this.root.querySelector('#page-info'),
      note: this.root.querySelector('#page-note'),
    };
    this.directory = new DirectoryBrowser(ctx, {
      arenas: this.root.querySelector('#dir-arenas'),
      summary: this.root.querySelector('#dir-summary'),
      tree: this.root.querySelector('#dir-tree'),
      refresh: this.root.querySelector('#dir-refresh'),
    }, (addr) => {
      this.el.input.value = addr;
      this.startWatch(addr);
      this.el.form.scrollIntoView({ behavior: 'smooth', block: 'start' });
    });
    /** The page watched: its address, the last answer, and the timer of the next poll. */
    this.watch = null;
    this.el.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.startWatch(this.el.input.value.trim());
    });
    this.el.stop.addEventListener('click', () => this.stopWatch('stopped'));
  }

  show(arg) {
    if (arg && ADDRESS.test(arg) && arg !== this.watch?.addr) {
      this.el.input.value = arg;
      this.startWatch(arg);
    }
    if (this.ctx.last) this.onCluster(this.ctx.last, true);
  }

  onCluster(msg, visible) {
    if (!visible) return;
    this.renderArenas(msg);
    this.directory.onCluster(msg);
    this.renderUsage(msg);
    this.renderReplication(msg);
  }

  renderArenas(msg) {
    // Arena → home → the nodes whose node database says so: nodes that disagree show as two homes.
    const arenas = new Map();
    let reporting = 0;
    for (const v of msg.nodes) {
      const list = v.status?.arenas;
      if (!list) continue;
      reporting++;
      for (const a of list) {
        const byHome = arenas.get(a.arena) ?? new Map();
        const key = `${a.home}|${a.gen}`;
        byHome.set(key, [...(byHome.get(key) ?? []), v.id]);
        arenas.set(a.arena, byHome);
      }
    }
    if (arenas.size === 0) {
      fill(this.el.arenas, h('p', { class: 'dim' }, reporting ? 'No arenas yet.' : 'No node reports its arenas.'));
      return;
    }
    const alive = new Map((this.ctx.selfStatus()?.nodes ?? []).map((n) => [n.id, n.alive]));
    const rows = [...arenas.entries()].sort((a, b) => a[0] - b[0]).flatMap(([arena, byHome]) =>
      [...byHome.entries()].map(([key, who], i) => {
        const [home, gen] = key.split('|');
        const up = alive.get(home);
        return h('tr', { dataset: { arena } },
          h('td', { class: 'num' }, i === 0 ? String(arena) : ''),
          h('td', { class: 'mono', title: home }, h('span', { class: ['dot', up ? 'dot-ok' : 'dot-bad'] }), ' ', shortId(home)),
          h('td', { class: 'num' }, gen),
          h('td', {}, who.length === reporting ? badge('all agree', 'ok') : badge(`${who.map(shortId).join(', ')} say so`, 'warn')));
      }));
    fill(this.el.arenas, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'arena'), h('th', {}, 'home'), h('th', {}, 'gen'), h('th', {}, 'node databases'))),
      h('tbody', {}, rows)));
  }

  renderUsage(msg) {
    const rows = msg.nodes.map((v) => {
      const p = v.status?.pages;
      if (!p) return h('tr', {}, h('td', { class: 'mono', title: v.id }, shortId(v.id)), h('td', { colspan: 5, class: 'dim' }, v.error ? `unreachable: ${v.error}` : 'no report'));
      const c = p.copies ?? {};
      return h('tr', { dataset: { node: v.id } },
        h('td', { class: 'mono', title: v.id }, shortId(v.id)),
        h('td', {}, bar(p.ram.usedBytes, p.ram.budgetBytes, `${fmtBytes(p.ram.usedBytes)} / ${fmtBytes(p.ram.budgetBytes)}`), h('div', { class: 'dim small' }, `${fmtNum(p.ram.pages)} pages, ${fmtNum(p.ram.dirtyPages)} dirty`)),
        h('td', {}, bar(p.disk.pages, p.disk.pagesMax, `${fmtNum(p.disk.pages)} / ${fmtNum(p.disk.pagesMax)} pages`), h('div', { class: 'dim small' }, `${fmtNum(p.disk.freePages)} free`)),
        h('td', { class: 'num' }, fmtNum(p.homePages)),
        h('td', { class: 'small' }, `read ${fmtNum(c.read)} · write ${fmtNum(c.write)} · kept ${fmtNum(c.kept)} · incoming ${fmtNum(c.incoming)}`));
    });
    fill(this.el.usage, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'node'), h('th', { class: 'wide' }, 'RAM cache'), h('th', { class: 'wide' }, 'disk'), h('th', {}, 'home pages'), h('th', {}, 'copies held'))),
      h('tbody', {}, rows)));
  }

  renderReplication(msg) {
    let under = 0;
    let done = 0;
    const rows = msg.nodes.map((v) => {
      const r = v.status?.replication;
      if (!r) return h('tr', {}, h('td', { class: 'mono', title: v.id }, shortId(v.id)), h('td', { colspan: 6, class: 'dim' }, 'no report'));
      under += r.pagesUnderReplicated;
      done += r.reReplicatedPages;
      const total = r.pagesUnderReplicated + r.reReplicatedPages;
      return h('tr', { dataset: { node: v.id } },
        h('td', { class: 'mono', title: v.id }, shortId(v.id)),
        h('td', { class: ['num', r.pagesUnderReplicated ? 'text-warn' : ''] }, `${fmtNum(r.pagesUnderReplicated)}${r.partial ? '+' : ''}`),
        h('td', { class: 'num' }, fmtNum(r.rangesUnderReplicated)),
        h('td', { class: ['num', r.arenasUnderReplicated ? 'text-warn' : ''] }, fmtNum(r.arenasUnderReplicated)),
        h('td', { class: 'num' }, fmtNum(r.reReplicatedPages)),
        h('td', {}, total ? bar(r.reReplicatedPages, total, `${Math.round((100 * r.reReplicatedPages) / total)} %`) : h('span', { class: 'dim' }, 'nothing to restore')),
        h('td', { class: 'num' }, fmtNum(r.collectedCopies)));
    });
    const summary = under === 0
      ? h('p', {}, badge('every persistent page has its copies', 'ok'), done ? h('span', { class: 'dim' }, ` ${fmtNum(done)} pages re-replicated since the nodes started`) : null)
      : h('p', {}, badge(`${fmtNum(under)} pages under-replicated`, 'warn'), h('span', { class: 'dim' }, ` ${fmtNum(done)} restored so far`));
    fill(this.el.replication, summary, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'home'), h('th', {}, 'pages short'), h('th', {}, 'ranges short'), h('th', {}, 'arenas short'), h('th', {}, 'pages restored'), h('th', { class: 'wide' }, 'progress'), h('th', {}, 'copies collected'))),
      h('tbody', {}, rows)));
  }

  startWatch(addr) {
    if (!ADDRESS.test(addr)) {
      this.el.note.textContent = 'An address is 0x and up to 32 hex digits, the start of a page (e.g. 0x10000).';
      this.el.note.className = 'text-bad';
      return;
    }
    this.stopWatch(null);
    this.watch = { addr, last: null, timer: undefined, polls: 0 };
    this.el.watch.hidden = false;
    this.el.watch.dataset.addr = addr;
    delete this.el.watch.dataset.version;
    this.el.head.textContent = '';
    this.el.ascii.textContent = '';
    fill(this.el.info, h('p', { class: 'dim' }, 'reading…'));
    this.el.note.textContent = '';
    this.el.stop.disabled = false;
    void this.poll(this.watch);
  }

  stopWatch(why) {
    if (this.watch) clearTimeout(this.watch.timer);
    this.watch = null;
    this.el.stop.disabled = true;
    if (why) {
      this.el.note.textContent = `Watch ${why}.`;
      this.el.note.className = 'dim';
    }
  }

  /** One read, then the next after a feed period: never two at once, never faster than the feed. */
  async poll(w) {
    let answer = null;
    let error = null;
    try {
      answer = await getJson(`/dashboard/page?addr=${encodeURIComponent(w.addr)}`);
    } catch (err) {
      error = err;
    }
    if (this.watch !== w) return;
    w.polls++;
    if (error) this.showError(error);
    else this.showPage(w, answer);
    w.timer = setTimeout(() => void this.poll(w), this.ctx.periodMs);
  }

  showError(err) {
    this.el.watch.classList.add('failing');
    this.el.note.textContent = `${err.code ?? 'error'}: ${err.message} (retrying every ${this.ctx.periodMs / 1000} s)`;
    this.el.note.className = 'text-bad';
  }

  showPage(w, answer) {
    const { stat, head, read } = answer;
    const prev = w.last;
    w.last = answer;
    this.el.watch.classList.remove('failing');
    const changed = prev && (prev.stat.version !== stat.version || prev.head !== head);
    this.el.watch.dataset.version = String(stat.version);
    this.el.head.textContent = head ?? '';
    fill(this.el.ascii, ...(head ? ascii(head) : []).map((line) => h('div', {}, line)));
    const field = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    const node = (id) => (id ? h('span', { class: 'mono', title: id }, shortId(id)) : h('span', { class: 'dim' }, 'none'));
    const list = (ids) => (ids.length ? ids.map((id, i) => [i ? ', ' : '', node(id)]) : h('span', { class: 'dim' }, 'none'));
    fill(this.el.info, h('dl', { class: 'kv' },
      field('address', h('span', { class: 'mono' }, stat.address)),
      field('state', stat.state),
      field('version', h('strong', { id: 'page-version' }, String(stat.version))),
      field('home', node(stat.home)),
      field('owner', node(stat.owner)),
      field('readers', list(stat.readers)),
      field('core holders', list(stat.coreHolders)),
      field('copies', `${stat.copies}${stat.volatile ? ' (volatile)' : ''}`),
      field('lock', stat.lock ? `${stat.lock.mode} by ${stat.lock.holders.join(', ')}` : 'none'),
      field('reservation', h('span', { class: 'mono' }, `${stat.reservation.address} +${stat.reservation.pages}`))));
    if (read) {
      this.el.note.textContent = `Bytes not read: ${read.code}: ${read.message}`;
      this.el.note.className = 'text-warn';
    } else if (changed) {
      this.el.note.textContent = `Changed at ${fmtTime(Date.now())}: version ${prev.stat.version} → ${stat.version}${prev.head !== head ? ', new bytes' : ''}.`;
      this.el.note.className = 'text-ok';
    } else if (!prev) {
      this.el.note.textContent = `Watching: read through this node every ${this.ctx.periodMs / 1000} s.`;
      this.el.note.className = 'dim';
    }
    if (changed) {
      this.el.watch.classList.remove('flash');
      void this.el.watch.offsetWidth;
      this.el.watch.classList.add('flash');
      clearTimeout(this.flashTimer);
      this.flashTimer = setTimeout(() => this.el.watch.classList.remove('flash'), FLASH_MS);
    }
  }
}

/** The bytes as text, '.' for what does not print, 16 to a line (as the hex beside it). */
function ascii(hex) {
  const lines = [];
  for (let i = 0; i + 1 < hex.length; i += 2) {
    const b = parseInt(hex.slice(i, i + 2), 16);
    if (i % 32 === 0) lines.push('');
    lines[lines.length - 1] += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
  }
  return lines;
}
