/**
 * The home side of coherence (M10): one page-home machine per page this node
 * is responsible for, taken up on the page's first request and kept (its
 * round numbers must keep rising for holders to tell late invalidations from
 * new ones). Page locks are page-locks.ts's.
 *
 * What the machines emit becomes `page.` messages; a message to this node
 * itself goes through the same route, so the home treats its own node's
 * requests like any other's.
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Clock } from '../../bus/clock.js';
import { MangroveError } from '../../bus/errors.js';
import type { Body } from '../../bus/messages/index.js';
import type { CoherenceBody } from '../../bus/messages/page.js';
import { addressKey, formatAddress } from '../../machines/memory/address.js';
import { PAGE_REQUESTS_QUEUED_MAX, pageHomeMachine, type PageHomeEmitted, type PageHomeEvent, type PageHomeInput } from '../../machines/memory/page-home.js';
import type { PageFacts } from './page-holder.js';

/** Requests kept for a page while it is being taken up; its requesters resend the rest. */
const ACTIVATION_WAITERS_MAX = 1024;

export interface PageHomesDeps {
  self: string;
  clock: Clock;
  retryMs: number;
  inspect?: (e: InspectionEvent) => void;
  /** The page's facts if it is materialized here, else the error a requester gets. */
  factsOf(addr: bigint): PageFacts | MangroveError;
  /** Makes sure this node holds its own copy before the home first runs (it starts as the owner). */
  takeUp(addr: bigint, facts: PageFacts): void;
  /** Whether this node has quorum (M17): write ownership is granted only with it. */
  quorate(): boolean;
  /** Takes the page up as its owner from the freshest durable copy its core holders keep (first request after a start). */
  activate(addr: bigint, facts: PageFacts): Promise<void>;
  log?: { warn(obj: object, msg: string): void };
  send<K extends 'page.invalidate' | 'page.forward' | 'page.served' | 'page.refused'>(to: string, kind: K, body: CoherenceBody<K>): void;
}

export class PageHomes {
  private readonly homes = new Map<bigint, Actor<typeof pageHomeMachine>>();
  /** Pages being taken up, with the requests that arrived meanwhile. */
  private readonly activating = new Map<bigint, PageHomeEvent[]>();

  constructor(private readonly deps: PageHomesDeps) {}

  onRequest(b: Body<'page.request'>, addr: bigint, from: string): void {
    const facts = this.deps.factsOf(addr);
    if (facts instanceof MangroveError) {
      this.deps.send(from, 'page.refused', { addr: b.addr, req: b.req, code: facts.code, message: facts.message });
      return;
    }
    // M17: write ownership is granted only with quorum, so a home cut off from the anchors stops granting
    // writes when its quorum lease runs out (and the majority names a new home only after that).
    if (b.mode === 'write' && !this.deps.quorate()) {
      const message = `write access to ${formatAddress(addr)} needs quorum and its home has none (too few anchors reachable); reads of pages held go on`;
      this.deps.send(from, 'page.refused', { addr: b.addr, req: b.req, code: 'E_NO_QUORUM', message });
      return;
    }
    const request = { type: 'REQUEST', mode: b.mode, from, req: b.req } as const;
    const home = this.homes.get(addr);
    if (home) {
      // Freed and allocated again since: the home, still the owner, holds the page anew.
      if (home.getSnapshot().context.owner === this.deps.self) this.deps.takeUp(addr, facts);
      home.send(request);
      return;
    }
    this.activate(addr, facts, request);
  }

  /**
   * The page's first request since this node became its home: its machine
   * starts once this node holds the freshest durable copy (M11, M14), and
   * the requests that came meanwhile are handed to it in order. A request
   * past ACTIVATION_WAITERS_MAX is dropped: its sender asks again.
   */
  private activate(addr: bigint, facts: PageFacts, request: PageHomeEvent): void {
    const waiting = this.activating.get(addr);
    if (waiting) {
      if (waiting.length < ACTIVATION_WAITERS_MAX) waiting.push(request);
      return;
    }
    this.activating.set(addr, [request]);
    this.deps.activate(addr, facts).then(
      () => {
        const requests = this.activating.get(addr);
        this.activating.delete(addr);
        if (!requests || this.homes.has(addr)) return;
        const home = this.start(addr, { owner: this.deps.self, retryMs: this.deps.retryMs });
        for (const r of requests) home.send(r);
      },
      (err: unknown) => {
        this.activating.delete(addr);
        this.deps.log?.warn({ addr: formatAddress(addr), err: String(err) }, 'taking a page up failed; its requesters ask again');
      },
    );
  }

  /** Rebuild (M14): every page-home machine goes; locks stay (those of clients of failed nodes go apart, page-locks.ts). */
  dropDirectory(): void {
    for (const home of this.homes.values()) home.stop();
    this.homes.clear();
    this.activating.clear();
  }

  /** Rebuild (M14): a page's machine from what repopulation found, so its holders are counted again. */
  install(addr: bigint, page: { owner: string; readers: string[]; version: number }): void {
    this.homes.get(addr)?.stop();
    this.start(addr, { owner: page.owner, readers: page.readers, version: page.version, retryMs: this.deps.retryMs });
  }

  onInvalidated(b: Body<'page.invalidated'>, addr: bigint, from: string): void {
    this.homes.get(addr)?.send({ type: 'INVALIDATED', from, round: b.round });
  }

  onConfirmed(b: Body<'page.confirmed'>, addr: bigint, from: string): void {
    this.homes.get(addr)?.send({ type: 'CONFIRMED', from, req: b.req });
  }

  onDropped(b: Body<'page.dropped'>, addr: bigint, from: string): void {
    this.homes.get(addr)?.send({ type: 'DROPPED', from, round: b.round });
  }

  /** Owner, readers and grant count, if the page has been taken up. */
  view(addr: bigint): { owner: string | null; readers: string[]; grants: number } | undefined {
    const home = this.homes.get(addr);
    if (!home) return undefined;
    const c = home.getSnapshot().context;
    return { owner: c.owner, readers: c.readers, grants: c.version };
  }

  /** Pages taken up whose address lies in [first, last]. */
  within(first: bigint, last: bigint): bigint[] {
    return [...this.homes.keys()].filter((a) => a >= first && a <= last);
  }

  count(): number {
    return this.homes.size;
  }

  stop(): void {
    for (const home of this.homes.values()) home.stop();
    this.homes.clear();
  }

  private start(addr: bigint, input: PageHomeInput): Actor<typeof pageHomeMachine> {
    const { clock, inspect } = this.deps;
    const home = createActor(pageHomeMachine, { clock, inspect, input });
    const wire = addressKey(addr);
    home.on('*', (e) => this.emitted(addr, wire, e as PageHomeEmitted));
    this.homes.set(addr, home);
    home.start();
    return home;
  }

  private emitted(addr: bigint, wire: Uint8Array, e: PageHomeEmitted): void {
    const { send } = this.deps;
    switch (e.type) {
      case 'invalidate':
        return send(e.to, 'page.invalidate', { addr: wire, round: e.round, version: e.version });
      case 'forward':
        return send(e.to, 'page.forward', { addr: wire, requester: e.requester, req: e.req, round: e.round, mode: e.mode, version: e.version });
      case 'served': {
        // A grant carries the core holders the requester will flush to. Refused just now (a directory
        // replica lacks a change, the arena moved): it goes out a retry period later, while this machine
        // still serves the page (a requester that gave up on the request must still learn of the grant).
        const facts = this.deps.factsOf(addr);
        if (facts instanceof MangroveError) {
          const home = this.homes.get(addr);
          this.deps.clock.setTimeout(() => {
            if (home !== undefined && this.homes.get(addr) === home) this.emitted(addr, wire, e);
          }, this.deps.retryMs);
          return;
        }
        return send(e.request.from, 'page.served', { addr: wire, req: e.request.req, round: e.round, version: e.version, holders: facts.holders, volatile: facts.volatile, gen: facts.gen });
      }
      case 'refused':
        return send(e.request.from, 'page.refused', { addr: wire, req: e.request.req, code: e.code, message: refusal(e.code, addr) });
    }
  }
}

/** Why the home refuses a request, in words a user can act on. */
function refusal(code: 'E_PAGE_LOST' | 'E_BUSY', addr: bigint): string {
  if (code === 'E_BUSY') return `${PAGE_REQUESTS_QUEUED_MAX} requests already wait for ${formatAddress(addr)} at its home; try again`;
  return `the newest copy of ${formatAddress(addr)} was on a failed node; recovery will restore it`;
}
