/**
 * The replicas of the disk directory (SPEC.md M8, M15, M16; docs/recovery.md
 * "Failover of an arena"): each arena's directory pages live at its home and,
 * complete, on the nodes the arena table (the top of the GDD, in the node
 * database) names as the arena's replicas. When the home fails, the PAN hands
 * the arena to one of them, which serves it from its own disk.
 *
 * Safety claim: every acknowledged directory change is on every replica the
 * arena table names. A change is sent, as one all-or-nothing commit, to
 * every named replica before it is acknowledged; a named replica that did
 * not take it (down, unreachable, refused) is un-named first, by a
 * node-database update the PAN runs with quorum (M16), and if that cannot be
 * done the change is not acknowledged (the operation fails; the change stands
 * at the home, which the patent allows of a failed operation). A node is
 * named only after it holds a full copy of the directory, read back and
 * checked (`dir_check`: every page decoded, the root at the home's version).
 *
 * When fewer than `copies - 1` replicas are named, the home appoints more
 * (the policy element's choice: other groups first, emptier disks), before
 * acknowledging the change that found the arena short; the re-replication
 * scan does the same in the background after a failure. Appointing needs a
 * live PAN and quorum; without them the change still stands on the replicas
 * already named, and is acknowledged if none missed it.
 *
 * A named replica that is alive but did not take a change (slow, or its
 * disk refused) stays named but is behind: the operation fails with
 * E_RECOVERING (the program retries), and before any later change is sent
 * to it, it is given a full copy again. A change is the delta of a
 * copy-on-write tree, so a replica that missed one must never get the next
 * alone: it would reference pages the replica never got. So every replica
 * named holds, at any time, a whole directory as it stood after some change,
 * and every acknowledged change.
 *
 * A change that missed a replica still stands at the home, and the home
 * must not act on it: a flush to core holders only the home knows of would
 * be lost if the replica, which does not know them, took the arena over. So
 * while a replica is behind (`behindOn`), the home decides nothing in the
 * arena (its requests get E_RECOVERING) until `catchUp` has given it a full
 * copy, or replaced it. A node that starts serving an arena (restarted, or
 * handed it) has not compared its directory with the named replicas yet:
 * until it has, they count as behind, and catching up starts with a
 * comparison (`dir_check`), copying only where it differs.
 *
 * Changes of one node's directories are sent one sync at a time, in order:
 * a sync takes every page written since the last, so an operation whose
 * pages an earlier sync took waits for that sync before it answers.
 */
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import { DIR_PAGES_PER_CALL_MAX, type PeerCall } from '../../bus/messages/page.js';
import { addressKey } from '../../machines/memory/address.js';
import { arenaEntryOf } from '../../machines/membership/node-db.js';
import type { Log } from '../log.js';
import { chooseHolders, type CoreHolderDeps } from './core-holders.js';
import { arenaOf, type PageSpace } from './page-space.js';

export interface DirectoryReplicaDeps {
  self: string;
  core: CoreHolderDeps;
  space: PageSpace;
  /** Core copies of a page (M11): the directory keeps as many, its home's included. */
  copies: number;
  db(): NodeDbSnapshot;
  isAlive(id: string): boolean;
  call<R>(to: string, req: PeerCall): Promise<R>;
  /** The primary anchor node as this node knows it, if any. */
  pan(): string | null;
  log: Log;
}

type DirectoryPage = { addr: bigint; version: number; data: Uint8Array };

interface Named {
  gen: number;
  replicas: string[];
  /** The node-database version that names them. */
  version: number;
}

export class DirectoryReplicas {
  /** Replica sets named by an update this node asked for, until its copy of the database shows them. */
  private readonly named = new Map<number, Named>();
  private lane: Promise<unknown> = Promise.resolve();
  /** Per arena, named replicas that missed a change: they get a full copy before anything else. */
  private readonly behind = new Map<number, Set<string>>();
  /** Arenas whose named replicas this incarnation has compared with its directory (or given it). */
  private readonly checked = new Set<number>();
  /** Per arena, the catch-up running. */
  private readonly catching = new Map<number, Promise<void>>();

  constructor(private readonly deps: DirectoryReplicaDeps) {}

  /** The nodes named as `arena`'s directory replicas, as this node knows them. */
  replicasOf(arena: number): string[] {
    const db = this.deps.db();
    const mine = this.named.get(arena);
    if (mine && db.version < mine.version) return mine.replicas;
    this.named.delete(arena);
    return [...(arenaEntryOf(db, arena)?.replicas ?? [])];
  }

  /** Replicas this home's arenas lack: how many each is short of `copies - 1` live named ones. */
  shortfall(arenas: readonly number[]): Map<number, number> {
    const out = new Map<number, number>();
    for (const arena of arenas) {
      const live = this.replicasOf(arena).filter((r) => this.deps.isAlive(r)).length;
      const want = this.deps.copies - 1;
      if (live < want) out.set(arena, want - live);
    }
    return out;
  }

  /**
   * Whether a named replica of `arena` lacks a change this node's directory
   * has (or is not known to have it yet): the home acts on nothing in the
   * arena until `catchUp` has brought them level.
   */
  behindOn(arena: number): boolean {
    this.notice(arena);
    return (this.behind.get(arena)?.size ?? 0) > 0;
  }

  /**
   * Brings every replica of `arena` that is behind level with this node's
   * directory: compared first, given a full copy where it differs; one that
   * cannot be (down, failing) is replaced by a new replica, named with
   * quorum. Resolves at once when none is behind; rejects (E_RECOVERING) if
   * one still is.
   */
  catchUp(arena: number): Promise<void> {
    if (!this.behindOn(arena)) return Promise.resolve();
    const running = this.catching.get(arena);
    if (running) return running;
    const run = this.lane.then(() => this.catchUpNow(arena));
    this.lane = run.catch(() => undefined);
    const tracked = run.finally(() => this.catching.delete(arena));
    this.catching.set(arena, tracked);
    return tracked;
  }

  /** Sends the directory pages written since the last sync to their replicas; see the claim above. */
  sync(take: () => DirectoryPage[]): Promise<void> {
    const run = this.lane.then(() => this.syncTaken(take()));
    this.lane = run.catch(() => undefined);
    return run;
  }

  /** Brings `arena` back to `copies - 1` live named replicas (the re-replication scan): resolves with the replicas named now. */
  topUp(arena: number): Promise<string[]> {
    this.notice(arena);
    const run = this.lane.then(async () => {
      const named = this.replicasOf(arena);
      const live = named.filter((r) => this.deps.isAlive(r));
      if (live.length >= this.deps.copies - 1 && live.length === named.length) return named;
      return this.appoint(arena, live);
    });
    this.lane = run.catch(() => undefined);
    return run;
  }

  private async syncTaken(pages: DirectoryPage[]): Promise<void> {
    const byArena = new Map<number, DirectoryPage[]>();
    for (const p of pages) {
      const arena = Number(arenaOf(p.addr));
      byArena.set(arena, [...(byArena.get(arena) ?? []), p]);
    }
    for (const [arena, written] of byArena) await this.syncArena(arena, written);
  }

  /** `arena` changed hands (or generation): what this node knew of its replicas goes, and is learned again if it serves the arena. */
  forget(arena: number): void {
    this.checked.delete(arena);
    this.behind.delete(arena);
  }

  /** The first look at `arena` in this incarnation: its named replicas count as behind until compared. */
  private notice(arena: number): void {
    if (this.checked.has(arena)) return;
    this.checked.add(arena);
    const named = this.replicasOf(arena);
    if (named.length > 0) this.behind.set(arena, new Set([...(this.behind.get(arena) ?? []), ...named]));
  }

  private async catchUpNow(arena: number): Promise<void> {
    const behind = this.behind.get(arena);
    if (!behind || behind.size === 0) return;
    await this.level(arena, this.genOf(arena), [...behind], behind);
    if (behind.size === 0) return;
    const level = this.replicasOf(arena).filter((r) => !behind.has(r) && this.deps.isAlive(r));
    try {
      await this.appoint(arena, level);
    } catch (err) {
      throw new MangroveError('E_RECOVERING', `arena ${arena}'s directory replica(s) ${[...behind].join(', ')} lack a change and could not be replaced yet: ${String(err)}`);
    }
  }

  /** Brings each live one of `replicas` that is `behind` level (compared, copied whole where it differs); resolves with those it did. */
  private async level(arena: number, gen: number, replicas: readonly string[], behind: Set<string>): Promise<string[]> {
    const levelled = await Promise.all(
      replicas.filter((r) => behind.has(r) && this.deps.isAlive(r)).map(async (r) => ((await this.matches(arena, r)) || (await this.copyTo(arena, gen, r)) ? r : null)),
    );
    const done = levelled.filter((r): r is string => r !== null);
    for (const r of done) behind.delete(r);
    return done;
  }

  /** Whether `to` holds `arena`'s directory as this node does (its `dir_check` agrees); false if it cannot say. */
  private async matches(arena: number, to: string): Promise<boolean> {
    try {
      const mine = this.deps.space.check(BigInt(arena));
      const theirs = await this.deps.call<{ entries: number; pages: number; rootVersion: number } | null>(to, { op: 'dir_check', arena });
      return mine === null ? theirs === null : theirs !== null && theirs.entries === mine.entries && theirs.pages === mine.pages && theirs.rootVersion === mine.rootVersion;
    } catch {
      return false;
    }
  }

  private async syncArena(arena: number, pages: DirectoryPage[]): Promise<void> {
    this.notice(arena);
    const gen = this.genOf(arena);
    const named = this.replicasOf(arena);
    const behind = this.behind.get(arena) ?? new Set<string>();
    this.behind.set(arena, behind);
    const live = named.filter((r) => this.deps.isAlive(r));
    const caughtUp = await this.level(arena, gen, live, behind);
    const took = [...caughtUp, ...(await this.storeOn(live.filter((r) => !behind.has(r)), arena, gen, pages, false))];
    const missed = named.filter((r) => !took.includes(r));
    for (const r of missed) behind.add(r);
    if (missed.length === 0 && took.length >= this.deps.copies - 1) return;
    // A live replica that missed it is only behind: the operation is retried, and the replica caught up first.
    const busy = missed.filter((r) => this.deps.isAlive(r));
    if (busy.length > 0) {
      throw new MangroveError('E_RECOVERING', `the directory change of arena ${arena} has not reached its replica(s) ${busy.join(', ')} yet (busy, or rebuilding); try again in a moment`);
    }
    try {
      await this.appoint(arena, took);
    } catch (err) {
      // Short of replicas but none missed the change: it stands where it must, and the scan tops up later.
      if (missed.length === 0) {
        this.deps.log.warn({ arena, err: String(err) }, 'the directory has fewer replicas than asked for');
        return;
      }
      const code = isMangroveError(err) && (err.code === 'E_RECOVERING' || err.code === 'E_NO_QUORUM') ? err.code : 'E_UNREACHABLE';
      throw new MangroveError(code, `the directory change of arena ${arena} did not reach its replica(s) ${missed.join(', ')}, and they could not be replaced yet: ${String(err)}`);
    }
  }

  /**
   * Names `keep` plus as many new replicas as `copies - 1` asks for, each
   * given a full copy and checked first. Resolves with the replicas named.
   */
  private async appoint(arena: number, keep: string[]): Promise<string[]> {
    const gen = this.genOf(arena);
    const want = this.deps.copies - 1;
    const added: string[] = [];
    if (keep.length < want) {
      const candidates = chooseHolders(this.deps.core, this.deps.copies + keep.length, keep, true).filter((id) => id !== this.deps.self && !keep.includes(id));
      for (const to of candidates) {
        if (keep.length + added.length >= want) break;
        if (await this.copyTo(arena, gen, to)) added.push(to);
      }
    }
    const replicas = [...keep, ...added];
    const current = this.replicasOf(arena);
    if (replicas.length === current.length && replicas.every((r) => current.includes(r))) return current;
    await this.name(arena, gen, replicas);
    const behind = this.behind.get(arena);
    if (behind) for (const r of [...behind]) if (!replicas.includes(r)) behind.delete(r);
    return replicas;
  }

  /** A full copy of `arena`'s directory on `to`, read back there and compared; false if any step failed. */
  private async copyTo(arena: number, gen: number, to: string): Promise<boolean> {
    try {
      const { space } = this.deps;
      let first = true;
      for (let batch = space.directoryPagesOf(BigInt(arena)); batch.length > 0; batch = space.directoryPagesOf(BigInt(arena), batch[batch.length - 1].addr + 1n)) {
        for (let i = 0; i < batch.length; i += DIR_PAGES_PER_CALL_MAX) {
          await this.call(to, arena, gen, batch.slice(i, i + DIR_PAGES_PER_CALL_MAX), first);
          first = false;
        }
      }
      const same = await this.matches(arena, to);
      if (!same) this.deps.log.warn({ arena, to }, 'a directory copy did not check out; another node is tried');
      return same;
    } catch (err) {
      this.deps.log.warn({ arena, to, err: String(err) }, 'copying the directory to a new replica failed; another node is tried');
      return false;
    }
  }

  /** Names the replicas by a node-database update at the PAN (M16); remembered until this node's copy shows it. */
  private async name(arena: number, gen: number, replicas: string[]): Promise<void> {
    const pan = this.deps.pan();
    if (pan === null) throw new MangroveError('E_NO_QUORUM', 'no primary anchor node is known: directory replicas are named only with quorum');
    const { version } = await this.deps.call<{ version: number }>(pan, { op: 'dir_replicas', arena, gen, replicas });
    this.named.set(arena, { gen, replicas, version });
    this.deps.log.info({ arena, replicas }, 'directory replicas named');
  }

  /** Stores `pages` on each of `to` (all or none on each); resolves with the nodes that took them. */
  private async storeOn(to: string[], arena: number, gen: number, pages: DirectoryPage[], replace: boolean): Promise<string[]> {
    const took = await Promise.all(
      to.map(async (node) => {
        try {
          for (let i = 0; i < pages.length; i += DIR_PAGES_PER_CALL_MAX) await this.call(node, arena, gen, pages.slice(i, i + DIR_PAGES_PER_CALL_MAX), replace && i === 0);
          return node;
        } catch (err) {
          this.deps.log.warn({ arena, replica: node, err: String(err) }, 'a directory replica missed a change');
          return null;
        }
      }),
    );
    return took.filter((n): n is string => n !== null);
  }

  private call(to: string, arena: number, gen: number, pages: DirectoryPage[], replace: boolean): Promise<unknown> {
    return this.deps.call(to, { op: 'dir_store', arena, gen, replace, pages: pages.map((p) => ({ addr: addressKey(p.addr), version: p.version, data: p.data })) });
  }

  private genOf(arena: number): number {
    const entry = arenaEntryOf(this.deps.db(), arena);
    if (!entry || entry.home !== this.deps.self) throw new MangroveError('E_STALE_GEN', `this node no longer serves arena ${arena}`);
    return entry.gen;
  }
}
