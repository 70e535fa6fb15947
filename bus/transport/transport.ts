/**
 * The one interface every transport implements: ZeroMQ between processes
 * (zmq.ts) and the deterministic in-memory network (sim-network.ts). Peers
 * are named by permanent node id, never by address; the address book maps ids
 * to endpoints and is filled from the node database. The only sends by
 * endpoint are the bootstrap hellos a node makes before it knows any id.
 */
import type { Observable } from 'rxjs';
import type { Envelope, RejectReason } from '../envelope.js';
import type { ClientRole } from './key-holder.js';
import type { CurveRefusal } from './zap.js';

/** How to answer the sender of an inbound envelope on the link it came in by
 * (a client process has no endpoint of its own). Opaque to callers. */
export type ReplyRoute = unknown;

export interface Inbound {
  env: Envelope;
  route: ReplyRoute;
  /** The role of the client key the link proved (link-auth.ts); absent from a node, or where links are not authenticated (a node then lets any request in). */
  role?: ClientRole;
}

export interface TransportStats {
  sent: number;
  received: number;
  /** Envelopes not sent because the peer's endpoint is unknown or the fault filter dropped them. */
  unsent: number;
  /** Inbound envelopes dropped by the fault filter. */
  filtered: number;
  rejected: number;
  rejectedByReason: Record<RejectReason, number>;
  sentByKind: Record<string, number>;
  receivedByKind: Record<string, number>;
  /** Wire messages sent and the envelopes they carried (`frames`), where the transport batches (bus/transport/turn-batches.ts). */
  wire?: { messages: number; frames: number };
  /** Present when the links are encrypted and authenticated (CURVE, zap.ts): the handshakes refused, by reason. */
  curve?: { refusedByReason: Record<CurveRefusal, number> };
}

/** One record of a trace: what one node sent or accepted, when (node clock, ms). */
export interface TraceRecord {
  t: number;
  node: string;
  dir: 'send' | 'recv';
  env: Envelope;
}

/**
 * The first record of a node's incarnation in a trace: what replay needs to
 * rebuild the node as it started (runtime/conformance/replay/replay.ts): its
 * settings, the seed of its randomness, and what its store held.
 * `start` is opaque here: the bus knows nothing of node settings.
 */
export interface TraceStart {
  t: number;
  node: string;
  dir: 'start';
  start: Record<string, unknown>;
}

/** A node's timer fired: the `timer`-th timer the incarnation created (from 0). */
export interface TraceTimer {
  t: number;
  node: string;
  dir: 'timer';
  timer: number;
}

/** Records that are not envelopes: the inputs replay needs beyond what arrived. */
export type TraceMark = TraceStart | TraceTimer;

/** Anything a trace file holds. */
export type TraceEntry = TraceRecord | TraceMark;

export interface TraceSink {
  /**
   * The envelope is the sender's, lent for the call: a byte string in it may
   * be a view of a buffer that changes next (a read's page data is the cached
   * page, engine fast path). A sink that keeps records encodes them now, as
   * the trace file does, or keeps only what it needs.
   */
  record(rec: TraceRecord): void;
  /** Start and timer records; sinks that only want envelopes leave it out. */
  note?(mark: TraceMark): void;
}

export function isEnvelopeRecord(e: TraceEntry): e is TraceRecord {
  return e.dir === 'send' || e.dir === 'recv';
}

export interface Transport {
  /** This node's permanent id; envelopes addressed to another id are dropped. */
  readonly self: string;
  /** Accepted inbound envelopes: decoded, validated, current epoch, addressed here. */
  readonly inbound: Observable<Inbound>;
  /** Sends to `env.to` through the address book. Never throws for a
   * missing or dead peer: the envelope is counted as unsent. */
  send(env: Envelope): void;
  /** Answers an inbound envelope on the link it arrived by. */
  reply(route: ReplyRoute, env: Envelope): void;
  /** Bootstrap only: sends to an endpoint whose node id is not yet known. */
  sendToEndpoint(endpoint: string, env: Envelope): void;
  /**
   * Delivers an envelope this node addresses to itself on a later turn of
   * the clock, traced as a send and a receipt like any other: what one
   * element tells another through it is an input a replay can feed.
   */
  loop(env: Envelope): void;
  /** Bootstrap entries: peers met before the node database names them. */
  setPeer(id: string, endpoint: string): void;
  removePeer(id: string): void;
  /** Where ids the address book does not hold are looked up: the node
   * database, so a node keeps no per-peer copy of what it already has. */
  setDirectory(lookup: (id: string) => string | undefined): void;
  /** Fault filter: drop all traffic to and from these peers (real-process partitions). */
  setDropped(ids: readonly string[]): void;
  dropped(): readonly string[];
  stats(): TransportStats;
  /** Records every envelope sent and accepted, until `null` is set. */
  setTrace(sink: TraceSink | null): void;
  close(): Promise<void>;
}
