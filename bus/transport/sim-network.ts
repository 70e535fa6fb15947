/**
 * The simulated twin of ZeroMQ: an in-memory network whose every delivery
 * is a timer on the simulation clock and whose every fault (loss,
 * duplication, delay, reordering, partitions, crashes) is drawn from one
 * seeded Random. Given the same seed and the same sends, it delivers the
 * same frames in the same order at the same virtual times, byte for byte.
 *
 * Frames cross it as encoded CBOR, so a SimTransport validates, filters,
 * counts and traces exactly as ZmqTransport does (both are BaseTransports).
 *
 * Endpoints are 'sim://ID'. A message is addressed to the incarnation of ID
 * attached when it was sent; if that node crashed or restarted meanwhile,
 * the message is lost, as a TCP connection to a dead process would be.
 */
import type { Clock, Random } from '../clock.js';
import { MangroveError } from '../errors.js';
import { BaseTransport, type BaseTransportOptions, type WriteResult, type WriteTarget } from './transport-base.js';

export interface LinkFaults {
  /** Probability in [0, 1] that a message is lost. */
  drop: number;
  /** Probability in [0, 1] that a message is delivered twice. */
  duplicate: number;
  /** Delivery delay in whole ms, drawn per message uniformly from [min, max]. */
  delayMs: readonly [number, number];
  /** Messages on one link may overtake each other; without it each
   * directed link is FIFO, whatever delays are drawn. */
  reorder: boolean;
}

export const noFaults: LinkFaults = Object.freeze({ drop: 0, duplicate: 0, delayMs: [1, 1] as const, reorder: false });

export const simLimits = {
  /** Messages in flight across the whole network; beyond it they are lost (counted as overflow). */
  inFlightMax: 1_000_000,
  /** FIFO bookkeeping entries kept before idle links are pruned. */
  linkStateMax: 200_000,
} as const;

/** Called for every message the network hands to a node; a throw stops
 * the simulation step, which is how an invariant check fails a run. */
export type DeliverObserver = (from: string, to: string, frame: Uint8Array) => void;

export interface SimNetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  /** Lost to a partition, at sending or on arrival. */
  cut: number;
  /** Lost because the receiver was not attached, crashed or restarted. */
  lost: number;
  overflow: number;
}

export type SimTransportOptions = Omit<BaseTransportOptions, 'self' | 'clock'>;

/** The link an inbound envelope came by: the sender's incarnation. */
export interface SimRoute {
  readonly node: string;
  readonly incarnation: number;
}

const ENDPOINT_PREFIX = 'sim://';

export function simEndpoint(id: string): string {
  return ENDPOINT_PREFIX + id;
}

export class SimNetwork {
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly nodes = new Map<string, SimTransport>();
  private incarnations = 0;
  private defaults: LinkFaults = noFaults;
  private readonly linkFaults = new Map<string, Partial<LinkFaults>>();
  private readonly outFaults = new Map<string, Partial<LinkFaults>>();
  private readonly inFaults = new Map<string, Partial<LinkFaults>>();
  /** Latest delivery time scheduled per directed link, for FIFO. */
  private readonly lastAt = new Map<string, number>();
  private pruneAbove: number = simLimits.linkStateMax;
  private groups: Map<string, number> | null = null;
  private readonly observers: DeliverObserver[] = [];
  private inFlight = 0;
  private readonly counts: SimNetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, cut: 0, lost: 0, overflow: 0 };

  constructor(opts: { clock: Clock; random: Random }) {
    this.clock = opts.clock;
    this.random = opts.random;
  }

  /** Connects a node; its endpoint is simEndpoint(id). */
  attach(id: string, opts: SimTransportOptions = {}): SimTransport {
    if (this.nodes.has(id)) throw new MangroveError('E_BAD_ARGUMENT', `${id} is already attached to the simulated network`);
    const t = new SimTransport(this, { ...opts, self: id, clock: this.clock }, ++this.incarnations);
    this.nodes.set(id, t);
    return t;
  }

  /** The node's process dies: its transport closes, and messages to it
   * (including those in flight) vanish. */
  crash(id: string): void {
    const t = this.nodes.get(id);
    if (!t) return;
    this.nodes.delete(id);
    void t.close();
  }

  /** Crashes `id` if attached, then attaches a new incarnation. */
  restart(id: string, opts: SimTransportOptions = {}): SimTransport {
    this.crash(id);
    return this.attach(id, opts);
  }

  isAttached(id: string): boolean {
    return this.nodes.has(id);
  }

  /**
   * Sets fault settings: without ids, the default for every link; with
   * `from` and/or `to`, for links out of `from`, into `to`, or the one
   * directed link. Fields given are merged over what that scope had; the
   * most specific scope wins per field (link, then out of, then into,
   * then the default).
   */
  configure(faults: Partial<LinkFaults>, from?: string, to?: string): void {
    checkFaults(faults);
    if (from === undefined && to === undefined) {
      this.defaults = { ...this.defaults, ...faults };
      checkFaults(this.defaults);
      return;
    }
    const [map, key] =
      from !== undefined && to !== undefined
        ? [this.linkFaults, linkKey(from, to)]
        : from !== undefined
          ? [this.outFaults, from]
          : [this.inFaults, to!];
    map.set(key, { ...map.get(key), ...faults });
  }

  /** Back to a perfect network (partitions are left to heal()). */
  resetFaults(): void {
    this.defaults = noFaults;
    this.linkFaults.clear();
    this.outFaults.clear();
    this.inFaults.clear();
  }

  /**
   * Splits the network: nodes in different groups cannot exchange messages,
   * including messages already in flight. Nodes listed in no group form one
   * more group together, so partition([['a']]) isolates a from everyone.
   */
  partition(groups: readonly (readonly string[])[]): void {
    const of = new Map<string, number>();
    groups.forEach((group, i) => {
      for (const id of group) {
        if (of.has(id)) throw new MangroveError('E_BAD_ARGUMENT', `${id} is in two partition groups`);
        of.set(id, i);
      }
    });
    this.groups = of;
  }

  heal(): void {
    this.groups = null;
  }

  /** Registers an observer of every delivery; returns its removal. */
  onDeliver(fn: DeliverObserver): () => void {
    this.observers.push(fn);
    return () => {
      const i = this.observers.indexOf(fn);
      if (i >= 0) this.observers.splice(i, 1);
    };
  }

  stats(): SimNetworkStats {
    return { ...this.counts };
  }

  /** @internal SimTransport's write. */
  transmit(from: SimTransport, to: string, frame: Uint8Array, incarnation?: number): void {
    this.counts.sent++;
    if (!this.canTalk(from.self, to)) {
      this.counts.cut++;
      return;
    }
    const dest = this.nodes.get(to);
    if (!dest || (incarnation !== undefined && dest.incarnation !== incarnation)) {
      this.counts.lost++;
      return;
    }
    const f = this.faultsFor(from.self, to);
    if (f.drop > 0 && this.random.next() < f.drop) {
      this.counts.dropped++;
      return;
    }
    this.schedule(from.self, dest, frame, from.route, f);
    if (f.duplicate > 0 && this.random.next() < f.duplicate) {
      this.counts.duplicated++;
      this.schedule(from.self, dest, frame, from.route, f);
    }
  }

  /** @internal A transport that closes itself leaves the network. */
  detach(t: SimTransport): void {
    if (this.nodes.get(t.self) === t) this.nodes.delete(t.self);
  }

  private schedule(from: string, dest: SimTransport, frame: Uint8Array, route: SimRoute, f: LinkFaults): void {
    if (this.inFlight >= simLimits.inFlightMax) {
      this.counts.overflow++;
      return;
    }
    const [min, max] = f.delayMs;
    const now = this.clock.now();
    let at = now + (max > min ? min + this.random.int(max - min + 1) : min);
    // A fixed delay is FIFO by itself (equal times keep creation order on the
    // SimClock); only drawn delays need each link's last time.
    if (!f.reorder && max > min) {
      const key = linkKey(from, dest.self);
      at = Math.max(at, this.lastAt.get(key) ?? at);
      this.lastAt.set(key, at);
      if (this.lastAt.size > this.pruneAbove) {
        this.pruneLinks(now);
        // Links still in flight stay: prune again only when the map has doubled, so pruning costs O(1) a message.
        this.pruneAbove = Math.max(simLimits.linkStateMax, 2 * this.lastAt.size);
      }
    }
    this.inFlight++;
    this.clock.setTimeout(() => this.deliver(from, dest, frame, route), at - now);
  }

  private deliver(from: string, dest: SimTransport, frame: Uint8Array, route: SimRoute): void {
    this.inFlight--;
    if (this.nodes.get(dest.self) !== dest) {
      this.counts.lost++;
      return;
    }
    if (!this.canTalk(from, dest.self)) {
      this.counts.cut++;
      return;
    }
    this.counts.delivered++;
    for (const observe of this.observers) observe(from, dest.self, frame);
    dest.receiveFrame(frame, route);
  }

  private canTalk(a: string, b: string): boolean {
    if (this.groups === null) return true;
    return (this.groups.get(a) ?? -1) === (this.groups.get(b) ?? -1);
  }

  private faultsFor(from: string, to: string): LinkFaults {
    if (this.linkFaults.size === 0 && this.outFaults.size === 0 && this.inFaults.size === 0) return this.defaults;
    const link = this.linkFaults.get(linkKey(from, to));
    const out = this.outFaults.get(from);
    const into = this.inFaults.get(to);
    if (!link && !out && !into) return this.defaults;
    return { ...this.defaults, ...into, ...out, ...link };
  }

  /** A link whose last delivery is due is no constraint on the next one. */
  private pruneLinks(now: number): void {
    for (const [key, at] of this.lastAt) if (at <= now) this.lastAt.delete(key);
  }
}

export class SimTransport extends BaseTransport {
  readonly endpoint: string;
  /** @internal How receivers answer this incarnation. */
  readonly route: SimRoute;

  /** @internal Made by SimNetwork.attach. */
  constructor(
    private readonly network: SimNetwork,
    opts: BaseTransportOptions,
    /** Distinguishes this attachment of the id from earlier and later ones. */
    readonly incarnation: number,
  ) {
    super(opts);
    this.endpoint = simEndpoint(opts.self);
    this.route = Object.freeze({ node: opts.self, incarnation });
  }

  /** @internal The network's delivery. */
  receiveFrame(frame: Uint8Array, route: unknown): void {
    this.accept(frame, route);
  }

  async close(): Promise<void> {
    this.network.detach(this);
    this.markClosed();
  }

  protected write(target: WriteTarget, frame: Uint8Array): WriteResult {
    if ('endpoint' in target) {
      if (!target.endpoint.startsWith(ENDPOINT_PREFIX)) return `${JSON.stringify(target.endpoint)} is not a sim:// endpoint`;
      this.network.transmit(this, target.endpoint.slice(ENDPOINT_PREFIX.length), frame);
      return null;
    }
    const route = target.route;
    if (!isSimRoute(route)) return 'not a simulated reply route';
    this.network.transmit(this, route.node, frame, route.incarnation);
    return null;
  }
}

function isSimRoute(route: unknown): route is SimRoute {
  if (typeof route !== 'object' || route === null) return false;
  const r = route as Partial<SimRoute>;
  return typeof r.node === 'string' && typeof r.incarnation === 'number';
}

function linkKey(from: string, to: string): string {
  return `${from}\n${to}`;
}

function checkFaults(f: Partial<LinkFaults>): void {
  const probability = (p: number | undefined, name: string): void => {
    if (p !== undefined && !(p >= 0 && p <= 1)) throw new MangroveError('E_BAD_ARGUMENT', `${name} must be in [0, 1], not ${p}`);
  };
  probability(f.drop, 'drop');
  probability(f.duplicate, 'duplicate');
  if (f.delayMs !== undefined) {
    const [min, max] = f.delayMs;
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 0 || max < min) {
      throw new MangroveError('E_BAD_ARGUMENT', `delayMs must be whole ms [min, max] with 0 <= min <= max, not [${min}, ${max}]`);
    }
  }
}
