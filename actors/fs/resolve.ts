/**
 * Path lookup (SPEC.md M19, M20): from a fileset's root, name by name, each
 * found through its directory's hash table; '..' goes to the directory's
 * parent (the root's is the root, as in POSIX); a symbolic link is followed
 * (at most SYMLINKS_MAX of them) except, when asked, as the last name.
 *
 * A lookup takes no lock: it reads the directory's inode, walks its lists,
 * and reads the inode again; the same version twice means no update came
 * between (an update writes its mark into the inode before it touches
 * anything else), so what it saw was one state of the directory. A
 * directory with a mark, or one that changed under the walk twice, is read
 * under its lock instead, which also recovers a mark an update left behind
 * when it died (dir-update.ts).
 */
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import { lookup, type Found } from '../../machines/fs/dir-index.js';
import { decodeInode, dirOf, type Inode } from '../../machines/fs/inode.js';
import { pathParts } from '../../machines/fs/names.js';
import { DirPages, type FsContext } from './fs-context.js';
import { withDirs, type FilesetRef } from './dir-update.js';

/** Symbolic links one lookup follows before it calls it a loop (Linux's MAXSYMLINKS). */
export const SYMLINKS_MAX = 40;
/** Unlocked tries of a lookup in one directory before it takes the lock. */
const OPTIMISTIC_TRIES = 2;

export interface Resolved {
  addr: bigint;
  inode: Inode;
  /** The directory holding the last name, and that name; for the root, the root and ''. */
  parent: bigint;
  name: string;
  /** The entry the last name was found in (its duplicated attributes), null for the root. */
  found: Found | null;
}

/** The entry `name` in the directory at `dir`, or null. */
export async function lookupIn(ctx: FsContext, ref: FilesetRef, dir: bigint, name: string): Promise<Found | null> {
  for (let tries = 0; tries < OPTIMISTIC_TRIES; tries++) {
    const before = await ctx.pages.readVersioned(dir);
    const d = decodeInode(before.data, dir);
    if (!d) throw new MangroveError('E_NOT_FOUND', 'the directory was deleted');
    if (d.mark) break;
    try {
      const found = await lookup(dirOf(d), new DirPages(ctx, d, dir), name);
      const after = await ctx.pages.readVersioned(dir);
      if (after.version === before.version) return found;
    } catch (err) {
      if (!isMangroveError(err) || err.code !== 'E_CORRUPT' || d.corrupt !== null) throw err;
    }
  }
  return withDirs(ctx, ref, [dir], async (dirs) => {
    const d = dirs.get(dir)!;
    return lookup(dirOf(d), new DirPages(ctx, d, dir), name);
  });
}

/** The file at `path` in the fileset; `follow`: a symbolic link as the last name is followed too. */
export async function resolve(ctx: FsContext, ref: FilesetRef, path: string, follow = true): Promise<Resolved> {
  const root = ref.fs.rootAddr;
  const parts = pathParts(path);
  let at = root;
  let inode = await ctx.pages.inode(root);
  let parent = root;
  let name = '';
  let found: Found | null = null;
  let links = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    dirOf(inode, 'the path');
    if (part === '..') {
      parent = inode.parentAddr;
      at = inode.parentAddr;
      inode = await ctx.pages.inode(at);
      name = '';
      found = null;
      continue;
    }
    const f = await lookupIn(ctx, ref, at, part);
    if (!f) throw new MangroveError('E_NOT_FOUND', `no ${JSON.stringify(part)} in ${describe(path)}`);
    const next = await ctx.pages.inode(f.entry.addr);
    if (next.type === 'symlink' && (parts.length > 0 || follow)) {
      if (++links > SYMLINKS_MAX) throw new MangroveError('E_LOOP', `more than ${SYMLINKS_MAX} symbolic links in ${describe(path)}`);
      const target = next.target ?? '';
      parts.unshift(...pathParts(target));
      if (target.startsWith('/')) {
        at = root;
        inode = await ctx.pages.inode(root);
      }
      continue;
    }
    parent = at;
    name = part;
    found = f;
    at = f.entry.addr;
    inode = next;
  }
  return { addr: at, inode, parent, name, found };
}

/** The directory that is to hold the last name of `path`, and that name (for create, unlink, rename). */
export async function resolveParent(ctx: FsContext, ref: FilesetRef, path: string): Promise<{ dir: bigint; inode: Inode; name: string }> {
  const parts = pathParts(path);
  const name = parts.pop();
  if (name === undefined || name === '..') throw new MangroveError('E_BAD_NAME', `${describe(path)} names no entry a directory can hold`);
  const d = await resolve(ctx, ref, parts.join('/'), true);
  dirOf(d.inode, 'the path');
  return { dir: d.addr, inode: d.inode, name };
}

function describe(path: string): string {
  return JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);
}
