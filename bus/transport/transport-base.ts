/**
 * Everything the ZeroMQ transport and the simulated one share, written once
 * so both worlds validate, filter, count and trace identically: the address
 * book, the fault filter, the inbound gate (decode, address, epoch), the
 * statistics and the trace hook. A concrete transport only moves bytes:
 * it implements `write` and feeds what arrives to `accept`.
 *
 * Nothing here throws into the event loop. Bad frames are counted and
 * reported through `onReject`; failed sends are counted as unsent; an error
 * in a subscriber, a trace sink or a link is reported through `onError`.
 */
import { Observable, Subject, Subscriber, type Observer, type Subscription } from 'rxjs';
import type { Clock } from '../clock.js';
import { decodeFrame, encode, type DecodeResult } from '../codec.js';
import { limits, REJECT_REASONS, type Envelope, type RejectReason } from '../envelope.js';
import { MangroveError } from '../errors.js';
import type { ClientRole } from './key-holder.js';
import { FloodGate, type FloodLimit } from './flood-gate.js';
import type { Vouch } from './link-auth.js';
import type { Inbound, ReplyRoute, TraceSink, Transport, TransportStats } from './transport.js';

export const transportLimits = {
  /** Address book entries; a cluster is at most a few ten thousand nodes. */
  peersMax: 65_536,
  /** Senders whose epoch is remembered. Clients add an id per connection,
   * so the least recently heard sender is forgotten beyond this. */
  epochsTrackedMax: 65_536,
} as const;

/** Where an outbound frame goes: an endpoint from the address book or
 * bootstrap, or the link an inbound envelope arrived by. */
export type WriteTarget = { endpoint: string } | { route: ReplyRoute };

/** `null` when the link took the frame, else why it did not. A promise when
 * the link only learns later (the frame then stays counted as sent until
 * the promise says otherwise). */
export type WriteResult = null | string | Promise<null | string>;

export type TransportErrorSource = 'unsent' | 'subscriber' | 'trace' | 'link';

export interface BaseTransportOptions {
  /** This node's permanent id (or a client's id). */
  self: string;
  clock: Clock;
  /** Called for every inbound frame refused by validation. */
  onReject?: (reason: RejectReason, detail: string) => void;
  /** Called for envelopes not sent, and for errors the transport contained. */
  onError?: (source: TransportErrorSource, detail: string) => void;
  /** A cap on what one inbound connection may send (flood-gate.ts); none when absent. */
  flood?: FloodLimit;
}

/** The reply route of a looped envelope: nobody to answer. */
const LOOP_ROUTE = Object.freeze({ loop: true });

/** What a transport that does not authenticate its links says of every envelope. */
const PASS: Vouch = Object.freeze({ verdict: 'pass' });

export abstract class BaseTransport implements Transport {
  readonly self: string;
  readonly inbound: Observable<Inbound>;
  protected readonly clock: Clock;
  protected closed = false;

  private readonly subject = new Subject<Inbound>();
  private readonly peers = new Map<string, string>();
  private directory: (id: string) => string | undefined = () => undefined;
  private readonly epochs = new Map<string, number>();
  private droppedIds = new Set<string>();
  private trace: TraceSink | null = null;
  private readonly counts: TransportStats;
  private readonly onReject?: (reason: RejectReason, detail: string) => void;
  private readonly onError?: (source: TransportErrorSource, detail: string) => void;
  /** Caps what one inbound connection may send; null without a limit. */
  private readonly floodGate: FloodGate | null;

  constructor(opts: BaseTransportOptions) {
    if (opts.self.length === 0 || opts.self.length > limits.idCharsMax) {
      throw new MangroveError('E_BAD_ARGUMENT', `node id must have 1 to ${limits.idCharsMax} characters`);
    }
    this.self = opts.self;
    this.clock = opts.clock;
    this.onReject = opts.onReject;
    this.onError = opts.onError;
    this.floodGate = opts.flood === undefined ? null : new FloodGate(opts.flood, opts.clock);
    this.inbound = new GuardedStream(this.subject, (err) => this.report('subscriber', describeError(err)));
    const rejectedByReason = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
    this.counts = {
      sent: 0,
      received: 0,
      unsent: 0,
      filtered: 0,
      rejected: 0,
      rejectedByReason,
      sentByKind: {},
      receivedByKind: {},
    };
  }

  /** Moves one frame towards its target; see WriteResult. Must not throw,
   * but a throw is contained and counted as unsent. `env` is what the frame
   * encodes: a link that learns of a failure later, for many frames at
   * once, passes it to `unsend` rather than return a promise per frame. */
  protected abstract write(target: WriteTarget, frame: Uint8Array, env: Envelope): WriteResult;

  abstract close(): Promise<void>;

  send(env: Envelope): void {
    const endpoint = this.endpointOf(env.to);
    if (endpoint === undefined) return this.unsent(env, `no endpoint known for ${JSON.stringify(env.to)}`);
    this.transmit({ endpoint }, env);
  }

  reply(route: ReplyRoute, env: Envelope): void {
    this.transmit({ route }, env);
  }

  sendToEndpoint(endpoint: string, env: Envelope): void {
    this.transmit({ endpoint }, env);
  }

  loop(env: Envelope): void {
    if (this.closed) return this.unsent(env, 'transport is closed');
    if (env.to !== this.self) return this.unsent(env, `a loop is addressed to this node, not ${JSON.stringify(env.to)}`);
    this.record('send', env);
    this.counts.sent++;
    this.counts.sentByKind[env.kind] = (this.counts.sentByKind[env.kind] ?? 0) + 1;
    this.bringBack(env);
  }

  /** A looped envelope comes back on a later turn (a replay feeds the recorded receipt instead, and overrides this). */
  protected bringBack(env: Envelope): void {
    this.clock.setTimeout(() => {
      if (!this.closed) this.deliver(env, LOOP_ROUTE);
    }, 0);
  }

  setPeer(id: string, endpoint: string): void {
    if (id.length === 0 || id.length > limits.idCharsMax) {
      throw new MangroveError('E_BAD_ARGUMENT', `peer id must have 1 to ${limits.idCharsMax} characters`);
    }
    if (endpoint.length === 0 || endpoint.length > limits.endpointCharsMax) {
      throw new MangroveError('E_BAD_ARGUMENT', `endpoint for ${id} must have 1 to ${limits.endpointCharsMax} characters`);
    }
    if (!this.peers.has(id) && this.peers.size >= transportLimits.peersMax) {
      throw new MangroveError('E_FULL', `address book is full (${transportLimits.peersMax} peers)`);
    }
    this.peers.set(id, endpoint);
  }

  removePeer(id: string): void {
    this.peers.delete(id);
  }

  setDirectory(lookup: (id: string) => string | undefined): void {
    this.directory = lookup;
  }

  /** The endpoint for `id`: the directory's (current), else a bootstrap entry. */
  endpointOf(id: string): string | undefined {
    return this.directory(id) ?? this.peers.get(id);
  }

  setDropped(ids: readonly string[]): void {
    this.droppedIds = new Set(ids);
  }

  dropped(): readonly string[] {
    return [...this.droppedIds];
  }

  stats(): TransportStats {
    const c = this.counts;
    return {
      ...c,
      rejectedByReason: { ...c.rejectedByReason },
      sentByKind: { ...c.sentByKind },
      receivedByKind: { ...c.receivedByKind },
    };
  }

  setTrace(sink: TraceSink | null): void {
    this.trace = sink;
  }

  /** The inbound gate: every frame a concrete transport receives comes
   * through here, as the list of payload frames of one message; each
   * envelope of the frame is judged on its own (codec.ts `decodeFrame`). */
  protected accept(frames: Uint8Array | readonly Uint8Array[], route: ReplyRoute): void {
    if (this.closed) return;
    try {
      this.admit(frames, route);
    } catch (err) {
      // Only a bug gets here; the receive loop must go on regardless.
      this.report('link', `inbound handling failed: ${describeError(err)}`);
    }
  }

  /**
   * What a transport that authenticates its links (zmq.ts with CURVE,
   * link-auth.ts) says of an inbound envelope, before its sender's epoch is
   * looked at: pass it on (with the role its client link proved), drop it
   * counted, or keep it (a link's own hello). Without authentication every
   * envelope passes, as in the simulator.
   */
  protected vouch(_env: Envelope, _route: ReplyRoute): Vouch {
    return PASS;
  }

  /** Stops delivery: completes `inbound` and refuses further sends. */
  protected markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.subject.complete();
  }

  protected report(source: TransportErrorSource, detail: string): void {
    if (!this.onError) return;
    try {
      this.onError(source, detail);
    } catch {
      // A failing logger must not become a failing transport.
    }
  }

  private admit(frames: Uint8Array | readonly Uint8Array[], route: ReplyRoute): void {
    // Refused before anything is decoded: a flood costs the node as little as can be.
    if (this.floodGate !== null && route instanceof Uint8Array && !this.floodGate.admit(Buffer.from(route.buffer, route.byteOffset, route.byteLength).toString('latin1'))) {
      return this.rejectFrame('flood', 'a connection sent more than its share of messages a second');
    }
    let frame: Uint8Array;
    if (frames instanceof Uint8Array) frame = frames;
    else if (frames.length === 1) frame = frames[0];
    else if (frames.length === 0) return this.rejectFrame('malformed', 'message has no payload frame');
    else return this.rejectFrame('multipart', `message has ${frames.length} payload frames, expected 1`);
    decodeFrame(frame, (r) => this.admitOne(r, route));
  }

  private admitOne(r: DecodeResult, route: ReplyRoute): void {
    if (!r.ok) return this.rejectFrame(r.reason, r.detail);
    const env = r.env;
    if (env.to !== this.self && env.to !== '') {
      return this.rejectFrame('misaddressed', `${env.kind} from ${env.from} is addressed to ${env.to}`);
    }
    const vouched = this.vouch(env, route);
    if (vouched.verdict === 'reject') return this.rejectFrame(vouched.reason, vouched.detail);
    if (vouched.verdict === 'kept') return;
    if (this.droppedIds.has(env.from)) {
      this.counts.filtered++;
      return;
    }
    const known = this.epochs.get(env.from);
    if (known !== undefined && env.epoch < known) {
      return this.rejectFrame('stale_epoch', `${env.kind} from ${env.from} epoch ${env.epoch}, current ${known}`);
    }
    this.rememberEpoch(env.from, env.epoch);
    this.deliver(env, route, vouched.role);
  }

  /** Counts, traces and hands on an envelope the gate accepted (replay
   * feeds recorded envelopes here, past a gate they already passed). */
  protected deliver(env: Envelope, route: ReplyRoute, role?: ClientRole): void {
    this.counts.received++;
    this.counts.receivedByKind[env.kind] = (this.counts.receivedByKind[env.kind] ?? 0) + 1;
    this.record('recv', env);
    this.subject.next(role === undefined ? { env, route } : { env, route, role });
  }

  private rememberEpoch(from: string, epoch: number): void {
    // Re-inserting keeps the Map in least-recently-heard order for eviction.
    this.epochs.delete(from);
    this.epochs.set(from, epoch);
    if (this.epochs.size > transportLimits.epochsTrackedMax) {
      const oldest = this.epochs.keys().next().value;
      if (oldest !== undefined) this.epochs.delete(oldest);
    }
  }

  private rejectFrame(reason: RejectReason, detail: string): void {
    this.counts.rejected++;
    this.counts.rejectedByReason[reason]++;
    if (!this.onReject) return;
    try {
      this.onReject(reason, detail);
    } catch {
      // As in report(): the logger's failure is not the transport's.
    }
  }

  private transmit(target: WriteTarget, env: Envelope): void {
    if (this.closed) return this.unsent(env, 'transport is closed');
    if (this.droppedIds.has(env.to)) return this.unsent(env, `fault filter drops traffic to ${env.to}`, true);
    let frame: Uint8Array;
    try {
      frame = encode(env);
    } catch (err) {
      return this.unsent(env, `cannot encode ${env.kind}: ${describeError(err)}`);
    }
    if (frame.byteLength > limits.frameBytesMax) {
      return this.unsent(env, `${env.kind} encodes to ${frame.byteLength} bytes, more than ${limits.frameBytesMax}`);
    }
    // Traced before the link is tried: the trace shows what the node sent,
    // and a replay of the node must not depend on a peer's queue filling up.
    this.record('send', env);
    let result: WriteResult;
    try {
      result = this.write(target, frame, env);
    } catch (err) {
      result = describeError(err);
    }
    if (typeof result === 'string') return this.unsent(env, result);
    this.counts.sent++;
    this.counts.sentByKind[env.kind] = (this.counts.sentByKind[env.kind] ?? 0) + 1;
    if (result !== null) {
      result.then(
        (late) => late !== null && this.unsend(env, late),
        (err: unknown) => this.unsend(env, describeError(err)),
      );
    }
  }

  /** A frame the link took but then could not deliver (already traced). */
  protected unsend(env: Envelope, detail: string): void {
    this.counts.sent--;
    this.counts.sentByKind[env.kind]--;
    this.unsent(env, detail);
  }

  private unsent(env: Envelope, detail: string, filtered = false): void {
    this.counts.unsent++;
    // The fault filter is deliberate; only real failures are worth a log line.
    if (!filtered) this.report('unsent', `${env.kind} to ${JSON.stringify(env.to)}: ${detail}`);
  }

  private record(dir: 'send' | 'recv', env: Envelope): void {
    if (!this.trace) return;
    try {
      this.trace.record({ t: this.clock.now(), node: this.self, dir, env });
    } catch (err) {
      this.report('trace', describeError(err));
    }
  }
}

export function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * An Observable whose plain subscribers cannot hurt their neighbours or the
 * process. rxjs catches an error thrown by a subscriber's callback and
 * rethrows it on a fresh timer, an uncaught exception: one buggy actor would
 * take the node down. Here such an error goes to `onError` and the
 * subscriber keeps receiving.
 *
 * Subscriptions made by rxjs operators (`inbound.pipe(...)`) arrive as
 * Subscriber instances and pass through untouched, because wrapping them
 * would cut rxjs's unsubscribe chain; an error at the end of such a pipe
 * goes to rxjs's `config.onUnhandledError`, which the host process sets.
 */
class GuardedStream<T> extends Observable<T> {
  constructor(
    source: Observable<T>,
    private readonly onError: (err: unknown) => void,
  ) {
    super((subscriber) => source.subscribe(subscriber));
  }

  override subscribe(
    observerOrNext?: Partial<Observer<T>> | ((value: T) => void) | null,
    error?: ((err: unknown) => void) | null,
    complete?: (() => void) | null,
  ): Subscription {
    if (observerOrNext instanceof Subscriber) return super.subscribe(observerOrNext);
    const observer: Partial<Observer<T>> =
      typeof observerOrNext === 'function'
        ? { next: observerOrNext, error: error ?? undefined, complete: complete ?? undefined }
        : (observerOrNext ?? {});
    return super.subscribe({
      next: (value) => this.guard(() => observer.next?.(value)),
      error: (err: unknown) => this.guard(() => observer.error?.(err)),
      complete: () => this.guard(() => observer.complete?.()),
    });
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      try {
        this.onError(err);
      } catch {
        // A failing error reporter has nowhere left to report to.
      }
    }
  }
}
