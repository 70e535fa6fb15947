import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import type { NdbOp, NodeDbSnapshot, NodeEntry } from '../../../bus/messages.js';
import { shortIdOf } from '../../../machines/identity.js';
import { genesis, sameContents } from '../../../machines/node-db.js';
import {
  ndbCoordinatorMachine,
  refusalOutcome,
  type NdbCoordinatorInput,
  type NdbUpdateOutput,
} from '../../../machines/node-db-coordinator.js';
import { committedDb, ndbSubordinateMachine } from '../../../machines/node-db-subordinate.js';
import type { SendOut } from '../../../machines/outbox.js';
import { SimClock } from '../../../runtime/clock.js';
import { SeededRandom } from '../../../runtime/random.js';
import { Running, emittedBy } from '../../helpers/machine-harness.js';

const timeoutMs = 200;
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

const input = (over: Partial<NdbCoordinatorInput> = {}): NdbCoordinatorInput => ({
  self: 'a',
  version: 2,
  change: addX,
  anchors: ['a', 'b', 'c'],
  votes: { a: 1, b: 1, c: 1 },
  totalVotes: 3,
  quorate: true,
  timeoutMs,
  ...over,
});

const run = (over: Partial<NdbCoordinatorInput> = {}) => new Running(ndbCoordinatorMachine, input(over));
const prepared = (from: string, ok: boolean, have = 1, reason?: string, version = 2) => ({
  type: 'PREPARED' as const,
  from,
  version,
  ok,
  have,
  ...(reason === undefined ? {} : { reason }),
});
const outputOf = (r: Running<typeof ndbCoordinatorMachine>): NdbUpdateOutput | undefined => r.snapshot.output;
const targets = (r: Running<typeof ndbCoordinatorMachine>, kind: string) => r.sends(kind).map((s) => s.to);

describe('node-db coordinator (M2)', () => {
  describe('first checks', () => {
    it('ends at once with E_NO_QUORUM without quorum, before looking at the anchor list', () => {
      for (const anchors of [['a', 'b'], []]) {
        const c = run({ quorate: false, anchors });
        expect(c.snapshot.status).to.equal('done');
        expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_NO_QUORUM' });
        expect(c.sends()).to.deep.equal([]);
      }
    });

    it('ends at once with E_NOT_ANCHOR for an empty anchor list, or one without the coordinator', () => {
      for (const anchors of [[], ['b', 'c']]) {
        const c = run({ anchors });
        expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_NOT_ANCHOR' });
        expect(c.sends()).to.deep.equal([]);
        expect(c.of('abort')).to.deep.equal([{ type: 'abort', version: 2, code: 'E_NOT_ANCHOR' }]);
      }
    });

    it('a single anchor commits alone', () => {
      const c = run({ anchors: ['a'], votes: { a: 1 }, totalVotes: 1 });
      expect(c.value).to.equal('committed');
      expect(outputOf(c)).to.deep.equal({ ok: true, version: 2, change: addX });
      expect(c.of('commit')).to.deep.equal([{ type: 'commit', version: 2, change: addX }]);
      expect(c.sends()).to.deep.equal([]);
    });
  });

  describe('two-phase update', () => {
    it('prepares every other anchor, then commits once all locked with a majority', () => {
      const c = run();
      expect(c.sends('ndb.prepare')).to.deep.equal(
        ['b', 'c'].map((to) => ({ type: 'send', to, kind: 'ndb.prepare', body: { version: 2, change: addX } })),
      );
      c.send(prepared('b', true));
      expect(c.value).to.equal('preparing');
      expect(targets(c, 'ndb.commit')).to.deep.equal([]);
      c.send(prepared('c', true));
      expect(c.value).to.equal('committed');
      expect(targets(c, 'ndb.commit')).to.deep.equal(['b', 'c']);
      expect(c.of('commit')).to.have.length(1);
      expect(outputOf(c)?.ok).to.equal(true);
    });

    it('ignores replies for another version, from strangers, and repeats', () => {
      const c = run();
      c.send(prepared('b', true, 1, undefined, 3)).send(prepared('z', false, 1, 'busy')).send(prepared('b', true));
      c.send(prepared('b', false, 1, 'busy'));
      expect(c.value).to.equal('preparing');
      expect(c.snapshot.context.acked).to.deep.equal(['b']);
    });

    it('does not commit when the anchors that locked hold no majority of the votes', () => {
      const c = run({ anchors: ['a', 'b'], votes: { a: 1, b: 1, c: 1, d: 1 }, totalVotes: 4 });
      c.send(prepared('b', true));
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_NO_QUORUM' });
      expect(targets(c, 'ndb.abort')).to.deep.equal(['b']);
      expect(targets(c, 'ndb.commit')).to.deep.equal([]);
    });
  });

  describe('failures', () => {
    it('aborts on a busy refusal, telling every anchor but the refuser', () => {
      const c = run({ anchors: ['a', 'b', 'c', 'd'], votes: { a: 1, b: 1, c: 1, d: 1 }, totalVotes: 4 });
      c.send(prepared('b', true)).send(prepared('c', false, 1, 'busy'));
      expect(c.value).to.equal('failed');
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_BUSY', have: 1 });
      expect(targets(c, 'ndb.abort')).to.deep.equal(['b', 'd']);
      expect(c.of('abort')).to.deep.equal([{ type: 'abort', version: 2, code: 'E_BUSY' }]);
      expect(c.of('commit')).to.deep.equal([]);
    });

    it('reports E_STALE with the version a subordinate has when this coordinator is behind', () => {
      const c = run();
      c.send(prepared('b', false, 2, 'stale'));
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_STALE', have: 2 });
    });

    it('reports E_LAGGING when a subordinate is further behind', () => {
      const c = run({ version: 5 });
      c.send(prepared('c', false, 2, 'stale', 5));
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_LAGGING', have: 2 });
    });

    it('passes on the code of a change that does not apply', () => {
      const c = run();
      c.send(prepared('b', false, 1, 'E_EXISTS: node x is already in the database'));
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_EXISTS' });
      expect(refusalOutcome(2, 1, 'no idea')).to.deep.include({ code: 'E_REJECTED', reason: 'no idea' });
    });

    it('times out with E_TIMEOUT and aborts every anchor that did not refuse', () => {
      const c = run();
      c.send(prepared('b', true));
      c.clock.advance(timeoutMs - 1);
      expect(c.value).to.equal('preparing');
      c.clock.advance(1);
      expect(outputOf(c)).to.deep.include({ ok: false, code: 'E_TIMEOUT' });
      expect(targets(c, 'ndb.abort')).to.deep.equal(['b', 'c']);
    });
  });

  it('works through the pure transition() too', () => {
    const [s0, a0] = initialTransition(ndbCoordinatorMachine, input());
    expect(emittedBy(a0).map((e) => e.to)).to.deep.equal(['b', 'c']);
    const [s1] = transition(ndbCoordinatorMachine, s0, prepared('b', true));
    const [s2, a2] = transition(ndbCoordinatorMachine, s1, prepared('c', true));
    expect(s2.status).to.equal('done');
    expect(s2.output).to.deep.equal({ ok: true, version: 2, change: addX });
    expect(emittedBy(a2).map((e) => e.type)).to.deep.equal(['send', 'send', 'commit']);
  });
});

/**
 * Three anchors' subordinates and any number of coordinators, wired the way
 * the node actor wires them (BEGIN_LOCAL before a coordinator starts,
 * END_LOCAL on its commit or abort), over a network whose delivery order a
 * seed decides. Every message arrives within `delayMsMax` or is lost, so the
 * subordinate's timing proviso (lock outlives coordinator + delay) holds.
 */
class NdbWorld {
  readonly clock = new SimClock();
  readonly subs = new Map<string, Running<typeof ndbSubordinateMachine>>();
  readonly coords = new Map<string, Running<typeof ndbCoordinatorMachine>>();
  readonly outcomes = new Map<string, NdbUpdateOutput>();
  private pending: { from: string; send: SendOut; deadline: number }[] = [];
  private readonly delayMsMax = 50;
  readonly lockTimeoutMs = 1000;

  constructor(
    readonly anchors: string[],
    db: NodeDbSnapshot,
    private readonly rng: SeededRandom,
    private readonly lossRate: number,
  ) {
    for (const id of anchors) {
      this.subs.set(id, new Running(ndbSubordinateMachine, { self: id, db, lockTimeoutMs: this.lockTimeoutMs }, this.clock));
    }
  }

  /** What the node actor does to start an update of `version` (fixed when the update was asked for). */
  begin(self: string, change: NdbOp, version = 2): void {
    const sub = this.subs.get(self)!;
    sub.send({ type: 'BEGIN_LOCAL', version, change });
    const answer = sub.drain().find((e) => e.type === 'begin');
    if (!answer?.ok) {
      const reason = String(answer?.reason);
      this.outcomes.set(self, { ok: false, code: reason === 'stale' ? 'E_STALE' : 'E_BUSY', reason });
      return;
    }
    const votes = Object.fromEntries(this.anchors.map((id) => [id, 1]));
    this.coords.set(
      self,
      new Running(
        ndbCoordinatorMachine,
        { self, version, change, anchors: this.anchors, votes, totalVotes: this.anchors.length, quorate: true, timeoutMs },
        this.clock,
      ),
    );
    this.flush();
  }

  /** Moves what every machine emitted onto the network or into its local subordinate. */
  flush(): void {
    for (const [id, sub] of this.subs) {
      for (const e of sub.drain()) if (e.type === 'send') this.post(id, e as unknown as SendOut);
    }
    for (const [id, c] of this.coords) {
      for (const e of c.drain()) {
        if (e.type === 'send') this.post(id, e as unknown as SendOut);
        if (e.type === 'commit') this.subs.get(id)!.send({ type: 'END_LOCAL', commit: true });
        if (e.type === 'abort') this.subs.get(id)!.send({ type: 'END_LOCAL', commit: false });
      }
      if (c.snapshot.status === 'done' && !this.outcomes.has(id)) this.outcomes.set(id, c.snapshot.output!);
    }
    for (const [id, sub] of this.subs) {
      for (const e of sub.drain()) if (e.type === 'send') this.post(id, e as unknown as SendOut);
    }
  }

  private post(from: string, send: SendOut): void {
    if (this.rng.next() < this.lossRate) return;
    this.pending.push({ from, send, deadline: this.clock.now() + this.delayMsMax });
  }

  private deliver(i: number): void {
    const [{ from, send }] = this.pending.splice(i, 1);
    const body = send.body as { version: number; change: NdbOp; ok: boolean; have: number; reason?: string };
    if (send.kind === 'ndb.prepare') this.subs.get(send.to)!.send({ type: 'PREPARE', from, version: body.version, change: body.change });
    if (send.kind === 'ndb.commit') this.subs.get(send.to)!.send({ type: 'COMMIT', from, version: body.version });
    if (send.kind === 'ndb.abort') this.subs.get(send.to)!.send({ type: 'ABORT', from, version: body.version });
    if (send.kind === 'ndb.prepared') {
      this.coords.get(send.to)?.send({ type: 'PREPARED', from, version: body.version, ok: body.ok, have: body.have, ...(body.reason ? { reason: body.reason } : {}) });
    }
    this.flush();
  }

  /** Delivers everything in flight, in seeded order, without letting time pass. */
  deliverAll(): void {
    while (this.pending.length > 0) this.deliver(this.rng.int(this.pending.length));
  }

  /** One step: deliver a pending message (seeded choice), or let time pass without breaking the delay bound. */
  step(): void {
    if (this.pending.length > 0 && this.rng.next() < 0.8) {
      this.deliver(this.rng.int(this.pending.length));
      return;
    }
    const target = this.clock.now() + 1 + this.rng.int(30);
    for (;;) {
      const due = this.pending.findIndex((p) => p.deadline < target);
      if (due < 0) break;
      this.deliver(due);
    }
    this.clock.advance(target - this.clock.now());
    this.flush();
  }

  quiet(): boolean {
    return this.pending.length === 0 && [...this.subs.values()].every((s) => s.value === 'idle');
  }

  /** No two anchors hold different contents under one version. */
  checkAgreement(): void {
    const byVersion = new Map<number, NodeDbSnapshot>();
    for (const [id, sub] of this.subs) {
      const db = committedDb(sub.snapshot);
      const other = byVersion.get(db.version);
      if (other) expect(sameContents(db, other), `${id} differs at version ${db.version}`).to.equal(true);
      else byVersion.set(db.version, db);
    }
  }
}

describe('node-db updates with concurrent coordinators (M2)', () => {
  const anchors = ['a', 'b', 'c'];
  const db1 = genesis(anchors.map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 })));
  const seeds = Array.from({ length: 60 }, (_, i) => i + 1);
  const tally = { committed: 0, failed: 0 };

  for (const seed of seeds) {
    const lossRate = seed % 3 === 0 ? 0.1 : 0;
    it(`two coordinators of version 2: at most one commits, and anchors agree (seed ${seed}${lossRate ? ', lossy' : ''})`, () => {
      try {
        const rng = new SeededRandom(seed);
        const world = new NdbWorld(anchors, db1, rng.derive('world'), lossRate);
        const starts = rng.derive('starts');
        const order = starts.int(2) === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const);
        world.begin(order[0], order[0] === 'a' ? addX : addY);
        // The second coordinator starts after a seeded number of steps: before, during or after the first.
        const gap = starts.int(12);
        for (let i = 0; i < gap; i++) world.step();
        world.begin(order[1], order[1] === 'a' ? addX : addY);
        for (let i = 0; i < 2000 && !(world.outcomes.size === 2 && world.quiet()); i++) {
          world.step();
          world.checkAgreement();
        }
        world.clock.advance(world.lockTimeoutMs);
        world.checkAgreement();

        const outcomes = [...world.outcomes.values()];
        expect(outcomes).to.have.length(2);
        const wins = outcomes.filter((o) => o.ok);
        expect(wins.length, JSON.stringify(outcomes)).to.be.at.most(1);
        const winner = wins[0];
        for (const [id, sub] of world.subs) {
          const db = committedDb(sub.snapshot);
          expect(db.version, id).to.be.at.most(2);
          if (db.version === 2 && winner?.ok && winner.change.op === 'add') {
            expect(db.nodes.map((n) => n.id), `${id} holds the winning change`).to.include(winner.change.node.id);
          }
          expect(sub.value, `${id} still locked`).to.equal('idle');
        }
        if (wins.length === 0) for (const sub of world.subs.values()) expect(committedDb(sub.snapshot).version).to.equal(1);
        tally.committed += wins.length;
        tally.failed += outcomes.length - wins.length;
      } catch (err) {
        (err as Error).message = `replay with seed ${seed}: ${(err as Error).message}`;
        throw err;
      }
    });
  }

  it('exercised both outcomes across the seeds', () => {
    expect(tally.committed, 'some seed commits').to.be.greaterThan(0);
    expect(tally.failed, 'some seed refuses').to.be.greaterThan(0);
  });

  it('a coordinator that dies after PREPARE blocks updates only until the locks time out', () => {
    const world = new NdbWorld(anchors, db1, new SeededRandom(7), 0);
    world.begin('a', addX);
    // Deliver the prepares, then the coordinator dies: its answers go nowhere.
    world.coords.delete('a');
    world.deliverAll();
    expect([...world.subs.values()].map((s) => s.value)).to.deep.equal(['locked', 'locked', 'locked']);
    world.begin('b', addY);
    expect(world.outcomes.get('b')).to.deep.include({ ok: false, code: 'E_BUSY' });
    world.clock.advance(world.lockTimeoutMs - 1);
    expect(world.subs.get('c')!.value, 'still locked just before the timeout').to.equal('locked');
    world.clock.advance(1);
    world.outcomes.clear();
    world.begin('b', addY);
    for (let i = 0; i < 200 && !world.outcomes.has('b'); i++) world.step();
    expect(world.outcomes.get('b')).to.deep.equal({ ok: true, version: 2, change: addY });
    for (let i = 0; i < 200 && !world.quiet(); i++) world.step();
    world.checkAgreement();
    for (const id of ['b', 'c']) expect(committedDb(world.subs.get(id)!.snapshot).version).to.equal(2);
  });
});
