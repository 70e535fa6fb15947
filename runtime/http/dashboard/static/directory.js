// The directory browser of the Store view: an arena's directory, the GDD
// (M8; the patent's FIG. 1, 11, 12), a B+-tree of directory pages whose
// leaves hold the reservations. Each page is read from the arena's home on
// demand (GET /dashboard/directory?arena=N&page=0x…, the engine's dir_page):
// the root when an arena is picked, a child when it is opened. While the
// view shows, the root is read again at most every REREAD_MS; when its
// version moved, every open page is read again, so reservations made or
// allocated anywhere appear. Clicking a reservation watches its first page.

import { badge, fill, fmtNum, fmtTime, getJson, h, shortId } from './util.js';

const REREAD_MS = 5000;

export class DirectoryBrowser {
  /** `el`: the panel's parts; `watchPage(addr)`: what clicking a reservation does. */
  constructor(ctx, el, watchPage) {
    this.ctx = ctx;
    this.el = el;
    this.watchPage = watchPage;
    this.arena = null;
    this.root = null;
    this.readAt = 0;
    this.reading = false;
    /** Addresses of the pages shown open, kept across a reread. */
    this.open = new Set();
    el.refresh.addEventListener('click', () => void this.reread());
  }

  /** The arena buttons, from the feed's arena tables; the first arena is picked when none is. */
  onCluster(msg) {
    const homes = new Map();
    for (const v of msg.nodes) for (const a of v.status?.arenas ?? []) if (!homes.has(a.arena) || v.id === msg.self) homes.set(a.arena, a.home);
    const arenas = [...homes.keys()].sort((a, b) => a - b);
    const key = arenas.map((a) => `${a}:${homes.get(a)}`).join(',');
    if (key !== this.arenasKey) {
      this.arenasKey = key;
      fill(this.el.arenas, ...arenas.map((a) =>
        h('button', { type: 'button', class: ['pick-arena', a === this.arena ? 'picked' : ''], dataset: { arena: a }, onclick: () => this.pick(a) },
          `arena ${a}`, h('span', { class: 'dim small' }, ` ${a === 0 ? 'system' : shortId(homes.get(a))}`))));
    }
    if (this.arena === null && arenas.length > 0) this.pick(arenas.includes(1) ? 1 : arenas[0]);
    else if (this.arena !== null && Date.now() - this.readAt >= REREAD_MS) void this.reread(true);
  }

  pick(arena) {
    this.arena = arena;
    this.open = new Set();
    this.root = null;
    for (const b of this.el.arenas.querySelectorAll('[data-arena]')) b.classList.toggle('picked', Number(b.dataset.arena) === arena);
    fill(this.el.tree, h('p', { class: 'dim' }, 'reading…'));
    void this.reread();
  }

  /** Reads the root again; `onlyIfChanged`: redraws only when its version moved (the periodic reread). */
  async reread(onlyIfChanged = false) {
    if (this.reading || this.arena === null) return;
    this.reading = true;
    this.readAt = Date.now();
    const arena = this.arena;
    try {
      const root = await this.page(arena);
      if (arena !== this.arena) return;
      if (onlyIfChanged && this.root && this.root.version === root.version && this.root.home === root.home) return;
      const before = this.root;
      this.root = root;
      this.renderSummary(root, before);
      const top = this.pageItem(arena, root);
      fill(this.el.tree, h('ul', { class: 'tree dir-tree' }, top));
      await this.expand(top, root);
    } catch (err) {
      if (arena !== this.arena) return;
      this.root = null;
      fill(this.el.summary);
      fill(this.el.tree, h('p', { class: err.code === 'E_NOT_FOUND' ? 'dim' : 'text-bad' }, `${err.code ?? 'error'}: ${err.message}`));
    } finally {
      this.reading = false;
    }
  }

  page(arena, addr) {
    return getJson(`/dashboard/directory?arena=${arena}${addr ? `&page=${encodeURIComponent(addr)}` : ''}`);
  }

  renderSummary(root, before) {
    const r = root.root;
    const changed = before && before.version !== root.version ? h('span', { class: 'text-ok' }, ` changed at ${fmtTime(Date.now())}`) : null;
    fill(this.el.summary,
      h('span', {}, `${fmtNum(r.entries)} reservation${r.entries === 1 ? '' : 's'} in ${fmtNum(r.pages)} directory page${r.pages === 1 ? '' : 's'}, ${r.depth} level${r.depth === 1 ? '' : 's'} deep`),
      h('span', { class: 'dim' }, ' · home '), h('span', { class: 'mono', title: root.home }, shortId(root.home)),
      h('span', { class: 'dim' }, ' · next address '), h('span', { class: 'mono' }, r.highWater),
      r.superRoot ? [h('span', { class: 'dim' }, ' · super-root '), h('span', { class: 'mono' }, r.superRoot)] : null,
      changed);
  }

  /** One directory page as a row that opens to its children or its reservations. */
  pageItem(arena, view, from) {
    const li = h('li', { class: ['dir-page', `dir-${view.kind}`], dataset: { page: view.address, kind: view.kind } });
    const what = view.kind === 'inner'
      ? `inner, level ${view.level} · ${view.children.length} children`
      : `leaf · ${view.entries.length} reservation${view.entries.length === 1 ? '' : 's'}`;
    const row = h('div', { class: 'entry-row dir-row', role: 'button', tabindex: 0 },
      h('span', { class: 'twisty' }, '▸'),
      h('span', { class: ['icon', view.kind === 'inner' ? 'icon-dir' : 'icon-file'], 'aria-hidden': 'true' }),
      h('span', { class: 'entry-name mono' }, view.address === this.root?.address ? `root ${view.address}` : view.address),
      h('span', { class: 'dim small' }, what),
      h('span', { class: 'dim small mono dir-from', title: 'the lowest start address this page routes to' }, from ? `from ${from}` : ''));
    const toggle = async () => {
      if (li.classList.contains('open')) {
        li.classList.remove('open');
        row.querySelector('.twisty').textContent = '▸';
        li.querySelector(':scope > .dir-body')?.remove();
        this.open.delete(view.address);
        return;
      }
      await this.expand(li, view);
    };
    row.addEventListener('click', () => void toggle());
    row.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        void toggle();
      }
    });
    li.append(row);
    li.view = view;
    return li;
  }

  /** Opens `li` (the page `view`): a leaf's reservations, or an inner page's children, each read from the home; open ones stay open. */
  async expand(li, view) {
    li.classList.add('open');
    li.querySelector(':scope > .dir-row .twisty').textContent = '▾';
    this.open.add(view.address);
    if (view.kind === 'leaf') {
      li.append(h('div', { class: 'dir-body' }, this.entriesTable(view)));
      return;
    }
    const ul = h('ul', { class: 'tree dir-body' }, h('li', { class: 'dim empty' }, 'reading…'));
    li.append(ul);
    const arena = this.arena;
    const children = await Promise.all(view.children.map((c) => this.page(arena, c.address).then((v) => ({ c, v }), (err) => ({ c, err }))));
    if (arena !== this.arena) return;
    fill(ul, ...children.map(({ c, v, err }) => (v ? this.pageItem(arena, v, c.from) : h('li', { class: 'text-bad small' }, `${c.address}: ${err.code ?? 'error'}: ${err.message}`))));
    for (const child of ul.children) if (child.view && this.open.has(child.view.address)) await this.expand(child, child.view);
  }

  entriesTable(view) {
    if (view.entries.length === 0) return h('p', { class: 'dim empty' }, '(no reservations)');
    const node = (id, i) => [i ? ', ' : '', h('span', { class: 'mono', title: id }, shortId(id))];
    return h('table', { class: 'grid dir-entries' },
      h('thead', {}, h('tr', {}, h('th', {}, 'start'), h('th', {}, 'pages'), h('th', {}, 'state'), h('th', {}, 'copies'), h('th', {}, 'core holders (first: responsible)'))),
      h('tbody', {}, view.entries.map((e) =>
        h('tr', { dataset: { start: e.start, state: e.state } },
          h('td', {}, h('a', { href: `#store/${e.start}`, class: 'mono', title: 'watch its first page', onclick: (ev) => { ev.preventDefault(); this.watchPage(e.start); } }, e.start)),
          h('td', { class: 'num' }, fmtNum(e.pages)),
          h('td', {}, e.state === 'materialized' ? badge('allocated', 'ok') : badge('reserved', 'self')),
          h('td', { class: 'num' }, e.state === 'materialized' ? `${e.copies}${e.volatile ? ' volatile' : ''}${e.cacheInRam ? ', in RAM' : ''}` : ''),
          h('td', {}, e.holders.length ? e.holders.map(node) : h('span', { class: 'dim' }, 'none'))))));
  }
}
