/**
 * The files a mount has open (SPEC.md M28): the number the kernel knows
 * each by (FUSE's `fh`), mapped to the file system's handle on the mount's
 * node. A handle lives on the node that opened it; after the mount moves to
 * another node (session.ts), or the node restarted and refuses the handle
 * (E_BAD_HANDLE), the file is opened again by its path there — without
 * create or truncate — and the call goes on. Writes the old node had not
 * made durable are lost with it, as a local disk loses what was not
 * fsynced: the file's next fsync or close says so (E_PAGE_LOST, EIO).
 */
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { FsStat } from '../../bus/messages/fs.js';
import type { MangroveClient } from '../client/pages.js';
import { newTxn } from '../client/txn.js';
import type { MountSession } from './session.js';

export interface OpenMode {
  read: boolean;
  write: boolean;
  append: boolean;
  /** A named stream (an extended attribute), not the file's data. */
  stream?: string;
}

interface OpenFile {
  path: string;
  mode: OpenMode;
  handle: string;
  generation: number;
  /** Written since its last fsync: close makes it durable. */
  dirty: boolean;
  /** Written, not yet durable, when the mount left the node it was open on: those writes may be gone. */
  lost: boolean;
}

/** Numbers the kernel is given; 0 is left unused, so a missing fh is never a file. */
const FIRST_FH = 1;

export class OpenFiles {
  private readonly files = new Map<number, OpenFile>();
  private next = FIRST_FH;
  /** Told when a file was opened again on another node (posix-locks.ts takes its locks again there). */
  onReopened: ((fh: number, client: MangroveClient, handle: string) => Promise<void>) | null = null;
  /** Told when a file is closed. */
  onClosed: ((fh: number) => void) | null = null;

  constructor(
    private readonly session: MountSession,
    private readonly fileset: string,
    private readonly owner: { uid: number; gid: number },
  ) {}

  get size(): number {
    return this.files.size;
  }

  /** Opens (or, with `create`, makes) `path`; resolves with the number the kernel will use. */
  async open(path: string, mode: OpenMode, create?: { mode: number }): Promise<{ fh: number; stat: FsStat }> {
    // A create's id, the same in every try (runtime/client/txn.ts).
    const made = create && { ...create, txn: newTxn() };
    const r = await this.session.run((c, generation) => this.openOn(c, generation, path, mode, made));
    const fh = this.next++;
    this.files.set(fh, r.file);
    return { fh, stat: r.stat };
  }

  /**
   * Runs `fn` with the handle of `fh` on the current node: opened again
   * first when the mount moved since, and once more when the node refuses
   * it as unknown (it restarted). `path` is where the kernel says the file
   * is now (FUSE follows renames).
   */
  with<T>(fh: number, path: string | null, fn: (client: MangroveClient, handle: string) => Promise<T>): Promise<T> {
    const file = this.files.get(fh);
    if (file === undefined) return Promise.reject(new MangroveError('E_BAD_HANDLE', `no open file ${fh} on this mount`));
    if (path !== null && path !== '') file.path = path;
    return this.session.run(async (c, generation) => {
      if (file.generation !== generation) await this.reopen(c, generation, fh, file);
      try {
        return await fn(c, file.handle);
      } catch (err) {
        if (!isMangroveError(err) || err.code !== 'E_BAD_HANDLE') throw err;
        await this.reopen(c, generation, fh, file);
        return fn(c, file.handle);
      }
    });
  }

  /** Notes that `fh` was written to (or cut): `sync` has work to do. */
  written(fh: number): void {
    const file = this.files.get(fh);
    if (file !== undefined) file.dirty = true;
  }

  /** Makes what was written through `fh` durable on every core holder (fsync); nothing to do if nothing was. */
  async sync(fh: number, path: string | null, always = false): Promise<void> {
    const file = this.files.get(fh);
    if (file === undefined || (!file.dirty && !always)) return;
    await this.with(fh, path, async (c, handle) => {
      // Checked here, after `with` opened the file again where it had to.
      if (file.lost) {
        file.lost = false;
        file.dirty = false;
        throw new MangroveError('E_PAGE_LOST', `writes to ${file.path} since its last fsync were on a node that stopped answering, and may be lost: write them again`);
      }
      // Cleared first: a write that ends while the fsync runs marks the file again.
      file.dirty = false;
      try {
        await c.fsCall({ op: 'fsync', handle });
      } catch (err) {
        file.dirty = true;
        throw err;
      }
    });
  }

  /** Closes `fh` on its node (a handle on a node the mount left is gone with it). */
  async close(fh: number): Promise<void> {
    const file = this.files.get(fh);
    if (file === undefined) throw new MangroveError('E_BAD_HANDLE', `no open file ${fh} on this mount`);
    this.files.delete(fh);
    this.onClosed?.(fh);
    if (file.generation !== this.session.generation) return;
    await this.session.run(async (c, generation) => {
      if (generation !== file.generation) return;
      try {
        await c.fsCall({ op: 'close', handle: file.handle });
      } catch (err) {
        if (!isMangroveError(err) || err.code !== 'E_BAD_HANDLE') throw err;
      }
    });
  }

  /** Makes what was written durable, then closes every open file (the mount is going away). */
  async closeAll(): Promise<void> {
    await Promise.allSettled([...this.files.keys()].map((fh) => this.sync(fh, null).finally(() => this.close(fh))));
  }

  private async openOn(c: MangroveClient, generation: number, path: string, mode: OpenMode, create?: { mode: number; txn: string }): Promise<{ file: OpenFile; stat: FsStat }> {
    const r = (await c.fsCall({
      op: 'open',
      fs: this.fileset,
      path,
      read: mode.read,
      write: mode.write,
      append: mode.append,
      stream: mode.stream,
      ...(create ? { create: true, mode: create.mode & 0o7777, uid: this.owner.uid, gid: this.owner.gid, txn: create.txn } : {}),
    })) as { handle: string; stat: FsStat };
    return { file: { path, mode, handle: r.handle, generation, dirty: false, lost: false }, stat: r.stat };
  }

  private async reopen(c: MangroveClient, generation: number, fh: number, file: OpenFile): Promise<void> {
    const r = await this.openOn(c, generation, file.path, file.mode);
    if (file.dirty) file.lost = true;
    file.handle = r.file.handle;
    file.generation = generation;
    await this.onReopened?.(fh, c, file.handle);
  }
}
