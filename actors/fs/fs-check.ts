/**
 * `fs check` (SPEC.md M22): every structure of a fileset verified, what can
 * be repaired repaired, and the rest reported. It walks the inode table
 * (bitmaps and free-inode lists), then the tree from the root: each
 * directory under its lock (so a mark left by an update that died is
 * recovered as any update would), its index rebuilt from its entries, each
 * entry checked against its inode (the inode is there and in use, its
 * attributes' synchronisation version matches, a directory's parent is the
 * directory listing it), each file's link count against the entries naming
 * it. Inodes in use that no entry names are freed: an unlinked file open
 * nowhere, or an inode taken by a create that died before its mark.
 *
 * Repairs are reported and leave the fileset consistent; `problems` are
 * what could not be repaired (a directory damaged past repair is marked
 * corrupt and refused), and make the check fail.
 */
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { CheckReport } from '../../bus/messages/fs.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import { list, lookup, rebuild, rewrite } from '../../machines/fs/dir-index.js';
import { entryFor, type DirEntry } from '../../machines/fs/entry-page.js';
import type { Inode } from '../../machines/fs/inode.js';
import { inodeAddress, rebuildFreeList, ROOT_INO, usedInodes } from '../../machines/fs/inode-table.js';
import { DirPages, freeInode, settlePending, type FsContext } from './fs-context.js';
import { Update } from './fs-pages.js';
import { withDirs, type FilesetRef } from './dir-update.js';
import { liveOpeners, reclaimIfUnused } from './reclaim.js';

/** How long an inode taken for a create may go unnamed before a check frees it: far longer than a create takes. */
export const CREATE_GRACE_MS = 60_000;

/** Entries a check reads from one directory per page of listing. */
const LIST_BATCH = 1000;

export async function checkFileset(ctx: FsContext, ref: FilesetRef, repair: boolean): Promise<CheckReport> {
  const report: CheckReport = { fileset: ref.fs.name, directories: 0, files: 0, repairs: [], problems: [], clean: true };
  const note = (what: string) => (repair ? report.repairs : report.problems).push(what);
  // The tree first: each directory's mark is recovered as its lock is taken, and a recovery may free inodes.
  const recoveredBefore = ctx.recovered;
  const named: DirEntry[] = [];
  const links = new Map<number, number>();
  const queue: bigint[] = [ref.fs.rootAddr];
  const seen = new Set<bigint>();
  links.set(ROOT_INO, 1);
  while (queue.length > 0) {
    const dir = queue.shift()!;
    if (seen.has(dir)) {
      report.problems.push(`a directory is listed in two places (ino at ${dir.toString(16)})`);
      continue;
    }
    seen.add(dir);
    report.directories++;
    try {
      await checkDir(ctx, ref, dir, repair, note, (e) => {
        links.set(e.ino, (links.get(e.ino) ?? 0) + 1);
        if (e.type === 'dir') queue.push(e.addr);
        else report.files++;
        named.push(e);
      });
    } catch (err) {
      if (!isMangroveError(err) || err.code !== 'E_CORRUPT') throw err;
      report.problems.push(err.message);
    }
  }
  const used = new Map<number, bigint>();
  for (let page = 0; page < ref.fs.tablePages; page++) {
    const tableAddr = ref.fs.tableBase + BigInt(page * PAGE_BYTES);
    await ctx.locks.with([tableAddr], async () => {
      const t = await ctx.pages.tablePage(tableAddr, page);
      const wrong = rebuildFreeList(t, repair);
      wrong.forEach(note);
      if (wrong.length > 0 && repair) {
        const u = new Update(ctx.pages);
        u.tablePage(tableAddr, t);
        await u.flush();
      }
      for (const ino of usedInodes(t)) used.set(ino, inodeAddress(t, ino)!);
    });
  }
  for (const r of ctx.recoveries.slice(Math.max(0, ctx.recoveries.length - (ctx.recovered - recoveredBefore)))) {
    report.repairs.push(`directory at ${r.dir}: an update left half done (${r.mark}) was ${r.outcome}`, ...r.repairs);
  }
  for (const e of named) if (!used.has(e.ino)) report.problems.push(`entry ${JSON.stringify(e.name)} names inode ${e.ino}, which the inode table says is free`);
  for (const [ino, addr] of used) {
    if (links.has(ino)) {
      await checkInode(ctx, addr, links.get(ino)!, repair, note);
      continue;
    }
    await checkUnnamed(ctx, ref, ino, addr, repair, note, report);
  }
  report.clean = report.problems.length === 0;
  return report;
}

/** One directory: its mark recovered (withDirs), its index rebuilt, every entry against its inode. */
async function checkDir(ctx: FsContext, ref: FilesetRef, dir: bigint, repair: boolean, note: (s: string) => void, each: (e: DirEntry) => void): Promise<void> {
  await withDirs(ctx, ref, [dir], async (dirs) => {
    const d = dirs.get(dir)!;
    if (d.corrupt !== null) throw new MangroveError('E_CORRUPT', `directory ino ${d.ino} is marked corrupt: ${d.corrupt}`);
    const pages = new DirPages(ctx, d, dir);
    const wrong = await rebuild(d.dir!, pages, repair);
    wrong.forEach((w) => note(`directory ino ${d.ino}: ${w}`));
    const u = new Update(ctx.pages);
    for (let from: number | null = 0; from !== null; ) {
      const batch = await list(d.dir!, pages, from, LIST_BATCH);
      for (const e of batch.entries) {
        each(e);
        const i = await ctx.pages.inodeIfWhole(e.addr);
        if (!i || i.ino !== e.ino) {
          note(`directory ino ${d.ino}: entry ${JSON.stringify(e.name)} points at no inode`);
          continue;
        }
        if (i.type === 'dir' && i.parentAddr !== dir) {
          note(`directory ino ${i.ino} names the wrong parent`);
          if (repair) {
            i.parentAddr = dir;
            i.parent = d.ino;
            u.inode(e.addr, i);
          }
        }
        if (e.sync !== i.sync && repair) {
          // The index was rebuilt just now: a lookup finds the entry's place.
          const at = await lookup(d.dir!, pages, e.name);
          if (at) await rewrite(pages, at.ref, entryFor(e.name, e.addr, i));
        }
      }
      from = batch.next;
    }
    if (repair) {
      pages.writeTo(u);
      if (wrong.length > 0) {
        d.sync++;
        u.inode(dir, d);
      }
      await u.flush();
    }
  });
}

/**
 * A named inode: its link count against the entries naming it (a
 * directory's is 2 + its subdirectories, kept by its own updates), and its
 * streams' segments against the engine's (checkSegments).
 */
async function checkInode(ctx: FsContext, addr: bigint, named: number, repair: boolean, note: (s: string) => void): Promise<void> {
  await ctx.locks.with([addr], async () => {
    const i = await ctx.pages.inodeIfWhole(addr);
    if (!i) return;
    await checkSegments(ctx, addr, i, repair, note);
    if (i.type === 'dir' || i.nlink === named) return;
    note(`inode ${i.ino} counts ${i.nlink} links; ${named} entries name it`);
    if (!repair) return;
    i.nlink = named;
    i.deleting = false;
    i.sync++;
    const u = new Update(ctx.pages);
    u.inode(addr, i);
    await u.flush();
  });
}

/**
 * The disk directory's side of a stream (M22's call-back, asked from here):
 * segments an extension recorded as pending and never finished (its node
 * died between the record and the inode's write after the allocation) are
 * settled: whatever the engine allocated of them is freed.
 */
async function checkSegments(ctx: FsContext, addr: bigint, i: Inode, repair: boolean, note: (s: string) => void): Promise<void> {
  for (const s of i.streams) {
    if (!s.pending) continue;
    note(`inode ${i.ino}: stream ${JSON.stringify(s.name)} has an extension cut short (pending segments ${s.pending})`);
    if (!repair) continue;
    const freed = await settlePending(ctx, s);
    if (freed > 0) note(`inode ${i.ino}: freed ${freed} pages the cut-short extension had allocated`);
    const u = new Update(ctx.pages);
    u.inode(addr, i);
    await u.flush();
  }
}

/** An inode in use that no entry names: freed, unless a live node has it open (its delete finishes at close). */
async function checkUnnamed(ctx: FsContext, ref: FilesetRef, ino: number, addr: bigint, repair: boolean, note: (s: string) => void, report: CheckReport): Promise<void> {
  const i = await ctx.pages.inodeIfWhole(addr);
  if (i && i.nlink === 0 && liveOpeners(ctx, i) > 0) return;
  // A create in flight elsewhere: its inode is taken, its entry not in yet (fs-context.ts allocInode).
  if (i && i.nlink === 0 && !i.deleting && ctx.wallMs() - i.btimeMs < CREATE_GRACE_MS) return;
  if (!i) {
    note(`inode ${ino} is taken in the table and was never written (a create that died before its mark)`);
    if (repair) await freeInode(ctx, ref.fs, ino);
    return;
  }
  if (i.nlink > 0) {
    report.problems.push(`inode ${ino} (${i.type}) has ${i.nlink} links and no entry names it`);
    if (!repair) return;
    await ctx.locks.with([addr], async () => {
      i.nlink = 0;
      i.deleting = true;
      const u = new Update(ctx.pages);
      u.inode(addr, i);
      await u.flush();
    });
    report.problems.pop();
    note(`inode ${ino} (${i.type}) had links and no entry: freed`);
  } else note(`inode ${ino} was unlinked and open nowhere: freed`);
  if (repair) await reclaimIfUnused(ctx, ref, addr);
}
