/**
 * Node-database rules (M2, M8, M16): a node's database version only moves
 * forward within one incarnation, one version is one database everywhere,
 * and an arena's generation in the arena table rises by one at each
 * hand-over and at nothing else.
 */
import type { ArenaEntry, NdbOp, NodeDbSnapshot } from '../../../bus/messages/index.js';
import type { TraceRecord } from '../../../bus/transport/transport.js';
import { arenasOf, sameChange, sameContents } from '../../../machines/membership/node-db.js';
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
  if (c.op === 'arena_new') return `a new arena for ${c.member}`;
  if (c.op === 'key') return c.key === null ? `no key for ${c.endpoint}` : `a key for ${c.endpoint}`;
  return `${c.op} ${c.node.id} (short id ${c.node.shortId})`;
}

/** The last the records showed of one arena: its generation at `version`. */
interface GenerationSeen {
  gen: number;
  version: number;
  rec: TraceRecord;
}

/**
 * Read in version order, not time order: anchors commit a version at
 * different times, and a snapshot states the database at its version. The
 * changes of versions the traces do not show may each have been a
 * hand-over, so across such a gap the generation may rise by one each.
 */
const generationMonotonic: Rule = {
  name: 'ndb.generation-monotonic',
  protocol: 'node-db',
  description:
    "in version order over the ndb.commit changes and the databases the traces show, an arena's generation rises by exactly one at each hand-over (op arena) and at nothing else; arena_replicas names the generation the arena is at.",
  needs: (ctx) =>
    ['ndb.commit', ...SNAPSHOTS].some((k) => ctx.kinds.has(k)) ? undefined : 'the traces show no committed change or database (no ndb.commit, ndb.welcome, ndb.joined or ndb.snapshot)',
  check(records) {
    // The first content seen per version; another is ndb.one-content-per-version's to report.
    const commits = new Map<number, { change: NdbOp; rec: TraceRecord }>();
    const dbs = new Map<number, { arenas: readonly ArenaEntry[]; rec: TraceRecord }>();
    for (const rec of records) {
      if (rec.env.kind === 'ndb.commit') {
        const { version, change } = rec.env.body as { version: number; change: NdbOp };
        if (!commits.has(version)) commits.set(version, { change, rec });
      } else if (SNAPSHOTS.has(rec.env.kind)) {
        const db = (rec.env.body as { db?: NodeDbSnapshot }).db;
        if (db && !dbs.has(db.version)) dbs.set(db.version, { arenas: arenasOf(db), rec });
      }
    }
    const known = [...commits.keys()].sort((a, b) => a - b);
    const knownUpTo = (v: number): number => {
      let lo = 0;
      let hi = known.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (known[mid] <= v) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    /** Versions in (a, b] whose change the traces do not show. */
    const unseen = (a: number, b: number): number => Math.max(0, b - a - (knownUpTo(b) - knownUpTo(a)));
    const seen = new Map<number, GenerationSeen>();
    const out: Violation[] = [];
    /** `before`: the generation the record says the arena was at just before `upTo`'s change; `after`: at `upTo`. */
    const judge = (arena: number, upTo: number, before: number, after: number, rec: TraceRecord, claim: (range: string, prior: string) => string): void => {
      const prior = seen.get(arena);
      seen.set(arena, { gen: after, version: upTo, rec });
      if (!prior) return;
      // A change of `upTo` itself is the record's own (a commit's before); a database's `upTo` may be unseen.
      const hi = prior.gen + unseen(prior.version, before === after ? upTo : upTo - 1);
      if (before >= prior.gen && before <= hi) return;
      const range = prior.gen === hi ? `generation ${hi}` : `a generation from ${prior.gen} to ${hi}`;
      out.push({
        rule: generationMonotonic.name,
        node: rec.env.from,
        t: rec.t,
        detail: claim(range, `${prior.rec.env.kind} of version ${prior.version}`),
        records: [prior.rec, rec],
      });
    };
    for (const v of [...new Set([...commits.keys(), ...dbs.keys()])].sort((a, b) => a - b)) {
      const c = commits.get(v);
      if (c?.change.op === 'arena') {
        const { arena, home, gen } = c.change;
        judge(arena, v, gen - 1, gen, c.rec, (range, prior) => `version ${v} hands arena ${arena} to ${home} at generation ${gen}, but the arena was at ${range} (${prior}): a hand-over raises it by one`);
      } else if (c?.change.op === 'arena_replicas') {
        const { arena, gen } = c.change;
        judge(arena, v, gen, gen, c.rec, (range, prior) => `version ${v} names arena ${arena}'s directory replicas at generation ${gen}, but the arena was at ${range} (${prior})`);
      }
      const d = dbs.get(v);
      for (const { arena, gen } of d?.arenas ?? []) {
        judge(arena, v, gen, gen, d!.rec, (range, prior) => `${d!.rec.env.kind} holds database version ${v} with arena ${arena} at generation ${gen}, but the changes before it leave the arena at ${range} (${prior})`);
      }
    }
    return out;
  },
};

export const nodeDbRules: readonly Rule[] = [versionMonotonic, oneContentPerVersion, generationMonotonic];
