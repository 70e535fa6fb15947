/**
 * The holder and requester side of coherence (M10; machines/memory/page-home.ts is
 * the home side): this node's copies of pages, what it may do with each, and
 * its requests to pages' homes.
 *
 * A copy's data, version and dirty bit live in the RAM cache; its coherence
 * state lives here:
 * - `read`: a read-only copy; the home counts this node a reader;
 * - `write`: this node is the owner and only holder; it writes in place;
 * - `kept`: handed to a new owner for a write; kept, unreadable, until the
 *   home confirms the hand-over with an invalidation (so a lost hand-over
 *   never loses the page);
 * - `incoming`: arrived for a pending write, not yet granted.
 * Each copy remembers the round it came in: an invalidation of an earlier
 * round is a late duplicate and is acknowledged without dropping anything,
 * and a forward of an earlier round is ignored (the copy is not handed on).
 * It also remembers whether this node is the page's owner (its copy is the
 * newest, even when read-only because readers share it), which decides how
 * the copy may leave RAM: a reader's is dropped and the home told; an
 * owner's is paged out to disk or handed back to the home (M12).
 *
 * A request is numbered (epoch in the high bits, so a restarted node's
 * numbers keep rising) and resent every `retryMs`: the request itself until
 * data arrives, then the confirmation, until the home's `served`. Data is
 * taken only for the request it answers. A caller that stops waiting does
 * not stop the request: the protocol runs to its end either way.
 */
import { Subject } from 'rxjs';
import type { Clock } from '../../bus/clock.js';
import { MangroveError, type ErrorCode } from '../../bus/errors.js';
import type { Body } from '../../bus/messages/index.js';
import type { CoherenceBody } from '../../bus/messages/page.js';
import { addressKey, formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import type { AccessMode } from '../../machines/memory/page-home.js';
import type { CachedPage, RamCache } from './ram-cache.js';
import type { PageStore } from '../storage/page-store.js';
import { holdsCopy, PageRecord, SharedFacts, type CopyState } from './page-record.js';

export type CopyMode = 'read' | 'write' | 'kept' | 'incoming';

/** What a page's home decided of a registered copy (M14), with the page's facts for a copy that stays. */
export type CopyVerdict = { as: 'drop' } | { as: 'owner' | 'reader'; dirty: boolean; facts: PageFacts };

/** A copy as this node registers it with the page's home (M14). */
export interface RegisteredCopy {
  addr: bigint;
  version: number;
  owner: boolean;
  dirty: boolean;
}

/** What a page's home told this node about the page with its last grant. */
export interface PageFacts {
  holders: string[];
  volatile: boolean;
  /** The generation of the page's arena the home spoke for (M16): flushes carry it, and core holders fence off older ones. */
  gen: number;
}

/** A change local waiters hear of (M10): a write here, a new copy, or a copy gone. */
export interface PageChange {
  addr: bigint;
  why: 'written' | 'arrived' | 'invalidated' | 'dropped';
  version: number | null;
}

export interface PageHolderDeps {
  self: string;
  epoch: number;
  clock: Clock;
  cache: RamCache;
  retryMs: number;
  homeOf(addr: bigint): string;
  isAlive(id: string): boolean;
  /** Sends a `page.` message (to this node too: the caller routes it locally). */
  send<K extends 'page.request' | 'page.invalidated' | 'page.data' | 'page.confirmed' | 'page.dropped'>(to: string, kind: K, body: CoherenceBody<K>): void;
  /** This node's disk cache: where an owner's clean copy is paged out to (M12). */
  store: PageStore;
  /** Flushes an owner's copy to its core holders, then releases it, or hands it to its home (M12). */
  pageOut(addr: bigint): Promise<void>;
}

interface Pending {
  req: number;
  mode: AccessMode;
  gotData: boolean;
  timer: unknown;
  done: Promise<void>;
  /** Resolves when a read's data is in: the copy is readable before the home hears the confirmation. */
  arrived: Promise<void>;
  arrive(): void;
  resolve(): void;
  reject(err: MangroveError): void;
}

const REQS_PER_EPOCH = 2 ** 32;

export class PageHolder {
  readonly changes$ = new Subject<PageChange>();
  /**
   * Per page, what this node knows of it (PageRecord). Those holding a copy
   * are walked (`copies`, `quiesce`) in the order their copies came in, as
   * if they alone were in a Map: a record that gains a copy moves last.
   */
  private readonly records = new Map<bigint, PageRecord>();
  /** The address of the record last added to `records`: one that gains a copy then is last already. */
  private lastAdded: bigint | undefined = undefined;
  private readonly shared = new SharedFacts();
  private readonly pending = new Map<bigint, Pending>();
  /**
   * Pages whose write grant came in this turn: a forward for the next
   * request waits for the next turn, so the caller the grant was for writes
   * first (its home, on this node, may take the next request up at once;
   * without this, its own writes could wait for ever behind other nodes').
   */
  private readonly granted = new Set<bigint>();
  /** Copies a rebuild ruled on that nobody could read before it: read from when it resumes. */
  private readonly unreadUntilResume = new Set<bigint>();
  private seq = 0;
  /** The configured RAM budget; the cache's own may run over it while dirty pages wait to be paged out. */
  private readonly budgetBytes: number;
  private readonly pagingOut = new Set<bigint>();
  /** Reader copies dropped and owner copies paged out to the disk cache (M12). */
  released = 0;

  constructor(private readonly deps: PageHolderDeps) {
    this.budgetBytes = deps.cache.stats().budgetBytes;
  }

  /** The copy, if this node may read it now. */
  readable(addr: bigint): CachedPage | undefined {
    const m = this.stateOf(addr)?.mode;
    return m === 'read' || m === 'write' ? this.cached(addr) : undefined;
  }

  /** The copy, if this node owns the page alone and may write it now. */
  writable(addr: bigint): CachedPage | undefined {
    return this.stateOf(addr)?.mode === 'write' ? this.cached(addr) : undefined;
  }

  /**
   * Drops a reader's copy and tells the home (M12: memory pressure, or the
   * program no longer needs the page); an owner's clean copy that this node
   * also holds on disk is paged out instead. A copy kept handing the page on
   * stays (the home may ask for it again until the hand-over is confirmed,
   * and it backs the new owner up until the next write invalidates it). False when the copy must stay
   * (dirty, a reader's of a version not yet known durable, in use, or not held).
   */
  release(addr: bigint): boolean {
    const state = this.stateOf(addr);
    const page = this.deps.cache.peek(addr);
    if (!state || !page || state.paged || this.pending.has(addr) || page.pins > 0) return false;
    if (state.mode === 'read' && !state.owner && !state.unflushed) {
      const { round } = state;
      this.noteDropped(addr, round);
      this.unhold(addr);
      this.deps.cache.remove(addr);
      this.deps.send(this.deps.homeOf(addr), 'page.dropped', { addr: addressKey(addr), round });
      this.changes$.next({ addr, why: 'dropped', version: null });
      this.released++;
      this.shrink();
      return true;
    }
    const onDisk = this.deps.store.get(addr);
    if (state.owner && !page.dirty && !page.volatile && onDisk?.version === page.version) {
      this.deps.cache.remove(addr);
      state.paged = true;
      this.released++;
      this.shrink();
      return true;
    }
    return false;
  }

  /** The version of a reader's copy that leaves RAM only once it is durable (UNFLUSHED), if this node holds one. */
  unflushedReader(addr: bigint): number | undefined {
    const state = this.stateOf(addr);
    if (!state?.unflushed || state.mode !== 'read' || state.owner) return undefined;
    return this.deps.cache.peek(addr)?.version;
  }

  /** A flush through the home made `version` (at least) durable: a reader's copy of it may leave RAM. */
  flushed(addr: bigint, version: number): void {
    const state = this.stateOf(addr);
    if (state?.unflushed && this.deps.cache.peek(addr)?.version === version) state.unflushed = false;
  }

  modeOf(addr: bigint): CopyMode | undefined {
    return this.stateOf(addr)?.mode;
  }

  /**
   * This node holds the page's newest copy as its owner: writable, kept while
   * handing it on (nothing newer is granted until it goes), handed to it
   * for a write not yet granted, or named owner by a rebuild (read-only
   * until a write asks the home again).
   */
  ownsCopy(addr: bigint): boolean {
    const state = this.stateOf(addr);
    return state !== undefined && (state.owner || state.mode !== 'read');
  }

  /** The version of the page this node owns unflushed and may share with readers (its copy is read-only), if so; volatile pages are never flushed. */
  private sharesUnflushed(addr: bigint): number | undefined {
    const state = this.stateOf(addr);
    const page = this.deps.cache.peek(addr);
    return state?.mode === 'read' && state.owner && page?.dirty === true && !page.volatile ? page.version : undefined;
  }

  /** Shared with every page they are true of: read only. */
  factsOf(addr: bigint): PageFacts | undefined {
    return this.records.get(addr)?.facts;
  }

  /** Whether a request of this node for `addr` is in flight. */
  inFlight(addr: bigint): boolean {
    return this.pending.has(addr);
  }

  /** Resolves once no request of this node for `addr` is in flight (whatever its outcome). */
  async settled(addr: bigint): Promise<void> {
    for (let p = this.pending.get(addr); p; p = this.pending.get(addr)) await p.done.catch(() => undefined);
  }

  private justGranted(addr: bigint): void {
    this.granted.add(addr);
    this.deps.clock.setTimeout(() => this.granted.delete(addr), 0);
  }

  /** The home replaced core holders (M11). */
  setHolders(addr: bigint, holders: string[]): void {
    const f = this.records.get(addr)?.facts;
    if (f) this.learn(addr, { holders, volatile: f.volatile, gen: f.gen });
  }

  /**
   * Resolves once this node may read (or write) `addr`, asking its home as
   * needed. `flushShared`: before each request to write a page whose newest
   * version this node owns unflushed and shares with readers (a write
   * invalidates their copies), make that version durable (docs/recovery.md).
   */
  async acquire(addr: bigint, mode: AccessMode, flushShared?: () => Promise<unknown>): Promise<void> {
    const ok = () => (mode === 'read' ? this.readable(addr) : this.writable(addr)) !== undefined;
    // Each version once: a flush that leaves the copy dirty (it could not make it durable) is not tried in a loop.
    let flushed: number | undefined;
    for (let asked = 0; ; asked++) {
      if (ok()) return;
      // Asked and answered more than twice, the copy still not usable (a grant not yet here, a race with
      // another request): ask again a retry period later, never in a tight loop the home may answer at once.
      if (asked > 2) {
        await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, this.deps.retryMs));
        if (ok()) return;
      }
      const shared = mode === 'write' && !this.pending.has(addr) ? this.sharesUnflushed(addr) : undefined;
      if (flushShared && shared !== undefined && shared !== flushed) {
        flushed = shared;
        await flushShared();
        continue;
      }
      // A home counted failed answers nothing until its arena is handed over (M16) or it is back:
      // the caller retries, rather than waiting out its timeout.
      const home = this.deps.homeOf(addr);
      if (home !== this.deps.self && !this.deps.isAlive(home)) {
        throw new MangroveError('E_RECOVERING', `${formatAddress(addr)}'s home ${home} is counted failed; its arena moves to a replica after a grace of a few heartbeat periods: try again then`);
      }
      const p = this.pending.get(addr) ?? this.request(addr, mode);
      // A read may use its copy as soon as it arrives: the home serves nothing else for the
      // page until this node confirms it, so no write can be granted before the read returns.
      if (mode === 'read' && !p.gotData) {
        await Promise.race([p.done, p.arrived]);
        if (ok()) return;
      }
      await p.done;
    }
  }

  /** The home's own copy when it takes up a page: it starts as the owner (round 0). */
  installOwn(addr: bigint, data: Uint8Array, version: number, facts: PageFacts): void {
    if (this.stateOf(addr) !== undefined) return;
    this.put(addr, data, version, false, facts.volatile);
    this.hold(addr, 'write', 0, true, false);
    this.learn(addr, facts);
  }

  /** Records a write in place: the caller changed the cached buffer; returns the new version. */
  wrote(addr: bigint): number {
    const page = this.writable(addr);
    if (!page) throw new MangroveError('E_INTERNAL', `wrote ${formatAddress(addr)} without write access`);
    const version = page.version + 1;
    this.deps.cache.markDirty(addr, version);
    this.changes$.next({ addr, why: 'written', version });
    return version;
  }

  /** Forgets a copy the home no longer counts (unallocate, dealloc). */
  forget(addr: bigint): void {
    this.unhold(addr);
    this.undrop(addr);
    this.unlearn(addr);
    if (this.deps.cache.remove(addr)) this.changes$.next({ addr, why: 'dropped', version: null });
  }

  onForward(b: Body<'page.forward'>, addr: bigint): void {
    // A write just granted is used before the page moves on: its caller resumes in this turn.
    if (this.granted.has(addr)) {
      this.deps.clock.setTimeout(() => this.onForward(b, addr), 0);
      return;
    }
    this.see(addr, b.round);
    const state = this.stateOf(addr);
    const page = state && state.mode !== 'incoming' ? this.cached(addr) : undefined;
    // No copy: this node lost it (a restart); the home keeps retrying until recovery (M15) steps in.
    if (!state || !page) return;
    // A late duplicate of a forward this copy has outlived (it came in at a later round, which the home
    // began only once that forward's request was done): answering it would hand on a copy nobody asked for.
    if (state.round > b.round) return;
    this.deps.send(b.requester, 'page.data', { addr: b.addr, req: b.req, round: b.round, mode: b.mode, data: page.data.slice(), version: page.version, dirty: page.dirty });
    if (b.mode === 'read' && state.mode === 'write') state.mode = 'read';
    if (b.mode === 'write') {
      // Handed on: kept, for nobody to read here, so local waiters hear the copy is gone.
      state.mode = 'kept';
      state.owner = false;
      this.changes$.next({ addr, why: 'invalidated', version: null });
    }
  }

  onInvalidate(b: Body<'page.invalidate'>, addr: bigint, from: string): void {
    this.see(addr, b.round);
    const state = this.stateOf(addr);
    if (state && b.round > state.round && !this.isPendingData(addr)) {
      this.unhold(addr);
      this.deps.cache.remove(addr);
      this.changes$.next({ addr, why: 'invalidated', version: null });
    }
    this.deps.send(from, 'page.invalidated', { addr: b.addr, round: b.round });
  }

  /**
   * Data for a request. Besides the one it waits on, this node takes in the
   * data of an older request of its own that the home is serving now (newer
   * than any round it has seen for the page): a repeat of a request that
   * ended here (refused, timed out) may still have reached the home, which
   * then serves it to the end, forwarding until this node confirms; the
   * page would wait on it for ever. A late duplicate of a request served
   * long ago is of an older round, and is dropped.
   */
  onData(b: Body<'page.data'>, addr: bigint): void {
    const p = this.pending.get(addr);
    const asked = p !== undefined && p.req === b.req && p.mode === b.mode;
    const state = this.stateOf(addr);
    if (!asked && !(this.isOwnOlder(b.req, p) && (state?.round === b.round || b.round > this.seenOf(addr)))) return;
    const first = asked ? !p.gotData : state?.round !== b.round;
    if (first) {
      // Every round a copy came in is past from now on: a late duplicate of its data never brings a dropped copy back.
      this.see(addr, b.round);
      // A reader's copy is never dirty: making the page durable is its owner's business.
      this.put(addr, b.data, b.version, b.mode === 'write' && b.dirty, false);
      if (asked) p.gotData = true;
      this.undrop(addr);
      this.hold(addr, b.mode === 'read' ? 'read' : 'incoming', b.round, false, b.mode === 'read' && b.dirty);
      // A read waiting here may use the copy at once, whichever request brought it.
      if (b.mode === 'read' && p?.mode === 'read') p.arrive();
    }
    this.deps.send(this.deps.homeOf(addr), 'page.confirmed', { addr: b.addr, req: b.req });
  }

  /** `req` is one of this incarnation's requests, older than the one pending (if any). */
  private isOwnOlder(req: number, p: Pending | undefined): boolean {
    return Math.floor(req / REQS_PER_EPOCH) === this.deps.epoch && (p === undefined || req < p.req);
  }

  onServed(b: Body<'page.served'>, addr: bigint): void {
    const p = this.pending.get(addr);
    if ((!p || p.req !== b.req) && this.isOwnOlder(b.req, p)) return this.servedLate(b, addr);
    if (!p || p.req !== b.req) return;
    this.learn(addr, b);
    const state = this.stateOf(addr);
    if (!state || !this.cached(addr)) {
      // Served without a copy here: the home still counts a copy this node dropped (the word
      // of it was lost). Say it again, then ask again.
      const round = this.records.get(addr)?.dropped;
      if (round !== undefined) this.deps.send(this.deps.homeOf(addr), 'page.dropped', { addr: b.addr, round });
      this.unhold(addr);
      this.unlearn(addr);
      return this.finish(addr, p);
    }
    // A write is granted on data that came for it, or on the copy held, if no later round (a
    // forward, an invalidation, which can overtake the `served`) has touched that copy since.
    // Otherwise the grant is already superseded: the request ends and the caller asks again.
    const superseded = this.seenOf(addr) > b.round;
    if (p.mode === 'write' && (state.mode === 'incoming' || (state.mode === 'read' && !superseded))) {
      state.mode = 'write';
      state.owner = true;
      this.justGranted(addr);
    }
    this.changes$.next({ addr, why: 'arrived', version: this.deps.cache.peek(addr)!.version });
    this.finish(addr, p);
  }

  onRefused(b: Body<'page.refused'>, addr: bigint): void {
    const p = this.pending.get(addr);
    if (!p || p.req !== b.req) return;
    this.finish(addr, p, new MangroveError(b.code as ErrorCode, b.message));
  }

  /** The grant of an older request the home took up after it ended here (see `onData`): a write's copy becomes writable. */
  private servedLate(b: Body<'page.served'>, addr: bigint): void {
    const state = this.stateOf(addr);
    if (!state || !this.cached(addr) || state.round !== b.round) return;
    this.learn(addr, b);
    if (state.mode === 'incoming') {
      state.mode = 'write';
      state.owner = true;
      this.justGranted(addr);
    }
    this.changes$.next({ addr, why: 'arrived', version: this.deps.cache.peek(addr)!.version });
  }

  // ---- Recovery (M14): what the rebuild asks of this node's copies ----

  /**
   * Quiesce: every request in flight fails with `err` (the caller retries
   * once operations resume), and what this node knew of copysets (core
   * holders, rounds seen, copies dropped) is forgotten with the GRD. With
   * `reset` (this node missed rebuilds, or is new to them) every copy goes:
   * none of them can be trusted to be current.
   */
  quiesce(err: MangroveError, reset: boolean): void {
    for (const [addr, p] of [...this.pending]) this.finish(addr, p, err);
    for (const r of this.records.values()) {
      r.seen = 0;
      r.dropped = undefined;
      r.facts = undefined;
      this.prune(r);
    }
    // A copy an unfinished round ruled on is registered again in the next, still unread.
    this.unreadUntilResume.clear();
    if (reset) {
      for (const { addr } of [...this.held()]) this.forget(addr);
      return;
    }
    // No copy stays writable: a write needs a grant from the rebuilt directory.
    for (const state of this.held()) if (state.mode === 'write') state.mode = 'read';
  }

  /** Every copy this node holds, as it registers them with their homes in repopulation. */
  copies(): RegisteredCopy[] {
    const out: RegisteredCopy[] = [];
    for (const state of this.held()) {
      const { addr } = state;
      const page = state.paged ? this.deps.store.get(addr) : this.deps.cache.peek(addr);
      if (!page) continue;
      out.push({ addr, version: page.version, owner: state.owner, dirty: !state.paged && (page as CachedPage).dirty });
    }
    return out;
  }

  /**
   * What the page's home decided in repopulation: this node is the page's
   * owner (the newest copy; kept read-only until a write asks the home
   * again), a reader of it, or holds a stale copy that goes. `dirty`: the
   * copy is newer than any durable one, so it must be flushed. Round 0: the
   * new RAM directory numbers its rounds afresh.
   */
  settle(addr: bigint, verdict: CopyVerdict): void {
    const state = this.stateOf(addr);
    if (!state) return;
    if (verdict.as === 'drop') {
      this.forget(addr);
      return;
    }
    // A copy nobody could read before the round (kept handing the page on, or not yet granted) may be
    // older than a copy registered after this verdict (the new owner's): it is read once the round resumes,
    // by when every newer copy has demoted it.
    if (state.mode === 'kept' || state.mode === 'incoming' || this.unreadUntilResume.has(addr)) {
      state.mode = 'kept';
      this.unreadUntilResume.add(addr);
    } else state.mode = 'read';
    state.round = 0;
    state.owner = verdict.as === 'owner';
    // The owner's copy may be unflushed: the home does not say, so a reader assumes it is.
    state.unflushed = !state.owner;
    this.learn(addr, verdict.facts);
    const page = this.deps.cache.peek(addr);
    if (page && verdict.dirty && !page.dirty) this.deps.cache.markDirty(addr, page.version);
  }

  /**
   * A copy no home ruled on in a rebuild (its home took no part in the
   * round, or could not rule): held for a later round to register, but read
   * by no one until then, as the page's next home may grant writes before
   * that round without knowing of it.
   */
  shelve(addr: bigint): void {
    const state = this.stateOf(addr);
    if (state && (state.mode === 'read' || state.mode === 'write')) state.mode = 'kept';
  }

  /** The round resumed: every copy it ruled on is current, and those kept unread until now are read again. */
  resumed(): void {
    for (const addr of this.unreadUntilResume) {
      const state = this.stateOf(addr);
      if (state?.mode === 'kept') state.mode = 'read';
    }
    this.unreadUntilResume.clear();
  }

  /** Copies held, by mode. */
  counts(): Record<CopyMode, number> {
    const out: Record<CopyMode, number> = { read: 0, write: 0, kept: 0, incoming: 0 };
    for (const { mode } of this.held()) out[mode]++;
    return out;
  }

  close(): void {
    for (const [addr, p] of [...this.pending]) this.finish(addr, p, new MangroveError('E_CLOSED', 'the node is stopping'));
  }

  /**
   * Making room for one more page (M12), least recently used first: a
   * reader's copy is dropped (the home is told), an owner's clean copy is
   * paged out to disk, and the oldest other owner copy (or reader copy of a
   * version not known durable) is flushed to its core holders and then
   * paged out or dropped, or handed to its home if this node keeps no disk
   * copy (`pageOut`, in the background). Until then the cache
   * runs over its budget (`status` shows RAM used above it).
   */
  private makeRoom(incoming: bigint): void {
    const { cache } = this.deps;
    const fits = () => cache.stats().bytes + PAGE_BYTES <= this.budgetBytes;
    if (fits()) return;
    let owned: bigint | undefined;
    // Walked in place, not copied: once the cache is full every page that comes in makes room, mostly by dropping the first page or two.
    for (const victim of cache.oldestFirst()) {
      if (victim === incoming) continue;
      if (this.release(victim) && fits()) return;
      const state = this.stateOf(victim);
      if (owned === undefined && (state?.owner || state?.unflushed) && !state.paged && !this.pending.has(victim) && !this.pagingOut.has(victim)) owned = victim;
    }
    if (owned !== undefined) {
      const victim = owned;
      this.pagingOut.add(victim);
      void this.deps.pageOut(victim).finally(() => this.pagingOut.delete(victim));
    }
    // Over the budget until the page-out is done: the cache must still take this copy.
    const s = cache.stats();
    if (s.bytes + PAGE_BYTES > s.budgetBytes) cache.setBudget(s.bytes + PAGE_BYTES);
  }

  /** Back toward the configured budget as pages leave. */
  private shrink(): void {
    const { cache } = this.deps;
    cache.setBudget(Math.max(this.budgetBytes, Math.ceil(cache.stats().bytes / PAGE_BYTES) * PAGE_BYTES));
  }

  /** The RAM copy, read back from the disk cache if it was paged out. */
  private cached(addr: bigint): CachedPage | undefined {
    const state = this.stateOf(addr);
    if (state?.paged) {
      const stored = this.deps.store.get(addr);
      if (!stored) throw new MangroveError('E_STORAGE', `${formatAddress(addr)} was paged out but is gone from the disk cache`);
      state.paged = false;
      this.put(addr, stored.data, stored.version, false, false);
    }
    return this.deps.cache.get(addr);
  }

  // ---- The records (PageRecord): each old part of the holder's state set and taken out on its own ----

  /**
   * The page's copy, if this node holds one: the record itself, so what a
   * caller changes in it lands in the record. A caller may hold it across a
   * call only where no call can take the copy away and bring in another
   * (nothing re-enters the holder for the same page: a send to this node
   * arrives on a later microtask, page-engine.ts, and making room only takes
   * out other pages).
   */
  private stateOf(addr: bigint): CopyState | undefined {
    const r = this.records.get(addr);
    return r !== undefined && holdsCopy(r) ? r : undefined;
  }

  /** The records of the copies this node holds, in the order the copies came in. */
  private *held(): Generator<CopyState> {
    for (const r of this.records.values()) if (holdsCopy(r)) yield r;
  }

  /** The page's record, added (last) if it has none. */
  private recordOf(addr: bigint): PageRecord {
    let r = this.records.get(addr);
    if (r === undefined) {
      r = new PageRecord(addr);
      this.records.set(addr, r);
      this.lastAdded = addr;
    }
    return r;
  }

  /** Takes the record out once nothing is left in it. */
  private prune(r: PageRecord): void {
    if (r.bits === 0 && r.facts === undefined && r.seen === 0 && r.dropped === undefined && this.records.get(r.addr) === r) this.records.delete(r.addr);
  }

  /** A copy comes in, replacing the one held if any (not paged out). */
  private hold(addr: bigint, mode: CopyMode, round: number, owner: boolean, unflushed: boolean): void {
    const r = this.recordOf(addr);
    if (r.bits === 0 && this.lastAdded !== addr) {
      // A first copy, the record older: it moves last, where a Map of copies alone would add it.
      this.records.delete(addr);
      this.records.set(r.addr, r);
      this.lastAdded = r.addr;
    }
    r.setCopy(mode, owner, unflushed);
    r.round = round;
  }

  /** The copy is gone (what else the record holds stays). */
  private unhold(addr: bigint): void {
    const r = this.records.get(addr);
    if (r === undefined) return;
    r.bits = 0;
    r.round = 0;
    this.prune(r);
  }

  /** The page's facts, as the home told them (kept shared with every page they are true of). */
  private learn(addr: bigint, facts: { readonly holders: readonly string[]; readonly volatile: boolean; readonly gen: number }): void {
    this.recordOf(addr).facts = this.shared.of(facts.holders, facts.volatile, facts.gen);
  }

  private unlearn(addr: bigint): void {
    const r = this.records.get(addr);
    if (r === undefined) return;
    r.facts = undefined;
    this.prune(r);
  }

  private noteDropped(addr: bigint, round: number): void {
    this.recordOf(addr).dropped = round;
  }

  private undrop(addr: bigint): void {
    const r = this.records.get(addr);
    if (r === undefined) return;
    r.dropped = undefined;
    this.prune(r);
  }

  /** The latest round of a forward or invalidation this node has acted on for the page; 0 if none. */
  private seenOf(addr: bigint): number {
    return this.records.get(addr)?.seen ?? 0;
  }

  private see(addr: bigint, round: number): void {
    if (round > this.seenOf(addr)) this.recordOf(addr).seen = round;
  }

  private isPendingData(addr: bigint): boolean {
    const p = this.pending.get(addr);
    return p !== undefined && p.gotData && this.stateOf(addr)?.mode === 'incoming';
  }

  private request(addr: bigint, mode: AccessMode): Pending {
    const req = this.deps.epoch * REQS_PER_EPOCH + (++this.seq % REQS_PER_EPOCH);
    let resolve!: () => void;
    let reject!: (err: MangroveError) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    let arrive!: () => void;
    const arrived = new Promise<void>((res) => (arrive = res));
    const p: Pending = { req, mode, gotData: false, timer: undefined, done, resolve, reject, arrived, arrive };
    this.pending.set(addr, p);
    const home = this.deps.homeOf(addr);
    const again = () => {
      if (this.pending.get(addr) !== p) return;
      if (p.gotData) this.deps.send(home, 'page.confirmed', { addr: addressKey(addr), req });
      else this.deps.send(home, 'page.request', { addr: addressKey(addr), mode, req });
      p.timer = this.deps.clock.setTimeout(again, this.deps.retryMs);
    };
    again();
    return p;
  }

  private finish(addr: bigint, p: Pending, err?: MangroveError): void {
    if (this.pending.get(addr) !== p) return;
    this.pending.delete(addr);
    this.deps.clock.clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve();
  }

  private put(addr: bigint, data: Uint8Array, version: number, dirty: boolean, volatile: boolean): void {
    const { cache } = this.deps;
    if (data.byteLength !== PAGE_BYTES) throw new MangroveError('E_BAD_MESSAGE', `page data for ${formatAddress(addr)} is ${data.byteLength} bytes`);
    // A copy replaces whatever was here, even a higher version left from before a home restart.
    cache.remove(addr);
    this.makeRoom(addr);
    // Keyed by the bigint the page's record holds, if it has one: one a page, not one each.
    cache.put(this.records.get(addr)?.addr ?? addr, { data: new Uint8Array(data), version, dirty, volatile });
  }
}
