// The Files view: the file system's filesets (M18) and a tree of each, read
// a directory at a time as it is opened (GET /dashboard/filesets,
// GET /dashboard/files?fs=F&path=P, at most 1000 entries a directory).

import { badge, fill, fmtBytes, fmtDateTime, fmtTime, getJson, h } from './util.js';

export class FilesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.root = document.getElementById('view-files');
    this.el = {
      filesets: this.root.querySelector('#filesets'),
      tree: this.root.querySelector('#file-tree'),
      detail: this.root.querySelector('#file-detail'),
      title: this.root.querySelector('#tree-title'),
    };
    this.root.querySelector('#files-refresh').addEventListener('click', () => void this.refresh());
    this.fs = null;
    this.loaded = false;
  }

  show() {
    if (!this.loaded) void this.refresh();
  }

  async refresh() {
    this.loaded = true;
    fill(this.el.filesets, h('p', { class: 'dim' }, 'loading…'));
    let sets;
    try {
      sets = await getJson('/dashboard/filesets');
    } catch (err) {
      this.loaded = false;
      fill(this.el.filesets, h('p', { class: 'text-bad' }, `${err.code ?? 'error'}: ${err.message}`));
      return;
    }
    const list = Array.isArray(sets) ? sets : sets.filesets ?? [];
    if (!this.fs || !list.some((s) => s.name === this.fs)) this.fs = list.find((s) => s.state === 'online')?.name ?? list[0]?.name ?? null;
    fill(this.el.filesets, h('ul', { class: 'pick-list' }, list.map((s) => h('li', {},
      h('button', { type: 'button', class: ['pick', s.name === this.fs ? 'picked' : ''], dataset: { fileset: s.name }, onclick: () => this.pick(s.name) },
        h('span', { class: 'pick-name' }, s.name),
        badge(s.state, s.state === 'online' ? 'ok' : 'warn'),
        s.attrs?.readOnly ? badge('read-only', 'info') : null,
        h('div', { class: 'dim small' }, `#${s.id}, created ${fmtDateTime(s.createdMs)}${s.attrs?.comment ? ` · ${s.attrs.comment}` : ''}`))))));
    if (list.length === 0) fill(this.el.filesets, h('p', { class: 'dim' }, 'No filesets.'));
    if (this.fs) await this.openRoot();
  }

  pick(name) {
    this.fs = name;
    for (const b of this.el.filesets.querySelectorAll('[data-fileset]')) b.classList.toggle('picked', b.dataset.fileset === name);
    void this.openRoot();
  }

  async openRoot() {
    this.el.title.textContent = `${this.fs}:/`;
    fill(this.el.detail, h('p', { class: 'dim' }, 'Click a file to see its attributes; click a directory to open it.'));
    const ul = h('ul', { class: 'tree', dataset: { path: '/' } });
    fill(this.el.tree, ul);
    await this.readDir(ul, '/');
  }

  /** Reads directory `path` into the list `ul`. */
  async readDir(ul, path) {
    fill(ul, h('li', { class: 'dim' }, 'reading…'));
    let r;
    try {
      r = await getJson(`/dashboard/files?fs=${encodeURIComponent(this.fs)}&path=${encodeURIComponent(path)}`);
    } catch (err) {
      fill(ul, h('li', { class: 'text-bad' }, `${err.code ?? 'error'}: ${err.message}`));
      return;
    }
    const entries = [...(r.entries ?? [])].sort((a, b) => (a.type === 'dir') === (b.type === 'dir') ? a.name.localeCompare(b.name) : a.type === 'dir' ? -1 : 1);
    if (entries.length === 0) {
      fill(ul, h('li', { class: 'dim empty' }, '(empty)'));
      return;
    }
    fill(ul, ...entries.map((e) => this.entry(e, path === '/' ? `/${e.name}` : `${path}/${e.name}`)));
    if (r.next !== null && r.next !== undefined) ul.append(h('li', { class: 'dim' }, `… more than ${entries.length} entries; the first ${entries.length} shown`));
  }

  entry(e, path) {
    const isDir = e.type === 'dir';
    const li = h('li', { class: ['entry', `entry-${e.type}`], dataset: { path, type: e.type } });
    const row = h('div', { class: 'entry-row', role: 'button', tabindex: 0 },
      h('span', { class: 'twisty' }, isDir ? '▸' : ''),
      h('span', { class: ['icon', `icon-${e.type}`], 'aria-hidden': 'true' }),
      h('span', { class: 'entry-name' }, e.name),
      h('span', { class: 'entry-meta dim' }, isDir ? '' : fmtBytes(e.size)),
      h('span', { class: 'entry-meta dim' }, fmtTime(e.mtimeMs)));
    const activate = () => {
      for (const s of this.el.tree.querySelectorAll('.entry-row.selected')) s.classList.remove('selected');
      row.classList.add('selected');
      this.detail(e, path);
      if (!isDir) return;
      const open = li.classList.toggle('open');
      row.querySelector('.twisty').textContent = open ? '▾' : '▸';
      let sub = li.querySelector(':scope > ul');
      if (open) {
        if (!sub) {
          sub = h('ul', { class: 'tree', dataset: { path } });
          li.append(sub);
        }
        sub.hidden = false;
        void this.readDir(sub, path);
      } else if (sub) sub.hidden = true;
    };
    row.addEventListener('click', activate);
    row.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        activate();
      }
    });
    li.append(row);
    return li;
  }

  detail(e, path) {
    const f = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    fill(this.el.detail, h('h3', { class: 'mono' }, `${this.fs}:${path}`), h('dl', { class: 'kv' },
      f('type', e.type),
      f('size', `${fmtBytes(e.size)} (${e.size} bytes)`),
      f('mode', `0${(e.mode & 0o7777).toString(8)}`),
      f('owner', `${e.uid}:${e.gid}`),
      f('links', String(e.nlink)),
      f('inode', String(e.ino)),
      f('blocks', String(e.blocks)),
      f('modified', fmtDateTime(e.mtimeMs)),
      f('changed', fmtDateTime(e.ctimeMs)),
      f('created', fmtDateTime(e.birthtimeMs))));
  }
}
