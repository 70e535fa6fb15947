/**
 * The production transport: ZeroMQ over TCP. Each node binds one ROUTER for
 * everything that comes in, from peers and from clients, and answers a
 * client on the link it came by. Outbound, a node opens one DEALER per peer
 * endpoint, on first use. Every queue is bounded and no send ever waits:
 * a dead or slow peer costs dropped (and counted) envelopes, never a
 * blocked node.
 *
 * With `curve`, every link is encrypted and authenticated (CurveZMQ): the
 * ROUTER is a CURVE server that lets in only the keys `authorize` names
 * (zap.ts), and each DEALER a CURVE client that must know the public key of
 * the node it dials. Each DEALER proves its key in its first message
 * (link-hello.ts), and with `holderOf` the ROUTER lets through only what
 * links that proved a key send, bound to the key's holder (link-auth.ts).
 * Without `curve`, links are plain TCP, as before.
 */
import * as zmq from 'zeromq';
import { limits, type Envelope } from '../envelope.js';
import { MangroveError } from '../errors.js';
import { checkKey, checkKeyPair, type ClientCurve, type CurveOptions } from './curve.js';
import { LinkAuth, type Vouch } from './link-auth.js';
import { LinkHello, linkRoutingId } from './link-hello.js';
import { BaseTransport, describeError, type BaseTransportOptions, type WriteResult, type WriteTarget } from './transport-base.js';
import type { ReplyRoute, TransportStats } from './transport.js';
import { TurnBatches } from './turn-batches.js';
import { registerZap, watchHandshakes, type ZapRegistration } from './zap.js';
import { closeSocket, watch } from './watched-sockets.js';

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

/** An outbound link: its DEALER, and under CURVE the hello that proves our key to the node it dials. */
interface Dialed {
  dealer: zmq.Dealer;
  hello?: LinkHello;
  /** The server key the link was dialed with: a link to an endpoint whose key changed since (rotated, taken away) is dialed again. */
  serverKey?: string;
}

export interface ZmqTransportOptions extends BaseTransportOptions {
  /** Where the ROUTER binds, e.g. 'tcp://127.0.0.1:7400' ('tcp://127.0.0.1:*' picks a port). */
  endpoint: string;
  /** Encrypt and authenticate every link (curve.ts); plain TCP without it. */
  curve?: CurveOptions;
}

/** A CURVE transport's settings, checked, and its registration with the ZAP handler. */
interface Curve {
  options: CurveOptions;
  zap: ZapRegistration;
}

export class ZmqTransport extends BaseTransport {
  private readonly links = new Map<string, Dialed>();
  /** Which key each inbound link proved, with `curve.holderOf`. */
  private readonly auth: LinkAuth | undefined;
  private readonly loops = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;
  /** What this turn sends, per link (turn-batches.ts). */
  private readonly out = new TurnBatches<Link, Envelope>((link, frame, envs) => this.sendBatch(link, frame, envs));

  private constructor(
    opts: ZmqTransportOptions,
    private readonly router: zmq.Router,
    /** The endpoint actually bound (the real port when ':*' was asked). */
    readonly endpoint: string,
    private readonly curve: Curve | undefined,
  ) {
    super(opts);
    const holderOf = curve?.options.holderOf;
    if (curve && holderOf) {
      const { keys, serverKeyOf } = curve.options;
      this.auth = new LinkAuth({ keys, holderOf: (k) => holderOf(k), keyAt: (e) => serverKeyOf(e), endpointOf: (id) => this.endpointOf(id) });
    }
    this.track(this.readLoop(router, (frames) => this.accept(frames.slice(1), frames[0])));
  }

  static async open(opts: ZmqTransportOptions): Promise<ZmqTransport> {
    // The handler is bound before the ROUTER listens: no handshake may find it missing.
    const curve = opts.curve ? await registerCurve(opts.curve) : undefined;
    let router: zmq.Router | undefined;
    try {
      router = await listen(opts.endpoint, curve);
      return new ZmqTransport(opts, router, router.lastEndpoint ?? opts.endpoint, curve);
    } catch (err) {
      if (router) closeSocket(router);
      await curve?.zap.close();
      throw err;
    }
  }

  /** Under CURVE, the handshakes refused count among the rejections too, so status and /metrics show them by reason. */
  override stats(): TransportStats {
    const stats = { ...super.stats(), wire: { ...this.out.counts } };
    if (!this.curve) return stats;
    const refusedByReason = this.curve.zap.refusals();
    for (const [reason, n] of Object.entries(refusedByReason) as [keyof typeof refusedByReason, number][]) {
      stats.rejectedByReason[reason] += n;
      stats.rejected += n;
    }
    return { ...stats, curve: { refusedByReason } };
  }

  protected override vouch(env: Envelope, route: ReplyRoute): Vouch {
    if (this.auth && (route instanceof Uint8Array || isEndpointRoute(route))) return this.auth.vouch(env, route);
    // A hello is for a gate that binds links; without one it is only noise.
    if (env.kind === 'auth.hello') return { verdict: 'kept' };
    return super.vouch(env, route);
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
    const link = this.link(endpoint);
    if (typeof link === 'string') return link;
    // Not writable means the queue to that peer is full: drop now rather
    // than let send() wait, which would queue without bound in JavaScript.
    if (!link.dealer.writable) return queueFull(endpoint);
    this.out.add(key, { dealer: link.dealer, endpoint }, frame, env);
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
    const dialed = this.links.get(endpoint);
    const hello = dialed?.dealer === dealer ? dialed.hello : undefined;
    const said = hello?.due();
    if (hello && said) dealer.send(said).catch(() => hello.again());
    dealer.send(frame).catch((err: unknown) => failed(describeError(err)));
  }

  private link(endpoint: string): Dialed | string {
    const existing = this.links.get(endpoint);
    if (existing && existing.serverKey !== undefined && this.curve?.options.serverKeyOf(endpoint) !== existing.serverKey) {
      // The node database changed the endpoint's key: what was dialed with the old one is closed, and the link dialed anew below.
      this.links.delete(endpoint);
      closeSocket(existing.dealer);
    } else if (existing) {
      // Re-inserting keeps the Map in least-recently-used order.
      this.links.delete(endpoint);
      this.links.set(endpoint, existing);
      return existing;
    }
    let dialed: Dialed;
    try {
      const curve = this.clientCurve(endpoint);
      const dealer = openDealer(endpoint, curve, curve !== undefined);
      dialed = curve ? { dealer, hello: new LinkHello(curve.keys, curve.serverKey, this.self), serverKey: curve.serverKey } : { dealer };
    } catch (err) {
      return describeError(err);
    }
    const { dealer, hello } = dialed;
    if (this.curve) this.watchHandshakes(endpoint, dealer);
    hello?.watch(dealer);
    this.links.set(endpoint, dialed);
    this.track(this.readLoop(dealer, (frames) => this.accept(frames, { endpoint })));
    if (this.links.size > zmqLimits.linksMax) {
      const [oldest, link] = this.links.entries().next().value!;
      this.links.delete(oldest);
      closeSocket(link.dealer);
    }
    return dialed;
  }

  /** The CURVE client settings for a link to `endpoint`; throws a sentence naming it if its server key is unknown or bad. */
  private clientCurve(endpoint: string): ClientCurve | undefined {
    if (!this.curve) return undefined;
    const serverKey = this.curve.options.serverKeyOf(endpoint);
    if (serverKey === null) throw new MangroveError('E_NOT_FOUND', `no CURVE server key is known for ${endpoint}: cannot connect to it encrypted`);
    return { keys: this.curve.options.keys, serverKey: checkKey(`the CURVE server key of ${endpoint}`, serverKey) };
  }

  /**
   * libzmq does not redial a server that refused its key (ZAP 400), so a
   * refused link would stay dead even after the peer learns the key: it is
   * closed and forgotten, and the next send dials afresh. What it had
   * queued is lost, as with a dead peer. A handshake that fails otherwise
   * (the server key is not the peer's, or the peer has no CURVE) is
   * redialled by libzmq; it is reported once a link, not on every retry.
   */
  private watchHandshakes(endpoint: string, dealer: zmq.Dealer): void {
    watch(dealer).on('handshake:error:auth', () => {
      if (this.links.get(endpoint)?.dealer === dealer) this.links.delete(endpoint);
      closeSocket(dealer);
      this.report('link', `${endpoint} refused this node's CURVE key`);
    });
    let told = false;
    const failed = (e: { error: Error }): void => {
      if (told) return;
      told = true;
      this.report('link', `the CURVE handshake with ${endpoint} failed (${describeError(e.error)}): is the server key this node has for it that node's, and does it use CURVE?`);
    };
    watch(dealer).on('handshake:error:protocol', failed);
    watch(dealer).on('handshake:error:other', failed);
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
    closeSocket(this.router);
    for (const link of this.links.values()) closeSocket(link.dealer);
    this.links.clear();
    await Promise.allSettled([...this.loops]);
    // Only once the ROUTER is gone: no handshake of ours may find the handler missing.
    await this.curve?.zap.close();
  }
}

function queueFull(endpoint: string): string {
  return `queue to ${endpoint} is full (${zmqLimits.sendQueueMax} messages)`;
}

/** A ROUTER bound to `endpoint`, a CURVE server if `curve` is given; E_BAD_CONFIG naming the endpoint if it cannot bind. */
async function listen(endpoint: string, curve: Curve | undefined): Promise<zmq.Router> {
  const router = new zmq.Router({
    linger: 0,
    // Fail a reply to a vanished client instead of dropping it silently,
    // and never wait on a full queue: both become 'unsent'.
    mandatory: true,
    sendTimeout: 0,
    sendHighWaterMark: zmqLimits.sendQueueMax,
    receiveHighWaterMark: zmqLimits.receiveQueueMax,
    maxMessageSize: zmqLimits.wireBytesMax,
    ...(curve ? curveServerOptions(curve) : {}),
  });
  if (curve) watchHandshakes(router, curve.zap);
  try {
    await router.bind(endpoint);
  } catch (err) {
    closeSocket(router);
    throw new MangroveError('E_BAD_CONFIG', `cannot listen on ${endpoint}: ${describeError(err)} (is another node using that port?)`);
  }
  return router;
}

async function registerCurve(options: CurveOptions): Promise<Curve> {
  checkKeyPair('curve.keys.', options.keys);
  return { options, zap: await registerZap(options.authorize) };
}

function curveServerOptions(curve: Curve): Partial<zmq.SocketOptions<zmq.Router>> {
  return {
    curveServer: true,
    curvePublicKey: curve.options.keys.publicKey,
    curveSecretKey: curve.options.keys.secretKey,
    zapDomain: curve.zap.domain,
    // Without a handler, fail the handshake; libzmq's default would let every key in.
    zapEnforceDomain: true,
    // A DEALER that redials keeps its routing id (link-hello.ts); its new
    // connection replaces the old one the ROUTER may not have seen close yet.
    handover: true,
  };
}

function isEndpointRoute(route: unknown): route is { endpoint: string } {
  return typeof route === 'object' && route !== null && typeof (route as { endpoint?: unknown }).endpoint === 'string';
}

/**
 * A Dealer connected to `endpoint` with the bus's limits: never blocks a
 * send (a full queue refuses at once), never lingers at close. With
 * `curve`, a CURVE client of the server whose key it names (keys checked
 * by the caller), with a random routing id of its own (link-auth.ts).
 * `watched`: its events are watched from before it dials (libzmq gives up
 * on a link whose handshake failed, so the one event saying why must not
 * be missed). Throws a sentence naming the endpoint if the endpoint cannot
 * be parsed.
 */
export function openDealer(endpoint: string, curve?: ClientCurve, watched = false): zmq.Dealer {
  const dealer = new zmq.Dealer({
    linger: 0,
    sendTimeout: 0,
    sendHighWaterMark: zmqLimits.sendQueueMax,
    receiveHighWaterMark: zmqLimits.receiveQueueMax,
    maxMessageSize: zmqLimits.wireBytesMax,
    reconnectMaxInterval: zmqLimits.reconnectMaxMs,
    ...(curve ? { curvePublicKey: curve.keys.publicKey, curveSecretKey: curve.keys.secretKey, curveServerKey: curve.serverKey, routingId: linkRoutingId() } : {}),
  });
  // The monitor starts here; events it sees before anyone listens wait for the first listener.
  if (watched) watch(dealer);
  try {
    dealer.connect(endpoint);
  } catch (err) {
    closeSocket(dealer);
    throw new Error(`cannot connect to ${JSON.stringify(endpoint)}: ${describeError(err)}`);
  }
  return dealer;
}
