/**
 * Filesets (SPEC.md M18, M22; patent, "Fileset" and "File system
 * recovery"): the super-root that lists them, the default fileset made when
 * the file system is first used, and create, delete, list, control and
 * mount/unmount (online/offline).
 *
 * Creation in the patent's order: the fileset's pages (its page, its inode
 * table, its root directory) are allocated and written and flushed first,
 * and only then is the fileset recorded in the super-root; a crash between
 * leaves pages nobody points at, never a fileset half made. Deletion: the
 * fileset is marked `deleting` (flushed), every inode's pages and the
 * inode table are freed, then the super-root forgets it and its page goes
 * last; a crash in the middle leaves it listed as `deleting`, and deleting
 * it again finishes the work. The first super-root is set by a
 * compare-and-set on the engine's super-root (M7), so nodes that race to
 * make it agree on one.
 */
import { MangroveError } from '../../bus/errors.js';
import type { FilesetInfo } from '../../bus/messages/fs.js';
import { formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import { COMMENT_CHARS_MAX, FILESETS_PER_PAGE, superRootFits, type Fileset, type FilesetRecord, type SuperRoot } from '../../machines/fs/fileset.js';
import { newInode } from '../../machines/fs/inode.js';
import { emptyTablePage, GROUP_INODES, ROOT_INO, TABLE_PAGES_MAX, take, usedInodes, inodeAddress } from '../../machines/fs/inode-table.js';
import { checkFilesetName, DEFAULT_FILESET } from '../../machines/fs/names.js';
import type { FsContext } from './fs-context.js';
import { Update } from './fs-pages.js';
import { freeFilePages } from './file-pages.js';
import { ignoreGone } from './ignore-gone.js';

/** Filesets the file system holds (super-root pages × FILESETS_PER_PAGE). */
export const FILESETS_MAX = 10 * FILESETS_PER_PAGE;

/** A fileset as calls answer it (no addresses: they are the file system's business). */
function infoOf(r: FilesetRecord, f: Pick<Fileset, 'createdMs' | 'attrs' | 'state'>): FilesetInfo {
  return { id: r.id, name: r.name, state: f.state, createdMs: f.createdMs, attrs: f.attrs };
}

export class Filesets {
  /** The file system's super-root page, once known (it never moves). */
  private root: bigint | null = null;

  constructor(private readonly ctx: FsContext) {}

  /** The super-root page; made (with the default fileset) if the space has none yet. */
  async superRoot(): Promise<bigint> {
    if (this.root !== null) return this.root;
    const set = await this.ctx.pages.superRoot();
    if (set !== null) return (this.root = set);
    const mine = await this.makeSuperRoot();
    const won = await this.ctx.pages.setSuperRootIfNone(mine.addr);
    if (won !== mine.addr) {
      this.ctx.log.info({ ours: formatAddress(mine.addr), theirs: formatAddress(won) }, 'another node made the file system first; ours is freed');
      await mine.free();
    } else this.ctx.log.info({ superRoot: formatAddress(won) }, 'made the file system and its default fileset');
    return (this.root = won);
  }

  /** Every fileset, walking the super-root's pages. */
  async list(): Promise<FilesetInfo[]> {
    const out: FilesetInfo[] = [];
    for (const { page } of await this.pagesOf()) {
      for (const r of page.filesets) {
        const f = await this.ctx.pages.fileset(r.addr);
        out.push(infoOf(r, f));
      }
    }
    return out;
  }

  /** The fileset named `name`: its record and its page. */
  async find(name: string): Promise<{ record: FilesetRecord; fs: Fileset }> {
    checkFilesetName(name);
    for (const { page } of await this.pagesOf()) {
      const record = page.filesets.find((f) => f.name === name);
      if (record) return { record, fs: await this.ctx.pages.fileset(record.addr) };
    }
    throw new MangroveError('E_NOT_FOUND', `no fileset is named ${JSON.stringify(name)} (mangrove fs fileset list shows them)`);
  }

  async create(name: string): Promise<FilesetInfo> {
    checkFilesetName(name);
    const root = await this.superRoot();
    // The id is taken first, so every page made for the fileset carries it (M22: pages tagged with their fileset).
    const id = await this.ctx.locks.with([root], async () => {
      const pages = await this.pagesOf();
      if (pages.some((p) => p.page.filesets.some((r) => r.name === name))) throw exists(name);
      const head = pages[0];
      const taken = head.page.nextId++;
      const u = new Update(this.ctx.pages);
      u.superRoot(head.addr, head.page);
      await u.flush();
      return taken;
    });
    const made = await this.makeFileset(id, name);
    try {
      return await this.ctx.locks.with([root], async () => this.record(made.fs, made.addr));
    } catch (err) {
      await made.free();
      throw err;
    }
  }

  /** Mount or unmount (M18): an offline fileset opens no handle and serves no call. */
  async setState(name: string, state: 'online' | 'offline'): Promise<FilesetInfo> {
    return this.change(name, (f) => {
      if (f.state === 'deleting') throw new MangroveError('E_OFFLINE', `fileset ${name} is being deleted`);
      f.state = state;
    });
  }

  /** Fileset control (M18). */
  async setAttrs(name: string, attrs: Partial<Fileset['attrs']>): Promise<FilesetInfo> {
    if (attrs.comment !== undefined && (typeof attrs.comment !== 'string' || attrs.comment.length > COMMENT_CHARS_MAX)) {
      throw new MangroveError('E_BAD_ARGUMENT', `a fileset's comment is at most ${COMMENT_CHARS_MAX} characters`);
    }
    return this.change(name, (f) => (f.attrs = { ...f.attrs, ...attrs }));
  }

  /**
   * Deletes an offline fileset none of whose files this node has open
   * (`openHere`); frees every page it has. Resumes a delete a crash cut short.
   */
  async delete(name: string, openHere: (id: number) => number): Promise<{ freedInodes: number }> {
    const root = await this.superRoot();
    const { record, fs } = await this.find(name);
    if (fs.state === 'online') throw new MangroveError('E_BUSY', `fileset ${name} is online; take it offline first (mangrove fs fileset offline ${name})`);
    if (openHere(fs.id) > 0) throw new MangroveError('E_BUSY', `fileset ${name} has ${openHere(fs.id)} handles open; close them first`);
    await this.change(name, (f) => (f.state = 'deleting'));
    let freed = 0;
    for (let page = 0; page < fs.tablePages; page++) {
      const tableAddr = fs.tableBase + BigInt(page * PAGE_BYTES);
      const t = await this.ctx.pages.tablePage(tableAddr, page);
      for (const ino of usedInodes(t)) {
        const i = await this.ctx.pages.inodeOrNull(inodeAddress(t, ino)!).catch(() => null);
        if (i) await freeFilePages(this.ctx, i);
        freed++;
      }
      for (const g of t.groups) if (g.base !== null) await ignoreGone(this.ctx.pages.unreserve(g.base, GROUP_INODES));
    }
    await ignoreGone(this.ctx.pages.unreserve(fs.tableBase, TABLE_PAGES_MAX));
    await this.ctx.locks.with([root], async () => {
      for (const { addr, page } of await this.pagesOf()) {
        const at = page.filesets.findIndex((f) => f.id === record.id);
        if (at < 0) continue;
        page.filesets.splice(at, 1);
        const u = new Update(this.ctx.pages);
        u.superRoot(addr, page);
        await u.flush();
      }
    });
    await ignoreGone(this.ctx.pages.unreserve(record.addr, 1));
    return { freedInodes: freed };
  }

  // ---- inside ----

  private async pagesOf(): Promise<{ addr: bigint; page: SuperRoot }[]> {
    const out: { addr: bigint; page: SuperRoot }[] = [];
    for (let addr: bigint | null = await this.superRoot(); addr !== null && out.length < FILESETS_MAX / FILESETS_PER_PAGE; ) {
      const page = await this.ctx.pages.superRootPage(addr);
      if (!page) throw new MangroveError('E_CORRUPT', `the super-root page at ${formatAddress(addr)} was never written`);
      out.push({ addr, page });
      addr = page.next;
    }
    return out;
  }

  /** Adds a made fileset to the super-root (the caller holds its lock). */
  private async record(fs: Fileset, addr: bigint): Promise<FilesetInfo> {
    const pages = await this.pagesOf();
    if (pages.some((p) => p.page.filesets.some((f) => f.name === fs.name))) throw exists(fs.name);
    const id = fs.id;
    const u = new Update(this.ctx.pages);
    const rec: FilesetRecord = { id, name: fs.name, addr, state: fs.state };
    const roomy = pages.find((p) => superRootFits({ ...p.page, filesets: [...p.page.filesets, rec] }));
    if (roomy) roomy.page.filesets.push(rec);
    else {
      if (pages.length * FILESETS_PER_PAGE >= FILESETS_MAX) throw new MangroveError('E_FULL', `the file system holds at most ${FILESETS_MAX} filesets`);
      const next = await this.onePage();
      u.superRoot(next, { nextId: 0, filesets: [rec], next: null });
      const last = pages[pages.length - 1];
      last.page.next = next;
      u.superRoot(last.addr, last.page);
    }
    if (roomy) u.superRoot(roomy.addr, roomy.page);
    await u.flush();
    return infoOf(rec, fs);
  }

  private async change(name: string, how: (f: Fileset) => void): Promise<FilesetInfo> {
    const root = await this.superRoot();
    return this.ctx.locks.with([root], async () => {
      const { record } = await this.find(name);
      return this.ctx.locks.with([record.addr], async () => {
        const fs = await this.ctx.pages.fileset(record.addr);
        how(fs);
        const u = new Update(this.ctx.pages);
        u.fileset(record.addr, fs);
        for (const { addr, page } of await this.pagesOf()) {
          const r = page.filesets.find((f) => f.id === record.id);
          if (!r || r.state === fs.state) continue;
          r.state = fs.state;
          u.superRoot(addr, page);
        }
        await u.flush();
        return infoOf(record, fs);
      });
    });
  }

  private async onePage(): Promise<bigint> {
    const addr = await this.ctx.pages.reserve(1);
    await this.ctx.pages.alloc(addr, 1);
    return addr;
  }

  /** The super-root page and the default fileset, written and flushed, not yet the space's super-root. */
  private async makeSuperRoot(): Promise<{ addr: bigint; free: () => Promise<void> }> {
    const made = await this.makeFileset(1, DEFAULT_FILESET);
    const addr = await this.onePage();
    const u = new Update(this.ctx.pages);
    u.superRoot(addr, { nextId: 2, filesets: [{ id: 1, name: DEFAULT_FILESET, addr: made.addr, state: 'online' }], next: null });
    await u.flush();
    return { addr, free: async () => (await made.free(), await ignoreGone(this.ctx.pages.unreserve(addr, 1))) };
  }

  /** A fileset's pages: its page, its inode table (page 0), its root directory; written and flushed. */
  private async makeFileset(id: number, name: string): Promise<{ fs: Fileset; addr: bigint; free: () => Promise<void> }> {
    const addr = await this.onePage();
    const tableBase = await this.ctx.pages.reserve(TABLE_PAGES_MAX);
    await this.ctx.pages.alloc(tableBase, 1);
    const group = await this.ctx.pages.reserve(GROUP_INODES);
    await this.ctx.pages.alloc(group, GROUP_INODES);
    const table = emptyTablePage(0);
    table.groups[0].base = group;
    take(table, ROOT_INO);
    const rootAddr = inodeAddress(table, ROOT_INO)!;
    const now = this.ctx.wallMs();
    const fs: Fileset = { id, name, state: 'online', createdMs: now, rootAddr, tableBase, tablePages: 1, tableFree: 0, attrs: { readOnly: false, comment: '' } };
    const root = newInode({ fileset: id, ino: ROOT_INO, type: 'dir', mode: 0o755, uid: 0, gid: 0, parent: ROOT_INO, parentAddr: rootAddr, nowMs: now });
    const u = new Update(this.ctx.pages);
    u.tablePage(tableBase, table);
    u.inode(rootAddr, root);
    u.fileset(addr, fs);
    await u.flush();
    const free = async () => {
      for (const [a, n] of [[group, GROUP_INODES], [tableBase, TABLE_PAGES_MAX], [addr, 1]] as const) await ignoreGone(this.ctx.pages.unreserve(a, n));
    };
    return { fs, addr, free };
  }
}

function exists(name: string): MangroveError {
  return new MangroveError('E_EXISTS', `a fileset named ${JSON.stringify(name)} exists already`);
}
