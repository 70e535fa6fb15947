import { expect } from 'chai';
import type { Identity, NodeDbSnapshot } from '../../../../bus/messages/index.js';
import { emptyDb, genesis } from '../../../../machines/membership/node-db.js';
import {
  founders,
  genesisPlan,
  machineName,
  ndbBootstrapMachine,
  type NdbBootstrapInput,
} from '../../../../machines/membership/node-db-bootstrap.js';
import { shortIdOf } from '../../../../machines/membership/identity.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { Running } from '../../../helpers/machine-harness.js';
import { A, B, C, db1, N, seeds, who } from '../../../fixtures/bootstrap-cluster.js';

const PERIOD = 100;
/** db1 with `x` added at the next slot of group 0. */
const withNode = (db: NodeDbSnapshot, x: Identity): NodeDbSnapshot => ({
  version: db.version + 1,
  nodes: [...db.nodes, { ...x, shortId: shortIdOf(0, db.nodes.length) }],
});

const boot = (over: Partial<NdbBootstrapInput> = {}, clock = new SimClock()) =>
  new Running(ndbBootstrapMachine, { self: A, seeds, db: emptyDb(), periodMs: PERIOD, ...over }, clock);
type Run = ReturnType<typeof boot>;
const greeted = (r: Run) => r.of('greet').map((g) => g.endpoint);
const joinsTo = (r: Run) => r.sends('ndb.join').map((s) => s.to);
const types = (r: Run) => r.emitted.map((e) => e.type);
/** The next period's turn, and what it emitted alone. */
const nextTurn = (r: Run) => {
  r.drain();
  r.clock.advance(PERIOD);
  return r;
};

describe('node-db bootstrap (M2)', () => {
  describe('greeting: no database yet', () => {
    it('greets every configured anchor endpoint but its own, at start and once a period', () => {
      const r = boot();
      expect(r.value).to.deep.equal({ running: 'greeting' });
      expect(greeted(r)).to.deep.equal([B.endpoint, C.endpoint]);
      expect(r.of('greet')[0].body).to.deep.equal({ identity: A, dbVersion: 0 });
      expect(types(r)).to.deep.equal(['greet', 'greet', 'period']);
      r.drain();
      r.clock.advance(PERIOD - 1);
      expect(r.emitted).to.deep.equal([]);
      r.clock.advance(1);
      expect(greeted(r)).to.deep.equal([B.endpoint, C.endpoint]);
      expect(r.clock.pending(), 'one timer: the next period').to.equal(1);
    });

    it('times the next period before a turn\'s messages leave', () => {
      const order: string[] = [];
      class Watched extends SimClock {
        override setTimeout(fn: () => void, ms: number): unknown {
          order.push(`timer ${ms}`);
          return super.setTimeout(fn, ms);
        }
      }
      const r = boot({}, new Watched());
      r.actor.on('*', (e) => order.push(e.type));
      expect(order).to.deep.equal([`timer ${PERIOD}`]);
      order.length = 0;
      r.clock.advance(PERIOD);
      expect(order).to.deep.equal([`timer ${PERIOD}`, 'greet', 'greet', 'period']);
    });

    it('greets all the configured endpoints when it is not one of them', () => {
      expect(greeted(boot({ self: N }))).to.deep.equal(seeds);
    });

    it('keeps only configured endpoints\' answers, and stops its timer when stopped', () => {
      const r = boot();
      r.send({ type: 'WELCOME', identity: who('x') });
      r.send({ type: 'WELCOME', identity: B });
      expect(r.snapshot.context.greeted).to.deep.equal({ [B.endpoint]: B });
      r.actor.stop();
      expect(r.clock.pending()).to.equal(0);
    });
  });

  describe('forming: every configured anchor answered', () => {
    it('forms only once every configured anchor has answered, from exactly those, in configured order', () => {
      const r = boot({ seeds: [C.endpoint, A.endpoint, B.endpoint] });
      r.send({ type: 'WELCOME', identity: B });
      expect(founders(r.snapshot)).to.equal(undefined);
      expect(r.value).to.deep.equal({ running: 'greeting' });
      r.send({ type: 'WELCOME', identity: C });
      expect(r.value).to.deep.equal({ running: 'forming' });
      expect(founders(r.snapshot)).to.deep.equal([C, A, B]);
      // Still unformed at the next turn: it greets on, and stays forming.
      expect(greeted(nextTurn(r))).to.deep.equal([C.endpoint, B.endpoint]);
      expect(r.value).to.deep.equal({ running: 'forming' });
      r.send({ type: 'DB', db: db1 });
      expect(r.value).to.deep.equal({ running: 'member' });
      expect(founders(r.snapshot)).to.equal(undefined);
    });

    it('a lone configured anchor has heard every configured anchor at its first turn: forming at once, from itself, greeting no one', () => {
      const r = boot({ seeds: [A.endpoint] });
      expect(r.value).to.deep.equal({ running: 'forming' });
      expect(founders(r.snapshot)).to.deep.equal([A]);
      expect(types(r)).to.deep.equal(['period']);
      r.send({ type: 'DB', db: genesis([A]) });
      expect(r.value).to.deep.equal({ running: 'member' });
      expect(founders(r.snapshot)).to.equal(undefined);
    });

    it('takes the latest answer of an endpoint: one that answers as a non-anchor undoes forming', () => {
      const r = boot();
      r.send({ type: 'WELCOME', identity: B }).send({ type: 'WELCOME', identity: C });
      expect(r.value).to.deep.equal({ running: 'forming' });
      r.send({ type: 'WELCOME', identity: { ...C, anchor: false } });
      expect(r.value).to.deep.equal({ running: 'greeting' });
      expect(founders(r.snapshot)).to.equal(undefined);
    });

    it('says which configured endpoint answers as a non-anchor, at every answer that reaches it, and never forms', () => {
      const r = boot();
      r.send({ type: 'WELCOME', identity: { ...C, anchor: false } });
      expect(r.of('misconfigured'), 'b, before it, has not answered').to.deep.equal([]);
      r.send({ type: 'WELCOME', identity: B });
      r.send({ type: 'WELCOME', identity: B });
      expect(r.of('misconfigured')).to.deep.equal([
        { type: 'misconfigured', endpoint: C.endpoint },
        { type: 'misconfigured', endpoint: C.endpoint },
      ]);
      expect(founders(r.snapshot)).to.equal(undefined);
    });

    it('never forms as a non-anchor, nor as an anchor that is not configured', () => {
      for (const self of [N, who('d')]) {
        const r = boot({ self });
        r.send({ type: 'WELCOME', identity: A }).send({ type: 'WELCOME', identity: B }).send({ type: 'WELCOME', identity: C });
        expect(r.value, self.id).to.deep.equal({ running: 'greeting' });
        expect(founders(r.snapshot), self.id).to.equal(undefined);
      }
    });

    it('reads the plan as every anchor does: the first endpoint not answered, or not an anchor, decides', () => {
      const answers = { [B.endpoint]: B, [C.endpoint]: { ...C, anchor: false } };
      expect(genesisPlan(seeds, A, {})).to.deep.equal({ kind: 'wait' });
      expect(genesisPlan(seeds, A, answers)).to.deep.equal({ kind: 'misconfigured', endpoint: C.endpoint });
      expect(genesisPlan(seeds, A, { [B.endpoint]: B, [C.endpoint]: C })).to.deep.equal({ kind: 'form', anchors: [A, B, C] });
      expect(genesisPlan([B.endpoint, C.endpoint], A, { [B.endpoint]: B, [C.endpoint]: C })).to.deep.equal({ kind: 'not_founder' });
    });
  });

  describe('joining: a database without this node\'s current entry', () => {
    it('asks each anchor in turn, one a period, and does not greet while there are anchors to ask', () => {
      const r = boot({ self: N, db: db1 });
      expect(r.value).to.deep.equal({ running: 'joining' });
      const to = [joinsTo(r)];
      for (let i = 0; i < 4; i++) to.push(joinsTo(nextTurn(r)));
      expect(to).to.deep.equal([['a'], ['b'], ['c'], ['a'], ['b']]);
      expect(r.sends('ndb.join')[0].body).to.deep.equal({ identity: N });
      expect(greeted(r)).to.deep.equal([]);
    });

    it('a node that was sent the database while greeting asks to join at its next turn', () => {
      const r = boot({ self: N });
      r.drain();
      r.send({ type: 'DB', db: db1 });
      expect(r.emitted, 'nothing leaves between turns').to.deep.equal([]);
      expect(r.value).to.deep.equal({ running: 'joining' });
      r.clock.advance(PERIOD);
      expect(types(r)).to.deep.equal(['send', 'period']);
      expect(joinsTo(r)).to.deep.equal(['a']);
    });

    it('an anchor listed with a stale entry coordinates its own change, and greets while no other anchor is listed', () => {
      const restarted = { ...A, pid: 8 };
      const crowded = boot({ self: restarted, db: db1 });
      expect(types(crowded)).to.deep.equal(['change_own_entry', 'period']);
      const alone = boot({ self: restarted, db: genesis([A]) });
      expect(types(alone)).to.deep.equal(['greet', 'greet', 'change_own_entry', 'period']);
      expect(greeted(alone)).to.deep.equal([B.endpoint, C.endpoint]);
      expect(alone.of('greet')[0].body).to.deep.equal({ identity: restarted, dbVersion: 1 });
    });

    it('an anchor not listed asks like any node; with no anchor listed at all, a node greets and asks no one', () => {
      const unlisted = boot({ self: B, db: genesis([A]) });
      expect(types(unlisted)).to.deep.equal(['send', 'period']);
      expect(joinsTo(unlisted)).to.deep.equal(['a']);
      const empty = boot({ self: N, db: { version: 3, nodes: [] } });
      expect(types(empty)).to.deep.equal(['greet', 'greet', 'greet', 'period']);
      expect(types(nextTurn(empty))).to.deep.equal(['greet', 'greet', 'greet', 'period']);
    });
  });

  describe('member: its entry is current', () => {
    it('asks nothing, and joins again when its entry goes stale', () => {
      const r = boot({ self: N, db: withNode(db1, N) });
      expect(r.value).to.deep.equal({ running: 'member' });
      expect(types(r)).to.deep.equal(['period']);
      expect(types(nextTurn(r))).to.deep.equal(['period']);
      r.send({ type: 'DB', db: withNode(db1, { ...N, pid: 99 }) });
      expect(r.value).to.deep.equal({ running: 'joining' });
      expect(joinsTo(nextTurn(r))).to.deep.equal(['a']);
      r.send({ type: 'DB', db: withNode(db1, N) });
      expect(r.value).to.deep.equal({ running: 'member' });
      expect(r.of('removed')).to.deep.equal([]);
    });

    it('takes its turns on the period, from start', () => {
      const clock = new SimClock(5_000);
      const r = boot({ self: N, db: withNode(db1, N) }, clock);
      const at: number[] = [];
      r.actor.on('period', () => at.push(clock.now()));
      clock.advance(3 * PERIOD);
      expect(at).to.deep.equal([5_000 + PERIOD, 5_000 + 2 * PERIOD, 5_000 + 3 * PERIOD]);
      expect(r.snapshot.machine.id).to.equal(machineName);
    });
  });
  describe('removed: a newer database no longer holds this incarnation', () => {
    /** Version 9 of the database, without `n`. */
    const without = { ...db1, version: 9 };

    it('says so once, with the version, and asks nothing more: no join, no greeting, no more turns', () => {
      const r = boot({ self: N, db: withNode(db1, N) });
      r.drain();
      r.send({ type: 'DB', db: without });
      expect(r.value).to.equal('removed');
      expect(r.emitted).to.deep.equal([{ type: 'removed', version: 9 }]);
      expect(r.snapshot.status).to.equal('done');
      expect(r.clock.pending(), 'no period is timed any more').to.equal(0);
      r.clock.advance(10 * PERIOD);
      r.send({ type: 'DB', db: { ...db1, version: 10 } }).send({ type: 'WELCOME', identity: B });
      expect(r.emitted).to.deep.equal([{ type: 'removed', version: 9 }]);
    });

    it('counts a membership reached while running: joined, then dropped', () => {
      const r = boot({ self: N, db: db1 });
      expect(r.value).to.deep.equal({ running: 'joining' });
      r.send({ type: 'DB', db: withNode(db1, N) });
      expect(r.snapshot.context.memberAt).to.equal(2);
      r.drain();
      r.send({ type: 'DB', db: without });
      expect(r.of('removed')).to.deep.equal([{ type: 'removed', version: 9 }]);
    });

    it('an anchor removed after it joined stops as well', () => {
      const r = boot({ self: A, db: db1 });
      expect(r.value).to.deep.equal({ running: 'member' });
      r.send({ type: 'DB', db: { version: 4, nodes: db1.nodes.filter((n) => n.id !== A.id) } });
      expect(r.of('removed')).to.deep.equal([{ type: 'removed', version: 4 }]);
    });

    it('a node never a member in this incarnation asks to join, whatever the database lacks: new, or restarted after it was removed', () => {
      const fresh = boot({ self: N, db: db1 });
      fresh.send({ type: 'DB', db: without });
      expect(fresh.value).to.deep.equal({ running: 'joining' });
      expect(joinsTo(nextTurn(fresh))).to.deep.equal(['b']);
      // A restart brings a new pid and epoch: the stored entry is the last incarnation's, not this one's.
      const restarted = boot({ self: { ...N, pid: 8 }, db: withNode(db1, N) });
      expect(restarted.value).to.deep.equal({ running: 'joining' });
      restarted.send({ type: 'DB', db: without });
      expect(restarted.value).to.deep.equal({ running: 'joining' });
      expect(restarted.of('removed')).to.deep.equal([]);
    });

    it('is not removed by a database older than the one that held it, nor by one that holds a stale entry', () => {
      const r = boot({ self: N, db: withNode(db1, N) });
      r.send({ type: 'DB', db: db1 });
      expect(r.value, 'version 1 is older than 2').to.deep.equal({ running: 'joining' });
      r.send({ type: 'DB', db: { ...withNode(db1, { ...N, pid: 99 }), version: 3 } });
      expect(r.value).to.deep.equal({ running: 'joining' });
      expect(r.of('removed')).to.deep.equal([]);
    });
  });
});
