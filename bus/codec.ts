/**
 * The wire format: one envelope is one CBOR map (RFC 8949); a frame is a
 * CBOR sequence (RFC 8742) of one or more of them, the envelopes a sender
 * sent one link in one turn (bus/transport/turn-batches.ts). Plain maps, not
 * cbor-x records, so any CBOR library can read a frame or a trace. Decoding is the first line of defence against a hostile or broken
 * peer: it never throws, bounds sizes before trusting anything, and says
 * why a frame was refused so the transport can count it.
 */
import { Encoder, isNativeAccelerationEnabled } from 'cbor-x';
import { ENVELOPE_VERSION, limits, type Envelope, type RejectReason } from './envelope.js';
import { checkBody, isKind } from './messages/index.js';

export type DecodeResult = { ok: true; env: Envelope } | { ok: false; reason: RejectReason; detail: string };

const cbor = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  // One-byte map headers for small maps: frames stay as small as CBOR allows.
  variableMapSize: true,
  // Byte strings as plain CBOR major type 2, not the typed-array tag 64.
  tagUint8Array: false,
  // A decoded byte string must not pin the whole (up to 4 MiB) inbound frame.
  copyBuffers: true,
});

/** Encodes an envelope. The result may share an ArrayBuffer with earlier
 * results but is never overwritten, so it may be queued without a copy. */
export function encode(env: Envelope): Uint8Array {
  return cbor.encode(wireForm(env));
}

/** Encodes any value the way envelopes are encoded (trace records). */
export function encodeValue(value: unknown): Uint8Array {
  return cbor.encode(value);
}

/** Where a CBOR sequence stopped: at its end, or at an item that is cut
 * short (a torn tail) or is not CBOR. */
export type SequenceEnd =
  | { complete: true }
  | { complete: false; offset: number; truncated: boolean; detail: string };

/**
 * Decodes a CBOR sequence (RFC 8742), calling `each` with every whole item
 * and its byte offset. Item boundaries are found by scanning heads before
 * decoding, because cbor-x's native string extractor reads ahead over the
 * rest of the buffer: one torn item at the end would fail the first.
 */
export function decodeSequence(data: Uint8Array, each: (value: unknown, offset: number) => void): SequenceEnd {
  let offset = 0;
  while (offset < data.byteLength) {
    const end = itemEnd(data, offset);
    if (typeof end === 'string') return { complete: false, offset, truncated: end === truncated, detail: end };
    let value: unknown;
    try {
      value = cbor.decode(data.subarray(offset, end));
    } catch (e) {
      return { complete: false, offset, truncated: false, detail: e instanceof Error ? e.message : String(e) };
    }
    each(value, offset);
    offset = end;
  }
  return { complete: true };
}

const truncated = 'the item is cut short';

/** The offset just past the CBOR item starting at `start`, or why there is
 * none. Iterative, so hostile nesting cannot overflow the stack. */
function itemEnd(data: Uint8Array, start: number): number | string {
  const len = data.byteLength;
  // Items still owed per open container; -1 marks an indefinite-length one.
  const owed: number[] = [1];
  let pos = start;
  while (owed.length > 0) {
    const top = owed.length - 1;
    if (owed[top] === 0) {
      owed.pop();
      continue;
    }
    if (pos >= len) return truncated;
    const initial = data[pos++];
    if (owed[top] === -1 && initial === 0xff) {
      owed.pop();
      continue;
    }
    if (owed[top] > 0) owed[top]--;
    const major = initial >> 5;
    const info = initial & 0x1f;
    let arg = info;
    if (info >= 24 && info <= 27) {
      const size = 1 << (info - 24);
      if (pos + size > len) return truncated;
      arg = 0;
      for (let i = 0; i < size; i++) arg = arg * 256 + data[pos + i];
      pos += size;
    } else if (info >= 28 && info <= 30) {
      return `byte ${pos - 1}: reserved CBOR head 0x${initial.toString(16)}`;
    } else if (info === 31 && (major < 2 || major >= 6)) {
      // Only strings, arrays and maps have an indefinite length, and a
      // break (0xff) belongs inside one of those.
      return `byte ${pos - 1}: misplaced CBOR head 0x${initial.toString(16)}`;
    }
    const indefinite = info === 31;
    switch (major) {
      case 2:
      case 3:
        if (indefinite) owed.push(-1);
        else if (arg > len - pos) return truncated;
        else pos += arg;
        break;
      case 4:
      case 5: {
        const items = major === 5 ? arg * 2 : arg;
        // Every item takes at least a byte: more than remain cannot fit.
        if (indefinite) owed.push(-1);
        else if (items > len - pos) return truncated;
        else if (items > 0) owed.push(items);
        break;
      }
      case 6:
        owed.push(1);
        break;
      default:
        break;
    }
  }
  return pos;
}

/**
 * Decodes and validates a frame of the wire, calling `each` with every
 * envelope's result in order. A refused item ends the frame (what follows
 * cannot be trusted to start where it ended), so garbage costs one refusal
 * and a bad envelope in a batch costs only itself and what comes after it.
 */
export function decodeFrame(frame: Uint8Array, each: (r: DecodeResult) => void): void {
  if (frame.byteLength > limits.frameBytesMax) return each(reject('oversize', `frame of ${frame.byteLength} bytes exceeds ${limits.frameBytesMax}`));
  if (frame.byteLength === 0) return each(reject('malformed', 'empty frame'));
  for (let offset = 0, n = 0; offset < frame.byteLength; n++) {
    if (n === limits.envelopesPerFrameMax) return each(reject('oversize', `a frame holds at most ${limits.envelopesPerFrameMax} envelopes`));
    const end = itemEnd(frame, offset);
    if (typeof end === 'string') return each(reject('malformed', `not CBOR: ${end}`));
    const r = decode(offset === 0 && end === frame.byteLength ? frame : frame.subarray(offset, end));
    each(r);
    if (!r.ok) return;
    offset = end;
  }
}

/** Decodes and validates one envelope; refuses rather than throws. */
export function decode(frame: Uint8Array): DecodeResult {
  if (frame.byteLength > limits.frameBytesMax) {
    return reject('oversize', `frame of ${frame.byteLength} bytes exceeds ${limits.frameBytesMax}`);
  }
  if (frame.byteLength === 0) return reject('malformed', 'empty frame');
  let value: unknown;
  try {
    value = cbor.decode(frame);
  } catch (e) {
    return reject('malformed', `not CBOR: ${e instanceof Error ? e.message : String(e)}`);
  }
  return checkEnvelope(value);
}

/** Validates an already decoded value as an envelope (frames and trace records). */
export function checkEnvelope(value: unknown): DecodeResult {
  if (!isPlainObject(value)) return reject('malformed', `envelope is not a map but ${describe(value)}`);
  const w = value as Record<string, unknown>;
  // The version decides what the other fields mean, so it is checked first.
  if (typeof w.v !== 'number') return reject('malformed', 'v is missing or not a number');
  if (w.v !== ENVELOPE_VERSION) return reject('bad_version', `version ${w.v}, this node speaks ${ENVELOPE_VERSION}`);
  const bad =
    badString(w.kind, 'kind', 1, limits.kindCharsMax) ??
    badString(w.from, 'from', 1, limits.idCharsMax) ??
    badString(w.to, 'to', 0, limits.idCharsMax) ??
    badCount(w.epoch, 'epoch') ??
    badCount(w.seq, 'seq') ??
    (w.re === undefined ? undefined : badCount(w.re, 're')) ??
    (Object.prototype.hasOwnProperty.call(w, 'body') ? undefined : 'body is missing');
  if (bad !== undefined) return reject('malformed', bad);
  const kind = w.kind as string;
  if (!isKind(kind)) return reject('unknown_kind', `unknown kind ${JSON.stringify(kind)}`);
  const body = checkBody(kind, w.body);
  if (!body.ok) return reject('bad_body', `${kind}: ${body.error}`);
  const env: Envelope = {
    v: ENVELOPE_VERSION,
    kind,
    from: w.from as string,
    to: w.to as string,
    epoch: w.epoch as number,
    seq: w.seq as number,
    body: body.body,
  };
  if (w.re !== undefined) env.re = w.re as number;
  return { ok: true, env };
}

/** Whether cbor-x decodes strings with the native `cbor-extract` addon
 * (DESIGN.md: check at start-up that the accelerated paths are really on). */
export function nativeDecoder(): boolean {
  // A string long enough to take the native path, so any lazy set-up has run
  // before the flag is read.
  cbor.decode(cbor.encode({ probe: 'x'.repeat(200) }));
  return isNativeAccelerationEnabled;
}

/** The envelope with a fixed key order and no undefined `re`, so equal
 * envelopes give equal bytes (traces are compared byte for byte). */
function wireForm(env: Envelope): Record<string, unknown> {
  const w: Record<string, unknown> = {
    v: env.v,
    kind: env.kind,
    from: env.from,
    to: env.to,
    epoch: env.epoch,
    seq: env.seq,
  };
  if (env.re !== undefined) w.re = env.re;
  w.body = env.body;
  return w;
}

function reject(reason: RejectReason, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

function isPlainObject(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function badString(v: unknown, name: string, minChars: number, maxChars: number): string | undefined {
  if (typeof v !== 'string') return `${name} is ${describe(v)}, not a string`;
  if (v.length < minChars) return `${name} is empty`;
  if (v.length > maxChars) return `${name} has ${v.length} characters, more than ${maxChars}`;
  return undefined;
}

function badCount(v: unknown, name: string): string | undefined {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    return `${name} is ${describe(v)}, not a non-negative integer`;
  }
  return undefined;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'a byte string';
  // The prototype's constructor, never an own `constructor` key a peer sent.
  if (typeof v === 'object') return `a ${Object.getPrototypeOf(v)?.constructor?.name ?? 'null-prototype object'}`;
  if (typeof v === 'string') return `a ${v.length}-character string`;
  return typeof v === 'number' || typeof v === 'boolean' ? String(v) : typeof v;
}
