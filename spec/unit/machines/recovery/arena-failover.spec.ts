/**
 * Arena failover (M16, M8; docs/recovery.md "Failover of an arena") on the
 * simulated clock: the PAN hands a failed home's arenas to live nodes only
 * once its grace has run out, one at a time, one generation up; a home back
 * in time keeps them; nothing happens while the anchor is not the PAN or
 * not quorate.
 */
import { expect } from 'chai';
import type { NdbOp, NodeDbSnapshot } from '../../../../bus/messages/index.js';
import { applyChange, arenaEntryOf, genesis } from '../../../../machines/membership/node-db.js';
import {
  FAILOVER_GRACE_PERIODS,
  arenaFailoverMachine,
  chooseHome,
  failoverGraceMs,
  type ArenaFailoverEvent,
} from '../../../../machines/recovery/arena-failover.js';
import { applied, nodeAt } from '../../../fixtures/node-entries.js';
import { Running } from '../../../helpers/machine-harness.js';

const GRACE_MS = failoverGraceMs(3000, 100);
const RETRY_MS = 100;

const apply = applied;

const ALL = ['a', 'b', 'c', 'd', 'e'];

/** Every arena's directory replicated on every node but its home: any live node can take any arena over. */
function everywhere(db: NodeDbSnapshot): NodeDbSnapshot {
  return apply(db, ...(db.arenas ?? []).map((a): NdbOp => ({ op: 'arena_replicas', arena: a.arena, gen: a.gen, replicas: ALL.filter((id) => id !== a.home) })));
}

/** Anchors a, b, c and non-anchors d, e: arenas 0 and 1 at a, 2 at b, 3 at c, 4 at d, 5 at e, each replicated everywhere. */
const base = everywhere(
  apply(
    genesis(['a', 'b', 'c'].map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 }))),
    { op: 'add', node: nodeAt('d', 3) },
    { op: 'add', node: nodeAt('e', 4) },
  ),
);
const but = (...down: string[]) => ALL.filter((id) => !down.includes(id));

type View = Extract<ArenaFailoverEvent, { type: 'VIEW' }>;
const view = (db: NodeDbSnapshot, alive: string[], over: Partial<View> = {}): View => ({ type: 'VIEW', db, alive, isPan: true, quorate: true, ...over });

const run = () => new Running(arenaFailoverMachine, { self: 'a', graceMs: GRACE_MS, retryMs: RETRY_MS });
const proposals = (n: ReturnType<typeof run>) => n.of('propose').map((e) => e.change as NdbOp);

describe('arena failover (M16)', () => {
  it('waits quorumTimeoutMs plus two heartbeat periods', () => {
    expect(FAILOVER_GRACE_PERIODS).to.equal(2);
    expect(GRACE_MS).to.equal(3200);
  });

  it('proposes nothing before the grace, then hands the failed home\'s arena to the least loaded live node, one generation up', () => {
    const n = run().send(view(base, but('d')));
    n.clock.advance(GRACE_MS - 1);
    expect(n.emitted).to.deep.equal([]);
    expect(n.snapshot.context.waiting).to.deep.equal(['d']);
    n.clock.advance(1);
    expect(n.drain()).to.deep.equal([
      { type: 'due', home: 'd', arenas: [4] },
      // a serves two arenas; b, c and e one each: b has the lowest short id.
      { type: 'propose', change: { op: 'arena', arena: 4, home: 'b', gen: 2 } },
    ]);
    expect(n.value).to.deep.equal({ active: 'proposing' });
  });

  it('hands over every arena of the failed home, one at a time, spreading them, each one generation up', () => {
    const db = apply(base, { op: 'arena', arena: 4, home: 'c', gen: 2 }, { op: 'arena', arena: 5, home: 'c', gen: 2 });
    const n = run().send(view(db, but('c')));
    n.clock.advance(GRACE_MS);
    expect(n.of('due')).to.deep.equal([{ type: 'due', home: 'c', arenas: [3, 4, 5] }]);
    expect(proposals(n)).to.deep.equal([{ op: 'arena', arena: 3, home: 'd', gen: 2 }]);
    // Nothing more until the outcome, however long it takes.
    n.clock.advance(10 * GRACE_MS);
    expect(proposals(n)).to.have.length(1);
    n.send({ type: 'OUTCOME', arena: 5, ok: true }); // not the one in flight: ignored
    expect(proposals(n)).to.have.length(1);
    n.send({ type: 'OUTCOME', arena: 3, ok: true });
    // The view has not caught up, yet the next choice counts the hand-over just made.
    expect(proposals(n)).to.deep.equal([
      { op: 'arena', arena: 3, home: 'd', gen: 2 },
      { op: 'arena', arena: 4, home: 'e', gen: 3 },
    ]);
    n.send({ type: 'OUTCOME', arena: 4, ok: true });
    expect(proposals(n).slice(2)).to.deep.equal([{ op: 'arena', arena: 5, home: 'b', gen: 3 }]);
    n.send({ type: 'OUTCOME', arena: 5, ok: true });
    expect(n.value).to.deep.equal({ active: 'watching' });
    // The committed table arrives: nothing is left to do, nothing is proposed again.
    const after = apply(db, ...proposals(n));
    n.drain();
    n.send(view(after, but('c')));
    n.clock.advance(10 * GRACE_MS);
    expect(n.emitted).to.deep.equal([]);
    expect(n.snapshot.context).to.deep.include({ waiting: [], due: [], committed: [], inFlight: null });
  });

  it('lets a home back before its grace keep its arenas, and starts its clock afresh when it fails again', () => {
    const n = run().send(view(base, but('d')));
    n.clock.advance(GRACE_MS - 100);
    n.send(view(base, ALL));
    expect(n.snapshot.context.waiting).to.deep.equal([]);
    n.clock.advance(10 * GRACE_MS);
    expect(n.emitted).to.deep.equal([]);
    n.send(view(base, but('d')));
    n.clock.advance(GRACE_MS - 1);
    expect(n.emitted).to.deep.equal([]);
    n.clock.advance(1);
    expect(proposals(n)).to.deep.equal([{ op: 'arena', arena: 4, home: 'b', gen: 2 }]);
  });

  it('stops handing over the arenas of a home seen alive again after its grace (the one in flight stays asked)', () => {
    const db = apply(base, { op: 'arena', arena: 5, home: 'd', gen: 2 });
    const n = run().send(view(db, but('d')));
    n.clock.advance(GRACE_MS);
    // e serves nothing now: it is the least loaded.
    expect(proposals(n)).to.deep.equal([{ op: 'arena', arena: 4, home: 'e', gen: 2 }]);
    n.send(view(db, ALL));
    n.send({ type: 'OUTCOME', arena: 4, ok: true });
    n.clock.advance(10 * GRACE_MS);
    expect(proposals(n)).to.have.length(1);
    expect(n.snapshot.context.due).to.deep.equal([]);
  });

  it('hands over the arenas of a deleted home at once', () => {
    const db = apply(base, { op: 'delete', id: 'd' });
    const n = run().send(view(db, but('d')));
    expect(n.drain()).to.deep.equal([
      { type: 'due', home: 'd', arenas: [4] },
      { type: 'propose', change: { op: 'arena', arena: 4, home: 'b', gen: 2 } },
    ]);
  });

  it('moves a waiting home to due at once when it is deleted', () => {
    const n = run().send(view(base, but('d')));
    n.clock.advance(1000);
    n.send(view(apply(base, { op: 'delete', id: 'd' }), but('d')));
    expect(proposals(n)).to.deep.equal([{ op: 'arena', arena: 4, home: 'b', gen: 2 }]);
    expect(n.snapshot.context.waiting).to.deep.equal([]);
    n.clock.advance(10 * GRACE_MS);
    expect(n.of('due')).to.have.length(1);
  });

  for (const [what, over] of [
    ['not the PAN', { isPan: false }],
    ['not quorate', { quorate: false }],
  ] as const) {
    it(`proposes nothing while ${what}, for a failed home or a deleted one`, () => {
      const n = run().send(view(base, but('d'), over));
      n.clock.advance(10 * GRACE_MS);
      n.send(view(apply(base, { op: 'delete', id: 'e' }), but('d', 'e'), over));
      n.clock.advance(10 * GRACE_MS);
      expect(n.emitted).to.deep.equal([]);
      expect(n.value).to.equal('inactive');
    });

    it(`drops its clocks when ${what}, and starts them afresh when active again`, () => {
      const n = run().send(view(base, but('d')));
      n.clock.advance(1000);
      n.send(view(base, but('d'), over));
      n.clock.advance(1000);
      n.send(view(base, but('d')));
      n.clock.advance(GRACE_MS - 1);
      expect(n.emitted).to.deep.equal([]);
      n.clock.advance(1);
      expect(proposals(n)).to.have.length(1);
    });
  }

  it('drops the hand-over in flight when it stops being the PAN, and ignores its late outcome', () => {
    const n = run().send(view(base, but('d')));
    n.clock.advance(GRACE_MS);
    n.send(view(base, but('d'), { isPan: false }));
    n.send({ type: 'OUTCOME', arena: 4, ok: false, code: 'E_NO_QUORUM' });
    expect(n.value).to.equal('inactive');
    expect(n.snapshot.context).to.deep.include({ waiting: [], due: [], inFlight: null, committed: [] });
    n.clock.advance(10 * GRACE_MS);
    expect(proposals(n)).to.have.length(1);
  });

  it('retries a failed hand-over after retryMs, from the view as it is then', () => {
    const db = apply(base, { op: 'arena', arena: 5, home: 'd', gen: 2 });
    const n = run().send(view(db, but('d')));
    n.clock.advance(GRACE_MS);
    // e serves nothing now: it is the least loaded.
    expect(proposals(n)).to.deep.equal([{ op: 'arena', arena: 4, home: 'e', gen: 2 }]);
    n.send({ type: 'OUTCOME', arena: 4, ok: false, code: 'E_NO_QUORUM' });
    expect(n.value).to.deep.equal({ active: 'backoff' });
    n.clock.advance(RETRY_MS - 1);
    expect(proposals(n)).to.have.length(1);
    n.clock.advance(1);
    expect(proposals(n)).to.have.length(2);
    expect(proposals(n)[1]).to.deep.equal({ op: 'arena', arena: 4, home: 'e', gen: 2 });
    // Lost a race: another update moved arena 4 first. The retry reads the newer table.
    n.send({ type: 'OUTCOME', arena: 4, ok: false, code: 'E_STALE_GEN' });
    const raced = apply(db, { op: 'arena', arena: 4, home: 'c', gen: 2 });
    n.send(view(raced, but('d')));
    n.clock.advance(RETRY_MS);
    // e is no replica of arena 5 (it was its home until d took it over): b, the least loaded replica, is.
    expect(proposals(n)[2]).to.deep.equal({ op: 'arena', arena: 5, home: 'b', gen: 3 });
    expect(arenaEntryOf(raced, 4)?.home).to.equal('c');
  });

  it('counts itself alive whatever the view says, and proposes nothing when no other node is alive', () => {
    const db = apply(base, { op: 'delete', id: 'd' });
    const n = new Running(arenaFailoverMachine, { self: 'e', graceMs: GRACE_MS, retryMs: RETRY_MS });
    n.send(view(db, []));
    // a, b, c are only waiting; d is deleted: its arena goes to e, the only node counted alive.
    expect(proposals(n)).to.deep.equal([{ op: 'arena', arena: 4, home: 'e', gen: 2 }]);
    const alone = run().send(view(apply(genesis([{ id: 'a', endpoint: 'tcp://a:1', anchor: true, votes: 1, group: 0 }]), { op: 'add', node: nodeAt('d', 3) }, { op: 'delete', id: 'd' }), ['a']));
    // d's arena 2 has no replica of its directory: nobody can serve it, so it is not handed over
    // (a node without the directory would start it empty and hand out its addresses again).
    expect(alone.of('due')).to.deep.equal([{ type: 'due', home: 'd', arenas: [2] }]);
    expect(proposals(alone)).to.deep.equal([]);
    // An anchor missing from its own database, with nobody alive: the home is due, but no node can take it.
    const stranger = new Running(arenaFailoverMachine, { self: 'z', graceMs: GRACE_MS, retryMs: RETRY_MS }).send(view(db, []));
    expect(stranger.drain()).to.deep.equal([{ type: 'due', home: 'd', arenas: [4] }]);
    expect(stranger.value).to.deep.equal({ active: 'watching' });
  });

  it('passes over an arena no live replica can take, and hands over the next one', () => {
    // d serves arenas 4 and 5; only 5's directory has a replica (e).
    const db = apply(base, { op: 'arena', arena: 5, home: 'd', gen: 2 }, { op: 'arena_replicas', arena: 4, gen: 1, replicas: [] }, { op: 'arena_replicas', arena: 5, gen: 2, replicas: ['e'] });
    const n = run().send(view(db, but('d')));
    n.clock.advance(GRACE_MS);
    expect(n.of('due')).to.deep.equal([{ type: 'due', home: 'd', arenas: [4, 5] }]);
    expect(proposals(n)).to.deep.equal([{ op: 'arena', arena: 5, home: 'e', gen: 3 }]);
    n.send({ type: 'OUTCOME', arena: 5, ok: true });
    expect(proposals(n), 'arena 4 waits for a replica').to.have.length(1);
  });

  describe('chooseHome', () => {
    it('chooses only among the arena\'s live directory replicas', () => {
      const one = apply(base, { op: 'arena_replicas', arena: 4, gen: 1, replicas: ['c', 'e'] });
      expect(chooseHome(one, 4, but('d'))).to.equal('c');
      expect(chooseHome(one, 4, ['a', 'b', 'e'])).to.equal('e');
      expect(chooseHome(one, 4, ['a', 'b'])).to.equal(undefined);
      const none = apply(base, { op: 'arena_replicas', arena: 4, gen: 1, replicas: [] });
      expect(chooseHome(none, 4, ALL)).to.equal(undefined);
    });

    it('spreads arenas: the live node serving the fewest, ties to the lowest short id', () => {
      expect(chooseHome(base, 4, but('d'))).to.equal('b');
      const loaded = apply(base, { op: 'arena', arena: 2, home: 'c', gen: 2 });
      // b serves none now: it is the least loaded.
      expect(chooseHome(loaded, 4, but('d'))).to.equal('b');
      expect(chooseHome(loaded, 4, ['a', 'c', 'e'])).to.equal('e');
    });

    it('never picks the arena\'s home, a node not alive, or a node not in the database', () => {
      expect(chooseHome(base, 4, ['d'])).to.equal(undefined);
      expect(chooseHome(base, 4, ['d', 'z'])).to.equal(undefined);
      expect(chooseHome(base, 4, new Set(['d', 'a']))).to.equal('a');
      for (const arena of [0, 1, 2, 3, 4, 5]) {
        const home = arenaEntryOf(base, arena)?.home;
        expect(chooseHome(base, arena, ALL)).to.not.equal(home);
      }
    });

    it('names none for an unknown arena or when nobody is alive', () => {
      expect(chooseHome(base, 99, ALL)).to.equal(undefined);
      expect(chooseHome(base, 4, [])).to.equal(undefined);
    });
  });
});
