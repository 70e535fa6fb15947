/**
 * The rebuild and page coherence rules (M10, M14, M16, M27): simulated runs
 * with page traffic, a crash, an arena hand-over and a restart (rounds
 * restarted for higher ones among them) break none, every one of them
 * runs; each planted fault is named by the rule written for it, and by no
 * other. The CLI part runs the built command (dist/; `npm run build` first).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NdbOp } from '../../bus/messages/index.js';
import { TraceWriter } from '../../bus/trace/trace.js';
import { isEnvelopeRecord, type TraceEntry, type TraceRecord } from '../../bus/transport/transport.js';
import type { RebuildRound } from '../../machines/recovery/rebuild-round.js';
import { checkEntries, parseProtocol, PROTOCOLS, type CheckResult, type Protocol } from '../../runtime/conformance/check.js';
import { recoveryRules } from '../../runtime/conformance/rules/recovery.js';
import { pageRules } from '../../runtime/conformance/rules/page.js';
import { mangrove } from '../helpers/run-cli.js';
import { recoveryRun, type RecoveryRun } from '../helpers/recovery-run.js';
import { tracedSim } from '../helpers/traced-sim.js';

const NEW_RULES = [...recoveryRules.map((r) => r.name), 'ndb.generation-monotonic', ...pageRules.map((r) => r.name)];
/** Every protocol checked by rules; replay would name any edit of a sent record too. */
const RULE_PROTOCOLS: Protocol[] = PROTOCOLS.filter((p) => p !== 'replay');

const check = (entries: readonly TraceEntry[]): Promise<CheckResult> => checkEntries([entries], { protocols: RULE_PROTOCOLS });
const broken = (r: CheckResult): string[] => [...new Set(r.violations.map((v) => v.rule))].sort();
const body = <T>(e: TraceEntry): T => (e as TraceRecord).env.body as T;
const isRec = (e: TraceEntry, dir: 'send' | 'recv', kind: string): e is TraceRecord => e.dir === dir && e.env.kind === kind;
const roundOf = (e: TraceEntry): RebuildRound => body<{ round: RebuildRound }>(e).round;
const sameRound = (a: RebuildRound, b: RebuildRound): boolean => a.n === b.n && a.by === b.by;
/** A record with its body cloned, so an edit leaves the run's own untouched. */
const clone = (e: TraceEntry): TraceRecord => {
  const r = e as TraceRecord;
  return { ...r, env: { ...r.env, body: structuredClone(r.env.body) } };
};
let planted = 0;
/** A new envelope: a sequence number no node used. */
function fresh(r: TraceRecord, node: string, epoch: number, changes: Partial<TraceRecord['env']> = {}): TraceRecord {
  const c = clone(r);
  return { ...c, node, env: { ...c.env, from: node, epoch, seq: 900_000_000 + ++planted, ...changes } };
}
/** `node`'s epoch as its last send at or before `at` shows it. */
function epochAt(entries: readonly TraceEntry[], node: string, at: number): number {
  for (let i = at; i >= 0; i--) {
    const e = entries[i];
    if (isEnvelopeRecord(e) && e.dir === 'send' && e.node === node) return e.env.epoch;
  }
  throw new Error(`${node} sent nothing before entry ${at}`);
}
const insertAfter = (entries: readonly TraceEntry[], at: number, ...added: TraceEntry[]): TraceEntry[] => [...entries.slice(0, at + 1), ...added, ...entries.slice(at + 1)];

describe('conformance: recovery and page rules', function () {
  this.timeout(60_000);
  const runs: RecoveryRun[] = [];

  before(async () => {
    // The crashed node: one that is no anchor, an anchor, and the first anchor (the coordinator).
    runs.push(await recoveryRun({ seed: 31 }));
    runs.push(await recoveryRun({ seed: 33, nodes: 6, crashed: 2 }));
    runs.push(await recoveryRun({ seed: 2, nodes: 6, crashed: 0, concurrent: true }));
  });

  describe('clean traces', () => {
    it('every recovery and page rule runs, and none is broken', async () => {
      for (const run of runs) {
        const r = await check(run.entries);
        expect(r.skipped, `seed ${run.cluster.options.seed}`).to.deep.equal([]);
        expect(r.rules).to.include.members(NEW_RULES);
        expect(r.violations.map((v) => `${v.rule} ${v.node}: ${v.detail}`), `seed ${run.cluster.options.seed}`).to.deep.equal([]);
      }
    });

    it('hold what the rules judge: rounds restarted and finished, a hand-over, the restarted node in a round, write grants', () => {
      for (const run of runs) {
        const sends = (kind: string) => run.records.filter((r) => isRec(r, 'send', kind));
        const rounds = new Set(sends('rec.quiesce').map((r) => roundOf(r).n));
        const finished = new Set(sends('rec.resume').map((r) => roundOf(r).n));
        expect(rounds.size, 'rounds').to.be.greaterThan(finished.size);
        expect(finished.size, 'rounds finished').to.be.at.least(2);
        expect(sends('ndb.commit').some((r) => body<{ change: NdbOp }>(r).change.op === 'arena'), 'an arena handed over').to.equal(true);
        const back = run.cluster.id(run.crashed);
        expect(sends('rec.resumed').some((r) => r.node === back && r.t > run.restartAt), 'the restarted node resumed in a round').to.equal(true);
        expect(sends('page.served').length, 'grants').to.be.greaterThan(20);
      }
    });

    it('are skipped, saying why, on a trace without a rebuild or page traffic', async () => {
      const { entries } = await tracedSim({ seed: 36, nodes: 4, periodMs: 100 }, (c) => c.run(3000));
      const r = await check(entries);
      const skipped = Object.fromEntries(r.skipped.map((s) => [s.rule, s.reason]));
      expect(Object.keys(skipped).sort()).to.deep.equal(NEW_RULES.filter((n) => n !== 'ndb.generation-monotonic').sort());
      expect(skipped['rec.one-coordinator-per-round']).to.match(/no rebuild round/);
      expect(skipped['page.one-owner-per-round-version']).to.match(/no page\.request and no page\.served/);
      expect(r.rules).to.include('ndb.generation-monotonic');
      expect(r.violations).to.deep.equal([]);
    });
  });

  describe('planted faults', () => {
    const entries = () => runs[0].entries;
    const anchors = () => [0, 1, 2].map((i) => runs[0].cluster.id(i));

    /** The first finished round: its coordinator and its first repopulate and resume sends. */
    function finishedRound(): { round: RebuildRound; coordinator: string; repopulate: number; resume: number } {
      const es = entries();
      const resume = es.findIndex((e) => isRec(e, 'send', 'rec.resume'));
      const round = roundOf(es[resume]);
      const repopulate = es.findIndex((e) => isRec(e, 'send', 'rec.repopulate') && sameRound(roundOf(e), round));
      return { round, coordinator: round.by, repopulate, resume };
    }

    it('a rec.quiesce of a round sent by a node that does not coordinate it: rec.one-coordinator-per-round', async () => {
      const es = entries();
      const at = es.findIndex((e) => isRec(e, 'send', 'rec.quiesce'));
      const other = anchors().find((a) => a !== roundOf(es[at]).by)!;
      const r = await check(insertAfter(es, at, { ...fresh(es[at] as TraceRecord, other, epochAt(es, other, at)), t: es[at].t }));
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['rec.one-coordinator-per-round', other]]);
      expect(r.violations[0].detail).to.include(`which ${roundOf(es[at]).by} coordinates`);
    });

    it('a second node coordinating a round number: rec.one-coordinator-per-round', async () => {
      const es = entries();
      const at = es.findIndex((e) => isRec(e, 'send', 'rec.quiesce'));
      const { n, by } = roundOf(es[at]);
      const other = anchors().find((a) => a !== by)!;
      const fake = fresh(es[at] as TraceRecord, other, epochAt(es, other, at));
      (fake.env.body as { round: RebuildRound }).round = { n, by: other };
      const r = await check(insertAfter(es, at, fake));
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['rec.one-coordinator-per-round', other]]);
      expect(r.violations[0].detail).to.include(`but ${by} coordinates round ${n}`);
    });

    it('a rec.resume sent right after rec.repopulate, before the replies: rec.phases-in-order', async () => {
      const es = entries();
      const { coordinator, repopulate, resume } = finishedRound();
      const moved = { ...(es[resume] as TraceRecord), t: es[repopulate].t };
      const rest = es.filter((_, i) => i !== resume);
      const r = await check(insertAfter(rest, repopulate, moved));
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['rec.phases-in-order', coordinator]]);
      expect(r.violations[0].detail).to.match(/sent rec\.resume .* before receiving rec\.repopulated/);
    });

    it('a rec.repopulate sent without one participant having answered quiesced: rec.phases-in-order', async () => {
      const es = entries();
      const { round, coordinator, repopulate } = finishedRound();
      const answer = es.findIndex((e, i) => i < repopulate && isRec(e, 'recv', 'rec.quiesced') && e.node === coordinator && e.env.from !== coordinator && sameRound(roundOf(e), round));
      const from = (es[answer] as TraceRecord).env.from;
      const unheard = es.filter((e) => !(isRec(e, 'recv', 'rec.quiesced') && e.node === coordinator && e.env.from === from && sameRound(roundOf(e), round)));
      const r = await check(unheard);
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['rec.phases-in-order', coordinator]]);
      expect(r.violations[0].detail).to.include(`before receiving rec.quiesced for it from ${from}`);
    });

    it('a participant answering rec.resumed before the coordinator resumed it: rec.resume-after-coordinator', async () => {
      const es = entries();
      const { round, coordinator } = finishedRound();
      const got = es.findIndex((e) => isRec(e, 'recv', 'rec.resume') && e.node !== coordinator && sameRound(roundOf(e), round));
      const node = es[got].node;
      const answer = es.findIndex((e) => isRec(e, 'send', 'rec.resumed') && e.node === node && sameRound(roundOf(e), round));
      expect(answer).to.be.greaterThan(got);
      const early = { ...(es[answer] as TraceRecord), t: es[got].t };
      const r = await check(insertAfter(es.filter((_, i) => i !== answer), got - 1, early));
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['rec.resume-after-coordinator', node]]);
    });

    it('a page.served sent by a node that has answered quiesced: rec.quiescent-serves-no-page', async () => {
      const es = entries();
      // A home that granted a page, then quiesced in the same incarnation.
      const lastGrant = new Map<string, number>();
      let quiesced = -1;
      for (let i = 0; i < es.length && quiesced < 0; i++) {
        const e = es[i];
        if (isRec(e, 'send', 'page.served')) lastGrant.set(`${e.node} ${e.env.epoch}`, i);
        if (isRec(e, 'send', 'rec.quiesced') && lastGrant.has(`${e.node} ${e.env.epoch}`)) quiesced = i;
      }
      expect(quiesced, 'a home that quiesced').to.be.greaterThan(0);
      const grant = lastGrant.get(`${es[quiesced].node} ${(es[quiesced] as TraceRecord).env.epoch}`)!;
      const node = es[quiesced].node;
      const served = { ...fresh(es[grant] as TraceRecord, node, epochAt(es, node, quiesced)), t: es[quiesced].t };
      const r = await check(insertAfter(es, quiesced, served));
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['rec.quiescent-serves-no-page', node]]);
      expect(r.violations[0].detail).to.match(/sent page\.served .* while quiescent/);
    });

    /** Every ndb.commit record of the first version whose change `pick` chooses, edited by `edit`. */
    function editCommit(pick: (c: NdbOp) => boolean, edit: (c: NdbOp) => void): { planted: TraceEntry[]; version: number } {
      const es = entries();
      const first = es.find((e) => isRec(e, 'send', 'ndb.commit') && pick(body<{ change: NdbOp }>(e).change))!;
      const version = body<{ version: number }>(first).version;
      const out = es.map((e) => {
        if (!isEnvelopeRecord(e) || e.env.kind !== 'ndb.commit' || body<{ version: number }>(e).version !== version) return e;
        const c = clone(e);
        edit((c.env.body as { change: NdbOp }).change);
        return c;
      });
      return { planted: out, version };
    }

    it('a hand-over committed without raising the generation: ndb.generation-monotonic', async () => {
      const { planted: es, version } = editCommit(
        (c) => c.op === 'arena',
        (c) => {
          if (c.op === 'arena') c.gen -= 1;
        },
      );
      const r = await check(es);
      expect(broken(r)).to.deep.equal(['ndb.generation-monotonic']);
      expect(r.violations[0].detail).to.match(new RegExp(`^version ${version} hands arena \\d+ to .* at generation 1, but the arena was at generation 1 `));
    });

    it('directory replicas named at a generation the arena is not at: ndb.generation-monotonic', async () => {
      const { planted: es, version } = editCommit(
        (c) => c.op === 'arena_replicas',
        (c) => {
          if (c.op === 'arena_replicas') c.gen += 1;
        },
      );
      const r = await check(es);
      expect(broken(r)).to.deep.equal(['ndb.generation-monotonic']);
      expect(r.violations[0].detail).to.match(new RegExp(`^version ${version} names arena \\d+'s directory replicas at generation 2, but the arena was at generation 1 `));
    });

    it('a second write grant of one page at one version in one round: page.one-owner-per-round-version', async () => {
      const es = entries();
      interface Req {
        addr: Uint8Array;
        mode: string;
        req: number;
      }
      const writes = new Set(es.filter((e) => isRec(e, 'send', 'page.request') && body<Req>(e).mode === 'write').map((e) => `${e.node} ${body<Req>(e).req}`));
      const at = es.findIndex((e) => isRec(e, 'send', 'page.served') && writes.has(`${e.env.to} ${body<Req>(e).req}`));
      const grant = es[at] as TraceRecord;
      const home = grant.node;
      const other = runs[0].cluster.id([0, 1, 2, 3].find((i) => ![home, grant.env.to].includes(runs[0].cluster.id(i)))!);
      const req = 777_000_001;
      const request = fresh(grant, other, epochAt(es, other, at), { kind: 'page.request', to: home, body: { addr: body<Req>(grant).addr, rr: body<{ rr: number }>(grant).rr, mode: 'write', req } });
      const second = fresh(grant, home, grant.env.epoch, { to: other, body: { ...body<object>(grant), req } });
      const r = await check(insertAfter(es, at, { ...request, t: grant.t }, second));
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['page.one-owner-per-round-version', home]]);
      expect(r.violations[0].records.map((x) => (x as TraceRecord).env.to)).to.deep.equal([grant.env.to, other]);
    });

    it('a page.confirmed answering page.data of another rebuild round: page.no-stale-round-accepted', async () => {
      const es = entries();
      interface Data {
        addr: Uint8Array;
        req: number;
        rr: number;
      }
      const same = (a: TraceEntry, b: TraceEntry) => a.node === b.node && Buffer.compare(body<Data>(a).addr, body<Data>(b).addr) === 0 && body<Data>(a).req === body<Data>(b).req;
      const answer = es.findIndex((e) => isRec(e, 'send', 'page.confirmed') && es.some((d) => isRec(d, 'recv', 'page.data') && same(d, e)));
      const node = es[answer].node;
      const stale = es.map((e) => {
        if (!isRec(e, 'recv', 'page.data') || !same(e, es[answer])) return e;
        const c = clone(e);
        (c.env.body as Data).rr += 1;
        return c;
      });
      const r = await check(stale);
      expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['page.no-stale-round-accepted', node]]);
      expect(r.violations[0].detail).to.match(/answered page\.data .* with page\.confirmed in rebuild round \d+, but received it only in rebuild round \d+/);
    });
  });

  describe('mangrove trace check (built)', () => {
    let dir: string;
    before(() => (dir = mkdtempSync(join(tmpdir(), 'mangrove-recovery-rules-'))));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('--protocol recovery,page runs the new rules over a trace file; --help lists them', async () => {
      expect(parseProtocol('recovery,page')).to.deep.equal(['recovery', 'page']);
      const path = join(dir, 'run.trace');
      const w = new TraceWriter(path);
      for (const e of runs[0].entries) {
        if (isEnvelopeRecord(e)) w.record(e);
        else w.note(e);
      }
      w.close();
      const run = await mangrove(['trace', 'check', path, '--protocol', 'recovery,page', '--json']);
      expect(run.code, run.stderr).to.equal(0);
      const result = JSON.parse(run.stdout) as CheckResult;
      expect(result.rules).to.deep.equal(NEW_RULES.filter((n) => !n.startsWith('ndb.')));
      expect(result.violations).to.deep.equal([]);
      const help = await mangrove(['trace', 'check', '--help']);
      expect(help.code).to.equal(0);
      for (const name of NEW_RULES) expect(help.stdout).to.include(name);
      expect(help.stdout).to.match(/node-db, pan, recovery\s+or\s+page/);
    });
  });
});
