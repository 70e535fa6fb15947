/**
 * Quorum rule (M5): a node claims quorum only while anchors holding more
 * than half of the votes can reach it.
 *
 * "Can reach" is read from the trace as causality: anchor B has reached
 * node A by time t if a chain of recorded messages leads from B to A, and
 * the chain left B no earlier than t minus the rule's window. Every quorum
 * state is computed by an anchor from a heartbeat view, and a view counts B
 * alive only on B's pulses, which travel by such chains (B → its monitor →
 * the anchor computing → the monitors and transmitters relaying the state
 * → A). So a claim that no majority of votes can have caused is a claim
 * made from nothing: a quorum timeout not kept, a minority computing
 * `has: true`, a relay extending a state's life.
 *
 * The window, for a claim carrying `ttlMs` L (quorum timeout Q):
 * - Q − L: how long ago the state was computed (a state's life only shrinks);
 * - the view's age when the anchor computed: a heartbeat allowance for the
 *   pulse that made B count alive, another for the view the anchor last
 *   received, and a monitor takeover (an allowance and a claim window),
 *   since a new monitor starts from its predecessor's bitmap and gives its
 *   members a whole allowance before it counts them out. An allowance is
 *   3.25 periods at level 0, plus 8.25 when the traces show group levels.
 *   (So after a partition the side without a majority can go on claiming,
 *   from that inherited view, for about 7 periods plus the quorum timeout;
 *   the rule holds it to that.)
 * - the context's slack (a tick and the longest delivery delay).
 *
 * Votes come from the start records (each anchor's settings); the total is
 * the votes of the anchors the traces know, so an anchor never traced makes
 * the rule more lenient, never wrong.
 */
import type { TraceRecord } from '../../../bus/transport/transport.js';
import { GROUP_DEADLINES_MAX, MISSED_DEADLINES_MAX, TICKS_PER_PERIOD } from '../../../machines/membership/heartbeat-timing.js';
import type { Rule, Violation } from '../rule.js';

/** Deadlines a heartbeat level allows, in periods, with the tick a deadline can fall late. */
const LEVEL0_PERIODS = MISSED_DEADLINES_MAX + 1 / TICKS_PER_PERIOD;
const UPPER_PERIODS = GROUP_DEADLINES_MAX + 1 / TICKS_PER_PERIOD;
/** How long a would-be monitor's claim waits for a better one to object. */
const CLAIM_WINDOW_PERIODS = 1;

interface QuorumBody {
  level?: number;
  quorum?: { has: boolean; ttlMs: number };
}

/** When each anchor last reached a node, through any chain of messages. Immutable: sends share it. */
type Reach = ReadonlyMap<string, number>;

const majorityReached: Rule = {
  name: 'quorum.majority-reached',
  protocol: 'quorum',
  description: 'a node claims quorum only while anchors holding more than half the votes have recently reached it',
  needs(ctx) {
    if (ctx.anchors.size === 0) return 'the traces have no start records, so the anchors and their votes are unknown';
    return undefined;
  },
  check(records, ctx) {
    const total = [...ctx.anchors.values()].reduce((a, b) => a + b, 0);
    const grouped = records.some((r) => ((r.env.body as QuorumBody).level ?? 0) > 0);
    const deadline = grouped ? LEVEL0_PERIODS + UPPER_PERIODS : LEVEL0_PERIODS;
    const allowance = 3 * deadline + CLAIM_WINDOW_PERIODS;
    const reach = new Map<string, Reach>();
    const carried = new Map<string, Reach>();
    const failing = new Set<string>();
    const out: Violation[] = [];
    for (const r of records) {
      const id = envelopeId(r);
      if (r.dir === 'recv') {
        const sent = carried.get(id);
        if (sent) reach.set(r.node, merge(reach.get(r.node), sent));
        continue;
      }
      let mine = reach.get(r.node) ?? new Map<string, number>();
      if (ctx.anchors.has(r.node)) mine = merge(mine, new Map([[r.node, r.t]]));
      reach.set(r.node, mine);
      carried.set(id, mine);
      const claim = (r.env.body as QuorumBody).quorum;
      if (!claim?.has) continue;
      const settings = ctx.settingsOf(r.node);
      const period = ctx.periodOf(r.node);
      if (!settings || period === undefined) continue;
      const windowMs = Math.max(0, settings.quorumTimeoutMs - claim.ttlMs) + allowance * period + (ctx.slackOf(r.node) ?? 0);
      const since = r.t - windowMs;
      const reached = [...ctx.anchors].filter(([a]) => (mine.get(a) ?? -Infinity) >= since);
      const votes = reached.reduce((n, [, v]) => n + v, 0);
      if (2 * votes > total) {
        failing.delete(r.node);
        continue;
      }
      // One violation per stretch of unfounded claims.
      if (failing.has(r.node)) continue;
      failing.add(r.node);
      const names = reached.map(([a]) => a).join(', ') || 'none';
      out.push({
        rule: majorityReached.name,
        node: r.node,
        t: r.t,
        detail: `claims quorum in ${r.env.kind} (ttl ${claim.ttlMs} ms) but anchors with only ${votes} of ${total} votes reached it in the last ${Math.round(windowMs)} ms (${names})`,
        records: [r],
      });
    }
    return out;
  },
};

function envelopeId(r: TraceRecord): string {
  return `${r.env.from}\u0000${r.env.epoch}\u0000${r.env.seq}`;
}

/** The later time per anchor; returns `a` itself when `b` adds nothing. */
function merge(a: Reach | undefined, b: Reach): Reach {
  if (!a) return b;
  let out: Map<string, number> | undefined;
  for (const [k, t] of b) {
    if (t > (a.get(k) ?? -Infinity)) {
      out ??= new Map(a);
      out.set(k, t);
    }
  }
  return out ?? a;
}

export const quorumRules: readonly Rule[] = [majorityReached];
