import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import type { NdbOp, NodeEntry } from '../../../bus/messages.js';
import { shortIdOf } from '../../../machines/identity.js';
import { applyChange, genesis } from '../../../machines/node-db.js';
import {
  committedDb,
  heldLock,
  ndbSubordinateMachine,
  type NdbSubordinateEvent,
} from '../../../machines/node-db-subordinate.js';
import { Running, emittedBy } from '../../helpers/machine-harness.js';

const lockTimeoutMs = 5000;
const db1 = genesis(['a', 'b', 'c'].map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 })));
const node = (id: string, slot: number): NodeEntry => ({
  id,
  shortId: shortIdOf(0, slot),
  endpoint: `tcp://${id}:1`,
  anchor: false,
  votes: 0,
  group: 0,
});
const addX: NdbOp = { op: 'add', node: node('x', 10) };
const addY: NdbOp = { op: 'add', node: node('y', 11) };

const run = () => new Running(ndbSubordinateMachine, { self: 'b', db: db1, lockTimeoutMs });
const prepare = (from: string, version: number, change: NdbOp): NdbSubordinateEvent => ({ type: 'PREPARE', from, version, change });
type Reply = { to: string; version: number; ok: boolean; have: number; reason?: string };
const replies = (r: Running<typeof ndbSubordinateMachine>): Reply[] =>
  r.sends('ndb.prepared').map((s) => ({ to: s.to, ...(s.body as Omit<Reply, 'to'>) }));

describe('node-db subordinate (M2)', () => {
  describe('PREPARE', () => {
    it('locks for the next version and answers ok', () => {
      const s = run();
      s.send(prepare('a', 2, addX));
      expect(s.value).to.equal('locked');
      expect(heldLock(s.snapshot)).to.deep.equal({ coordinator: 'a', version: 2, change: addX });
      expect(replies(s)).to.deep.equal([{ to: 'a', version: 2, ok: true, have: 1 }]);
    });

    it('refuses any version but db.version + 1 as stale, saying what it has', () => {
      const s = run();
      s.send(prepare('a', 1, addX)).send(prepare('a', 3, addX));
      expect(s.value).to.equal('idle');
      expect(replies(s)).to.deep.equal([
        { to: 'a', version: 1, ok: false, have: 1, reason: 'stale' },
        { to: 'a', version: 3, ok: false, have: 1, reason: 'stale' },
      ]);
    });

    it('refuses a change that does not apply, with the reason', () => {
      const s = run();
      s.send(prepare('a', 2, { op: 'delete', id: 'nobody' }));
      expect(s.value).to.equal('idle');
      const [reply] = replies(s);
      expect(reply.ok).to.equal(false);
      expect(reply.reason).to.match(/^E_UNKNOWN_NODE: /);
    });

    it('refuses every other update as busy while locked', () => {
      const s = run();
      s.send(prepare('a', 2, addX)).send(prepare('c', 2, addY)).send(prepare('c', 3, addY)).send(prepare('a', 2, addY));
      expect(replies(s).slice(1)).to.deep.equal([
        { to: 'c', version: 2, ok: false, have: 1, reason: 'busy' },
        { to: 'c', version: 3, ok: false, have: 1, reason: 'busy' },
        { to: 'a', version: 2, ok: false, have: 1, reason: 'busy' },
      ]);
      expect(heldLock(s.snapshot)?.change).to.deep.equal(addX);
    });

    it('answers a repeated PREPARE of the update it holds again', () => {
      const s = run();
      s.send(prepare('a', 2, addX)).send(prepare('a', 2, addX));
      expect(replies(s).map((r) => r.ok)).to.deep.equal([true, true]);
    });
  });

  describe('COMMIT and ABORT', () => {
    it('commits the held change on COMMIT from the holder and hands the db to the actor', () => {
      const s = run();
      s.send(prepare('a', 2, addX)).send({ type: 'COMMIT', from: 'a', version: 2 });
      expect(s.value).to.equal('idle');
      const want = applyChange(db1, addX);
      expect(want.ok && committedDb(s.snapshot)).to.deep.equal(want.ok && want.db);
      expect(s.of('committed')).to.deep.equal([{ type: 'committed', db: committedDb(s.snapshot) }]);
    });

    it('ignores COMMIT and ABORT from another anchor or for another version', () => {
      const s = run();
      s.send(prepare('a', 2, addX));
      s.send({ type: 'COMMIT', from: 'c', version: 2 }).send({ type: 'COMMIT', from: 'a', version: 3 });
      s.send({ type: 'ABORT', from: 'c', version: 2 }).send({ type: 'ABORT', from: 'a', version: 1 });
      expect(s.value).to.equal('locked');
      expect(committedDb(s.snapshot)).to.equal(db1);
    });

    it('releases on ABORT from the holder, leaving the db as it was', () => {
      const s = run();
      s.send(prepare('a', 2, addX)).send({ type: 'ABORT', from: 'a', version: 2 });
      expect(s.value).to.equal('idle');
      expect(committedDb(s.snapshot)).to.equal(db1);
      expect(s.of('released')).to.deep.equal([{ type: 'released', version: 2, why: 'abort' }]);
      s.send(prepare('c', 2, addY));
      expect(heldLock(s.snapshot)?.coordinator).to.equal('c');
    });

    it('ignores a late COMMIT once idle', () => {
      const s = run();
      s.send({ type: 'COMMIT', from: 'a', version: 2 });
      expect(committedDb(s.snapshot)).to.equal(db1);
      expect(s.emitted).to.deep.equal([]);
    });
  });

  describe('lock timeout', () => {
    it('releases a lock its coordinator never ends, after lockTimeoutMs', () => {
      const s = run();
      s.send(prepare('a', 2, addX));
      s.clock.advance(lockTimeoutMs - 1);
      expect(s.value).to.equal('locked');
      s.clock.advance(1);
      expect(s.value).to.equal('idle');
      expect(s.of('released')).to.deep.equal([{ type: 'released', version: 2, why: 'timeout' }]);
      s.send({ type: 'COMMIT', from: 'a', version: 2 });
      expect(committedDb(s.snapshot), 'a commit after the timeout is not taken').to.equal(db1);
      s.send(prepare('c', 2, addY));
      expect(heldLock(s.snapshot)?.coordinator).to.equal('c');
    });
  });

  describe('local coordination', () => {
    it('locks for itself on BEGIN_LOCAL and commits on END_LOCAL', () => {
      const s = run();
      s.send({ type: 'BEGIN_LOCAL', version: 2, change: addX });
      expect(s.of('begin')).to.deep.equal([{ type: 'begin', ok: true }]);
      expect(heldLock(s.snapshot)?.coordinator).to.equal('b');
      s.send(prepare('a', 2, addY));
      expect(replies(s)).to.deep.equal([{ to: 'a', version: 2, ok: false, have: 1, reason: 'busy' }]);
      s.send({ type: 'END_LOCAL', commit: true });
      expect(committedDb(s.snapshot).version).to.equal(2);
      expect(s.of('committed')).to.have.length(1);
    });

    it('refuses BEGIN_LOCAL while locked, or for a wrong version or change', () => {
      const s = run();
      s.send({ type: 'BEGIN_LOCAL', version: 3, change: addX });
      s.send({ type: 'BEGIN_LOCAL', version: 2, change: { op: 'delete', id: 'zz' } });
      s.send(prepare('a', 2, addX)).send({ type: 'BEGIN_LOCAL', version: 2, change: addY });
      const answers = s.of('begin');
      expect(answers.map((b) => b.ok)).to.deep.equal([false, false, false]);
      expect(answers[0].reason).to.equal('stale');
      expect(answers[1].reason).to.match(/^E_UNKNOWN_NODE/);
      expect(answers[2].reason).to.equal('busy');
    });

    it('END_LOCAL without commit releases; END_LOCAL does not touch a lock held for another', () => {
      const s = run();
      s.send({ type: 'BEGIN_LOCAL', version: 2, change: addX }).send({ type: 'END_LOCAL', commit: false });
      expect(s.value).to.equal('idle');
      expect(committedDb(s.snapshot)).to.equal(db1);
      s.send(prepare('a', 2, addX)).send({ type: 'END_LOCAL', commit: true });
      expect(heldLock(s.snapshot)?.coordinator).to.equal('a');
      expect(committedDb(s.snapshot)).to.equal(db1);
    });
  });

  describe('ADOPT', () => {
    const r = applyChange(db1, addX);
    const db2 = r.ok ? r.db : db1;

    it('adopts only a snapshot of a higher version', () => {
      const s = run();
      s.send({ type: 'ADOPT', db: { ...db1, nodes: [] } });
      expect(committedDb(s.snapshot)).to.equal(db1);
      s.send({ type: 'ADOPT', db: db2 });
      expect(committedDb(s.snapshot)).to.equal(db2);
      expect(s.of('adopted')).to.deep.equal([{ type: 'adopted', db: db2 }]);
    });

    it('does not adopt while locked', () => {
      const s = run();
      s.send(prepare('a', 2, addY)).send({ type: 'ADOPT', db: db2 });
      expect(committedDb(s.snapshot)).to.equal(db1);
    });
  });

  it('works through the pure transition() too', () => {
    const [s0] = initialTransition(ndbSubordinateMachine, { self: 'b', db: db1, lockTimeoutMs });
    const [s1, actions] = transition(ndbSubordinateMachine, s0, prepare('a', 2, addX));
    expect(s1.value).to.equal('locked');
    expect(emittedBy(actions)).to.deep.equal([
      { type: 'send', to: 'a', kind: 'ndb.prepared', body: { version: 2, ok: true, have: 1 } },
    ]);
  });
});
