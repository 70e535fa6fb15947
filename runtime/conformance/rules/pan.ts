/** Primary anchor election rules (M16): one primary anchor per term. */
import type { TraceRecord } from '../../../bus/transport/transport.js';
import type { Rule, Violation } from '../rule.js';

const onePerTerm: Rule = {
  name: 'pan.one-per-term',
  protocol: 'pan',
  description: 'no two nodes announce pan.elected for the same term.',
  check(records) {
    const out: Violation[] = [];
    const first = new Map<number, TraceRecord>();
    const reported = new Set<string>();
    for (const rec of records) {
      if (rec.env.kind !== 'pan.elected') continue;
      const { term } = rec.env.body as { term: number };
      const prior = first.get(term);
      if (prior === undefined) {
        first.set(term, rec);
        continue;
      }
      const from = rec.env.from;
      if (prior.env.from === from || reported.has(`${term}\u0000${from}`)) continue;
      reported.add(`${term}\u0000${from}`);
      out.push({
        rule: onePerTerm.name,
        node: from,
        t: rec.t,
        detail: `announced pan.elected for term ${term}, which ${prior.env.from} announced first`,
        records: [prior, rec],
      });
    }
    return out;
  },
};

export const panRules: readonly Rule[] = [onePerTerm];
