/**
 * Heartbeat rules beyond level 0 (SPEC.md M3, M4, M27): one monitor per
 * group at every level, and the group-level monitors' deadlines. Clean
 * simulated runs, flat and grouped, with loss, a crashed monitor and member,
 * and a partition that heals (two monitors of one group meet, one yields),
 * break no rule; each planted fault is named by the rule written for it.
 */
import { expect } from 'chai';
import type { TraceRecord } from '../../bus/transport/transport.js';
import { hasBit } from '../../machines/membership/bitmap.js';
import { checkRecords, type CheckResult } from '../../runtime/conformance/check.js';
import { heartbeatRules } from '../../runtime/conformance/rules/heartbeat.js';
import { SeededRandom } from '../../runtime/world/random.js';
import { tracedSim } from '../helpers/traced-sim.js';

const PERIOD = 100;
const ONE = 'hb.one-monitor-per-group';
const UPPER_ALIVE = 'hb.upper-alive-within-deadlines';
const UPPER_FAILURE = 'hb.upper-failure-after-deadlines';

interface Run {
  name: string;
  groups: number;
  recs: TraceRecord[];
  startAt: number;
  crashAt: number;
  partitionAt: number;
  healAt: number;
}

/**
 * A run with loss and delay: it forms, then the monitor of the last node's
 * group and one other node crash (the monitor comes back), then a random
 * partition, which heals.
 */
async function simulate(seed: number, nodes: number, groups: number): Promise<Run> {
  const r = new SeededRandom(seed * 1000 + groups);
  const run = await tracedSim({ seed, nodes, groups, periodMs: PERIOD, faults: { drop: 0.03, delayMs: [1, 20] } }, (c) => {
    c.run(4000);
    const crashAt = c.clock.now();
    const monitor = c.indexOf(c.status(nodes - 1)?.monitor ?? c.id(nodes - 1));
    c.crash(monitor);
    c.crash((monitor + 1 + r.int(nodes - 1)) % nodes);
    c.run(1500);
    c.start(monitor);
    const partitionAt = c.clock.now();
    const order = [...Array(nodes).keys()].sort(() => r.next() - 0.5);
    c.partition([order.slice(0, 1 + r.int(nodes - 1))]);
    c.run(2000);
    const healAt = c.clock.now();
    c.heal();
    c.run(2500);
    return { crashAt, partitionAt, healAt };
  });
  const { records: recs, startAt, crashAt, partitionAt, healAt } = run;
  return { name: `seed ${seed}, ${nodes} nodes, ${groups} group(s)`, groups, recs, startAt, crashAt, partitionAt, healAt };
}

const body = <T>(r: TraceRecord): T => r.env.body as T;
/** Plants are checked against the heartbeat rules alone: what other protocols make of made-up pulses is theirs. */
const checkHeartbeat = (recs: readonly TraceRecord[]): CheckResult => checkRecords(recs, { protocols: ['heartbeat'] });
const rulesOf = (res: CheckResult): string[] => [...new Set(res.violations.map((v) => v.rule))].sort();
const byTime = (recs: TraceRecord[]): TraceRecord[] => recs.sort((a, b) => a.t - b.t);
const sameSend = (a: TraceRecord, b: TraceRecord) => a.env.from === b.env.from && a.env.epoch === b.env.epoch && a.env.seq === b.env.seq;

interface MonitorBody {
  level: number;
  domain: number;
  bitmap: Uint8Array;
}
interface MemberBody {
  level: number;
  domain: number;
  slot: number;
}

const isMonitorSend = (level: number) => (r: TraceRecord) => r.dir === 'send' && r.env.kind === 'hb.monitor_pulse' && body<MonitorBody>(r).level === level;
const isMemberRecv = (level: number) => (r: TraceRecord) => r.dir === 'recv' && r.env.kind === 'hb.member_pulse' && body<MemberBody>(r).level === level;

/** A node's runs of monitor pulses for one (level, domain), split where the epoch changes or a gap exceeds 1.5 periods. */
interface Reign {
  node: string;
  level: number;
  domain: number;
  start: number;
  end: number;
}
function reigns(recs: readonly TraceRecord[]): Reign[] {
  const out: Reign[] = [];
  const current = new Map<string, Reign & { epoch: number }>();
  for (const r of recs) {
    if (r.dir !== 'send' || r.env.kind !== 'hb.monitor_pulse') continue;
    const { level, domain } = body<MonitorBody>(r);
    const key = `${r.node} ${level} ${domain}`;
    let reign = current.get(key);
    if (!reign || reign.epoch !== r.env.epoch || r.t - reign.end > 1.5 * PERIOD) {
      reign = { node: r.node, level, domain, start: r.t, end: r.t, epoch: r.env.epoch };
      out.push(reign);
      current.set(key, reign);
    }
    reign.end = r.t;
  }
  return out;
}

/** Pairs of reigns of one (level, domain) by two nodes that overlap in time: two monitors of one group at once. */
function rivals(recs: readonly TraceRecord[]): [Reign, Reign][] {
  const all = reigns(recs);
  const out: [Reign, Reign][] = [];
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const [a, b] = [all[i], all[j]];
      if (a.level === b.level && a.domain === b.domain && a.node !== b.node && Math.min(a.end, b.end) > Math.max(a.start, b.start)) out.push([a, b]);
    }
  }
  return out;
}

/** Records made up for a plant get sequence numbers no node uses. */
let forgedSeq = 1_000_000_000;

describe('heartbeat rules for groups and monitors (trace check)', function () {
  this.timeout(60_000);
  const flat: Run[] = [];
  const grouped: Run[] = [];
  before(async function () {
    for (const [seed, nodes] of [
      [11, 7],
      [12, 10],
      [13, 5],
    ]) {
      flat.push(await simulate(seed, nodes, 1));
    }
    for (const [seed, nodes, groups] of [
      [21, 12, 3],
      [22, 15, 3],
      [23, 9, 2],
      [24, 18, 4],
    ]) {
      grouped.push(await simulate(seed, nodes, groups));
    }
  });

  describe('clean traces', () => {
    it('break no rule, flat or grouped', () => {
      for (const run of [...flat, ...grouped]) {
        const res = checkRecords(run.recs);
        expect(res.skipped.filter((s) => s.rule.startsWith('hb.')), run.name).to.deep.equal([]);
        expect(res.rules, run.name).to.include.members(heartbeatRules.map((r) => r.name));
        expect(res.violations.map((v) => `${run.name}: ${v.rule}: ${v.detail}`)).to.deep.equal([]);
      }
    });

    it('exercise the rules: upper levels report groups past their grace, and partitions leave two monitors of one group that meet when healed', () => {
      for (const run of grouped) {
        const upper = run.recs.filter(isMonitorSend(1));
        expect(upper.length, run.name).to.be.greaterThan(100);
        // Some upper monitor reigned long enough for its alive checks to run.
        expect(reigns(run.recs).some((r) => r.level === 1 && r.end - r.start > 12 * PERIOD), run.name).to.equal(true);
      }
      // Rivals of the partition still reigning at the heal: they meet, and one yields.
      // (Level-1 rivals can reign on for up to 8 periods after a heal: a monitor
      // takes a redirect to another transmitter only once the slot it names has
      // gone silent, so they may not hear each other until then; no pulse between
      // them means no grounds to yield, and the rule does not count it.)
      const healed = [0, 0];
      for (const run of [...flat, ...grouped]) {
        for (const [a, b] of rivals(run.recs)) {
          if (Math.max(a.start, b.start) >= run.partitionAt && Math.min(a.end, b.end) >= run.healAt - PERIOD) healed[Math.min(a.level, 1)]++;
        }
      }
      expect(healed[0], 'level-0 rival monitors reigning at a heal').to.be.at.least(4);
      expect(healed[1], 'level-1 rival monitors reigning at a heal').to.be.at.least(2);
    });

    it('tolerate a transmitter silent for less than 8 periods', () => {
      const { recs, monitor, domain, slot, at } = steadyUpper(grouped[0]);
      // Seven periods with no pulse heard from the group: within its eight deadlines.
      const kept = recs.filter((r) => !(r.node === monitor && isMemberRecv(1)(r) && body<MemberBody>(r).domain === domain && body<MemberBody>(r).slot === slot && r.t >= at - 7 * PERIOD && r.t < at));
      expect(kept.length).to.be.below(recs.length);
      expect(checkHeartbeat(kept).violations).to.deep.equal([]);
    });
  });

  /**
   * A level-1 monitor reigning over a long steady stretch before the crash,
   * a slot (another group) it reports alive, and a pulse time well into it.
   */
  function steadyUpper(run: Run): { recs: TraceRecord[]; monitor: string; domain: number; slot: number; at: number } {
    const reign = reigns(run.recs).find((r) => r.level === 1 && r.start < run.crashAt - 25 * PERIOD && r.end >= run.crashAt - PERIOD)!;
    expect(reign, 'a steady level-1 reign').to.not.equal(undefined);
    const at = reign.start + 20 * PERIOD;
    const pulse = run.recs.find((r) => r.node === reign.node && isMonitorSend(1)(r) && r.t >= at)!;
    const heard = run.recs.filter((r) => r.node === reign.node && isMemberRecv(1)(r) && r.t < pulse.t && r.t > pulse.t - 2 * PERIOD);
    const slot = heard.map((r) => body<MemberBody>(r).slot).find((s) => hasBit(body<MonitorBody>(pulse).bitmap, s));
    // At level 1 a slot is a group.
    expect(slot, 'a group the upper monitor hears').to.be.within(0, run.groups - 1);
    return { recs: run.recs, monitor: reign.node, domain: reign.domain, slot: slot!, at: pulse.t };
  }

  /**
   * Node `as` (a member of the level-`level` domain that `monitor` runs) sends
   * copies of `monitor`'s pulses, under its own id, for `periods` periods from
   * `from`: to the same recipients, and (unless `oneWay`) to `monitor` itself;
   * every copy is received where the original was (and by `monitor` 5 ms after
   * sending). `as` goes on receiving `monitor`'s pulses as before.
   */
  function impersonate(
    recs: readonly TraceRecord[],
    monitor: string,
    as: string,
    level: number,
    domain: number,
    from: number,
    { periods = 3, oneWay = false } = {},
  ): TraceRecord[] {
    const epoch = recs.find((r) => r.node === as && r.dir === 'send')!.env.epoch;
    const forged: TraceRecord[] = [];
    const originals = recs.filter((r) => r.node === monitor && isMonitorSend(level)(r) && body<MonitorBody>(r).domain === domain && r.t >= from && r.t < from + periods * PERIOD);
    const rounds = new Set<number>();
    for (const o of originals) {
      if (o.env.to === as) continue;
      const env = { ...o.env, from: as, epoch, seq: forgedSeq++ };
      forged.push({ ...o, node: as, env });
      for (const r of recs) if (r.dir === 'recv' && sameSend(r, o)) forged.push({ ...r, env });
      if (!rounds.has(o.t)) {
        rounds.add(o.t);
        if (oneWay) continue;
        const toMonitor = { ...o.env, from: as, epoch, seq: forgedSeq++, to: monitor };
        forged.push({ ...o, node: as, env: toMonitor }, { t: o.t + 5, node: monitor, dir: 'recv', env: toMonitor });
      }
    }
    expect(rounds.size, 'rounds of pulses copied').to.be.at.least(periods);
    return byTime([...recs, ...forged]);
  }

  describe(`planted faults: ${ONE}`, () => {
    it('a member that also pulses its group as monitor, and hears the real one, yet neither yields', () => {
      const run = flat[0];
      const pulse = run.recs.find((r) => isMonitorSend(0)(r) && r.t >= run.startAt + 2000)!;
      const { domain } = body<MonitorBody>(pulse);
      const member = run.recs.find((r) => r.dir === 'recv' && sameSend(r, pulse))!.node;
      const planted = impersonate(run.recs, pulse.node, member, 0, domain, pulse.t);
      const res = checkHeartbeat(planted);
      expect(rulesOf(res)).to.deep.equal([ONE]);
      expect(res.violations).to.have.length(1);
      expect(res.violations[0].node).to.equal(member);
      expect(res.violations[0].detail).to.include(`level-0 domain ${domain}: ${member} and ${pulse.node} each received`);
    });

    it('the same at level 1: a transmitter that also pulses the upper domain as its monitor', () => {
      const run = grouped[0];
      const { monitor, domain, at } = steadyUpper(run);
      const pulse = run.recs.find((r) => r.node === monitor && isMonitorSend(1)(r) && r.t >= at)!;
      const transmitter = run.recs.find((r) => r.dir === 'recv' && sameSend(r, pulse))!.node;
      const res = checkHeartbeat(impersonate(run.recs, monitor, transmitter, 1, domain, pulse.t));
      expect(rulesOf(res)).to.deep.equal([ONE]);
      expect(res.violations[0].detail).to.include(`level-1 domain ${domain}: ${transmitter} and ${monitor}`);
    });

    it('tolerates a rival heard only one way (no grounds to yield), or gone within the window', () => {
      const run = flat[0];
      const pulse = run.recs.find((r) => isMonitorSend(0)(r) && r.t >= run.startAt + 2000)!;
      const { domain } = body<MonitorBody>(pulse);
      const member = run.recs.find((r) => r.dir === 'recv' && sameSend(r, pulse))!.node;
      // The rival hears the monitor, but the monitor never hears the rival.
      expect(checkHeartbeat(impersonate(run.recs, pulse.node, member, 0, domain, pulse.t, { oneWay: true })).violations).to.deep.equal([]);
      // They hear each other, and the rival is gone within the window (one period, plus slack).
      expect(checkHeartbeat(impersonate(run.recs, pulse.node, member, 0, domain, pulse.t, { periods: 1 })).violations).to.deep.equal([]);
    });

    it('after a heal, the monitor that yielded goes on as monitor of its side of the group', () => {
      const run = flat.find((r) => partitionRivals(r).length > 0)!;
      expect(run, 'a flat run whose partition split a group').to.not.equal(undefined);
      const [stayer, yielder] = partitionRivals(run)[0];
      const { healAt } = run;
      const { domain } = yielder;
      // The yielder's side of the group as it stood for the last 3 periods before
      // the heal (its pulses and their receipts, its members' pulses to it), played
      // twice more after the heal; now its pulses reach the other monitor too.
      const side = run.recs.filter((r) => {
        if (r.t < healAt - 3 * PERIOD || r.t >= healAt) return false;
        if (r.env.kind === 'hb.monitor_pulse') return r.env.from === yielder.node && body<MonitorBody>(r).level === 0 && body<MonitorBody>(r).domain === domain;
        if (r.env.kind === 'hb.member_pulse') return r.env.to === yielder.node && body<MemberBody>(r).level === 0 && body<MemberBody>(r).domain === domain;
        return false;
      });
      expect(side.some((r) => r.dir === 'send' && r.env.to === stayer.node), 'pulses to the other monitor, cut by the partition').to.equal(true);
      const forged: TraceRecord[] = [];
      for (const shift of [3 * PERIOD, 6 * PERIOD]) {
        const envs = new Map<string, TraceRecord['env']>();
        const copy = (r: TraceRecord) => {
          const key = `${r.env.from} ${r.env.epoch} ${r.env.seq}`;
          let env = envs.get(key);
          if (!env) envs.set(key, (env = { ...r.env, seq: forgedSeq++ }));
          return env;
        };
        for (const r of side) {
          const env = copy(r);
          forged.push({ ...r, t: r.t + shift, env });
          if (r.dir === 'send' && r.env.to === stayer.node) forged.push({ t: r.t + shift + 5, node: stayer.node, dir: 'recv', env });
        }
      }
      const res = checkHeartbeat(byTime([...run.recs, ...forged]));
      expect(rulesOf(res)).to.deep.equal([ONE]);
      expect(res.violations[0].detail).to.include('members answer both');
      expect([stayer.node, yielder.node]).to.include(res.violations[0].node);
    });

    /** Level-0 rivals of a run's partition: [the one that stayed monitor after the heal, the one that yielded]. */
    function partitionRivals(run: Run): [Reign, Reign][] {
      return rivals(run.recs)
        .filter(([a, b]) => a.level === 0 && Math.max(a.start, b.start) >= run.partitionAt && Math.min(a.end, b.end) >= run.healAt - PERIOD)
        .map(([a, b]) => (a.end > b.end ? [a, b] : [b, a]) as [Reign, Reign])
        .filter(([stayer, yielder]) => stayer.end > run.healAt + 10 * PERIOD && yielder.start < run.healAt - 5 * PERIOD);
    }
  });

  describe(`planted faults: ${UPPER_ALIVE} and ${UPPER_FAILURE}`, () => {
    it(`a bit set in an upper monitor pulse for a group never heard: ${UPPER_ALIVE}`, () => {
      const { recs, monitor, at } = steadyUpper(grouped[1]);
      const i = recs.findIndex((r) => r.node === monitor && isMonitorSend(1)(r) && r.t >= at);
      const planted = recs.slice();
      planted[i] = { ...recs[i], env: { ...recs[i].env, body: structuredClone(recs[i].env.body) } };
      const bitmap = body<MonitorBody>(planted[i]).bitmap;
      expect(hasBit(bitmap, 63)).to.equal(false);
      bitmap[7] |= 0x80;
      const res = checkHeartbeat(planted);
      expect(rulesOf(res)).to.deep.equal([UPPER_ALIVE]);
      expect(res.violations).to.have.length(1);
      expect(res.violations[0].node).to.equal(monitor);
      expect(res.violations[0].t).to.equal(recs[i].t);
      expect(res.violations[0].detail).to.match(/^level-1 domain \d+: slot 63 reported alive, never heard from it/);
    });

    it(`a group's upper pulses gone for 9 periods while its monitor reports it alive: ${UPPER_ALIVE}`, () => {
      const { recs, monitor, domain, slot, at } = steadyUpper(grouped[2]);
      const gone = (r: TraceRecord) => r.node === monitor && isMemberRecv(1)(r) && body<MemberBody>(r).domain === domain && body<MemberBody>(r).slot === slot && r.t >= at - 9 * PERIOD && r.t < at;
      const res = checkHeartbeat(recs.filter((r) => !gone(r)));
      expect(rulesOf(res)).to.deep.equal([UPPER_ALIVE]);
      expect(res.violations.every((v) => v.node === monitor && v.detail.includes(`slot ${slot} reported alive, last heard`))).to.equal(true);
    });

    it(`a group counted out right after its transmitter was heard: ${UPPER_FAILURE}`, () => {
      const { recs, monitor, domain, slot, at } = steadyUpper(grouped[3]);
      const heard = recs.filter((r) => r.node === monitor && isMemberRecv(1)(r) && body<MemberBody>(r).domain === domain && body<MemberBody>(r).slot === slot && r.t < at);
      const heardAt = heard[heard.length - 1].t;
      const i = recs.findIndex((r) => r.node === monitor && isMonitorSend(1)(r) && r.t > heardAt);
      expect(hasBit(body<MonitorBody>(recs[i]).bitmap, slot)).to.equal(true);
      const planted = recs.slice();
      planted[i] = { ...recs[i], env: { ...recs[i].env, body: structuredClone(recs[i].env.body) } };
      body<MonitorBody>(planted[i]).bitmap[slot >> 3] &= ~(1 << (slot & 7));
      const res = checkHeartbeat(planted);
      expect(rulesOf(res)).to.deep.equal([UPPER_FAILURE]);
      expect(res.violations).to.have.length(1);
      expect(res.violations[0].detail).to.include(`level-1 domain ${domain}: slot ${slot} cleared`);
    });

    it('level-0 faults stay with the level-0 rules', () => {
      const { recs } = grouped[0];
      // Every level-0 member pulse a monitor receives, gone: the level-0 rules fire, the upper ones do not.
      const res = checkHeartbeat(recs.filter((r) => !isMemberRecv(0)(r)));
      expect(rulesOf(res)).to.include('hb.alive-within-deadlines');
      expect(rulesOf(res).filter((r) => r.startsWith('hb.upper-'))).to.deep.equal([]);
    });
  });
});
