/**
 * Generated paths through one anchor's node-db acceptor (single-decree Paxos
 * per version), from a fresh start and from restored promises: every resting
 * state is reached, and along every path, within one version, the promised
 * ballot never goes down and an accepted change is never forgotten; an
 * accepted ballot is never above the promised one; every change of the
 * acceptor state is persisted in the step that makes it, and every ok answer
 * follows the persist of the very state it answers from; the database
 * changes only by committing the next version or adopting a newer one.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import type { Ballot, NdbOp } from '../../bus/messages/index.js';
import { shortIdOf } from '../../machines/membership/identity.js';
import { applyChange, genesis } from '../../machines/membership/node-db.js';
import {
  compareBallots,
  ndbSubordinateMachine,
  type AcceptorState,
  type NdbSubordinateEvent,
  type NdbSubordinateInput,
  type NdbSubordinateSnapshot,
} from '../../machines/membership/node-db-subordinate.js';
import { leafStates, pathEvents, replay, type Emitted } from '../helpers/machine-harness.js';

/** The last version offered events: paths commit up to VERSION_MAX, adopt one beyond. */
const VERSION_MAX = 3;
const db1 = genesis(['a', 'b', 'c'].map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 })));

const b1: Ballot = { round: 1, by: 'a/1' };
const b2: Ballot = { round: 2, by: 'c/1' };
const b3: Ballot = { round: 3, by: 'a/1' };
const add = (prefix: string, version: number, slot: number): NdbOp => ({
  op: 'add',
  node: { id: `${prefix}${version}`, shortId: shortIdOf(0, slot), endpoint: 'tcp://n:1', anchor: false, votes: 0, group: 0 },
});
const xOf = (v: number) => add('x', v, 10 + v);
const yOf = (v: number) => add('y', v, 20 + v);
const bad: NdbOp = { op: 'delete', id: 'nobody' };

const inputs: [string, NdbSubordinateInput][] = [
  ['a fresh anchor', { self: 'b', db: db1 }],
  ['an anchor restored with a promise', { self: 'b', db: db1, acceptor: { version: 2, promised: b2 } }],
  ['an anchor restored with an accept', { self: 'b', db: db1, acceptor: { version: 2, promised: b3, accepted: { ballot: b2, change: yOf(2) } } }],
  ['an anchor restored with a promise for a version it has', { self: 'b', db: db1, acceptor: { version: 1, promised: b3 } }],
];

/** Events offered in each state, relative to the version the anchor has, so the graph stays finite. */
function eventsFor(s: NdbSubordinateSnapshot): NdbSubordinateEvent[] {
  const v = s.context.db.version + 1;
  if (v > VERSION_MAX) return [];
  const prepare = (from: string, version: number, ballot: Ballot): NdbSubordinateEvent => ({ type: 'PREPARE', from, version, ballot });
  const accept = (from: string, version: number, ballot: Ballot, change: NdbOp): NdbSubordinateEvent => ({
    type: 'ACCEPT',
    from,
    version,
    ballot,
    change,
  });
  return [
    prepare('a', v, b1),
    prepare('c', v, b2),
    prepare('a', v, b3),
    prepare('a', v - 1, b3),
    prepare('c', v + 1, b1),
    accept('a', v, b1, xOf(v)),
    accept('c', v, b2, yOf(v)),
    accept('a', v, b3, xOf(v)),
    accept('a', v, b3, bad),
    accept('c', v + 1, b3, yOf(v + 1)),
    { type: 'COMMIT', version: v, change: xOf(v) },
    { type: 'COMMIT', version: v, change: yOf(v) },
    { type: 'COMMIT', version: v - 1, change: yOf(v - 1) },
    { type: 'COMMIT', version: v + 1, change: xOf(v + 1) },
    { type: 'ADOPT', db: { version: v + 1, nodes: s.context.db.nodes } },
    { type: 'ADOPT', db: { version: v - 1, nodes: [] } },
  ];
}

const key = (b?: Ballot) => (b ? `${b.round}:${b.by}` : '-');
function changeKey(c: NdbOp): string {
  if (c.op === 'delete') return `-${c.id}`;
  if (c.op === 'arena') return `arena:${c.arena}:${c.home}:${c.gen}`;
  if (c.op === 'arena_replicas') return `replicas:${c.arena}:${c.gen}:${c.replicas.join(',')}`;
  if (c.op === 'arena_new') return `arena_new:${c.member}`;
  if (c.op === 'key') return `key:${c.endpoint}:${c.key ?? '-'}`;
  return `${c.op}:${c.node.id}`;
}

function stateKey(s: NdbSubordinateSnapshot): string {
  const { acceptor, db } = s.context;
  const accepted = acceptor.accepted ? `${key(acceptor.accepted.ballot)}=${changeKey(acceptor.accepted.change)}` : '-';
  return `${String(s.value)} v${db.version} p${key(acceptor.promised)} a${accepted}`;
}

function eventKey(e: NdbSubordinateEvent): string {
  if (e.type === 'ADOPT') return `ADOPT@${e.db.version}`;
  return `${e.type}@${e.version}/${'ballot' in e ? key(e.ballot) : ''}/${'change' in e ? changeKey(e.change) : ''}`;
}

/** Keyed on the step (from, event, to), so the paths take every transition, not only reach every state. */
const serialize = (s: NdbSubordinateSnapshot, e: NdbSubordinateEvent | undefined, prev?: NdbSubordinateSnapshot): string =>
  JSON.stringify([prev ? stateKey(prev) : null, e ? eventKey(e) : null, stateKey(s)]);

const same = (a?: Ballot, b?: Ballot) => a !== undefined && b !== undefined && compareBallots(a, b) === 0;

/** What a snapshot must hold whatever path led to it. */
function checkSnapshot(s: NdbSubordinateSnapshot): void {
  const { acceptor, db } = s.context;
  expect(acceptor.version, 'the acceptor is for the next version').to.equal(db.version + 1);
  if (acceptor.accepted) {
    expect(acceptor.promised, 'an accept raises the promise').to.not.equal(undefined);
    expect(compareBallots(acceptor.accepted.ballot, acceptor.promised!), 'accepted ballot above the promised one').to.be.at.most(0);
  }
  const want = acceptor.accepted ? 'accepted' : acceptor.promised ? 'promised' : 'open';
  expect(s.value, 'the state names what the acceptor holds').to.equal(want);
}

/** One step of a path: before, the event, what it emitted, after. */
function checkStep(before: NdbSubordinateSnapshot, event: NdbSubordinateEvent, out: Emitted[], after: NdbSubordinateSnapshot): void {
  checkSnapshot(after);
  const was = before.context.acceptor;
  const now = after.context.acceptor;
  const persists = out.flatMap((e, i) => (e.type === 'persist' ? [{ i, acceptor: e.acceptor as AcceptorState }] : []));

  if (after.context.db === before.context.db) {
    expect(now.version).to.equal(was.version);
    if (was.promised) {
      expect(now.promised, 'a promise is never dropped').to.not.equal(undefined);
      expect(compareBallots(now.promised!, was.promised), 'the promised ballot never goes down').to.be.at.least(0);
    }
    if (was.accepted) expect(now.accepted, 'an accepted change is never forgotten').to.not.equal(undefined);
  } else {
    // A new database: committed or adopted, and a fresh acceptor for the version after it.
    expect(now).to.deep.equal({ version: after.context.db.version + 1 });
    const committed = out.filter((e) => e.type === 'committed');
    const adopted = out.filter((e) => e.type === 'adopted');
    if (event.type === 'COMMIT') {
      const applied = applyChange(before.context.db, event.change);
      expect(event.version).to.equal(before.context.db.version + 1);
      expect(applied.ok && applied.db).to.deep.equal(after.context.db);
      expect(committed.map((e) => e.db)).to.deep.equal([after.context.db]);
    } else {
      expect(event.type).to.equal('ADOPT');
      expect(after.context.db.version).to.be.greaterThan(before.context.db.version);
      expect(adopted.map((e) => e.db)).to.deep.equal([after.context.db]);
    }
  }
  if (JSON.stringify(now) !== JSON.stringify(was)) {
    expect(persists.at(-1)?.acceptor, 'every change of the acceptor is persisted').to.deep.equal(now);
  }

  out.forEach((e, i) => {
    if (e.type !== 'send') return;
    const body = e.body as { ok: boolean; version: number; ballot: Ballot; accepted?: unknown };
    if (!body.ok) return;
    const saved = persists.filter((p) => p.i < i).at(-1)?.acceptor;
    expect(saved, `${e.kind as string} ok before any persist`).to.not.equal(undefined);
    expect(saved, 'the answer follows the persist of the state it answers from').to.deep.equal(now);
    expect(body.version).to.equal(saved!.version);
    if (e.kind === 'ndb.promise') {
      expect(event.type).to.equal('PREPARE');
      expect(same(saved!.promised, body.ballot), 'the promised ballot is persisted').to.equal(true);
      expect(body.accepted, 'the promise reports what was accepted').to.deep.equal(saved!.accepted);
    } else {
      expect(e.kind).to.equal('ndb.accepted');
      expect(event.type).to.equal('ACCEPT');
      expect(same(saved!.accepted?.ballot, body.ballot), 'the accepted ballot is persisted').to.equal(true);
    }
  });
}

describe('node-db subordinate (M2), generated paths', () => {
  const reached = new Set<string>();
  const runs = inputs.map(([name, input]) => ({
    name,
    input,
    paths: getShortestPaths(ndbSubordinateMachine, { input, events: eventsFor, serializeState: serialize }),
  }));

  for (const { name, input, paths } of runs) {
    it(`${name}: every path keeps its word`, () => {
      expect(paths.length).to.be.greaterThan(100);
      for (const p of paths) {
        reached.add(String(p.state.value));
        const events = pathEvents(p.steps);
        const { snapshots, emitted } = replay(ndbSubordinateMachine, input, events);
        expect(emitted[0], 'restoring emits nothing').to.deep.equal([]);
        checkSnapshot(snapshots[0]);
        for (let i = 1; i < snapshots.length; i++) checkStep(snapshots[i - 1], events[i - 1], emitted[i], snapshots[i]);
      }
    });
  }

  it('starts where the store left off', () => {
    expect(runs.map((r) => r.paths[0].steps[0].state.value)).to.deep.equal(['open', 'promised', 'accepted', 'open']);
  });

  it('reaches every resting state, and versions up to the cap', () => {
    // `restoring` only decides where a restored anchor resumes (eventless): no snapshot rests in it.
    const want = leafStates(ndbSubordinateMachine).filter((s) => s !== 'restoring');
    expect([...reached].sort()).to.deep.equal(want.sort());
    const versions = runs.flatMap((r) => r.paths.map((p) => p.state.context.db.version));
    expect(Math.max(...versions)).to.equal(VERSION_MAX + 1);
  });
});
