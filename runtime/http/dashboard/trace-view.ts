/**
 * The dashboard's trace viewer (M25, M27): `POST /dashboard/trace` with a
 * recorded trace file as the body (what `mangrove start --trace FILE` or
 * `mangrove local --trace DIR` wrote) answers what a sequence diagram
 * needs: the nodes, the messages in time order (the first `messagesMax`),
 * and the violations `mangrove trace check` finds in it (its protocol
 * rules; replay is left to the CLI, for it can take long). The upload is
 * read into a temporary file, which is removed, and nothing else changes.
 *
 *   200 {"nodes": [ID…], "total": N, "messages": [{"t", "node", "dir", "kind", "from", "to"}…],
 *        "rules": [NAME…], "violations": [{"rule", "node", "t", "detail"}…]}
 *   400 E_BAD_ARGUMENT (not a trace), 413 E_FILE_TOO_BIG (more than uploadBytesMax).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMangroveError, MangroveError } from '../../../bus/errors.js';
import { isEnvelopeRecord, type TraceRecord } from '../../../bus/transport/transport.js';
import { checkEntries, PROTOCOLS } from '../../conformance/check.js';
import { readEntries } from '../../trace/files.js';
import { send } from '../server.js';

export const traceViewLimits = {
  uploadBytesMax: 64 * 1024 * 1024,
  /** Messages sent to the browser; the count says how many there were. */
  messagesMax: 5000,
} as const;

export interface TraceMessage {
  t: number;
  node: string;
  dir: 'send' | 'recv';
  kind: string;
  from: string;
  to: string;
}

const JSON_TYPE = 'application/json; charset=utf-8';

export async function traceView(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: Buffer;
  try {
    body = await readBody(req, traceViewLimits.uploadBytesMax);
  } catch (err) {
    return refuse(res, 413, err);
  }
  const dir = mkdtempSync(join(tmpdir(), 'mangrove-trace-view-'));
  try {
    const file = join(dir, 'upload.trace');
    writeFileSync(file, body);
    const entries = readEntries(file, () => undefined);
    const records = entries.filter(isEnvelopeRecord);
    const result = await checkEntries([entries], { protocols: PROTOCOLS.filter((p) => p !== 'replay') });
    const nodes = [...new Set(records.flatMap((r) => [r.node, r.env.from, r.env.to]).filter((id) => id !== ''))].sort();
    const out = {
      nodes,
      total: records.length,
      messages: records.slice(0, traceViewLimits.messagesMax).map(message),
      rules: result.rules,
      violations: result.violations.map((v) => ({ rule: v.rule, node: v.node, t: v.t, detail: v.detail })),
    };
    send(res, 200, JSON_TYPE, `${JSON.stringify(out)}\n`);
  } catch (err) {
    if (!isMangroveError(err)) throw err;
    refuse(res, 400, new MangroveError('E_BAD_ARGUMENT', `the upload is not a trace Mangrove can read: ${err.message}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function message(r: TraceRecord): TraceMessage {
  return { t: r.t, node: r.node, dir: r.dir, kind: r.env.kind, from: r.env.from, to: r.env.to };
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new MangroveError('E_FILE_TOO_BIG', `a trace upload is at most ${max} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function refuse(res: ServerResponse, code: number, err: unknown): void {
  const body = isMangroveError(err) ? err.toJSON() : { code: 'E_INTERNAL', message: String(err) };
  if (!res.headersSent && !res.destroyed) send(res, code, JSON_TYPE, `${JSON.stringify(body)}\n`);
}
