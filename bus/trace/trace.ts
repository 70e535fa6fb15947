/**
 * Traces: every envelope a node sent or accepted, as a CBOR sequence
 * (RFC 8742) of `{t, node, dir, env}` maps, one file per run or node.
 * Two more kinds of record carry what replay needs besides envelopes: a
 * `{t, node, dir: "start", start}` record opens each incarnation of a node
 * and a `{t, node, dir: "timer", timer}` record marks each timer it fired.
 * Readers of envelopes (streamTrace) pass over them; streamEntries yields all.
 * A sequence needs no framing and survives a crash: a reader keeps every
 * whole record and stops at a torn last one.
 *
 * Writes are synchronous on purpose: records reach the file in the order
 * they were made with no write queue to bound, and close() is complete when
 * it returns. Buffering keeps that to one system call per bufferBytesMax.
 */
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { checkEnvelope, decodeSequence, encodeValue } from '../codec.js';
import { limits } from '../envelope.js';
import { MangroveError } from '../errors.js';
import type { TraceEntry, TraceMark, TraceRecord, TraceSink } from '../transport/transport.js';

export const traceLimits = {
  /** Encoded records held in memory before they are written. */
  bufferBytesMax: 256 * 1024,
  /** Longest a record waits in the buffer. */
  flushIntervalMs: 1000,
  /** Characters of a body shown by formatRecord. */
  bodyCharsMax: 160,
  /** Bytes of a byte string shown (as hex) by formatRecord. */
  hexBytesMax: 16,
  /** Items of a list or map shown by formatRecord. */
  itemsMax: 8,
  /** Largest trace readTrace loads (it reads the whole file). */
  readBytesMax: 1024 * 1024 * 1024,
  /** Bytes streamTrace reads at a time. */
  readChunkBytes: 1024 * 1024,
  /** Largest record a reader accepts: a largest frame plus t, node and dir. */
  recordBytesMax: limits.frameBytesMax + 64 * 1024,
} as const;

export class TraceWriter implements TraceSink {
  private readonly fd: number;
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** Why a background flush failed; every later call reports it. */
  private failure: MangroveError | undefined;

  /** Appends to `path`, creating it if needed. */
  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'a');
    } catch (err) {
      throw new MangroveError('E_STORAGE', `cannot open trace ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.timer = setInterval(() => {
      // A timer callback that throws kills the process; keep the error for
      // the next record() or close() to report instead.
      try {
        this.flush();
      } catch (err) {
        this.failure ??= err instanceof MangroveError ? err : new MangroveError('E_STORAGE', String(err));
      }
    }, traceLimits.flushIntervalMs);
    // A trace must never be what keeps a finished process alive.
    this.timer.unref();
  }

  record(rec: TraceRecord): void {
    this.append({ t: rec.t, node: rec.node, dir: rec.dir, env: rec.env });
  }

  note(mark: TraceMark): void {
    if (mark.dir === 'start') this.append({ t: mark.t, node: mark.node, dir: mark.dir, start: mark.start });
    else this.append({ t: mark.t, node: mark.node, dir: mark.dir, timer: mark.timer });
  }

  private append(value: Record<string, unknown>): void {
    if (this.closed) throw new MangroveError('E_CLOSED', `trace ${this.path} is closed`);
    if (this.failure) throw this.failure;
    const bytes = encodeValue(value);
    this.chunks.push(bytes);
    this.buffered += bytes.byteLength;
    if (this.buffered >= traceLimits.bufferBytesMax) this.flush();
  }

  /** Writes every buffered record to the file. */
  flush(): void {
    if (this.chunks.length === 0) return;
    const data = Buffer.concat(this.chunks);
    this.chunks = [];
    this.buffered = 0;
    try {
      let done = 0;
      while (done < data.byteLength) done += writeSync(this.fd, data, done);
    } catch (err) {
      this.failure = new MangroveError('E_STORAGE', `cannot write trace ${this.path}: ${err instanceof Error ? err.message : String(err)}`);
      throw this.failure;
    }
  }

  /** Flushes and closes; throws if any record could not be written. */
  close(): void {
    if (this.closed) return;
    clearInterval(this.timer);
    try {
      if (!this.failure) this.flush();
    } finally {
      this.closed = true;
      closeSync(this.fd);
    }
    if (this.failure) throw this.failure;
  }
}

export interface TruncatedTail {
  /** Byte offset where the torn record starts. */
  offset: number;
  /** Bytes from there to the end of the file, ignored. */
  bytes: number;
}

/**
 * Reads a whole trace. A torn last record (the writer was killed mid-write)
 * ends the read and is passed to `onTruncated`; anything else that is not
 * a trace record is an error naming its offset.
 */
export function readTrace(path: string, onTruncated?: (tail: TruncatedTail) => void): TraceRecord[] {
  const size = statSync(path).size;
  if (size > traceLimits.readBytesMax) {
    throw new MangroveError('E_FULL', `${path} has ${size} bytes; traces over ${traceLimits.readBytesMax} bytes cannot be read whole`);
  }
  return [...streamTrace(path, onTruncated)];
}

/**
 * Reads a trace record by record, holding one chunk and one record in
 * memory whatever the file's size, so `trace show` can merge many large
 * traces. Same records, errors and torn-tail rule as readTrace. The file is
 * opened on the first `next()` and closed when the loop ends or breaks.
 */
export function* streamTrace(path: string, onTruncated?: (tail: TruncatedTail) => void): Generator<TraceRecord, void, undefined> {
  for (const e of streamEntries(path, onTruncated)) if (e.dir === 'send' || e.dir === 'recv') yield e;
}

/** Every record of a trace, start and timer records too, in file order. */
export function* streamEntries(path: string, onTruncated?: (tail: TruncatedTail) => void): Generator<TraceEntry, void, undefined> {
  let index = 0;
  for (const { value } of walk(path, onTruncated)) yield toEntry(value, path, index++);
}

/**
 * The ids of the nodes that recorded a trace. Envelopes are not validated,
 * which makes this several times faster than streamTrace: it is the first
 * pass that resolves id prefixes before the real read.
 */
export function traceNodes(path: string): Set<string> {
  const ids = new Set<string>();
  let index = 0;
  for (const { value } of walk(path)) {
    const node = isMap(value) ? value.node : undefined;
    if (typeof node !== 'string') throw recordError(path, index, 'has no node');
    ids.add(node);
    index++;
  }
  return ids;
}

/** The CBOR items of a trace file, chunk by chunk. */
function* walk(path: string, onTruncated?: (tail: TruncatedTail) => void): Generator<{ value: unknown; offset: number }, void, undefined> {
  const fd = openSync(path, 'r');
  try {
    // Bytes of an item that continues in the next chunk, and where they start.
    let pending: Uint8Array = new Uint8Array(0);
    let base = 0;
    let items = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(traceLimits.readChunkBytes);
      const got = readSync(fd, chunk, 0, chunk.byteLength, null);
      const atEof = got === 0;
      const data = pending.byteLength === 0 ? chunk.subarray(0, got) : Buffer.concat([pending, chunk.subarray(0, got)]);
      const found: { value: unknown; offset: number }[] = [];
      const end = decodeSequence(data, (value, offset) => found.push({ value, offset: base + offset }));
      yield* found;
      items += found.length;
      if (end.complete) {
        pending = new Uint8Array(0);
        base += data.byteLength;
      } else {
        const offset = base + end.offset;
        if (!end.truncated) throw recordError(path, items, `at byte ${offset} is not CBOR: ${end.detail}`);
        pending = data.subarray(end.offset);
        base = offset;
        if (atEof) return tornTail(path, items, offset, pending, onTruncated);
        if (pending.byteLength > traceLimits.recordBytesMax) {
          throw recordError(path, items, `at byte ${offset} is longer than ${traceLimits.recordBytesMax} bytes, the most a record can hold`);
        }
      }
      if (atEof) return;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * A cut-short item at the end is a torn record only if it starts like one:
 * every record is a CBOR map. Anything else (a JSON or text file, junk
 * appended to a trace) is not a trace and must not read as an empty one.
 */
function tornTail(path: string, index: number, offset: number, bytes: Uint8Array, onTruncated?: (tail: TruncatedTail) => void): void {
  const cborMap = 5;
  if (bytes[0] >> 5 !== cborMap) {
    const start = Buffer.from(bytes.subarray(0, 4)).toString('hex');
    throw recordError(path, index, `at byte ${offset} is not a trace record (it starts with 0x${start}, not a CBOR map)`);
  }
  onTruncated?.({ offset, bytes: bytes.byteLength });
}

/**
 * A record that is not a trace record. `record` (from 1) lets a caller tell
 * a file that is no trace at all (record 1) from a damaged trace.
 */
export class TraceFormatError extends MangroveError {
  constructor(
    readonly path: string,
    readonly record: number,
    readonly why: string,
  ) {
    super('E_BAD_MESSAGE', `${path}: record ${record} ${why}`);
  }
}

function recordError(path: string, index: number, why: string): TraceFormatError {
  return new TraceFormatError(path, index + 1, why);
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function toEntry(value: unknown, path: string, index: number): TraceEntry {
  const fail = (why: string): TraceFormatError => recordError(path, index, why);
  if (!isMap(value)) throw fail('is not a map');
  const { t, node, dir, env } = value;
  if (typeof t !== 'number') throw fail('has no time');
  if (typeof node !== 'string') throw fail('has no node');
  if (dir === 'start') {
    if (!isMap(value.start)) throw fail('is a start record without its start map');
    return { t, node, dir, start: value.start };
  }
  if (dir === 'timer') {
    const timer = value.timer;
    if (typeof timer !== 'number' || !Number.isSafeInteger(timer) || timer < 0) throw fail('is a timer record without a timer number');
    return { t, node, dir, timer };
  }
  if (dir !== 'send' && dir !== 'recv') throw fail('is neither send, recv, start nor timer');
  const checked = checkEnvelope(env);
  if (!checked.ok) throw fail(`holds a bad envelope (${checked.reason}: ${checked.detail})`);
  return { t, node, dir, env: checked.env };
}

/**
 * One line for `mangrove trace show`: time, node, send/recv, kind,
 * from→to, epoch/seq (and re), compact body. Given `originMs`, a record
 * stamped with wall-clock time also shows its offset from it (+s.mmm),
 * because a time of day alone makes intervals hard to read; simulated
 * times already count from the run's start and show no offset.
 */
export function formatRecord(rec: TraceRecord, originMs?: number): string {
  const e = rec.env;
  const to = e.to === '' ? '*' : e.to;
  const re = e.re === undefined ? '' : ` re ${e.re}`;
  const time = originMs !== undefined && isWallClock(rec.t) ? `${formatTime(rec.t)}  ${formatOffset(rec.t - originMs)}` : formatTime(rec.t);
  return [
    time,
    rec.node.padEnd(8),
    rec.dir === 'send' ? 'send' : 'recv',
    e.kind.padEnd(18),
    `${e.from}→${to}`,
    `e${e.epoch}/#${e.seq}${re}`,
    clip(compact(e.body, 0), traceLimits.bodyCharsMax),
  ].join('  ');
}

/** Whether a record time is wall-clock (ms since 1970) rather than a
 * simulated run's time, which starts at 0 and stays far below 1e11 (3 years). */
export function isWallClock(t: number): boolean {
  return t >= 1e11;
}

/** Simulated runs start at 0 and read best as seconds; wall-clock
 * times (ms since 1970) read best as UTC time of day. */
export function formatTime(t: number): string {
  if (isWallClock(t)) return new Date(t).toISOString().slice(11, 23);
  return `${(t / 1000).toFixed(3)}s`.padStart(11);
}

/** A signed offset in seconds, e.g. `+1.250s`, `-0.004s` (a clock stepped back). */
export function formatOffset(ms: number): string {
  return `${ms < 0 ? '-' : '+'}${(Math.abs(ms) / 1000).toFixed(3)}s`.padStart(8);
}

const depthMax = 4;

function compact(v: unknown, depth: number): string {
  if (v instanceof Uint8Array) {
    const shown = Buffer.from(v.subarray(0, traceLimits.hexBytesMax)).toString('hex');
    return v.byteLength > traceLimits.hexBytesMax ? `0x${shown}…(${v.byteLength} B)` : `0x${shown}`;
  }
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v !== 'object' || v === null) return String(v);
  if (depth >= depthMax) return Array.isArray(v) ? '[…]' : '{…}';
  if (Array.isArray(v)) return `[${items(v, (x) => compact(x, depth + 1))}]`;
  const fields = Object.entries(v).filter(([, x]) => x !== undefined);
  return `{${items(fields, ([k, x]) => `${k}:${compact(x, depth + 1)}`)}}`;
}

/** The first itemsMax items, so a 16,384-entry list costs no more than a short one. */
function items<T>(list: readonly T[], show: (item: T) => string): string {
  const shown = list.slice(0, traceLimits.itemsMax).map(show);
  if (list.length > traceLimits.itemsMax) shown.push(`…+${list.length - traceLimits.itemsMax}`);
  return shown.join(',');
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}
