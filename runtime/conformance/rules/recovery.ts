/**
 * Rules of the RAM directory rebuild (SPEC.md M14, M6; docs/recovery.md),
 * read off the `rec.` messages of a trace. A round is `{n, by}`: `by` is
 * its coordinator, and `n` names it alone (each coordinator numbers its
 * rounds in its own residue class, rebuild-coordinator.ts). The coordinator
 * sends `rec.quiesce`, `rec.repopulate`, `rec.resume` to each participant,
 * itself included (the transport's loop traces a self-addressed send and
 * its receipt like any other), and each answers `rec.quiesced`,
 * `rec.repopulated`, `rec.resumed` for the round it follows.
 *
 * What the rules tolerate:
 * - lost messages: a send is traced whether or not it arrives, so a rule
 *   that waits on a receipt reads it from the receiver's own records, and a
 *   retry is just another send;
 * - rounds abandoned for higher ones: a round that stops half way breaks
 *   nothing, and a node that answered round A and then moves to a higher
 *   round B is judged by B from its first answer for B;
 * - restarts: a node's state is per incarnation (a send with a new epoch
 *   starts it afresh), and a restarted coordinator's rounds are its own.
 */
import type { TraceRecord } from '../../../bus/transport/transport.js';
import { roundLabel, sameRound, type RebuildRound } from '../../../machines/recovery/rebuild-round.js';
import type { CheckContext, Rule, Violation } from '../rule.js';

const COORDINATOR_KINDS: ReadonlySet<string> = new Set(['rec.quiesce', 'rec.repopulate', 'rec.resume']);
/** What a node sends only while it serves: a grant, a hand-over, an invalidation (M10). */
const SERVING_KINDS: ReadonlySet<string> = new Set(['page.forward', 'page.data', 'page.served', 'page.invalidate']);

const roundOf = (rec: TraceRecord): RebuildRound => (rec.env.body as { round: RebuildRound }).round;
const envelopeId = (rec: TraceRecord): string => `${rec.env.from}\u0000${rec.env.epoch}\u0000${rec.env.seq}`;
/** A coordinator's message as its own coordinator sent it: the only kind any participant acts on. */
const fromItsCoordinator = (rec: TraceRecord): boolean => rec.env.from === roundOf(rec).by;

const needsAny =
  (kinds: readonly string[], missing: string) =>
  (ctx: CheckContext): string | undefined =>
    kinds.some((k) => ctx.kinds.has(k)) ? undefined : missing;

const NO_ROUND = 'the traces show no rebuild round (no rec.quiesce, rec.repopulate or rec.resume)';

const oneCoordinatorPerRound: Rule = {
  name: 'rec.one-coordinator-per-round',
  protocol: 'recovery',
  description:
    'every rec.quiesce/repopulate/resume of round {n, by} is sent by `by`, and no two nodes (nor two incarnations of one) send coordinator messages for the same n.',
  needs: needsAny([...COORDINATOR_KINDS], NO_ROUND),
  check(records) {
    const out: Violation[] = [];
    /** Per round number, the first coordinator message sent by the round's own coordinator. */
    const first = new Map<number, TraceRecord>();
    const reported = new Set<string>();
    for (const rec of records) {
      if (!COORDINATOR_KINDS.has(rec.env.kind)) continue;
      const round = roundOf(rec);
      const from = rec.env.from;
      if (!fromItsCoordinator(rec)) {
        // One envelope shows twice (its send and its receipt): one violation.
        const key = `foreign\u0000${envelopeId(rec)}`;
        if (reported.has(key)) continue;
        reported.add(key);
        out.push({
          rule: oneCoordinatorPerRound.name,
          node: from,
          t: rec.t,
          detail: `sent ${rec.env.kind} to ${rec.env.to} for round ${roundLabel(round)}, which ${round.by} coordinates`,
          records: [rec],
        });
        continue;
      }
      const prior = first.get(round.n);
      if (prior === undefined) {
        first.set(round.n, rec);
        continue;
      }
      if (prior.env.from === from && prior.env.epoch === rec.env.epoch) continue;
      const key = `${round.n}\u0000${from}\u0000${rec.env.epoch}`;
      if (reported.has(key)) continue;
      reported.add(key);
      const detail =
        prior.env.from === from
          ? `epoch ${rec.env.epoch} sent ${rec.env.kind} for round ${round.n}, which its epoch ${prior.env.epoch} coordinated: a restarted coordinator reuses no round number`
          : `sent ${rec.env.kind} for round ${roundLabel(round)}, but ${prior.env.from} coordinates round ${round.n} (its ${prior.env.kind} for ${roundLabel(roundOf(prior))})`;
      out.push({ rule: oneCoordinatorPerRound.name, node: from, t: rec.t, detail, records: [prior, rec] });
    }
    return out;
  },
};

/** One round as its coordinator's records show it. */
interface RoundSeen {
  /** Each participant it sent rec.quiesce to, with the first such send. */
  asked: Map<string, TraceRecord>;
  /** Replies received, by kind, then by sender. */
  replies: Map<string, Map<string, TraceRecord>>;
  reported: Set<string>;
}

/** What each phase's message needs first: every participant's reply to the phase before. */
const AWAITED: Readonly<Record<string, string>> = { 'rec.repopulate': 'rec.quiesced', 'rec.resume': 'rec.repopulated' };
const AWAITED_REPLIES: ReadonlySet<string> = new Set(Object.values(AWAITED));

const phasesInOrder: Rule = {
  name: 'rec.phases-in-order',
  protocol: 'recovery',
  description:
    'a coordinator sends rec.repopulate for a round only after receiving rec.quiesced for it from every node it sent rec.quiesce for it to, and rec.resume only after rec.repopulated from every one of them.',
  needs: needsAny(['rec.repopulate', 'rec.resume'], 'the traces show no rebuild round past quiescing (no rec.repopulate or rec.resume)'),
  check(records) {
    const out: Violation[] = [];
    /** Per coordinator: the incarnation its sends show, and its rounds in it. */
    const coordinators = new Map<string, { epoch: number; rounds: Map<number, RoundSeen> }>();
    const roundAt = (node: string, n: number, epoch?: number): RoundSeen => {
      let c = coordinators.get(node);
      if (!c || (epoch !== undefined && c.epoch !== epoch)) coordinators.set(node, (c = { epoch: epoch ?? -1, rounds: new Map() }));
      let r = c.rounds.get(n);
      if (!r) c.rounds.set(n, (r = { asked: new Map(), replies: new Map(), reported: new Set() }));
      return r;
    };
    for (const rec of records) {
      const kind = rec.env.kind;
      if (rec.dir === 'recv' && AWAITED_REPLIES.has(kind)) {
        const round = roundOf(rec);
        // A reply counts only where it arrives: at the round's coordinator.
        if (rec.node !== round.by) continue;
        const r = roundAt(rec.node, round.n);
        let byFrom = r.replies.get(kind);
        if (!byFrom) r.replies.set(kind, (byFrom = new Map()));
        if (!byFrom.has(rec.env.from)) byFrom.set(rec.env.from, rec);
        continue;
      }
      if (rec.dir !== 'send' || !COORDINATOR_KINDS.has(kind) || !fromItsCoordinator(rec)) continue;
      const round = roundOf(rec);
      const r = roundAt(rec.node, round.n, rec.env.epoch);
      if (kind === 'rec.quiesce') {
        if (!r.asked.has(rec.env.to)) r.asked.set(rec.env.to, rec);
        continue;
      }
      const awaited = AWAITED[kind];
      const replied = r.replies.get(awaited);
      const missing = [...r.asked.keys()].filter((p) => !replied?.has(p)).sort();
      if (missing.length === 0 || r.reported.has(kind)) continue;
      r.reported.add(kind);
      out.push({
        rule: phasesInOrder.name,
        node: rec.node,
        t: rec.t,
        detail: `sent ${kind} for round ${roundLabel(round)} before receiving ${awaited} for it from ${missing.join(', ')} (of the ${r.asked.size} it sent rec.quiesce to)`,
        records: [...missing.map((p) => r.asked.get(p)!), rec],
      });
    }
    return out;
  },
};

const resumeAfterCoordinator: Rule = {
  name: 'rec.resume-after-coordinator',
  protocol: 'recovery',
  description: "a node sends rec.resumed for a round only after it received that round's rec.resume from the round's coordinator.",
  needs: needsAny(['rec.resumed'], 'the traces show no node resuming (no rec.resumed)'),
  check(records) {
    const out: Violation[] = [];
    const resumed = new Map<string, Set<string>>();
    const reported = new Set<string>();
    for (const rec of records) {
      const kind = rec.env.kind;
      if (rec.dir === 'recv' && kind === 'rec.resume' && fromItsCoordinator(rec)) {
        let got = resumed.get(rec.node);
        if (!got) resumed.set(rec.node, (got = new Set()));
        got.add(roundLabel(roundOf(rec)));
        continue;
      }
      if (rec.dir !== 'send' || kind !== 'rec.resumed') continue;
      const label = roundLabel(roundOf(rec));
      if (resumed.get(rec.node)?.has(label)) continue;
      const key = `${rec.node}\u0000${label}`;
      if (reported.has(key)) continue;
      reported.add(key);
      out.push({
        rule: resumeAfterCoordinator.name,
        node: rec.node,
        t: rec.t,
        detail: `sent rec.resumed for round ${label} to ${rec.env.to} without having received rec.resume for it`,
        records: [rec],
      });
    }
    return out;
  },
};

const quiescentServesNoPage: Rule = {
  name: 'rec.quiescent-serves-no-page',
  protocol: 'recovery',
  description:
    'from its rec.quiesced for a round until it receives rec.resume for the round it last answered quiesced, a node sends no page.forward, page.data, page.served or page.invalidate.',
  needs: needsAny(['rec.quiesced'], 'the traces show no node quiescing (no rec.quiesced)'),
  check(records) {
    const out: Violation[] = [];
    /** Per node: its incarnation, and the rec.quiesced that opened its quiet time, if it is quiet. */
    const nodes = new Map<string, { epoch: number; quiesced?: TraceRecord; reported?: boolean }>();
    for (const rec of records) {
      const kind = rec.env.kind;
      if (rec.dir === 'recv') {
        if (kind !== 'rec.resume' || !fromItsCoordinator(rec)) continue;
        const s = nodes.get(rec.node);
        if (s?.quiesced && sameRound(roundOf(s.quiesced), roundOf(rec))) {
          s.quiesced = undefined;
          s.reported = false;
        }
        continue;
      }
      let s = nodes.get(rec.node);
      // A restart: the new incarnation has quiesced for nothing yet.
      if (!s || s.epoch !== rec.env.epoch) nodes.set(rec.node, (s = { epoch: rec.env.epoch }));
      if (kind === 'rec.quiesced') {
        // A repeat keeps the quiet time; a higher round's answer moves it to that round.
        s.quiesced = rec;
        continue;
      }
      if (!SERVING_KINDS.has(kind) || !s.quiesced || s.reported) continue;
      // One violation a quiet time (a later round's answer does not end it).
      s.reported = true;
      out.push({
        rule: quiescentServesNoPage.name,
        node: rec.node,
        t: rec.t,
        detail: `sent ${kind} to ${rec.env.to} while quiescent: it answered rec.quiesced for round ${roundLabel(roundOf(s.quiesced))} and has received no rec.resume for it since`,
        records: [s.quiesced, rec],
      });
    }
    return out;
  },
};

export const recoveryRules: readonly Rule[] = [oneCoordinatorPerRound, phasesInOrder, resumeAfterCoordinator, quiescentServesNoPage];
