/**
 * The envelope every message travels in. `epoch` is the sender's incarnation
 * (bumped on every restart) so a receiver drops what a previous incarnation
 * sent; `seq` numbers the sender's envelopes within one epoch; `re` names the
 * `seq` of the request a reply answers.
 */
export const ENVELOPE_VERSION = 1;

/** Limits, checked where envelopes are decoded and built. */
export const limits = {
  frameBytesMax: 4 * 1024 * 1024,
  idCharsMax: 64,
  kindCharsMax: 48,
  endpointCharsMax: 256,
  listItemsMax: 16_384,
  /** Envelopes one frame may carry (a CBOR sequence: a sender batches what
   * it sends a link in one turn of the event loop). */
  envelopesPerFrameMax: 1024,
} as const;

export interface Envelope<K extends string = string, B = unknown> {
  v: number;
  kind: K;
  from: string;
  to: string;
  epoch: number;
  seq: number;
  re?: number;
  body: B;
}

/** Why an inbound frame was dropped; the keys of `rejectedByReason`. */
export type RejectReason =
  | 'malformed'
  | 'oversize'
  | 'unknown_kind'
  | 'bad_body'
  | 'bad_version'
  | 'stale_epoch'
  | 'misaddressed'
  | 'multipart'
  /** Links that authenticate (CURVE): a handshake refused (zap.ts) — no CURVE, a key nobody authorized, a failed handshake... */
  | 'no_key'
  | 'unknown_key'
  | 'bad_handshake'
  /** ...an envelope on a link whose key was never proven (link-auth.ts), a proof that does not hold, */
  | 'unauthenticated'
  | 'bad_proof'
  /** a node's key sending in another node's name, a client's key sending what only nodes send. */
  | 'forged_from'
  | 'not_a_node'
  /** More than its connection's share (flood-gate.ts). */
  | 'flood';

export const REJECT_REASONS: readonly RejectReason[] = [
  'malformed',
  'oversize',
  'unknown_kind',
  'bad_body',
  'bad_version',
  'stale_epoch',
  'misaddressed',
  'multipart',
  'no_key',
  'unknown_key',
  'bad_handshake',
  'unauthenticated',
  'bad_proof',
  'forged_from',
  'not_a_node',
  'flood',
];
