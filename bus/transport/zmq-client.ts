/**
 * A process that is not a node (the CLI, tests, the client library) talking
 * to one node: a DEALER to the node's ROUTER, requests matched to replies by
 * `seq`. A client has no endpoint of its own; the node answers on the link
 * the request came by. Every request ends, with the reply, the node's error
 * or a timeout that tells the user what to check.
 *
 * The requests of one turn of the event loop leave as one message
 * (turn-batches.ts), and one sweep, not a timer per request, times out
 * those that wait too long.
 *
 * With `curve`, the link is encrypted and the node checks the client's key
 * (curve.ts), which the client proves in its first message (link-hello.ts)
 * so the node knows its role; a node that refuses the key fails every
 * request at once, saying so, rather than leave each to time out.
 */
import { randomBytes } from 'node:crypto';
import * as zmq from 'zeromq';
import { decodeFrame, encode, type DecodeResult } from '../codec.js';
import { ENVELOPE_VERSION, limits } from '../envelope.js';
import { MangroveError, type ErrorCode } from '../errors.js';
import type { Body, Kind } from '../messages/index.js';
import { checkKey, checkKeyPair, type ClientCurve } from './curve.js';
import { LinkHello } from './link-hello.js';
import { describeError } from './transport-base.js';
import { TurnBatches } from './turn-batches.js';
import { openDealer, zmqLimits } from './zmq.js';
import { closeSocket, watch } from './watched-sockets.js';

export const clientLimits = {
  /** Requests awaiting an answer; more are refused rather than queued. */
  pendingMax: 1024,
  /** The sweep for timed-out requests runs timeoutMs / sweepsPerTimeout apart (a request times out that much late at most)... */
  sweepsPerTimeout: 10,
  /** ...and at least this often. */
  sweepMsMax: 250,
  /** How long a CURVE link with nowhere to write waits for the event saying the node refused it (see unwritable). */
  refusalWaitMs: 100,
} as const;

export interface ZmqClientOptions {
  /** Defaults to 'client-' and 12 random hex digits. */
  clientId?: string;
  /** How long a request waits for its answer. */
  timeoutMs: number;
  /** Encrypt the link and present `keys` to the node, whose public key is `serverKey`. */
  curve?: ClientCurve;
}

interface Pending {
  resolve: (body: unknown) => void;
  reject: (err: MangroveError) => void;
  /** performance.now() past which the sweep rejects it. */
  deadline: number;
}

export class ZmqClient {
  /** In the order sent, which is deadline order: the sweep stops at the first not due. */
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private readonly loop: Promise<void>;
  private closed = false;
  /** Why the node will not talk to us, once it has said so: every request fails with it. */
  private refusal: MangroveError | undefined;
  /** Under CURVE: the proof of our key, said before the first request and again when due. */
  private hello: LinkHello | undefined;
  /** The last CURVE handshake failed in a way the node does not explain (a wrong server key, a node without CURVE): said in timeouts. */
  private handshakeFailed = false;
  private readonly out = new TurnBatches<zmq.Dealer, number>((dealer, frame, seqs) => this.sendBatch(dealer, frame, seqs));
  /** Keeps the process alive only while a request waits, as a request's own timer would. */
  private readonly sweeper: NodeJS.Timeout;

  private constructor(
    private readonly dealer: zmq.Dealer,
    readonly endpoint: string,
    readonly clientId: string,
    private readonly timeoutMs: number,
  ) {
    this.loop = this.readLoop();
    const every = Math.max(1, Math.min(clientLimits.sweepMsMax, timeoutMs / clientLimits.sweepsPerTimeout));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /** Opens the link. ZeroMQ connects in the background, so an unreachable
   * node shows up as a request timeout, not here. */
  static async connect(endpoint: string, opts: ZmqClientOptions): Promise<ZmqClient> {
    const clientId = opts.clientId ?? `client-${randomBytes(6).toString('hex')}`;
    if (clientId.length === 0 || clientId.length > limits.idCharsMax) {
      throw new MangroveError('E_BAD_ARGUMENT', `client id must have 1 to ${limits.idCharsMax} characters`);
    }
    if (!(opts.timeoutMs > 0)) throw new MangroveError('E_BAD_ARGUMENT', 'timeoutMs must be positive');
    if (opts.curve) {
      checkKeyPair('curve.keys.', opts.curve.keys);
      checkKey('curve.serverKey', opts.curve.serverKey);
    }
    let dealer: zmq.Dealer;
    try {
      dealer = openDealer(endpoint, opts.curve, true);
    } catch (err) {
      throw new MangroveError('E_BAD_ARGUMENT', describeError(err));
    }
    const client = new ZmqClient(dealer, endpoint, clientId, opts.timeoutMs);
    if (opts.curve) client.watchHandshakes(dealer, new LinkHello(opts.curve.keys, opts.curve.serverKey, clientId));
    else client.watchPlain(dealer);
    return client;
  }

  /**
   * A node with keys greets with CURVE, which a client without one cannot
   * speak: the first time it reads such a greeting (when the node reads
   * ours first, it hangs up, and libzmq dials again until we do), every
   * request fails at once, saying what is missing, rather than time out.
   */
  private watchPlain(dealer: zmq.Dealer): void {
    watch(dealer).on('handshake:error:protocol', (e) => {
      if (e.error.code !== 'ERR_ZMTP_MECHANISM_MISMATCH' || this.refusal) return;
      this.refused(`${this.endpoint} lets in only clients with a key (it is a secure node): give this client its key file (--key FILE, or $MANGROVE_KEY)`);
      // Redialling could only fail the same way.
      closeSocket(this.dealer);
    });
  }

  private watchHandshakes(dealer: zmq.Dealer, hello: LinkHello): void {
    this.hello = hello;
    hello.watch(dealer);
    watch(dealer).on('handshake:error:auth', () => this.refused(`${this.endpoint} refused this client's CURVE key: is the client's public key authorized on that node?`));
    watch(dealer).on('handshake:error:protocol', () => void (this.handshakeFailed = true));
    watch(dealer).on('handshake:error:other', () => void (this.handshakeFailed = true));
    watch(dealer).on('handshake', () => void (this.handshakeFailed = false));
  }

  /** The node refused us (our key, ZAP 400; or no key at all); libzmq will not dial it again, so nothing waiting can be answered. */
  private refused(why: string): void {
    this.refusal = new MangroveError('E_UNREACHABLE', why);
    for (const seq of [...this.pending.keys()]) this.settle(seq)?.reject(this.refusal);
  }

  /** Sends one request; resolves with the body of its reply (`{result}` for
   * 'reply.ok'), rejects with the node's error for 'reply.err'. */
  request<K extends Kind>(kind: K, body: Body<K>): Promise<unknown> {
    if (this.closed) return Promise.reject(new MangroveError('E_CLOSED', 'the client is closed'));
    if (this.refusal) return Promise.reject(this.refusal);
    if (this.pending.size >= clientLimits.pendingMax) {
      return Promise.reject(new MangroveError('E_BUSY', `${clientLimits.pendingMax} requests are already waiting`));
    }
    const seq = ++this.seq;
    const frame = encode({ v: ENVELOPE_VERSION, kind, from: this.clientId, to: '', epoch: 1, seq, body });
    if (frame.byteLength > limits.frameBytesMax) {
      return Promise.reject(new MangroveError('E_BAD_ARGUMENT', `${kind} request is ${frame.byteLength} bytes, more than ${limits.frameBytesMax}`));
    }
    // The queue is asked once a turn (a call into the addon); the turn's later requests join its batch.
    if (!this.out.has('') && !this.dealer.writable) {
      return this.unwritable().then((err) => Promise.reject(err));
    }
    return new Promise<unknown>((resolve, reject) => {
      if (this.pending.size === 0) this.sweeper.ref();
      this.pending.set(seq, { resolve, reject, deadline: performance.now() + this.timeoutMs });
      this.out.add('', this.dealer, frame, seq);
    });
  }

  /** This turn's requests, as one message; if the link refuses it, each of them fails. */
  private sendBatch(dealer: zmq.Dealer, frame: Uint8Array, seqs: number[]): void {
    const failed = (err: MangroveError): void => {
      for (const seq of seqs) this.settle(seq)?.reject(err);
    };
    if (dealer.closed) return;
    if (!dealer.writable) return void this.unwritable().then(failed);
    const hello = this.hello;
    const said = hello?.due();
    if (hello && said) dealer.send(said).catch(() => hello.again());
    dealer.send(frame).catch((err: unknown) => failed(new MangroveError('E_UNREACHABLE', `cannot send to ${this.endpoint}: ${describeError(err)}`)));
  }

  /**
   * Why nothing can be written. A node that refuses our CURVE key, or our
   * lack of one, drops the connection, which leaves the DEALER nowhere to
   * write, and the event saying why comes a moment later, from the socket's
   * monitor: the client waits for it (briefly) rather than call a refusal a
   * full queue.
   */
  private async unwritable(): Promise<MangroveError> {
    if (!this.refusal) await new Promise((resolve) => setTimeout(resolve, clientLimits.refusalWaitMs));
    return this.refusal ?? queueFull(this.endpoint);
  }

  /** Rejects the requests whose time is up. */
  private sweep(): void {
    const now = performance.now();
    for (const [seq, p] of this.pending) {
      if (p.deadline > now) break;
      this.settle(seq);
      const hint = this.handshakeFailed ? ' (the CURVE handshake failed: is the server key this node\'s public key, and does the node use CURVE?)' : '';
      p.reject(new MangroveError('E_UNREACHABLE', `no answer from ${this.endpoint} within ${this.timeoutMs} ms: is the node running?${hint}`));
    }
  }

  /** Sends frames as they are, for specs that feed a node garbage. */
  async sendRaw(frames: Uint8Array[]): Promise<void> {
    if (this.closed) throw new MangroveError('E_CLOSED', 'the client is closed');
    await this.dealer.send(frames);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.out.clear();
    closeSocket(this.dealer);
    for (const seq of [...this.pending.keys()]) {
      this.settle(seq)?.reject(new MangroveError('E_CLOSED', 'the client was closed before the answer came'));
    }
    await this.loop;
  }

  private settle(seq: number): Pending | undefined {
    const p = this.pending.get(seq);
    if (!p) return undefined;
    this.pending.delete(seq);
    if (this.pending.size === 0) this.sweeper.unref();
    return p;
  }

  private async readLoop(): Promise<void> {
    while (!this.dealer.closed) {
      let frames: Buffer[];
      try {
        frames = await this.dealer.receive();
      } catch {
        if (this.dealer.closed) return;
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      this.handle(frames);
    }
  }

  /** Anything that is not a well-formed answer to a waiting request (late,
   * duplicate, garbage) is ignored: the request times out on its own. */
  private handle(frames: Buffer[]): void {
    if (frames.length === 1) decodeFrame(frames[0], (r) => this.answer(r));
  }

  private answer(r: DecodeResult): void {
    if (!r.ok || r.env.re === undefined) return;
    const p = this.settle(r.env.re);
    if (!p) return;
    if (r.env.kind === 'reply.err') {
      const err = r.env.body as Body<'reply.err'>;
      // The node speaks the same codes; a newer node's code passes through as is.
      p.reject(new MangroveError(err.code as ErrorCode, err.message));
    } else {
      p.resolve(r.env.body);
    }
  }
}

function queueFull(endpoint: string): MangroveError {
  return new MangroveError('E_BUSY', `${zmqLimits.sendQueueMax} messages are queued for ${endpoint}`);
}
