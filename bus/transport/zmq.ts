/**
 * The production transport: ZeroMQ over TCP. Each node binds one ROUTER for
 * everything that comes in, from peers and from clients, and answers a
 * client on the link it came by. Outbound, a node opens one DEALER per peer
 * endpoint, on first use. Every queue is bounded and no send ever waits:
 * a dead or slow peer costs dropped (and counted) envelopes, never a
 * blocked node.
 */
import * as zmq from 'zeromq';
import { limits, type Envelope } from '../envelope.js';
import { MangroveError } from '../errors.js';
import { BaseTransport, describeError, type BaseTransportOptions, type WriteResult, type WriteTarget } from './transport-base.js';
import type { TransportStats } from './transport.js';
import { TurnBatches } from './turn-batches.js';

export const zmqLimits = {
  /** Frames queued towards one peer before further sends count as unsent. */
  sendQueueMax: 1000,
  /** Messages ZeroMQ buffers per connection before it stops reading it. */
  receiveQueueMax: 1000,
  /** ZeroMQ disconnects a peer that sends a bigger frame. The slack lets a
   * frame just over frameBytesMax through to the codec, which counts it as
   * 'oversize', so a peer that is merely too big shows up in the stats. */
  wireBytesMax: limits.frameBytesMax + 64 * 1024,
  /** Outbound links kept open; the least recently used is closed beyond. */
  linksMax: 1024,
  /** Backoff ceiling for reconnecting to a dead peer. */
  reconnectMaxMs: 5000,
} as const;

/** How to answer an inbound envelope: the ROUTER routing id of the sender's
 * connection, or the endpoint of our DEALER the envelope came back on. */
export type ZmqRoute = Uint8Array | { endpoint: string };

/** Where a batch goes: out of our DEALER to a peer, or back through the ROUTER to a connection. */
type Link = { dealer: zmq.Dealer; endpoint: string } | { route: Uint8Array };

export interface ZmqTransportOptions extends BaseTransportOptions {
  /** Where the ROUTER binds, e.g. 'tcp://127.0.0.1:7400' ('tcp://127.0.0.1:*' picks a port). */
  endpoint: string;
}

export class ZmqTransport extends BaseTransport {
  private readonly links = new Map<string, zmq.Dealer>();
  private readonly loops = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;
  /** What this turn sends, per link (turn-batches.ts). */
  private readonly out = new TurnBatches<Link, Envelope>((link, frame, envs) => this.sendBatch(link, frame, envs));

  private constructor(
    opts: ZmqTransportOptions,
    private readonly router: zmq.Router,
    /** The endpoint actually bound (the real port when ':*' was asked). */
    readonly endpoint: string,
  ) {
    super(opts);
    this.track(this.readLoop(router, (frames) => this.accept(frames.slice(1), frames[0])));
  }

  static async open(opts: ZmqTransportOptions): Promise<ZmqTransport> {
    const router = new zmq.Router({
      linger: 0,
      // Fail a reply to a vanished client instead of dropping it silently,
      // and never wait on a full queue: both become 'unsent'.
      mandatory: true,
      sendTimeout: 0,
      sendHighWaterMark: zmqLimits.sendQueueMax,
      receiveHighWaterMark: zmqLimits.receiveQueueMax,
      maxMessageSize: zmqLimits.wireBytesMax,
    });
    try {
      await router.bind(opts.endpoint);
    } catch (err) {
      router.close();
      throw new MangroveError(
        'E_BAD_CONFIG',
        `cannot listen on ${opts.endpoint}: ${describeError(err)} (is another node using that port?)`,
      );
    }
    return new ZmqTransport(opts, router, router.lastEndpoint ?? opts.endpoint);
  }

  override stats(): TransportStats {
    return { ...super.stats(), wire: { ...this.out.counts } };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  protected write(target: WriteTarget, frame: Uint8Array, env: Envelope): WriteResult {
    if ('endpoint' in target) return this.toEndpoint(target.endpoint, frame, env);
    const route = target.route;
    if (route instanceof Uint8Array) {
      this.out.add(`r${Buffer.from(route.buffer, route.byteOffset, route.byteLength).toString('latin1')}`, { route }, frame, env);
      return null;
    }
    if (isEndpointRoute(route)) return this.toEndpoint(route.endpoint, frame, env);
    return 'not a ZeroMQ reply route';
  }

  private toEndpoint(endpoint: string, frame: Uint8Array, env: Envelope): WriteResult {
    const key = `e${endpoint}`;
    if (this.out.has(key)) {
      // The link took a frame this turn: the rest of the turn's go in the same message.
      this.out.add(key, undefined, frame, env);
      return null;
    }
    const dealer = this.link(endpoint);
    if (typeof dealer === 'string') return dealer;
    // Not writable means the queue to that peer is full: drop now rather
    // than let send() wait, which would queue without bound in JavaScript.
    if (!dealer.writable) return queueFull(endpoint);
    this.out.add(key, { dealer, endpoint }, frame, env);
    return null;
  }

  /** One message for the envelopes of a turn; if the link refuses it, each of them counts as unsent. */
  private sendBatch(link: Link, frame: Uint8Array, envs: Envelope[]): void {
    const failed = (detail: string): void => {
      for (const env of envs) this.unsend(env, detail);
    };
    if ('route' in link) {
      this.router.send([link.route, frame]).catch((err: unknown) => failed(describeError(err)));
      return;
    }
    const { dealer, endpoint } = link;
    if (dealer.closed) return failed(`the link to ${endpoint} was closed`);
    if (!dealer.writable) return failed(queueFull(endpoint));
    dealer.send(frame).catch((err: unknown) => failed(describeError(err)));
  }

  private link(endpoint: string): zmq.Dealer | string {
    const existing = this.links.get(endpoint);
    if (existing) {
      // Re-inserting keeps the Map in least-recently-used order.
      this.links.delete(endpoint);
      this.links.set(endpoint, existing);
      return existing;
    }
    let dealer: zmq.Dealer;
    try {
      dealer = openDealer(endpoint);
    } catch (err) {
      return describeError(err);
    }
    this.links.set(endpoint, dealer);
    this.track(this.readLoop(dealer, (frames) => this.accept(frames, { endpoint })));
    if (this.links.size > zmqLimits.linksMax) {
      const [oldest, socket] = this.links.entries().next().value!;
      this.links.delete(oldest);
      socket.close();
    }
    return dealer;
  }

  /** Reads one socket until it is closed; nothing a peer sends can end it. */
  private async readLoop(socket: zmq.Router | zmq.Dealer, deliver: (frames: Buffer[]) => void): Promise<void> {
    while (!socket.closed) {
      let frames: Buffer[];
      try {
        frames = await socket.receive();
      } catch (err) {
        if (socket.closed) return;
        this.report('link', `receive failed: ${describeError(err)}`);
        // Yield so a persistent failure cannot spin the event loop.
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      deliver(frames);
    }
  }

  private track(loop: Promise<void>): void {
    this.loops.add(loop);
    void loop.finally(() => this.loops.delete(loop));
  }

  private async shutdown(): Promise<void> {
    this.markClosed();
    this.out.clear();
    this.router.close();
    for (const dealer of this.links.values()) dealer.close();
    this.links.clear();
    await Promise.allSettled([...this.loops]);
  }
}

function queueFull(endpoint: string): string {
  return `queue to ${endpoint} is full (${zmqLimits.sendQueueMax} messages)`;
}

function isEndpointRoute(route: unknown): route is { endpoint: string } {
  return typeof route === 'object' && route !== null && typeof (route as { endpoint?: unknown }).endpoint === 'string';
}

/**
 * A Dealer connected to `endpoint` with the bus's limits: never blocks a
 * send (a full queue refuses at once), never lingers at close. Throws a
 * sentence naming the endpoint if the endpoint cannot be parsed.
 */
export function openDealer(endpoint: string): zmq.Dealer {
  const dealer = new zmq.Dealer({
    linger: 0,
    sendTimeout: 0,
    sendHighWaterMark: zmqLimits.sendQueueMax,
    receiveHighWaterMark: zmqLimits.receiveQueueMax,
    maxMessageSize: zmqLimits.wireBytesMax,
    reconnectMaxInterval: zmqLimits.reconnectMaxMs,
  });
  try {
    dealer.connect(endpoint);
  } catch (err) {
    dealer.close();
    throw new Error(`cannot connect to ${JSON.stringify(endpoint)}: ${describeError(err)}`);
  }
  return dealer;
}
