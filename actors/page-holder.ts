/**
 * The holder and requester side of coherence (M10; machines/page-home.ts is
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
 * round is a late duplicate and is acknowledged without dropping anything.
 *
 * A request is numbered (epoch in the high bits, so a restarted node's
 * numbers keep rising) and resent every `retryMs`: the request itself until
 * data arrives, then the confirmation, until the home's `served`. Data is
 * taken only for the request it answers. A caller that stops waiting does
 * not stop the request: the protocol runs to its end either way.
 */
import { Subject } from 'rxjs';
import type { Clock } from '../bus/clock.js';
import { MangroveError, type ErrorCode } from '../bus/errors.js';
import type { Body } from '../bus/messages.js';
import { addressKey, formatAddress, PAGE_BYTES } from '../machines/address.js';
import type { AccessMode } from '../machines/page-home.js';
import type { CachedPage, RamCache } from './ram-cache.js';

export type CopyMode = 'read' | 'write' | 'kept' | 'incoming';

/** What a page's home told this node about the page with its last grant. */
export interface PageFacts {
  holders: string[];
  volatile: boolean;
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
  /** Sends a `page.` message (to this node too: the caller routes it locally). */
  send<K extends 'page.request' | 'page.invalidated' | 'page.data' | 'page.confirmed'>(to: string, kind: K, body: Body<K>): void;
}

interface Pending {
  req: number;
  mode: AccessMode;
  gotData: boolean;
  timer: unknown;
  done: Promise<void>;
  resolve(): void;
  reject(err: MangroveError): void;
}

const REQS_PER_EPOCH = 2 ** 32;

export class PageHolder {
  readonly changes$ = new Subject<PageChange>();
  private readonly modes = new Map<bigint, { mode: CopyMode; round: number }>();
  private readonly pending = new Map<bigint, Pending>();
  private readonly facts = new Map<bigint, PageFacts>();
  /** Per page, the latest round of a forward or invalidation this node has acted on. */
  private readonly seen = new Map<bigint, number>();
  private seq = 0;
  /** Pages cached beyond the configured RAM budget. */
  overBudgetPages = 0;

  constructor(private readonly deps: PageHolderDeps) {}

  /** The copy, if this node may read it now. */
  readable(addr: bigint): CachedPage | undefined {
    const m = this.modes.get(addr)?.mode;
    return m === 'read' || m === 'write' ? this.deps.cache.get(addr) : undefined;
  }

  /** The copy, if this node owns the page alone and may write it now. */
  writable(addr: bigint): CachedPage | undefined {
    return this.modes.get(addr)?.mode === 'write' ? this.deps.cache.get(addr) : undefined;
  }

  modeOf(addr: bigint): CopyMode | undefined {
    return this.modes.get(addr)?.mode;
  }

  factsOf(addr: bigint): PageFacts | undefined {
    return this.facts.get(addr);
  }

  /** Resolves once this node may read (or write) `addr`, asking its home as needed. */
  async acquire(addr: bigint, mode: AccessMode): Promise<void> {
    for (;;) {
      if (mode === 'read' ? this.readable(addr) : this.writable(addr)) return;
      const p = this.pending.get(addr);
      if (p) {
        await p.done;
        continue;
      }
      await this.request(addr, mode).done;
    }
  }

  /** The home's own copy when it takes up a page: it starts as the owner (round 0). */
  installOwn(addr: bigint, data: Uint8Array, version: number, facts: PageFacts): void {
    if (this.modes.has(addr)) return;
    this.put(addr, data, version, false, facts.volatile);
    this.modes.set(addr, { mode: 'write', round: 0 });
    this.facts.set(addr, facts);
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
    this.modes.delete(addr);
    this.seen.delete(addr);
    this.facts.delete(addr);
    if (this.deps.cache.remove(addr)) this.changes$.next({ addr, why: 'dropped', version: null });
  }

  onForward(b: Body<'page.forward'>, addr: bigint): void {
    this.see(addr, b.round);
    const state = this.modes.get(addr);
    const page = state && state.mode !== 'incoming' ? this.deps.cache.peek(addr) : undefined;
    // No copy: this node lost it (a restart); the home keeps retrying until recovery (M15) steps in.
    if (!state || !page) return;
    this.deps.send(b.requester, 'page.data', { addr: b.addr, req: b.req, round: b.round, mode: b.mode, data: page.data.slice(), version: page.version, dirty: page.dirty });
    if (b.mode === 'read' && state.mode === 'write') state.mode = 'read';
    if (b.mode === 'write') state.mode = 'kept';
  }

  onInvalidate(b: Body<'page.invalidate'>, addr: bigint, from: string): void {
    this.see(addr, b.round);
    const state = this.modes.get(addr);
    if (state && b.round > state.round && !this.isPendingData(addr)) {
      this.modes.delete(addr);
      this.deps.cache.remove(addr);
      this.changes$.next({ addr, why: 'invalidated', version: null });
    }
    this.deps.send(from, 'page.invalidated', { addr: b.addr, round: b.round });
  }

  onData(b: Body<'page.data'>, addr: bigint): void {
    const p = this.pending.get(addr);
    if (!p || p.req !== b.req || p.mode !== b.mode) return;
    if (!p.gotData) {
      p.gotData = true;
      this.put(addr, b.data, b.version, b.dirty, false);
      this.modes.set(addr, { mode: b.mode === 'read' ? 'read' : 'incoming', round: b.round });
    }
    this.deps.send(this.deps.homeOf(addr), 'page.confirmed', { addr: b.addr, req: b.req });
  }

  onServed(b: Body<'page.served'>, addr: bigint): void {
    const p = this.pending.get(addr);
    if (!p || p.req !== b.req) return;
    this.facts.set(addr, { holders: b.holders, volatile: b.volatile });
    const state = this.modes.get(addr);
    if (!state || !this.deps.cache.peek(addr)) {
      // Served without a copy here (the home counts a copy this node dropped): ask again.
      this.modes.delete(addr);
      this.facts.delete(addr);
      return this.finish(addr, p);
    }
    // A write is granted on data that came for it, or on the copy held, if no later round (a
    // forward, an invalidation, which can overtake the `served`) has touched that copy since.
    // Otherwise the grant is already superseded: the request ends and the caller asks again.
    const superseded = (this.seen.get(addr) ?? 0) > b.round;
    if (p.mode === 'write' && (state.mode === 'incoming' || (state.mode === 'read' && !superseded))) state.mode = 'write';
    this.changes$.next({ addr, why: 'arrived', version: this.deps.cache.peek(addr)!.version });
    this.finish(addr, p);
  }

  onRefused(b: Body<'page.refused'>, addr: bigint): void {
    const p = this.pending.get(addr);
    if (!p || p.req !== b.req) return;
    this.finish(addr, p, new MangroveError(b.code as ErrorCode, b.message));
  }

  /** Copies held, by mode. */
  counts(): Record<CopyMode, number> {
    const out: Record<CopyMode, number> = { read: 0, write: 0, kept: 0, incoming: 0 };
    for (const { mode } of this.modes.values()) out[mode]++;
    return out;
  }

  close(): void {
    for (const [addr, p] of [...this.pending]) this.finish(addr, p, new MangroveError('E_CLOSED', 'the node is stopping'));
  }

  private see(addr: bigint, round: number): void {
    if (round > (this.seen.get(addr) ?? 0)) this.seen.set(addr, round);
  }

  private isPendingData(addr: bigint): boolean {
    const p = this.pending.get(addr);
    return p !== undefined && p.gotData && this.modes.get(addr)?.mode === 'incoming';
  }

  private request(addr: bigint, mode: AccessMode): Pending {
    const req = this.deps.epoch * REQS_PER_EPOCH + (++this.seq % REQS_PER_EPOCH);
    let resolve!: () => void;
    let reject!: (err: MangroveError) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const p: Pending = { req, mode, gotData: false, timer: undefined, done, resolve, reject };
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
    // Copies the home counts are never dropped behind its back (paging them out, M12, is not
    // built yet): past the budget the cache grows, and `overBudgetPages` says by how much.
    const s = cache.stats();
    if (s.bytes + PAGE_BYTES > s.budgetBytes) {
      cache.setBudget(s.budgetBytes + PAGE_BYTES);
      this.overBudgetPages++;
    }
    cache.put(addr, { data: new Uint8Array(data), version, dirty, volatile });
  }
}
