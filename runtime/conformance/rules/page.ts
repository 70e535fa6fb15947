/**
 * Rules of page coherence across rebuilds (SPEC.md M10, M14; docs/engine.md,
 * docs/recovery.md), read off the `page.` messages of a trace. Every
 * coherence message carries `rr`, the rebuild round in which its sender's
 * RAM directory was built; a node acts on no coherence message of another
 * rr. Within one rr a page's home serialises its requests and raises the
 * page's version by one with every write it grants (machines/memory/
 * page-home.ts), so one (rr, page, version) names one write grant.
 *
 * Messages a node sends itself are handed over in memory, not through the
 * transport, so they are not traced: a grant to the home itself, or a data
 * hand-over the home's own holder answers, has nothing to be matched with
 * and is passed over, never guessed at.
 */
import type { TraceRecord } from '../../../bus/transport/transport.js';
import { addressFromKey, formatAddress } from '../../../machines/memory/address.js';
import type { CheckContext, Rule, Violation } from '../rule.js';

interface Coherence {
  addr: Uint8Array;
  rr: number;
}

const body = <T>(rec: TraceRecord): T & Coherence => rec.env.body as T & Coherence;
const envelopeId = (rec: TraceRecord): string => `${rec.env.from}\u0000${rec.env.epoch}\u0000${rec.env.seq}`;

/** A map key for an address as the wire carries it (16 bytes). */
function addrKey(addr: Uint8Array): string {
  return Buffer.from(addr.buffer, addr.byteOffset, addr.byteLength).toString('hex');
}

/** An address for people; a damaged one as its bytes. */
function addrText(addr: Uint8Array): string {
  try {
    return formatAddress(addressFromKey(addr));
  } catch {
    return `0x${addrKey(addr)}`;
  }
}

const needsAll =
  (kinds: readonly string[]) =>
  (ctx: CheckContext): string | undefined => {
    const missing = kinds.filter((k) => !ctx.kinds.has(k));
    return missing.length === 0 ? undefined : `the traces show no ${missing.join(' and no ')}`;
  };

interface Grant {
  to: string;
  rec: TraceRecord;
}

const oneOwnerPerRoundVersion: Rule = {
  name: 'page.one-owner-per-round-version',
  protocol: 'page',
  description:
    "within one rebuild round (rr), no two nodes are granted write ownership of one page at one version (a write grant: a page.served answering that node's page.request with mode write, matched by page and req).",
  needs: needsAll(['page.request', 'page.served']),
  check(records) {
    // Request numbers are unique per requester incarnation (page-holder.ts), so
    // (requester, page, req) names one request wherever its records fall in time.
    const modes = new Map<string, string>();
    for (const rec of records) {
      if (rec.env.kind !== 'page.request') continue;
      const b = body<{ req: number; mode: string }>(rec);
      modes.set(`${rec.env.from}\u0000${addrKey(b.addr)}\u0000${b.req}`, b.mode);
    }
    const out: Violation[] = [];
    const grants = new Map<string, Grant>();
    const seenServed = new Set<string>();
    const reported = new Set<string>();
    for (const rec of records) {
      if (rec.env.kind !== 'page.served') continue;
      // Its send and its receipt are one grant.
      const id = envelopeId(rec);
      if (seenServed.has(id)) continue;
      seenServed.add(id);
      const b = body<{ req: number; version: number }>(rec);
      const to = rec.env.to;
      if (modes.get(`${to}\u0000${addrKey(b.addr)}\u0000${b.req}`) !== 'write') continue;
      const key = `${b.rr}\u0000${addrKey(b.addr)}\u0000${b.version}`;
      const prior = grants.get(key);
      if (!prior) {
        grants.set(key, { to, rec });
        continue;
      }
      if (prior.to === to || reported.has(`${key}\u0000${to}`)) continue;
      reported.add(`${key}\u0000${to}`);
      out.push({
        rule: oneOwnerPerRoundVersion.name,
        node: rec.env.from,
        t: rec.t,
        detail: `granted ${to} write ownership of ${addrText(b.addr)} at version ${b.version} in rebuild round ${b.rr} (request ${b.req}), which ${prior.rec.env.from} had granted ${prior.to} (request ${body<{ req: number }>(prior.rec).req})`,
        records: [prior.rec, rec],
      });
    }
    return out;
  },
};

/** An answer, and how to find in its sender's receipts the message it answers. */
interface AnswerShape {
  /** The kind answered. */
  answers: string;
  /** The key of a receipt of the answered kind, from the receiving node's side. */
  receiptKey(rec: TraceRecord): string;
  /** The key of the answered message, from the answer. */
  answerKey(rec: TraceRecord): string;
}

const ANSWERS: Readonly<Record<string, AnswerShape>> = {
  // An owner hands a page over (data) on its home's forward, to the forward's requester.
  'page.data': {
    answers: 'page.forward',
    receiptKey: (r) => {
      const b = body<{ requester: string; req: number; round: number }>(r);
      return `${r.node}\u0000${addrKey(b.addr)}\u0000${b.requester}\u0000${b.req}\u0000${b.round}`;
    },
    answerKey: (r) => {
      const b = body<{ req: number; round: number }>(r);
      return `${r.node}\u0000${addrKey(b.addr)}\u0000${r.env.to}\u0000${b.req}\u0000${b.round}`;
    },
  },
  // A holder acknowledges its home's invalidation of one round.
  'page.invalidated': {
    answers: 'page.invalidate',
    receiptKey: (r) => `${r.node}\u0000${r.env.from}\u0000${addrKey(body(r).addr)}\u0000${body<{ round: number }>(r).round}`,
    answerKey: (r) => `${r.node}\u0000${r.env.to}\u0000${addrKey(body(r).addr)}\u0000${body<{ round: number }>(r).round}`,
  },
  // A requester confirms the data that came for its request.
  'page.confirmed': {
    answers: 'page.data',
    receiptKey: (r) => `${r.node}\u0000${addrKey(body(r).addr)}\u0000${body<{ req: number }>(r).req}`,
    answerKey: (r) => `${r.node}\u0000${addrKey(body(r).addr)}\u0000${body<{ req: number }>(r).req}`,
  },
};
const ANSWERED: ReadonlyMap<string, AnswerShape> = new Map(Object.values(ANSWERS).map((a) => [a.answers, a]));

const noStaleRoundAccepted: Rule = {
  name: 'page.no-stale-round-accepted',
  protocol: 'page',
  description:
    'a node answers (page.data, page.invalidated, page.confirmed) only a page.forward, page.invalidate or page.data it received with the rr it stamps on the answer: nothing of another rebuild round is acted on.',
  needs: (ctx) =>
    Object.entries(ANSWERS).some(([answer, a]) => ctx.kinds.has(answer) && ctx.kinds.has(a.answers))
      ? undefined
      : 'the traces show no coherence answer with what it answers (page.data after page.forward, page.invalidated after page.invalidate, page.confirmed after page.data)',
  check(records) {
    const out: Violation[] = [];
    /** Per answerable message a node received: the rr values it came with, and the latest receipt. */
    const received = new Map<string, { rrs: Set<number>; last: TraceRecord }>();
    const reported = new Set<string>();
    for (const rec of records) {
      const kind = rec.env.kind;
      if (rec.dir === 'recv') {
        const shape = ANSWERED.get(kind);
        if (!shape) continue;
        const key = `${kind}\u0000${shape.receiptKey(rec)}`;
        const got = received.get(key);
        if (got) {
          got.rrs.add(body(rec).rr);
          got.last = rec;
        } else received.set(key, { rrs: new Set([body(rec).rr]), last: rec });
        continue;
      }
      const shape = ANSWERS[kind];
      if (!shape) continue;
      const answered = `${shape.answers}\u0000${shape.answerKey(rec)}`;
      const got = received.get(answered);
      // Nothing traced to answer (this node's own message to itself, or a trace begun later): not judged.
      const rr = body(rec).rr;
      if (!got || got.rrs.has(rr)) continue;
      // Repeated answers (retries, duplicates received) to one message: one violation.
      const key = `${answered}\u0000${rr}`;
      if (reported.has(key)) continue;
      reported.add(key);
      out.push({
        rule: noStaleRoundAccepted.name,
        node: rec.node,
        t: rec.t,
        detail: `answered ${shape.answers} for ${addrText(body(rec).addr)} from ${got.last.env.from} with ${kind} in rebuild round ${rr}, but received it only in rebuild round ${[...got.rrs].join(', ')}`,
        records: [got.last, rec],
      });
    }
    return out;
  },
};

export const pageRules: readonly Rule[] = [oneOwnerPerRoundVersion, noStaleRoundAccepted];
