/**
 * `trace check` rules (SPEC.md M27): clean simulated runs break none, and
 * each planted fault is named by the rule written for it. The CLI part runs
 * the built command (dist/; `npm run build` first).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NdbOp } from '../../bus/messages/index.js';
import { TraceWriter } from '../../bus/trace/trace.js';
import type { TraceRecord } from '../../bus/transport/transport.js';
import { hasBit } from '../../machines/membership/bitmap.js';
import { checkRecords, checkTraces, parseProtocol, RULES, type CheckResult } from '../../runtime/conformance/check.js';
import { mangrove } from '../helpers/run-cli.js';
import { tracedSim } from '../helpers/traced-sim.js';

const PERIOD = 100;

interface Run {
  recs: TraceRecord[];
  nodes: number;
  t0: number;
  crashedId: string;
  crashAt: number;
}

/** A cluster run with loss, delay, a crash, then a partition that heals. */
async function simulate(seed: number, nodes: number): Promise<Run> {
  const crashed = nodes - 2;
  const run = await tracedSim({ seed, nodes, periodMs: PERIOD, faults: { drop: 0.02, delayMs: [1, 20] } }, (c) => {
    c.run(3000);
    const crashAt = c.clock.now();
    c.crash(crashed);
    c.run(1500);
    c.partition([[0, 1, Math.floor(nodes / 2)]]);
    c.run(1500);
    c.heal();
    c.run(2500);
    return { crashAt };
  });
  return { recs: run.records, nodes, t0: run.startAt, crashedId: run.cluster.id(crashed), crashAt: run.crashAt };
}

const clone = (r: TraceRecord): TraceRecord => ({ ...r, env: { ...r.env, body: structuredClone(r.env.body) } });
const body = <T>(r: TraceRecord): T => r.env.body as T;
const lastIndex = <T>(xs: readonly T[], p: (x: T) => boolean): number => {
  for (let i = xs.length - 1; i >= 0; i--) if (p(xs[i])) return i;
  return -1;
};
const rulesOf = (res: CheckResult): string[] => [...new Set(res.violations.map((v) => v.rule))].sort();

interface MonitorBody {
  level: number;
  domain: number;
  bitmap: Uint8Array;
  dbVersion: number;
}
interface MemberBody {
  level: number;
  domain: number;
  slot: number;
  dbVersion: number;
}

const isL0MonitorSend = (r: TraceRecord) => r.dir === 'send' && r.env.kind === 'hb.monitor_pulse' && body<MonitorBody>(r).level === 0;
const isL0MemberRecv = (r: TraceRecord) => r.dir === 'recv' && r.env.kind === 'hb.member_pulse' && body<MemberBody>(r).level === 0;

describe('conformance rules (trace check)', function () {
  const runs: Run[] = [];
  before(async function () {
    for (const [seed, nodes] of [
      [1, 6],
      [2, 9],
      [3, 12],
      [4, 5],
    ]) {
      runs.push(await simulate(seed, nodes));
    }
  });

  describe('clean traces', () => {
    it('break no rule in any run', () => {
      for (const run of runs) {
        const res = checkRecords(run.recs);
        // Recorded without start records: the quorum rule needs the anchors' votes (rules-quorum.spec.ts).
        // No page traffic, and rounds that may not finish: the page and some recovery rules have nothing to read
        // (rules-recovery.spec.ts runs them all).
        const skipped = res.skipped.map((x) => x.rule);
        expect(skipped.filter((x) => !x.startsWith('rec.') && !x.startsWith('page.')), 'skipped').to.deep.equal(['quorum.majority-reached']);
        expect(res.rules).to.have.length(RULES.length - skipped.length);
        expect(res.violations.map((v) => `${v.rule}: ${v.detail}`)).to.deep.equal([]);
      }
    });

    it('merge per-node traces in time order to the same verdict', () => {
      const run = runs[0];
      const byNode = new Map<string, TraceRecord[]>();
      for (const r of run.recs) byNode.set(r.node, [...(byNode.get(r.node) ?? []), r]);
      const res = checkTraces([...byNode.values()]);
      expect(res.records).to.equal(run.recs.length);
      expect(res.violations).to.deep.equal([]);
    });
  });

  describe('planted faults', () => {
    const run = () => runs[0];

    /** A steady level-0 monitor pulse before the crash and a member slot it reports alive. */
    function steady(): { monitor: string; domain: number; slot: number; at: number } {
      const { recs, nodes, t0 } = run();
      const pulse = recs.find((r) => isL0MonitorSend(r) && r.t >= t0 + 2000)!;
      const b = body<MonitorBody>(pulse);
      const own = recs.filter((r) => r.dir === 'send' && r.env.kind === 'hb.member_pulse' && r.node === pulse.node).map((r) => body<MemberBody>(r).slot);
      const heard = recs.filter((r) => isL0MemberRecv(r) && r.node === pulse.node).map((r) => body<MemberBody>(r).slot);
      const slot = heard.find((s) => hasBit(b.bitmap, s) && !own.includes(s))!;
      // Slots are given from 0 up, one a node, in the one group.
      expect(slot, 'a member slot').to.be.within(0, nodes - 1);
      return { monitor: pulse.node, domain: b.domain, slot, at: pulse.t };
    }

    it('a monitor that hears nothing from a member for 5 periods yet reports it alive: hb.alive-within-deadlines', () => {
      const { monitor, slot, at } = steady();
      const from = at - 700;
      const recs = run().recs.filter((r) => !(r.node === monitor && isL0MemberRecv(r) && body<MemberBody>(r).slot === slot && r.t >= from && r.t < from + 5 * PERIOD));
      const res = checkRecords(recs);
      expect(rulesOf(res)).to.deep.equal(['hb.alive-within-deadlines']);
      expect(res.violations.map((v) => `${v.node === monitor} ${v.detail}`)).to.satisfy((ds: string[]) => ds.every((d) => d.startsWith('true') && d.includes(`slot ${slot} `)));
    });

    it('a bit set for a member that crashed long ago: hb.alive-within-deadlines', () => {
      const { recs, crashedId, crashAt } = run();
      const crashedSlot = body<MemberBody>(recs[lastIndex(recs, (r) => r.node === crashedId && r.dir === 'send' && r.env.kind === 'hb.member_pulse')]).slot;
      const i = recs.findIndex((r) => isL0MonitorSend(r) && r.t >= crashAt + 1500 && !hasBit(body<MonitorBody>(r).bitmap, crashedSlot));
      expect(i).to.be.greaterThan(0);
      const planted = recs.slice();
      planted[i] = clone(recs[i]);
      const bitmap = body<MonitorBody>(planted[i]).bitmap;
      bitmap[crashedSlot >> 3] |= 1 << (crashedSlot & 7);
      const res = checkRecords(planted);
      expect(rulesOf(res)).to.deep.equal(['hb.alive-within-deadlines']);
      expect(res.violations[0].t).to.equal(recs[i].t);
      expect(res.violations[0].detail).to.include(`slot ${crashedSlot} `);
    });

    it('a bit cleared right after a pulse was received: hb.failure-after-deadlines', () => {
      const { monitor, slot, at } = steady();
      const { recs } = run();
      const heardAt = recs[lastIndex(recs, (r) => r.node === monitor && isL0MemberRecv(r) && body<MemberBody>(r).slot === slot && r.t < at)].t;
      const i = recs.findIndex((r) => r.node === monitor && isL0MonitorSend(r) && r.t > heardAt && hasBit(body<MonitorBody>(r).bitmap, slot));
      const planted = recs.slice();
      planted[i] = clone(recs[i]);
      body<MonitorBody>(planted[i]).bitmap[slot >> 3] &= ~(1 << (slot & 7));
      const res = checkRecords(planted);
      expect(rulesOf(res)).to.deep.equal(['hb.failure-after-deadlines']);
      expect(res.violations[0].node).to.equal(monitor);
    });

    it('a lower dbVersion in one sent pulse: ndb.version-monotonic', () => {
      const { recs } = run();
      const i = lastIndex(recs, (r) => r.dir === 'send' && r.env.kind === 'hb.member_pulse' && body<MemberBody>(r).dbVersion >= 1);
      const planted = recs.slice();
      planted[i] = clone(recs[i]);
      body<MemberBody>(planted[i]).dbVersion -= 1;
      const res = checkRecords(planted);
      expect(rulesOf(res)).to.deep.equal(['ndb.version-monotonic']);
      expect(res.violations[0].node).to.equal(recs[i].node);
    });

    it('a different change committed for one version: ndb.one-content-per-version', () => {
      const { recs } = run();
      const i = recs.findIndex((r) => r.dir === 'send' && r.env.kind === 'ndb.commit');
      expect(i).to.be.greaterThan(0);
      const planted = recs.slice();
      planted[i] = clone(recs[i]);
      const b = body<{ change: NdbOp }>(planted[i]);
      b.change = { op: 'delete', id: 'not-a-node' };
      const res = checkRecords(planted);
      expect(rulesOf(res)).to.deep.equal(['ndb.one-content-per-version']);
    });

    it('a different database for one version: ndb.one-content-per-version', () => {
      const { recs } = run();
      const i = recs.findIndex((r) => r.env.kind === 'ndb.joined');
      const planted = recs.slice();
      planted[i] = clone(recs[i]);
      body<{ db: { nodes: unknown[] } }>(planted[i]).db.nodes.pop();
      // Put a true copy first, so the planted one is the odd one out.
      const res = checkRecords([...recs.slice(0, i + 1), planted[i], ...recs.slice(i + 1)]);
      expect(rulesOf(res)).to.deep.equal(['ndb.one-content-per-version']);
    });

    it('a second node announcing pan.elected for a term: pan.one-per-term', () => {
      const { recs } = run();
      const i = recs.findIndex((r) => r.dir === 'send' && r.env.kind === 'pan.elected');
      const other = recs.find((r) => r.node !== recs[i].node)!.node;
      const fake: TraceRecord = { ...clone(recs[i]), node: other, env: { ...recs[i].env, from: other, epoch: 1, seq: 999_999 } };
      const planted = [...recs.slice(0, i + 1), { ...fake, t: recs[i].t }, ...recs.slice(i + 1)];
      const res = checkRecords(planted);
      expect(rulesOf(res)).to.deep.equal(['pan.one-per-term']);
      expect(res.violations[0].node).to.equal(other);
    });

    it('--protocol selects rules', () => {
      expect(parseProtocol('pan')).to.deep.equal(['pan']);
      expect(parseProtocol('all')).to.deep.equal(['heartbeat', 'quorum', 'node-db', 'pan', 'recovery', 'page', 'replay']);
      expect(() => parseProtocol('raft')).to.throw(/--protocol/);
      const res = checkRecords(run().recs, { protocols: ['pan'] });
      expect(res.rules).to.deep.equal(['pan.one-per-term']);
    });
  });

  describe('mangrove trace check (built)', () => {
    let dir: string;
    before(() => (dir = mkdtempSync(join(tmpdir(), 'mangrove-check-'))));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const write = (name: string, recs: readonly TraceRecord[]): string => {
      const w = new TraceWriter(join(dir, name));
      for (const r of recs) w.record(r);
      w.close();
      return join(dir, name);
    };

    it('exits 0 on a clean trace and 1 on a planted one, 2 on a bad option', async () => {
      const { recs } = runs[0];
      const clean = write('clean.trace', recs);
      const ok = await mangrove(['trace', 'check', clean]);
      expect(ok.stderr).to.equal('');
      expect(ok.code).to.equal(0);
      // Recorded without start records: the rules check it, replay cannot and says so.
      const ran = checkRecords(recs).rules.length;
      expect(ok.stdout).to.match(new RegExp(`^0 violations of 0 rules; ${ran} rules checked over \\d+ records; skipped quorum\\.majority-reached: .+; skipped replay: no start record for .+\n$`));

      const i = lastIndex(recs, (r) => r.dir === 'send' && r.env.kind === 'hb.member_pulse' && body<MemberBody>(r).dbVersion >= 1);
      const planted = recs.slice();
      planted[i] = clone(recs[i]);
      body<MemberBody>(planted[i]).dbVersion -= 1;
      const bad = write('bad.trace', planted);
      const broken = await mangrove(['trace', 'check', bad]);
      expect(broken.code).to.equal(1);
      const lines = broken.stdout.trim().split('\n');
      expect(lines).to.have.length(2);
      expect(lines[0]).to.include('ndb.version-monotonic');
      expect(lines[1]).to.match(/^1 violation of 1 rule;/);

      const json = await mangrove(['trace', 'check', bad, '--json', '--protocol', 'node-db']);
      expect(json.code).to.equal(1);
      const parsed = JSON.parse(json.stdout) as CheckResult;
      expect(parsed.rules).to.deep.equal(['ndb.version-monotonic', 'ndb.one-content-per-version', 'ndb.generation-monotonic']);
      expect(parsed.violations.map((v) => v.rule)).to.deep.equal(['ndb.version-monotonic']);

      const usage = await mangrove(['trace', 'check', clean, '--protocol', 'raft']);
      expect(usage.code).to.equal(2);
      expect(usage.stderr).to.match(/--protocol/);
    });

    it('--help lists every rule', async () => {
      const help = await mangrove(['trace', 'check', '--help']);
      expect(help.code).to.equal(0);
      for (const name of ['hb.alive-within-deadlines', 'hb.failure-after-deadlines', 'ndb.version-monotonic', 'ndb.one-content-per-version', 'pan.one-per-term']) {
        expect(help.stdout).to.include(name);
      }
    });
  });
});
