/**
 * Reading a node's machine stream (`GET /machines/stream`, documented in
 * runtime/http/machines.ts) from a process: what `mangrove machines watch`
 * does, and what a spec or script can do the same way.
 */
import { get, type IncomingMessage } from 'node:http';
import { MangroveError, type ErrorCode } from '../../bus/errors.js';
import type { TransitionRecord } from './watch.js';

export const machineStreamClientLimits = {
  /** Longest Server-Sent Event accepted; a transition record is a few hundred bytes. */
  eventBytesMax: 64 * 1024,
  /** Longest error body read from a refusing node. */
  errorBytesMax: 16 * 1024,
} as const;

/**
 * Splits a Server-Sent Events byte stream into the data of its messages
 * (comments, ids and retry hints dropped). Text may arrive cut anywhere.
 */
export class SseParser {
  private buffer = '';

  /** The data of every message completed by this chunk. */
  push(chunk: string): string[] {
    this.buffer += chunk;
    const out: string[] = [];
    for (;;) {
      const end = /\r?\n\r?\n/.exec(this.buffer);
      if (!end) break;
      const block = this.buffer.slice(0, end.index);
      this.buffer = this.buffer.slice(end.index + end[0].length);
      const data = block
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5));
      if (data.length > 0) out.push(data.join('\n'));
    }
    if (this.buffer.length > machineStreamClientLimits.eventBytesMax) {
      throw new MangroveError('E_BAD_MESSAGE', `the node sent a stream event longer than ${machineStreamClientLimits.eventBytesMax} bytes`);
    }
    return out;
  }
}

export interface StreamQuery {
  machine?: string;
  allEvents?: boolean;
  replay?: number;
}

export function streamUrl(host: string, port: number, q: StreamQuery = {}): string {
  const params = new URLSearchParams();
  if (q.machine !== undefined) params.set('machine', q.machine);
  if (q.allEvents) params.set('events', 'all');
  if (q.replay !== undefined) params.set('replay', String(q.replay));
  const query = params.toString();
  return `http://${host}:${port}/machines/stream${query ? `?${query}` : ''}`;
}

/**
 * Opens the stream; resolves once the node has accepted it. A refusal
 * rejects with the node's own error code and sentence.
 */
export function openMachineStream(url: string, timeoutMs: number): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = get(url, { headers: { Accept: 'text/event-stream' } }, (res) => {
      clearTimeout(timer);
      if (res.statusCode === 200) return resolve(res);
      readError(res).then(reject, reject);
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new MangroveError('E_UNREACHABLE', `no answer from ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(new MangroveError('E_UNREACHABLE', `cannot reach ${url}: ${err.message}`));
    });
  });
}

async function readError(res: IncomingMessage): Promise<MangroveError> {
  let body = '';
  res.setEncoding('utf8');
  for await (const chunk of res) {
    body += chunk as string;
    if (body.length > machineStreamClientLimits.errorBytesMax) break;
  }
  res.destroy();
  try {
    const e = JSON.parse(body) as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string' && typeof e.message === 'string') return new MangroveError(e.code as ErrorCode, e.message);
  } catch {
    // Not our JSON: a different server on that port, reported below.
  }
  return new MangroveError('E_BAD_MESSAGE', `the node answered HTTP ${res.statusCode}: ${body.slice(0, 200).trim()}`);
}

/** The records of an open stream, as they arrive; ends when the node closes it. */
export async function* transitions(res: IncomingMessage): AsyncGenerator<TransitionRecord> {
  const parser = new SseParser();
  res.setEncoding('utf8');
  try {
    for await (const chunk of res) {
      for (const data of parser.push(chunk as string)) yield parseRecord(data);
    }
  } catch (err) {
    if (err instanceof MangroveError) throw err;
    // A node killed mid-stream resets the connection: that is the node gone, not a bug here.
    throw new MangroveError('E_UNREACHABLE', `the machine stream broke off: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function parseRecord(data: string): TransitionRecord {
  try {
    return JSON.parse(data) as TransitionRecord;
  } catch {
    throw new MangroveError('E_BAD_MESSAGE', `the node sent a stream event that is not JSON: ${data.slice(0, 200)}`);
  }
}
