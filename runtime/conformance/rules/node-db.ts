/**
 * Node-database rules (M2): a node's database version only moves forward
 * within one incarnation, and one version is one database everywhere.
 */
import type { NdbOp, NodeDbSnapshot } from '../../../bus/messages/index.js';
import type { TraceRecord } from '../../../bus/transport/transport.js';
import { sameChange, sameContents } from '../../../machines/membership/node-db.js';
import type { Rule, Violation } from '../rule.js';

const PULSES = new Set(['hb.member_pulse', 'hb.monitor_pulse']);
const SNAPSHOTS = new Set(['ndb.welcome', 'ndb.joined', 'ndb.snapshot']);

const versionMonotonic: Rule = {
  name: 'ndb.version-monotonic',
  protocol: 'node-db',
  description: 'within one incarnation (node, epoch), the dbVersion a node puts in the pulses it sends never decreases.',
  check(records) {
    const out: Violation[] = [];
    const highest = new Map<string, TraceRecord>();
    for (const rec of records) {
      if (rec.dir !== 'send' || !PULSES.has(rec.env.kind)) continue;
      const v = (rec.env.body as { dbVersion: number }).dbVersion;
      const key = `${rec.node}\u0000${rec.env.epoch}`;
      const top = highest.get(key);
      const topV = top && (top.env.body as { dbVersion: number }).dbVersion;
      if (top === undefined || v > topV!) highest.set(key, rec);
      else if (v < topV!) {
        out.push({
          rule: versionMonotonic.name,
          node: rec.node,
          t: rec.t,
          detail: `epoch ${rec.env.epoch}: sent ${rec.env.kind} with dbVersion ${v} after sending dbVersion ${topV}`,
          records: [top, rec],
        });
      }
    }
    return out;
  },
};

const oneContentPerVersion: Rule = {
  name: 'ndb.one-content-per-version',
  protocol: 'node-db',
  description: 'two ndb.commit bodies for one version carry the same change, and two databases in ndb.welcome/joined/snapshot with one version hold the same nodes.',
  check(records) {
    const out: Violation[] = [];
    // Each distinct content seen per version, with its first record.
    const changes = new Map<number, { change: NdbOp; rec: TraceRecord }[]>();
    const dbs = new Map<number, { db: NodeDbSnapshot; rec: TraceRecord }[]>();
    for (const rec of records) {
      const kind = rec.env.kind;
      if (kind === 'ndb.commit') {
        const { version, change } = rec.env.body as { version: number; change: NdbOp };
        const seen = changes.get(version) ?? [];
        if (seen.some((s) => sameChange(s.change, change))) continue;
        if (seen.length > 0) {
          out.push({
            rule: oneContentPerVersion.name,
            node: rec.env.from,
            t: rec.t,
            detail: `ndb.commit for version ${version} carries ${describeChange(change)}, but ${seen[0].rec.env.from} committed ${describeChange(seen[0].change)}`,
            records: [seen[0].rec, rec],
          });
        }
        seen.push({ change, rec });
        changes.set(version, seen);
      } else if (SNAPSHOTS.has(kind)) {
        const db = (rec.env.body as { db?: NodeDbSnapshot }).db;
        if (!db) continue;
        const seen = dbs.get(db.version) ?? [];
        if (seen.some((s) => sameContents(s.db, db))) continue;
        if (seen.length > 0) {
          out.push({
            rule: oneContentPerVersion.name,
            node: rec.env.from,
            t: rec.t,
            detail: `${kind} holds database version ${db.version} with ${db.nodes.length} nodes, unlike the one ${seen[0].rec.env.from} sent in ${seen[0].rec.env.kind} (${seen[0].db.nodes.length} nodes)`,
            records: [seen[0].rec, rec],
          });
        }
        seen.push({ db, rec });
        dbs.set(db.version, seen);
      }
    }
    return out;
  },
};

function describeChange(c: NdbOp): string {
  if (c.op === 'delete') return `delete ${c.id}`;
  if (c.op === 'arena') return `arena ${c.arena} to ${c.home} (generation ${c.gen})`;
  if (c.op === 'arena_replicas') return `arena ${c.arena}'s directory replicas: ${c.replicas.join(', ') || 'none'} (generation ${c.gen})`;
  return `${c.op} ${c.node.id} (short id ${c.node.shortId})`;
}

export const nodeDbRules: readonly Rule[] = [versionMonotonic, oneContentPerVersion];
