/**
 * Open files on this node (SPEC.md M20-M22; patent, "Files": a handle stands
 * for one open stream of one file): what each handle is for, whose it is,
 * the byte-range locks it holds, and the pages this node wrote to each file
 * since its last fsync. A handle's id carries this node's incarnation, so a
 * handle from before a restart is refused, never mistaken for a new one; a
 * handle is usable only by the client that opened it.
 */
import { MangroveError } from '../../bus/errors.js';
import type { RangeLock } from '../../machines/fs/byte-ranges.js';
import type { FilesetRef } from './dir-update.js';

/** Handles open on one node, and per client. */
export const HANDLES_MAX = 65_536;
export const HANDLES_PER_CLIENT_MAX = 4096;

export interface Handle {
  id: string;
  client: string;
  ref: FilesetRef;
  /** The file's inode. */
  addr: bigint;
  /** The stream open: '' the default data stream. */
  stream: string;
  read: boolean;
  write: boolean;
  append: boolean;
  /** Byte-range locks this handle holds (M21), given back when it closes. */
  locks: RangeLock[];
  /** The client last heard from, for handles of clients that went away (ms on the node's clock). */
  heardMs: number;
}

export class Handles {
  private readonly open = new Map<string, Handle>();
  private readonly perClient = new Map<string, number>();
  /**
   * Per file (inode address), the pages this node wrote since its last
   * fsync, and how many times this node had dropped its unflushed copies
   * (its engine's resets, M14) when the first of them was written: a reset
   * since then lost some of them, which fsync must say.
   */
  private readonly written = new Map<bigint, { pages: Set<bigint>; resets: number }>();
  private next = 1;

  constructor(
    private readonly epoch: number,
    /** This node's short id (M1), unique in the cluster: with the epoch, it makes a handle's id unique everywhere (a lock record's owner). */
    private readonly shortId: () => number,
  ) {}

  add(h: Omit<Handle, 'id' | 'locks'>): Handle {
    if (this.open.size >= HANDLES_MAX) throw new MangroveError('E_BUSY', `this node has ${HANDLES_MAX} handles open; close some`);
    const mine = this.perClient.get(h.client) ?? 0;
    if (mine >= HANDLES_PER_CLIENT_MAX) throw new MangroveError('E_BUSY', `a client may hold ${HANDLES_PER_CLIENT_MAX} handles on one node; close some`);
    const handle: Handle = { ...h, id: `${this.shortId()}.${this.epoch}.${this.next++}`, locks: [] };
    this.open.set(handle.id, handle);
    this.perClient.set(h.client, mine + 1);
    return handle;
  }

  /** The handle `id` of `client`: E_BAD_HANDLE for one closed, another client's, or from before a restart. */
  get(id: unknown, client: string): Handle {
    if (typeof id !== 'string') throw new MangroveError('E_BAD_HANDLE', 'a handle is a string a call to open returned');
    const h = this.open.get(id);
    if (!h) {
      const epoch = Number(id.split('.')[1]);
      if (Number.isInteger(epoch) && epoch !== this.epoch) throw new MangroveError('E_BAD_HANDLE', `handle ${id} was opened before this node restarted; open the file again`);
      throw new MangroveError('E_BAD_HANDLE', `handle ${id} is not open (closed already, or never opened here)`);
    }
    if (h.client !== client) throw new MangroveError('E_BAD_HANDLE', `handle ${id} belongs to another client`);
    return h;
  }

  remove(h: Handle): void {
    if (!this.open.delete(h.id)) return;
    const n = (this.perClient.get(h.client) ?? 1) - 1;
    if (n === 0) this.perClient.delete(h.client);
    else this.perClient.set(h.client, n);
  }

  /** Whether any handle here (but `except`) has the file at `addr` open. */
  isOpen(addr: bigint, except?: Handle): boolean {
    for (const h of this.open.values()) if (h.addr === addr && h !== except) return true;
    return false;
  }

  inFileset(id: number): number {
    let n = 0;
    for (const h of this.open.values()) if (h.ref.fs.id === id) n++;
    return n;
  }

  ofClient(client: string): Handle[] {
    return [...this.open.values()].filter((h) => h.client === client);
  }

  all(): Handle[] {
    return [...this.open.values()];
  }

  /** Where the pages written to `file` are noted; `resets`: the engine's reset count now. */
  wrote(file: bigint, resets: number): Set<bigint> {
    const known = this.written.get(file);
    if (known) return known.pages;
    const pages = new Set<bigint>();
    this.written.set(file, { pages, resets });
    return pages;
  }

  /**
   * The pages written to `file` since its last fsync, forgotten here (the
   * caller flushes them, and gives them back with `unflushed` if that
   * fails), with the reset count when the first was written.
   */
  takeWritten(file: bigint): { pages: bigint[]; resets: number | null } {
    const s = this.written.get(file);
    this.written.delete(file);
    return s ? { pages: [...s.pages], resets: s.resets } : { pages: [], resets: null };
  }

  /** How many pages written to `file` wait for a flush. */
  writtenCount(file: bigint): number {
    return this.written.get(file)?.pages.size ?? 0;
  }

  /** Pages a flush did not make durable: noted again, for the next fsync. */
  unflushed(file: bigint, taken: { pages: bigint[]; resets: number | null }): void {
    if (taken.resets === null) return;
    const pages = this.wrote(file, taken.resets);
    for (const p of taken.pages) pages.add(p);
    this.written.get(file)!.resets = Math.min(this.written.get(file)!.resets, taken.resets);
  }

  get size(): number {
    return this.open.size;
  }
}
