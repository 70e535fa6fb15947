/**
 * Generated paths through a node's way into the node database (M2), for a
 * configured anchor, a non-anchor, an anchor left out of the configuration
 * and an anchor restarted with a new pid: every phase is reached, and along
 * every path, checked against an independent reading of the protocol:
 * messages leave on turns only, once a turn, each turn ending with
 * `period`; a node greets exactly the configured endpoints but its own, and
 * only while it has no database or the database lists no other anchor to
 * ask; it asks to join only with a database that lacks its current entry,
 * and only an anchor listed there (never itself), each in turn, once a turn; an anchor
 * coordinates its own change only when it is listed; version 1 is offered
 * only to a configured anchor every configured endpoint has answered as an
 * anchor, from exactly those answers; a node whose current entry a database
 * held is removed by the first newer database without it at all, says so
 * once, naming that version, and from then on does nothing.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import type { Identity, NodeDbSnapshot } from '../../bus/messages/index.js';
import { shortIdOf } from '../../machines/membership/identity.js';
import { anchorsOf, findNode, genesis } from '../../machines/membership/node-db.js';
import {
  founders,
  machineName,
  ndbBootstrapMachine,
  type NdbBootstrapEvent,
  type NdbBootstrapInput,
  type NdbBootstrapSnapshot,
} from '../../machines/membership/node-db-bootstrap.js';
import { afterEvent, leafStates, pathEvents, replay, type Emitted } from '../helpers/machine-harness.js';
import { A, B, C, db1, N, seeds, who } from '../fixtures/bootstrap-cluster.js';

const withEntry = (db: NodeDbSnapshot, x: Identity, version = db.version + 1): NodeDbSnapshot => ({
  version,
  nodes: [...db.nodes.filter((e) => e.id !== x.id), { ...x, shortId: shortIdOf(0, 9) }],
});

const turn = afterEvent(machineName, 'period', 'running') as unknown as NdbBootstrapEvent;
const isTurn = (e: NdbBootstrapEvent) => e.type === turn.type;

const inputs: [string, Identity][] = [
  ['a configured anchor', A],
  ['a non-anchor', N],
  ['an anchor left out of the configuration', who('d')],
  ['a configured anchor restarted with a new pid', { ...A, pid: 8 }],
];

/** The databases a node may be handed, as versions rise: with its entry current, stale, missing (deleted at 7); lone anchors. */
function dbsFor(self: Identity): NodeDbSnapshot[] {
  return [
    db1,
    genesis([A]),
    withEntry(db1, self, 5),
    withEntry(db1, { ...self, pid: 99 }, 6),
    { version: 7, nodes: [] },
  ];
}

function eventsFor(self: Identity) {
  const dbs = dbsFor(self);
  return (): NdbBootstrapEvent[] => [
    turn,
    ...dbs.map((db): NdbBootstrapEvent => ({ type: 'DB', db })),
    { type: 'WELCOME', identity: B },
    { type: 'WELCOME', identity: C },
    { type: 'WELCOME', identity: { ...C, anchor: false } },
    { type: 'WELCOME', identity: who('x') },
  ];
}

/** The join turn matters only modulo the anchors a database can list (1 or 3). */
const stateKey = (s: NdbBootstrapSnapshot) =>
  JSON.stringify([s.value, s.context.db.version, s.context.greeted, s.context.joinTurn % 3, s.context.memberAt]);
const eventKey = (e: NdbBootstrapEvent) => (e.type === 'DB' ? `DB@${e.db.version}` : e.type === 'WELCOME' ? `W:${e.identity.id}:${e.identity.anchor}` : 'turn');
/** Keyed on the step, so the paths take every transition, not only reach every state. */
const serialize = (s: NdbBootstrapSnapshot, e: NdbBootstrapEvent | undefined, prev?: NdbBootstrapSnapshot) =>
  JSON.stringify([prev ? stateKey(prev) : null, e ? eventKey(e) : null, stateKey(s)]);

/** What this reading of M2 says: the answers heard so far, and what they make of version 1. */
class Reading {
  readonly answers = new Map<string, Identity>();
  db: NodeDbSnapshot;
  /** Turns that asked to join so far. */
  asked = 0;
  /** The newest version seen holding this node's current entry (0: none yet). */
  heldAt = 0;
  /** The version that dropped this node, once one has. */
  removedAt?: number;

  constructor(private readonly input: NdbBootstrapInput) {
    this.db = input.db;
    if (this.isMember()) this.heldAt = this.db.version;
  }

  /** A database arrives: a newer one than held this node, without it, removes it for good. */
  take(db: NodeDbSnapshot): void {
    if (this.heldAt > 0 && db.version > this.heldAt && !db.nodes.some((n) => n.id === this.self.id)) this.removedAt = db.version;
    this.db = db;
    if (this.isMember()) this.heldAt = Math.max(this.heldAt, db.version);
  }

  get self(): Identity {
    return this.input.self;
  }

  isMember(): boolean {
    const e = findNode(this.db, this.self.id);
    return e !== undefined && (['endpoint', 'anchor', 'votes', 'group', 'pid'] as const).every((k) => e[k] === this.self[k]);
  }

  /** Version 1, if this node may build it now. */
  founders(): Identity[] | undefined {
    if (!this.self.anchor || this.db.version > 0 || !seeds.includes(this.self.endpoint)) return undefined;
    const all = seeds.map((ep) => (ep === this.self.endpoint ? this.self : this.answers.get(ep)));
    return all.every((x) => x?.anchor) ? (all as Identity[]) : undefined;
  }

  phase(): string {
    if (this.removedAt !== undefined) return 'removed';
    if (this.db.version === 0) return this.founders() ? 'forming' : 'greeting';
    return this.isMember() ? 'member' : 'joining';
  }
}

function checkTurn(r: Reading, out: Emitted[]): void {
  expect(out.at(-1)?.type, 'a turn ends with period').to.equal('period');
  expect(out.filter((e) => e.type === 'period')).to.have.length(1);
  const others = anchorsOf(r.db).filter((a) => a.id !== r.self.id);
  const greets = out.filter((e) => e.type === 'greet');
  const shouldGreet = !r.isMember() && (r.db.version === 0 || others.length === 0);
  expect(greets.map((g) => g.endpoint)).to.deep.equal(shouldGreet ? seeds.filter((ep) => ep !== r.self.endpoint) : []);
  for (const g of greets) expect(g.body).to.deep.equal({ identity: r.self, dbVersion: r.db.version });
  const joins = out.filter((e) => e.type === 'send');
  const own = out.filter((e) => e.type === 'change_own_entry');
  const asks = r.db.version > 0 && !r.isMember();
  const listedAnchor = r.self.anchor && findNode(r.db, r.self.id) !== undefined;
  expect(own, 'an anchor coordinates its own change only when listed').to.have.length(asks && listedAnchor ? 1 : 0);
  expect(joins.length, 'at most one join a turn').to.equal(asks && !listedAnchor && others.length > 0 ? 1 : 0);
  for (const j of joins) {
    expect(j.kind).to.equal('ndb.join');
    expect(j.body).to.deep.equal({ identity: r.self });
    expect(others.map((a) => a.id), 'a join goes to a listed anchor, never to itself').to.include(j.to);
    expect(j.to, 'each listed anchor in turn').to.equal(others[r.asked % others.length].id);
  }
  // A turn that asks counts, even when the database lists no one to ask.
  if (asks && !listedAnchor) r.asked++;
}

function checkStep(r: Reading, event: NdbBootstrapEvent, out: Emitted[], after: NdbBootstrapSnapshot): void {
  if (r.removedAt !== undefined) {
    expect(out, 'a removed node does nothing more').to.deep.equal([]);
    expect(after.value).to.equal('removed');
    return;
  }
  if (isTurn(event)) checkTurn(r, out);
  else {
    if (event.type === 'DB') r.take(event.db);
    else if (seeds.includes(event.identity.endpoint)) r.answers.set(event.identity.endpoint, event.identity);
    const removal = r.removedAt === undefined ? [] : [{ type: 'removed', version: r.removedAt }];
    expect(out.filter((e) => e.type === 'removed'), 'the removal is said once, with its version').to.deep.equal(removal);
    expect(out.filter((e) => e.type !== 'misconfigured' && e.type !== 'removed'), 'nothing leaves between turns').to.deep.equal([]);
  }
  const phase = r.phase();
  expect(after.value, 'the state names the phase').to.deep.equal(phase === 'removed' ? phase : { running: phase });
  expect(founders(after)).to.deep.equal(r.founders());
}

describe('node-db bootstrap (M2), generated paths', () => {
  const reached = new Set<string>();
  const runs = inputs.map(([name, self]) => {
    const input: NdbBootstrapInput = { self, seeds, db: { version: 0, nodes: [] }, periodMs: 100 };
    return { name, input, paths: getShortestPaths(ndbBootstrapMachine, { input, events: eventsFor(self), serializeState: serialize }) };
  });

  for (const { name, input, paths } of runs) {
    it(`${name}: every path keeps to the protocol`, () => {
      expect(paths.length).to.be.greaterThan(50);
      for (const p of paths) {
        const value = p.state.value as { running: string } | 'removed';
        reached.add(typeof value === 'string' ? value : `running.${value.running}`);
        const events = pathEvents(p.steps);
        const { snapshots, emitted } = replay(ndbBootstrapMachine, input, events);
        const r = new Reading(input);
        checkTurn(r, emitted[0]);
        for (let i = 1; i < snapshots.length; i++) checkStep(r, events[i - 1], emitted[i], snapshots[i]);
      }
    });
  }

  it('reaches every phase', () => {
    // `turn` only routes a period's turn to its phase (eventless): no snapshot rests in it.
    const want = leafStates(ndbBootstrapMachine).filter((s) => s !== 'running.turn');
    expect([...reached].sort()).to.deep.equal(want.sort());
  });
});
