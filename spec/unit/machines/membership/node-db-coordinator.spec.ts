import { expect } from 'chai';
import { createActor, initialTransition, transition, type Actor } from 'xstate';
import type { Ballot, NdbOp, NodeDbSnapshot } from '../../../../bus/messages/index.js';
import { applyChange, genesis, sameChange, sameContents } from '../../../../machines/membership/node-db.js';
import {
  ndbCoordinatorMachine,
  refusalOutcome,
  type NdbCoordinatorEvent,
  type NdbCoordinatorInput,
  type NdbUpdateOutput,
} from '../../../../machines/membership/node-db-coordinator.js';
import { ndbSubordinateMachine, type AcceptorState } from '../../../../machines/membership/node-db-subordinate.js';
import type { SendOut } from '../../../../machines/outbox.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { Running, emittedBy } from '../../../helpers/machine-harness.js';
import { nodeAt } from '../../../fixtures/node-entries.js';
import { forgetfulAcceptor } from '../../../fixtures/forgetful-acceptor.js';
import { answersTo } from '../../../fixtures/ndb-answers.js';

const timeoutMs = 200;
const node = nodeAt;
const addX: NdbOp = { op: 'add', node: node('x', 10) };
const addY: NdbOp = { op: 'add', node: node('y', 11) };
const addZ: NdbOp = { op: 'add', node: node('z', 12) };
const mine: Ballot = { round: 3, by: 'a/1' };

const input = (over: Partial<NdbCoordinatorInput> = {}): NdbCoordinatorInput => ({
  self: 'a',
  version: 2,
  ballot: mine,
  change: addX,
  anchors: ['a', 'b', 'c'],
  votes: { a: 1, b: 1, c: 1 },
  totalVotes: 3,
  quorate: true,
  timeoutMs,
  ...over,
});

const { promise, accepted } = answersTo(2, mine);

const run = (over: Partial<NdbCoordinatorInput> = {}) => new Running(ndbCoordinatorMachine, input(over));
const outputOf = (r: Running<typeof ndbCoordinatorMachine>): NdbUpdateOutput | undefined => r.snapshot.output;
const targets = (r: Running<typeof ndbCoordinatorMachine>, kind: string) => r.sends(kind).map((s) => s.to);
const proposed = (r: Running<typeof ndbCoordinatorMachine>) => r.sends('ndb.accept').map((s) => (s.body as { change: NdbOp }).change);

/** A coordinator that already has promises from a and b, and is waiting for accepts. */
const accepting = (over: Partial<NdbCoordinatorInput> = {}) => {
  const c = run(over);
  c.send(promise('a')).send(promise('b'));
  expect(c.value).to.equal('accepting');
  return c;
};

describe('node-db coordinator (M2)', () => {
  describe('first checks', () => {
    it('ends at once with E_NO_QUORUM without quorum, sending nothing, before looking at the anchor list', () => {
      for (const anchors of [['a', 'b', 'c'], ['b'], []]) {
        const c = run({ quorate: false, anchors });
        expect(c.snapshot.status).to.equal('done');
        expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_NO_QUORUM' });
        expect(c.emitted).to.deep.equal([]);
      }
    });

    it('ends at once with E_NOT_ANCHOR for an empty anchor list, or one without the coordinator', () => {
      for (const anchors of [[], ['b', 'c']]) {
        const c = run({ anchors });
        expect(c.snapshot.status).to.equal('done');
        expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_NOT_ANCHOR' });
        expect(c.emitted).to.deep.equal([]);
      }
    });
  });

  describe('prepare round', () => {
    it('sends a prepare with its version and ballot to every anchor, itself included', () => {
      const c = run();
      expect(c.value).to.equal('preparing');
      expect(c.sends()).to.deep.equal(
        ['a', 'b', 'c'].map((to) => ({ type: 'send', to, kind: 'ndb.prepare', body: { version: 2, ballot: mine } })),
      );
    });

    it('moves to the accept round with promises from a majority, proposing its own change to those that promised', () => {
      const c = run();
      c.send(promise('b'));
      expect(c.value).to.equal('preparing');
      expect(c.sends('ndb.accept')).to.deep.equal([]);
      c.send(promise('a'));
      expect(c.value).to.equal('accepting');
      expect(c.sends('ndb.accept')).to.deep.equal(
        ['b', 'a'].map((to) => ({ type: 'send', to, kind: 'ndb.accept', body: { version: 2, ballot: mine, change: addX } })),
      );
    });

    it('weighs promises by votes: exactly half is not enough, and a zero-vote anchor adds nothing', () => {
      const over = { anchors: ['a', 'b', 'c', 'd'], votes: { a: 1, b: 1, c: 2, d: 0 }, totalVotes: 4 };
      const c = run(over);
      c.send(promise('a')).send(promise('b')).send(promise('d'));
      expect(c.value, '2 of 4 votes').to.equal('preparing');
      c.send(promise('c'));
      expect(c.value).to.equal('accepting');
      const heavy = run(over);
      heavy.send(promise('c')).send(promise('b'));
      expect(heavy.value, '3 of 4 votes').to.equal('accepting');
    });

    it('counts a repeated promise once', () => {
      const c = run({ anchors: ['a', 'b', 'c', 'd', 'e'], votes: { a: 1, b: 1, c: 1, d: 1, e: 1 }, totalVotes: 5 });
      c.send(promise('b')).send(promise('b')).send(promise('b')).send(promise('a'));
      expect(c.value).to.equal('preparing');
      expect(c.snapshot.context.promised).to.deep.equal(['b', 'a']);
    });

    it('proposes the change accepted under the highest ballot among the promises, whatever their order', () => {
      const low = { ballot: { round: 1, by: 'c/1' }, change: addY };
      const high = { ballot: { round: 2, by: 'b/1' }, change: addZ };
      for (const order of [
        [promise('b', { accepted: high }), promise('c', { accepted: low })],
        [promise('c', { accepted: low }), promise('b', { accepted: high })],
        [promise('a'), promise('b', { accepted: high })],
      ]) {
        const c = run();
        for (const e of order) c.send(e);
        expect(c.value).to.equal('accepting');
        expect(proposed(c)).to.deep.equal([addZ, addZ]);
        c.send(accepted('a')).send(accepted('b')).send(accepted('c'));
        expect(outputOf(c)).to.deep.equal({ ok: true, version: 2, change: addZ, own: false });
        expect(c.sends('ndb.commit').map((s) => (s.body as { change: NdbOp }).change)).to.deep.equal([addZ, addZ, addZ]);
      }
    });

    it('reports its own change as its own when a promise carried a copy of it', () => {
      const c = run();
      const copy: NdbOp = JSON.parse(JSON.stringify(addX));
      c.send(promise('b', { accepted: { ballot: { round: 1, by: 'a/0' }, change: copy } })).send(promise('c'));
      c.send(accepted('b')).send(accepted('c'));
      expect(outputOf(c)).to.deep.include({ ok: true, own: true });
    });
  });

  describe('accept round', () => {
    it('commits with accepts from a majority, telling every anchor, and reports its own change', () => {
      const c = accepting();
      c.send(accepted('a'));
      expect(c.value).to.equal('accepting');
      expect(c.sends('ndb.commit')).to.deep.equal([]);
      c.send(accepted('b'));
      expect(c.value).to.equal('committed');
      expect(c.sends('ndb.commit')).to.deep.equal(
        ['a', 'b', 'c'].map((to) => ({ type: 'send', to, kind: 'ndb.commit', body: { version: 2, change: addX } })),
      );
      expect(c.of('commit')).to.deep.equal([{ type: 'commit', version: 2, change: addX }]);
      expect(outputOf(c)).to.deep.equal({ ok: true, version: 2, change: addX, own: true });
    });

    it('weighs accepts by votes: exactly half is not enough', () => {
      const over = { anchors: ['a', 'b', 'c', 'd'], votes: { a: 1, b: 1, c: 1, d: 1 }, totalVotes: 4 };
      const c = run(over);
      c.send(promise('a')).send(promise('b')).send(promise('c'));
      c.send(accepted('a')).send(accepted('b'));
      expect(c.value).to.equal('accepting');
      c.send(accepted('c'));
      expect(c.value).to.equal('committed');
    });

    it('ignores promises that arrive after the accept round began', () => {
      const c = accepting();
      c.send(promise('c', { accepted: { ballot: { round: 2, by: 'c/1' }, change: addY } }));
      expect(targets(c, 'ndb.accept')).to.deep.equal(['a', 'b']);
      c.send(accepted('a')).send(accepted('b'));
      expect(outputOf(c)).to.deep.include({ ok: true, change: addX });
    });

    it('a single anchor decides alone, through its own subordinate', () => {
      const c = run({ anchors: ['a'], votes: { a: 1 }, totalVotes: 1 });
      c.send(promise('a'));
      expect(targets(c, 'ndb.accept')).to.deep.equal(['a']);
      c.send(accepted('a'));
      expect(outputOf(c)).to.deep.equal({ ok: true, version: 2, change: addX, own: true });
    });
  });

  describe('refusals and timeouts', () => {
    it("ends with E_BUSY and the winning round on an 'outbid' refusal, in either round", () => {
      const higher = { round: 7, by: 'c/2' };
      const p = run();
      p.send(promise('a')).send(promise('c', { ok: false, reason: 'outbid', promised: higher }));
      expect(outputOf(p)).to.deep.include({ ok: false, code: 'E_BUSY', round: 7 });
      expect(p.sends('ndb.accept')).to.deep.equal([]);

      const a = accepting();
      a.send(accepted('b', { ok: false, reason: 'outbid', promised: higher }));
      expect(a.value).to.equal('failed');
      expect(outputOf(a)).to.deep.include({ ok: false, code: 'E_BUSY', round: 7 });
      expect(a.sends('ndb.commit')).to.deep.equal([]);
      expect(a.of('commit')).to.deep.equal([]);
    });

    it('ends with E_STALE when an anchor already has the version', () => {
      for (const have of [2, 5]) {
        const c = run();
        c.send(promise('b', { ok: false, have, reason: 'stale' }));
        expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_STALE', have });
      }
      const a = accepting();
      a.send(accepted('c', { ok: false, have: 2, reason: 'stale' }));
      expect(outputOf(a)).to.deep.include({ ok: false, code: 'E_STALE', have: 2 });
    });

    it("does not end the attempt on a 'behind' refusal from an anchor that lags", () => {
      const c = run();
      c.send(promise('c', { ok: false, have: 0, reason: 'behind' }));
      expect(c.value).to.equal('preparing');
      c.send(promise('a')).send(promise('b'));
      c.send(accepted('c', { ok: false, have: 0, reason: 'behind' }));
      expect(c.value).to.equal('accepting');
      c.send(accepted('a')).send(accepted('b'));
      expect(outputOf(c)).to.deep.include({ ok: true, version: 2 });
    });

    it('passes on the code of a change that does not apply, and E_REJECTED for an unknown reason', () => {
      const c = accepting();
      c.send(accepted('b', { ok: false, reason: 'E_EXISTS: node x is already in the database' }));
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_EXISTS', reason: 'E_EXISTS: node x is already in the database' });
      const odd = accepting();
      odd.send(accepted('b', { ok: false, reason: 'no idea' }));
      expect(outputOf(odd)).to.deep.include({ ok: false, code: 'E_REJECTED', reason: 'no idea' });
      const ctx = odd.snapshot.context;
      expect(refusalOutcome(ctx, accepted('b', { ok: false }))).to.deep.include({ code: 'E_REJECTED', reason: 'refused' });
    });

    it('times out with E_TIMEOUT in the prepare round', () => {
      const c = run();
      c.send(promise('b'));
      c.clock.advance(timeoutMs - 1);
      expect(c.value).to.equal('preparing');
      c.clock.advance(1);
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_TIMEOUT' });
      expect(c.sends('ndb.accept')).to.deep.equal([]);
    });

    it('times out with E_TIMEOUT in the accept round, which has its own timer', () => {
      const c = run();
      c.clock.advance(timeoutMs - 10);
      c.send(promise('a')).send(promise('b'));
      c.clock.advance(timeoutMs - 1);
      expect(c.value).to.equal('accepting');
      c.send(accepted('a'));
      c.clock.advance(1);
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_TIMEOUT' });
      expect(c.sends('ndb.commit')).to.deep.equal([]);
      expect(c.of('commit')).to.deep.equal([]);
    });

    it('ignores answers for another ballot or version, or from a stranger, even refusals', () => {
      const other = { round: 3, by: 'b/1' };
      const c = run();
      c.send(promise('b', { ballot: other })).send(promise('c', { version: 3 })).send(promise('z'));
      c.send(promise('b', { ballot: other, ok: false, reason: 'outbid', promised: { round: 9, by: 'c/1' } }));
      c.send(promise('c', { version: 1, ok: false, have: 1, reason: 'stale' })).send(promise('z', { ok: false, reason: 'outbid' }));
      expect(c.value).to.equal('preparing');
      expect(c.snapshot.context.promised).to.deep.equal([]);
      c.send(promise('a')).send(promise('b'));
      c.send(accepted('a', { ballot: { round: 2, by: 'a/1' } })).send(accepted('b', { version: 3 }));
      c.send(accepted('c', { ballot: other, ok: false, reason: 'outbid' }));
      expect(c.value).to.equal('accepting');
      expect(c.snapshot.context.accepted).to.deep.equal([]);
    });
  });

  it('works through the pure transition() too', () => {
    const [s0, a0] = initialTransition(ndbCoordinatorMachine, input());
    expect(emittedBy(a0).map((e) => [e.to, e.kind])).to.deep.equal(['a', 'b', 'c'].map((to) => [to, 'ndb.prepare']));
    const [s1] = transition(ndbCoordinatorMachine, s0, promise('a'));
    const [s2, a2] = transition(ndbCoordinatorMachine, s1, promise('c'));
    expect(emittedBy(a2).map((e) => [e.to, e.kind])).to.deep.equal([
      ['a', 'ndb.accept'],
      ['c', 'ndb.accept'],
    ]);
    const [s3] = transition(ndbCoordinatorMachine, s2, accepted('a'));
    const [s4, a4] = transition(ndbCoordinatorMachine, s3, accepted('c'));
    expect(s4.status).to.equal('done');
    expect(s4.output).to.deep.equal({ ok: true, version: 2, change: addX, own: true });
    expect(emittedBy(a4).map((e) => e.type)).to.deep.equal(['send', 'send', 'send', 'commit']);
  });
});

type SubordinateLogic = typeof ndbSubordinateMachine;

interface WorldOptions {
  anchors: number;
  coordinators: number;
  /** Conflicting changes: the first two coordinators want the same short id. */
  conflict: boolean;
  weighted: boolean;
  /** The subordinate machine under test (a broken one proves the checks can fail). */
  subordinate: SubordinateLogic;
  /** Restart without the persisted promise (proves restarts are exercised). */
  amnesia: boolean;
}

/** Fault-phase rates, per message or per fault tick. */
const FAULTS = { lossRate: 0.15, duplicateRate: 0.1, delayMsMax: 40, restartRate: 0.25, downMsMax: 80 };
const PERIOD_MS = 20;
const FAULT_PHASE_MS = 2_000;
const HEAL_PHASE_MS = 3_000;
const ATTEMPTS_MAX = 60;
const TRACE_LINES_MAX = 400;

interface SimAnchor {
  id: string;
  epoch: number;
  up: boolean;
  /** What survives a crash: the committed db and the last persisted acceptor state. */
  store: { db: NodeDbSnapshot; acceptor?: AcceptorState };
  sub?: Actor<SubordinateLogic>;
  coord?: Actor<typeof ndbCoordinatorMachine>;
  wants?: NdbOp;
  round: number;
  attempts: number;
  notBefore: number;
}

/** What a run found wrong: contents that differ, an ok commit others did not apply, an answer not yet durable. */
type Violation = { kind: 'diverged' | 'not-chosen' | 'not-durable'; what: string };

interface SimReport {
  violations: Violation[];
  oks: { by: string; version: number; change: NdbOp; own: boolean }[];
  codes: Record<string, number>;
  restarts: number;
  commits: number;
  /** Coordinators that still wanted their change in when the run ended. */
  unfinished: number;
  adoptions: number;
  versionMax: number;
  trace: string[];
}

/**
 * Anchors, each a subordinate and some of them a coordinator, wired the way
 * actors/membership/node-db.ts wires them (self-addressed messages are delivered at
 * once; retries back off with a seeded pause and a higher round), over a
 * router that delays, loses and duplicates messages and restarts anchors
 * from what they persisted. One seed decides everything. A bounded fault
 * phase is followed by a healed one. Invariants are checked as the run goes.
 */
class PaxosWorld {
  readonly clock = new SimClock();
  private readonly net: SeededRandom;
  private readonly faults: SeededRandom;
  private readonly pauses: SeededRandom;
  private readonly nodes = new Map<string, SimAnchor>();
  private readonly ids: string[];
  private readonly votes: Record<string, number>;
  private readonly totalVotes: number;
  private faulty = true;
  /** The change of the COMMIT being delivered, so a `committed` can be matched to it. */
  private committing?: NdbOp;
  /** Every database any anchor committed or adopted, by version: one content per version. */
  private readonly decided = new Map<number, { db: NodeDbSnapshot; by: string }>();
  private readonly commitLog: { id: string; version: number; change: NdbOp }[] = [];
  readonly report: SimReport = { violations: [], oks: [], codes: {}, restarts: 0, commits: 0, unfinished: 0, adoptions: 0, versionMax: 1, trace: [] };

  constructor(
    readonly seed: number,
    private readonly opts: WorldOptions,
  ) {
    const rng = new SeededRandom(seed);
    this.net = rng.derive('net');
    this.faults = rng.derive('faults');
    this.pauses = rng.derive('pauses');
    this.ids = ['a', 'b', 'c', 'd', 'e'].slice(0, opts.anchors);
    const weights = opts.weighted ? [2, 1, 1, 1, 0] : [1, 1, 1, 1, 1];
    this.votes = Object.fromEntries(this.ids.map((id, i) => [id, weights[i]]));
    this.totalVotes = this.ids.reduce((s, id) => s + this.votes[id], 0);
    const db1 = genesis(this.ids.map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: this.votes[id], group: 0 })));
    this.decided.set(1, { db: db1, by: 'genesis' });
    const starts = rng.derive('starts');
    this.ids.forEach((id, i) => {
      const slot = 10 + (opts.conflict && i === 1 ? 0 : i);
      const n: SimAnchor = { id, epoch: 1, up: true, store: { db: db1 }, round: 0, attempts: 0, notBefore: 0 };
      if (i < opts.coordinators) n.wants = { op: 'add', node: node(`n${i}`, slot) };
      this.nodes.set(id, n);
      this.startSubordinate(n);
      if (n.wants) this.clock.setTimeout(() => this.tick(n), starts.int(PERIOD_MS * 3));
    });
    this.clock.setTimeout(() => this.faultTick(), PERIOD_MS);
  }

  run(): SimReport {
    this.clock.advance(FAULT_PHASE_MS);
    this.faulty = false;
    this.clock.advance(HEAL_PHASE_MS);
    for (const n of this.nodes.values()) {
      if (n.wants) this.report.unfinished++;
      n.coord?.stop();
      n.sub?.stop();
    }
    this.checkOks();
    return this.report;
  }

  private trace(line: string): void {
    if (this.report.trace.length < TRACE_LINES_MAX) this.report.trace.push(`${this.clock.now()}ms ${line}`);
  }

  private violation(kind: Violation['kind'], what: string): void {
    if (this.report.violations.length < 20) this.report.violations.push({ kind, what: `${what} (at ${this.clock.now()}ms)` });
  }

  private startSubordinate(n: SimAnchor): void {
    const sub = createActor(this.opts.subordinate, {
      clock: this.clock,
      input: { self: n.id, db: n.store.db, ...(n.store.acceptor ? { acceptor: n.store.acceptor } : {}) },
    });
    sub.on('persist', (e) => (n.store.acceptor = e.acceptor));
    sub.on('send', (e) => {
      this.checkDurable(n, e);
      this.post(n.id, e.to, e.kind, e.body);
    });
    sub.on('committed', (e) => {
      n.store.db = e.db;
      this.report.commits++;
      this.commitLog.push({ id: n.id, version: e.db.version, change: this.committing! });
      this.noteDecided(n.id, e.db, 'committed');
    });
    sub.on('adopted', (e) => {
      n.store.db = e.db;
      this.report.adoptions++;
      this.noteDecided(n.id, e.db, 'adopted');
    });
    sub.on('behind', () => this.fetch(n));
    n.sub = sub;
    sub.start();
  }

  /** An ok answer leaves only once what it promises is in the store. */
  private checkDurable(n: SimAnchor, e: SendOut): void {
    const b = e.body as { ok: boolean; version: number; ballot: Ballot };
    if (!b.ok) return;
    const saved = n.store.acceptor;
    const same = (x?: Ballot) => x !== undefined && x.round === b.ballot.round && x.by === b.ballot.by;
    const durable =
      saved?.version === b.version && (e.kind === 'ndb.promise' ? same(saved.promised) : same(saved.accepted?.ballot) && same(saved.promised));
    if (!durable) this.violation('not-durable', `${n.id} answered ${e.kind} ok for ballot ${JSON.stringify(b.ballot)} before persisting it`);
  }

  private noteDecided(id: string, db: NodeDbSnapshot, how: string): void {
    this.trace(`${id} ${how} version ${db.version}: ${db.nodes.map((x) => x.id).join(',')}`);
    this.report.versionMax = Math.max(this.report.versionMax, db.version);
    const first = this.decided.get(db.version);
    if (!first) this.decided.set(db.version, { db, by: id });
    else if (!sameContents(first.db, db)) {
      this.violation('diverged', `${id} ${how} version ${db.version} as [${db.nodes.map((x) => x.id)}], ${first.by} as [${first.db.nodes.map((x) => x.id)}]`);
    }
  }

  /** A commit reported ok is the change every anchor that commits that version applies. */
  private checkOks(): void {
    for (const ok of this.report.oks) {
      for (const c of this.commitLog) {
        if (c.version === ok.version && !sameChange(c.change, ok.change)) {
          this.violation('not-chosen', `${ok.by} reported version ${ok.version} ok with ${JSON.stringify(ok.change)}, ${c.id} committed ${JSON.stringify(c.change)}`);
        }
      }
      const before = this.decided.get(ok.version - 1);
      const now = this.decided.get(ok.version);
      const want = before && applyChange(before.db, ok.change);
      if (want && now && (!want.ok || !sameContents(want.db, now.db))) {
        this.violation('not-chosen', `version ${ok.version} is not version ${ok.version - 1} with the change ${ok.by} reported ok`);
      }
    }
  }

  private post(from: string, to: string, kind: string, body: unknown): void {
    // actors/membership/node-db.ts hands an anchor's messages to itself directly.
    if (from === to) return this.deliver(from, to, kind, body);
    if (this.faulty && this.net.next() < FAULTS.lossRate) return;
    const copies = this.faulty && this.net.next() < FAULTS.duplicateRate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      this.clock.setTimeout(() => this.deliver(from, to, kind, body), 1 + this.net.int(FAULTS.delayMsMax));
    }
  }

  private deliver(from: string, to: string, kind: string, body: unknown): void {
    const n = this.nodes.get(to)!;
    if (!n.up || !n.sub) return;
    const b = body as Record<string, never>;
    switch (kind) {
      case 'ndb.prepare':
        return n.sub.send({ type: 'PREPARE', from, version: b.version, ballot: b.ballot });
      case 'ndb.accept':
        return n.sub.send({ type: 'ACCEPT', from, version: b.version, ballot: b.ballot, change: b.change });
      case 'ndb.commit':
        this.committing = b.change;
        n.sub.send({ type: 'COMMIT', version: b.version, change: b.change });
        this.committing = undefined;
        return;
      case 'ndb.promise':
        return n.coord?.send({ type: 'PROMISE', from, ...(body as Omit<Extract<NdbCoordinatorEvent, { type: 'PROMISE' }>, 'type' | 'from'>) });
      case 'ndb.accepted':
        return n.coord?.send({ type: 'ACCEPTED', from, ...(body as Omit<Extract<NdbCoordinatorEvent, { type: 'ACCEPTED' }>, 'type' | 'from'>) });
      case 'ndb.fetch':
        return this.post(to, from, 'ndb.snapshot', { db: n.sub.getSnapshot().context.db });
      case 'ndb.snapshot':
        return n.sub.send({ type: 'ADOPT', db: b.db });
    }
  }

  private fetch(n: SimAnchor): void {
    const others = this.ids.filter((id) => id !== n.id);
    this.post(n.id, others[this.net.int(others.length)], 'ndb.fetch', {});
  }

  private tick(n: SimAnchor): void {
    if (this.clock.now() < FAULT_PHASE_MS + HEAL_PHASE_MS) this.clock.setTimeout(() => this.tick(n), PERIOD_MS);
    if (n.up && n.wants && !n.coord && this.clock.now() >= n.notBefore) this.startAttempt(n);
  }

  private startAttempt(n: SimAnchor): void {
    const db = n.sub!.getSnapshot().context.db;
    const attempt: NdbCoordinatorInput = {
      self: n.id,
      version: db.version + 1,
      ballot: { round: ++n.round, by: `${n.id}/${n.epoch}` },
      change: n.wants!,
      anchors: this.ids,
      votes: this.votes,
      totalVotes: this.totalVotes,
      quorate: true,
      timeoutMs: PERIOD_MS * 4,
    };
    const actor = createActor(ndbCoordinatorMachine, { clock: this.clock, input: attempt });
    actor.on('send', (e) => this.post(n.id, e.to, e.kind, e.body));
    actor.subscribe((snap) => {
      if (snap.status === 'done' && n.coord === actor) this.concluded(n, attempt, snap.output!);
    });
    n.coord = actor;
    this.trace(`${n.id} coordinates version ${attempt.version} with ballot ${attempt.ballot.round}:${attempt.ballot.by}`);
    actor.start();
  }

  private concluded(n: SimAnchor, attempt: NdbCoordinatorInput, out: NdbUpdateOutput): void {
    n.coord = undefined;
    n.attempts++;
    const code = out.ok ? (out.own ? 'ok' : 'ok-not-own') : out.code;
    this.report.codes[code] = (this.report.codes[code] ?? 0) + 1;
    this.trace(`${n.id} ballot ${attempt.ballot.round}:${attempt.ballot.by} version ${attempt.version}: ${code}`);
    if (out.ok) {
      this.report.oks.push({ by: n.id, version: out.version, change: out.change, own: out.own });
      if (out.own) n.wants = undefined;
      // Another's change went in first: try ours for the next version at once.
      return;
    }
    if (!['E_BUSY', 'E_STALE', 'E_TIMEOUT'].includes(out.code) || n.attempts >= ATTEMPTS_MAX) {
      n.wants = undefined;
      return;
    }
    if (out.round !== undefined) n.round = Math.max(n.round, out.round);
    if (out.code === 'E_STALE') this.fetch(n);
    n.notBefore = this.clock.now() + Math.floor(PERIOD_MS * (1 + this.pauses.next() * 2));
  }

  private faultTick(): void {
    if (!this.faulty) return;
    this.clock.setTimeout(() => this.faultTick(), PERIOD_MS);
    if (this.faults.next() >= FAULTS.restartRate) return;
    const n = this.nodes.get(this.ids[this.faults.int(this.ids.length)])!;
    if (!n.up) return;
    this.trace(`${n.id} crashes`);
    this.report.restarts++;
    n.up = false;
    n.coord?.stop();
    n.coord = undefined;
    n.sub!.stop();
    n.sub = undefined;
    this.clock.setTimeout(() => {
      n.up = true;
      n.epoch++;
      // A new incarnation counts its rounds from scratch; its epoch keeps its ballots distinct.
      n.round = 0;
      if (this.opts.amnesia) n.store.acceptor = undefined;
      this.trace(`${n.id} restarts as epoch ${n.epoch}`);
      this.startSubordinate(n);
    }, 1 + this.faults.int(FAULTS.downMsMax));
  }
}

const worldFor = (seed: number, over: Partial<WorldOptions> = {}): WorldOptions => ({
  anchors: seed % 3 === 0 ? 5 : 3,
  coordinators: seed % 2 === 0 ? 3 : 2,
  conflict: seed % 5 === 0,
  weighted: seed % 7 === 0,
  subordinate: ndbSubordinateMachine,
  amnesia: false,
  ...over,
});

const failureOf = (r: SimReport, seed: number): string =>
  `replay with seed ${seed} (NDB_SEED=${seed} prints its trace): ${r.violations.map((v) => v.what).join('; ')}`;

/** Seeds whose runs committed two contents under one version, or not the change reported ok. */
function divergentSeeds(seeds: readonly number[], over: Partial<WorldOptions>): number[] {
  return seeds.filter((seed) =>
    new PaxosWorld(seed, worldFor(seed, over)).run().violations.some((v) => v.kind === 'diverged' || v.kind === 'not-chosen'),
  );
}

describe('node-db updates with competing coordinators, lost messages and restarts (M2)', () => {
  const SEEDS = Array.from({ length: 150 }, (_, i) => i + 1);
  const only = process.env.NDB_SEED ? [Number(process.env.NDB_SEED)] : undefined;
  const reports: SimReport[] = [];

  it(`no two anchors commit different contents under one version, and every ok commit is what they apply (${SEEDS.length} seeds)`, () => {
    const failures: string[] = [];
    for (const seed of only ?? SEEDS) {
      const r = new PaxosWorld(seed, worldFor(seed)).run();
      if (only) console.log(r.trace.join('\n'));
      reports.push(r);
      if (r.violations.length > 0) failures.push(failureOf(r, seed));
    }
    expect(failures).to.deep.equal([]);
  });

  it('the runs exercised contention, restarts, retries, and still made progress', function () {
    if (only) this.skip();
    const sum = (f: (r: SimReport) => number) => reports.reduce((s, r) => s + f(r), 0);
    const code = (c: string) => sum((r) => r.codes[c] ?? 0);
    expect(reports).to.have.length(SEEDS.length);
    expect(sum((r) => r.restarts), 'restarts').to.be.greaterThan(SEEDS.length);
    expect(code('E_BUSY'), 'outbid attempts').to.be.greaterThan(0);
    expect(code('E_TIMEOUT'), 'timed-out attempts').to.be.greaterThan(0);
    expect(code('E_STALE'), 'attempts on a decided version').to.be.greaterThan(0);
    expect(code('ok-not-own'), "commits of another coordinator's change").to.be.greaterThan(0);
    expect(code('E_SHORT_ID_TAKEN'), 'a conflicting change refused after the other went in').to.be.greaterThan(0);
    expect(sum((r) => r.adoptions), 'laggards that caught up from a snapshot').to.be.greaterThan(0);
    // Liveness on the healed network: every coordinator got its change in, or had it refused for good.
    for (const [i, r] of reports.entries()) {
      const seed = SEEDS[i];
      const w = worldFor(seed);
      expect(r.unfinished, `replay with seed ${seed}: coordinators still waiting`).to.equal(0);
      expect(r.versionMax, `replay with seed ${seed}: versions committed`).to.equal(1 + w.coordinators - (w.conflict ? 1 : 0));
    }
  });

  it('a run is a function of its seed', () => {
    const once = new PaxosWorld(7, worldFor(7)).run();
    const again = new PaxosWorld(7, worldFor(7)).run();
    expect(again.trace).to.deep.equal(once.trace);
    expect(again.codes).to.deep.equal(once.codes);
    expect(new PaxosWorld(8, worldFor(7)).run().trace).to.not.deep.equal(once.trace);
  });

  it('the same harness catches an acceptor that grants every request', () => {
    const broken = ndbSubordinateMachine.provide({ guards: { grants: () => true } });
    expect(divergentSeeds(SEEDS, { subordinate: broken }).length).to.be.greaterThan(0);
  });

  it('the same harness catches an acceptor that does not report what it accepted', () => {
    expect(divergentSeeds(SEEDS, { subordinate: forgetfulAcceptor }).length).to.be.greaterThan(0);
  });

  it('the same harness catches an acceptor that forgets its promises when it restarts', () => {
    expect(divergentSeeds(SEEDS, { amnesia: true }).length).to.be.greaterThan(0);
  });
});
