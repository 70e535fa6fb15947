import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import type { Ballot, NdbOp, NodeDbSnapshot } from '../../../../bus/messages/index.js';
import { applyChange, genesis } from '../../../../machines/membership/node-db.js';
import {
  committedDb,
  compareBallots,
  ndbSubordinateMachine,
  type AcceptorState,
  type NdbSubordinateEvent,
} from '../../../../machines/membership/node-db-subordinate.js';
import { Running, emittedBy } from '../../../helpers/machine-harness.js';
import { nodeAt } from '../../../fixtures/node-entries.js';

const db1 = genesis(['a', 'b', 'c'].map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 })));
const node = nodeAt;
const addX: NdbOp = { op: 'add', node: node('x', 10) };
const addY: NdbOp = { op: 'add', node: node('y', 11) };
const after = (db: NodeDbSnapshot, change: NdbOp): NodeDbSnapshot => {
  const r = applyChange(db, change);
  if (!r.ok) throw new Error(r.reason);
  return r.db;
};
const db2 = after(db1, addX);

const ballot = (round: number, by = 'a/1'): Ballot => ({ round, by });
const b1 = ballot(1);
const b2 = ballot(2, 'c/1');
const b3 = ballot(3);

const run = (acceptor?: AcceptorState, db = db1) => new Running(ndbSubordinateMachine, { self: 'b', db, ...(acceptor ? { acceptor } : {}) });
const prepare = (from: string, version: number, b: Ballot): NdbSubordinateEvent => ({ type: 'PREPARE', from, version, ballot: b });
const accept = (from: string, version: number, b: Ballot, change: NdbOp): NdbSubordinateEvent => ({
  type: 'ACCEPT',
  from,
  version,
  ballot: b,
  change,
});
type Answer = {
  to: string;
  kind: string;
  version: number;
  ballot: Ballot;
  ok: boolean;
  have: number;
  reason?: string;
  promised?: Ballot;
  accepted?: { ballot: Ballot; change: NdbOp };
};
const answers = (r: Running<typeof ndbSubordinateMachine>): Answer[] =>
  r.sends().map((s) => ({ to: s.to, kind: s.kind, ...(s.body as Omit<Answer, 'to' | 'kind'>) }));
const acceptorOf = (r: Running<typeof ndbSubordinateMachine>): AcceptorState => r.snapshot.context.acceptor;

describe('node-db subordinate (M2)', () => {
  describe('compareBallots', () => {
    it('orders by round first, then by the coordinator id and epoch', () => {
      expect(compareBallots(ballot(1, 'z/9'), ballot(2, 'a/1'))).to.equal(-1);
      expect(compareBallots(ballot(2, 'a/1'), ballot(1, 'z/9'))).to.equal(1);
      expect(compareBallots(ballot(2, 'a/1'), ballot(2, 'b/1'))).to.equal(-1);
      expect(compareBallots(ballot(2, 'a/2'), ballot(2, 'a/1'))).to.equal(1);
      expect(compareBallots(ballot(2, 'a/1'), ballot(2, 'a/1'))).to.equal(0);
    });
  });

  describe('PREPARE', () => {
    it('promises a first ballot for the next version, persisting the promise before answering', () => {
      const s = run();
      expect(s.value).to.equal('open');
      s.send(prepare('a', 2, b1));
      expect(s.value).to.equal('promised');
      expect(s.emitted.map((e) => e.type), 'persist comes before the answer').to.deep.equal(['persist', 'send']);
      expect(s.of('persist')).to.deep.equal([{ type: 'persist', acceptor: { version: 2, promised: b1 } }]);
      expect(answers(s)).to.deep.equal([{ to: 'a', kind: 'ndb.promise', version: 2, ballot: b1, ok: true, have: 1 }]);
      expect(acceptorOf(s)).to.deep.equal({ version: 2, promised: b1 });
    });

    it('promises each ballot higher than any it has promised, and repeats a promise for the same ballot', () => {
      const s = run();
      s.send(prepare('a', 2, b1)).send(prepare('c', 2, b2)).send(prepare('c', 2, b2)).send(prepare('a', 2, b3));
      expect(answers(s).map((a) => [a.to, a.ballot.round, a.ok])).to.deep.equal([
        ['a', 1, true],
        ['c', 2, true],
        ['c', 2, true],
        ['a', 3, true],
      ]);
      expect(s.of('persist').map((p) => (p.acceptor as AcceptorState).promised)).to.deep.equal([b1, b2, b2, b3]);
      expect(acceptorOf(s).promised).to.deep.equal(b3);
    });

    it("refuses a lower ballot as 'outbid', naming the ballot it promised, and persists nothing", () => {
      const s = run();
      s.send(prepare('c', 2, b2)).drain();
      s.send(prepare('a', 2, b1)).send(prepare('a', 2, ballot(2, 'a/1')));
      expect(s.emitted.map((e) => e.type)).to.deep.equal(['send', 'send']);
      expect(answers(s)).to.deep.equal([
        { to: 'a', kind: 'ndb.promise', version: 2, ballot: b1, ok: false, have: 1, reason: 'outbid', promised: b2 },
        { to: 'a', kind: 'ndb.promise', version: 2, ballot: ballot(2, 'a/1'), ok: false, have: 1, reason: 'outbid', promised: b2 },
      ]);
      expect(acceptorOf(s)).to.deep.equal({ version: 2, promised: b2 });
    });

    it('reports the change it accepted earlier in every later promise', () => {
      const s = run();
      s.send(prepare('a', 2, b1)).send(accept('a', 2, b1, addX)).drain();
      s.send(prepare('c', 2, b2));
      expect(s.value).to.equal('accepted');
      expect(s.of('persist')).to.deep.equal([
        { type: 'persist', acceptor: { version: 2, promised: b2, accepted: { ballot: b1, change: addX } } },
      ]);
      expect(answers(s)).to.deep.equal([
        { to: 'c', kind: 'ndb.promise', version: 2, ballot: b2, ok: true, have: 1, accepted: { ballot: b1, change: addX } },
      ]);
    });
  });

  describe('ACCEPT', () => {
    it('accepts under the ballot it promised, persisting before answering', () => {
      const s = run();
      s.send(prepare('a', 2, b1)).drain();
      s.send(accept('a', 2, b1, addX));
      expect(s.value).to.equal('accepted');
      expect(s.emitted.map((e) => e.type)).to.deep.equal(['persist', 'send']);
      const acceptor = { version: 2, promised: b1, accepted: { ballot: b1, change: addX } };
      expect(s.of('persist')).to.deep.equal([{ type: 'persist', acceptor }]);
      expect(answers(s)).to.deep.equal([{ to: 'a', kind: 'ndb.accepted', version: 2, ballot: b1, ok: true, have: 1 }]);
      expect(acceptorOf(s)).to.deep.equal(acceptor);
      expect(committedDb(s.snapshot), 'accepting is not committing').to.equal(db1);
    });

    it('accepts under a ballot higher than promised, or with nothing promised, raising its promise', () => {
      const s = run();
      s.send(accept('c', 2, b2, addY));
      expect(acceptorOf(s)).to.deep.equal({ version: 2, promised: b2, accepted: { ballot: b2, change: addY } });
      s.send(accept('a', 2, b3, addX));
      expect(acceptorOf(s)).to.deep.equal({ version: 2, promised: b3, accepted: { ballot: b3, change: addX } });
      expect(answers(s).map((a) => a.ok)).to.deep.equal([true, true]);
    });

    it("refuses an accept under a ballot lower than promised as 'outbid', keeping what it accepted", () => {
      const s = run();
      s.send(accept('a', 2, b1, addX)).send(prepare('c', 2, b2)).drain();
      s.send(accept('a', 2, b1, addY));
      expect(s.of('persist')).to.deep.equal([]);
      expect(answers(s)).to.deep.equal([
        { to: 'a', kind: 'ndb.accepted', version: 2, ballot: b1, ok: false, have: 1, reason: 'outbid', promised: b2 },
      ]);
      expect(acceptorOf(s)).to.deep.equal({ version: 2, promised: b2, accepted: { ballot: b1, change: addX } });
    });

    it('refuses a change that does not apply, with its error code, and accepts nothing', () => {
      const s = run();
      s.send(prepare('a', 2, b1)).drain();
      s.send(accept('a', 2, b1, { op: 'delete', id: 'nobody' })).send(accept('a', 2, b1, { op: 'add', node: node('a', 0) }));
      expect(s.value).to.equal('promised');
      expect(s.of('persist')).to.deep.equal([]);
      const [gone, taken] = answers(s);
      expect([gone.ok, taken.ok]).to.deep.equal([false, false]);
      expect(gone.reason).to.match(/^E_UNKNOWN_NODE: /);
      expect(taken.reason).to.match(/^E_EXISTS: /);
      expect(acceptorOf(s)).to.deep.equal({ version: 2, promised: b1 });
    });
  });

  describe('versions', () => {
    it("refuses a prepare or accept for a version it already has as 'stale', without asking for a snapshot", () => {
      const s = run();
      s.send(prepare('a', 1, b1)).send(prepare('a', 0, b1)).send(accept('a', 1, b1, addX));
      expect(answers(s).map((a) => [a.kind, a.version, a.ok, a.have, a.reason])).to.deep.equal([
        ['ndb.promise', 1, false, 1, 'stale'],
        ['ndb.promise', 0, false, 1, 'stale'],
        ['ndb.accepted', 1, false, 1, 'stale'],
      ]);
      expect(s.of('behind')).to.deep.equal([]);
      expect(s.of('persist')).to.deep.equal([]);
      expect(s.value).to.equal('open');
    });

    it("refuses a version beyond the next as 'behind', and asks for a snapshot", () => {
      const s = run();
      s.send(prepare('a', 3, b1)).send(accept('a', 4, b1, addX));
      expect(answers(s).map((a) => [a.kind, a.version, a.ok, a.have, a.reason])).to.deep.equal([
        ['ndb.promise', 3, false, 1, 'behind'],
        ['ndb.accepted', 4, false, 1, 'behind'],
      ]);
      expect(s.of('behind')).to.deep.equal([
        { type: 'behind', version: 3 },
        { type: 'behind', version: 4 },
      ]);
      expect(s.of('persist')).to.deep.equal([]);
      expect(acceptorOf(s)).to.deep.equal({ version: 2 });
    });
  });

  describe('COMMIT', () => {
    it('applies the change of the next version, emits it, then persists a fresh acceptor for the version after', () => {
      const s = run();
      s.send(prepare('a', 2, b3)).send(accept('a', 2, b3, addX)).drain();
      s.send({ type: 'COMMIT', version: 2, change: addX });
      expect(s.value).to.equal('open');
      expect(committedDb(s.snapshot)).to.deep.equal(db2);
      expect(s.emitted).to.deep.equal([
        { type: 'committed', db: db2 },
        { type: 'persist', acceptor: { version: 3 } },
      ]);
      // The promise for version 2 does not bind version 3.
      s.drain();
      s.send(prepare('c', 3, b1));
      expect(answers(s)).to.deep.equal([{ to: 'c', kind: 'ndb.promise', version: 3, ballot: b1, ok: true, have: 2 }]);
    });

    it('applies the chosen change even when it accepted another one (a higher ballot chose it)', () => {
      const s = run();
      s.send(accept('a', 2, b1, addX)).send({ type: 'COMMIT', version: 2, change: addY });
      expect(committedDb(s.snapshot)).to.deep.equal(after(db1, addY));
    });

    it('ignores a commit of a version it has, and asks for a snapshot on one further ahead', () => {
      const s = run();
      s.send(prepare('a', 2, b1)).drain();
      s.send({ type: 'COMMIT', version: 1, change: addX });
      expect(s.emitted).to.deep.equal([]);
      s.send({ type: 'COMMIT', version: 3, change: addY });
      expect(s.emitted).to.deep.equal([{ type: 'behind', version: 3 }]);
      expect(committedDb(s.snapshot)).to.equal(db1);
      expect(s.value).to.equal('promised');
      expect(acceptorOf(s)).to.deep.equal({ version: 2, promised: b1 });
    });
  });

  describe('ADOPT', () => {
    it('adopts only a newer snapshot, dropping promises for versions it decided', () => {
      const s = run();
      s.send(accept('a', 2, b3, addY)).drain();
      s.send({ type: 'ADOPT', db: { ...db1, nodes: [] } });
      expect(s.emitted).to.deep.equal([]);
      s.send({ type: 'ADOPT', db: db2 });
      expect(s.value).to.equal('open');
      expect(committedDb(s.snapshot)).to.equal(db2);
      expect(s.emitted).to.deep.equal([
        { type: 'adopted', db: db2 },
        { type: 'persist', acceptor: { version: 3 } },
      ]);
      s.drain();
      s.send({ type: 'ADOPT', db: db2 });
      expect(s.emitted).to.deep.equal([]);
    });
  });

  describe('restoring from the store', () => {
    it('resumes a persisted promise: lower ballots stay refused', () => {
      const s = run({ version: 2, promised: b2 });
      expect(s.value).to.equal('promised');
      expect(s.emitted, 'restoring says nothing').to.deep.equal([]);
      s.send(prepare('a', 2, b1)).send(accept('a', 2, b1, addX));
      expect(answers(s).map((a) => [a.ok, a.reason])).to.deep.equal([
        [false, 'outbid'],
        [false, 'outbid'],
      ]);
    });

    it('resumes a persisted accept: the next promise reports it', () => {
      const acceptor = { version: 2, promised: b2, accepted: { ballot: b1, change: addX } };
      const s = run(acceptor);
      expect(s.value).to.equal('accepted');
      s.send(prepare('a', 2, b3));
      expect(answers(s)[0]).to.deep.include({ ok: true, accepted: { ballot: b1, change: addX } });
    });

    it('ignores a persisted state for another version (saved before a commit or adoption it missed)', () => {
      for (const version of [1, 3]) {
        const s = run({ version, promised: b3, accepted: { ballot: b3, change: addY } });
        expect(s.value).to.equal('open');
        expect(acceptorOf(s)).to.deep.equal({ version: 2 });
        s.send(prepare('a', 2, b1));
        expect(answers(s)).to.deep.equal([{ to: 'a', kind: 'ndb.promise', version: 2, ballot: b1, ok: true, have: 1 }]);
      }
      const later = run({ version: 2, promised: b3 }, db2);
      expect(later.value, 'a db committed after the promise was saved').to.equal('open');
      expect(acceptorOf(later)).to.deep.equal({ version: 3 });
    });
  });

  it('works through the pure transition() too', () => {
    const [s0] = initialTransition(ndbSubordinateMachine, { self: 'b', db: db1 });
    const [s1, actions] = transition(ndbSubordinateMachine, s0, prepare('a', 2, b1));
    expect(s1.value).to.equal('promised');
    expect(emittedBy(actions)).to.deep.equal([
      { type: 'persist', acceptor: { version: 2, promised: b1 } },
      { type: 'send', to: 'a', kind: 'ndb.promise', body: { version: 2, ballot: b1, ok: true, have: 1 } },
    ]);
    const [s2] = transition(ndbSubordinateMachine, s1, prepare('c', 2, ballot(0, 'c/1')));
    expect(s2.context.acceptor.promised).to.deep.equal(b1);
  });
});
