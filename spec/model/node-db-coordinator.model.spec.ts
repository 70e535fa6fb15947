/**
 * Generated paths through one node-db update attempt (single-decree Paxos
 * for one version), for several anchor sets: every resting state is reached,
 * and along every path, counting only the answers the coordinator should
 * heed (its version, its ballot, from an anchor, in the right round): it
 * proposes only with promises from a majority of the votes, to those that
 * promised; it proposes the change accepted under the highest ballot when a
 * promise carried one, else its own; it commits only with accepts from a
 * majority of the votes, the change it proposed, to every anchor, once; and
 * it fails with the code the answer or timer that ended it calls for.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import type { Ballot, NdbOp } from '../../bus/messages/index.js';
import { sameChange } from '../../machines/membership/node-db.js';
import {
  machineName,
  ndbCoordinatorMachine,
  type NdbCoordinatorEvent,
  type NdbCoordinatorInput,
  type NdbCoordinatorSnapshot,
} from '../../machines/membership/node-db-coordinator.js';
import { compareBallots } from '../../machines/membership/node-db-subordinate.js';
import type { SendOut } from '../../machines/outbox.js';
import { hasMajority } from '../../machines/membership/quorum.js';
import { afterEvent, leafStates, pathEvents, replay, type Emitted } from '../helpers/machine-harness.js';
import { answersTo } from '../fixtures/ndb-answers.js';

const VERSION = 5;
const mine: Ballot = { round: 4, by: 'a/1' };
const own: NdbOp = { op: 'delete', id: 'x' };
const ownCopy: NdbOp = { op: 'delete', id: 'x' };
const changeY: NdbOp = { op: 'delete', id: 'y' };
const changeZ: NdbOp = { op: 'delete', id: 'z' };

const base: NdbCoordinatorInput = {
  self: 'a',
  version: VERSION,
  ballot: mine,
  change: own,
  anchors: ['a', 'b', 'c'],
  votes: { a: 1, b: 1, c: 1 },
  totalVotes: 3,
  quorate: true,
  timeoutMs: 100,
};

const inputs: [string, NdbCoordinatorInput][] = [
  ['three anchors', base],
  // a and b together hold exactly half the votes: not a majority.
  ['weighted anchors', { ...base, votes: { a: 1, b: 1, c: 2 }, totalVotes: 4 }],
  ['one anchor', { ...base, anchors: ['a'], votes: { a: 1 }, totalVotes: 1 }],
  ['no quorum', { ...base, quorate: false }],
  ['not an anchor', { ...base, anchors: ['b', 'c'] }],
];

const { promise, accepted } = answersTo(VERSION, mine);
const higher: Ballot = { round: 9, by: 'c/1' };
const timers = ['preparing', 'accepting'].map((s) => afterEvent(machineName, 'roundTimeout', s)) as unknown as NdbCoordinatorEvent[];

function eventsFor(input: NdbCoordinatorInput): NdbCoordinatorEvent[] {
  const [first, second = first, third = second] = input.anchors.filter((id) => id !== input.self);
  return [
    ...input.anchors.flatMap((id) => [promise(id), accepted(id)]),
    promise(first ?? 'a', { accepted: { ballot: { round: 2, by: 'c/1' }, change: changeY } }),
    promise(third ?? 'a', { accepted: { ballot: { round: 3, by: 'b/1' }, change: changeZ } }),
    promise(input.self, { accepted: { ballot: { round: 1, by: 'a/0' }, change: ownCopy } }),
    promise(second ?? 'a', { ok: false, reason: 'outbid', promised: higher }),
    promise(first ?? 'a', { ok: false, have: VERSION, reason: 'stale' }),
    promise(third ?? 'a', { ok: false, have: 2, reason: 'behind' }),
    accepted(first ?? 'a', { ok: false, reason: 'outbid', promised: higher }),
    accepted(second ?? 'a', { ok: false, reason: 'E_UNKNOWN_NODE: node x is not in the database' }),
    accepted(third ?? 'a', { ok: false, have: 2, reason: 'behind' }),
    // Answers this attempt must not heed.
    promise(first ?? 'a', { ballot: { round: 4, by: 'b/1' } }),
    accepted(second ?? 'a', { version: VERSION + 1 }),
    promise('z'),
    accepted('z', { ok: false, reason: 'outbid', promised: higher }),
    ...timers,
  ];
}

const idsKey = (ids: readonly string[]) => [...ids].sort().join('');
const stateKey = (s: NdbCoordinatorSnapshot): string => {
  const c = s.context;
  const found = c.found ? `${c.found.ballot.round}:${c.found.ballot.by}` : '-';
  const result = c.result ? (c.result.ok ? 'ok' : c.result.code) : '-';
  return JSON.stringify([s.value, idsKey(c.promised), idsKey(c.accepted), found, c.proposal ? JSON.stringify(c.proposal) : '-', result]);
};
/** Keyed on the step (from, event, to), so the paths take every transition, not only reach every state:
 * the order in which promises arrive matters to which change is proposed. */
const serialize = (s: NdbCoordinatorSnapshot, e: NdbCoordinatorEvent | undefined, prev?: NdbCoordinatorSnapshot): string =>
  JSON.stringify([prev && stateKey(prev), e ?? null, stateKey(s)]);

const isOurs = (input: NdbCoordinatorInput, e: NdbCoordinatorEvent) =>
  'from' in e && e.version === input.version && compareBallots(e.ballot, input.ballot) === 0 && input.anchors.includes(e.from);

/** What the path's events entitle the coordinator to, replayed alongside the machine. */
class Ledger {
  readonly promised = new Set<string>();
  readonly accepted = new Set<string>();
  found?: { ballot: Ballot; change: NdbOp };
  proposal?: NdbOp;
  commits = 0;

  constructor(private readonly input: NdbCoordinatorInput) {}

  weight(ids: Set<string>): number {
    return [...ids].reduce((s, id) => s + (this.input.votes[id] ?? 0), 0);
  }

  majority(ids: Set<string>): boolean {
    return hasMajority(this.weight(ids), this.input.totalVotes);
  }
}

/** The failure an answer that ends the attempt calls for. */
function expectedFailure(input: NdbCoordinatorInput, e: NdbCoordinatorEvent): { code: string; round?: number } {
  if (!('from' in e)) return { code: 'E_TIMEOUT' };
  if (e.have >= input.version) return { code: 'E_STALE' };
  if (e.reason === 'outbid') return { code: 'E_BUSY', round: e.promised?.round };
  return { code: /^(E_[A-Z_]+):/.exec(e.reason ?? '')?.[1] ?? 'E_REJECTED' };
}

function checkStep(
  input: NdbCoordinatorInput,
  ledger: Ledger,
  before: NdbCoordinatorSnapshot,
  event: NdbCoordinatorEvent,
  out: Emitted[],
  after: NdbCoordinatorSnapshot,
): void {
  const sent = out.filter((e) => e.type === 'send') as unknown as SendOut[];
  const to = (kind: string) => sent.filter((m) => m.kind === kind).map((m) => m.to);
  const heeded = isOurs(input, event);
  if (before.status === 'done') expect(out, 'nothing after the end').to.deep.equal([]);
  expect(to('ndb.prepare'), 'prepares go out once, at the start').to.deep.equal([]);

  if (before.value === 'preparing' && event.type === 'PROMISE' && heeded && event.ok) {
    ledger.promised.add(event.from);
    if (event.accepted && (!ledger.found || compareBallots(event.accepted.ballot, ledger.found.ballot) > 0)) ledger.found = event.accepted;
  }
  if (before.value === 'accepting' && event.type === 'ACCEPTED' && heeded && event.ok) ledger.accepted.add(event.from);

  if (after.value === 'preparing') expect(ledger.majority(ledger.promised), 'waits no longer than a majority of promises').to.equal(false);
  if (before.value === 'preparing' && after.value === 'accepting') {
    expect(ledger.majority(ledger.promised), 'proposes only with promises from a majority').to.equal(true);
    const want = ledger.found?.change ?? input.change;
    expect(to('ndb.accept').sort(), 'proposes to those that promised').to.deep.equal([...ledger.promised].sort());
    for (const m of sent) {
      expect(m.body, 'proposes the highest-ballot accepted change, else its own').to.deep.equal({ version: input.version, ballot: input.ballot, change: want });
    }
    ledger.proposal = want;
  } else {
    expect(to('ndb.accept'), 'accepts are sent once, on entering the accept round').to.deep.equal([]);
  }

  if (after.value === 'accepting') expect(ledger.majority(ledger.accepted), 'commits as soon as a majority accepted').to.equal(false);
  const commits = out.filter((e) => e.type === 'commit');
  if (commits.length > 0 || to('ndb.commit').length > 0) {
    ledger.commits += commits.length;
    expect(ledger.commits, 'one commit').to.equal(1);
    expect(before.value).to.equal('accepting');
    expect(after.value).to.equal('committed');
    expect(ledger.majority(ledger.accepted), 'never commits without accepts from a majority').to.equal(true);
    expect(commits).to.deep.equal([{ type: 'commit', version: input.version, change: ledger.proposal }]);
    expect(to('ndb.commit')).to.deep.equal(input.anchors);
    for (const m of sent) expect(m.body).to.deep.equal({ version: input.version, change: ledger.proposal });
  }
  if (after.value === 'committed') {
    expect(ledger.commits).to.equal(1);
    expect(after.output).to.deep.equal({ ok: true, version: input.version, change: ledger.proposal, own: sameChange(ledger.proposal!, input.change) });
  }

  if (after.value === 'failed' && before.value !== 'failed') {
    const want = expectedFailure(input, event);
    expect(heeded || !('from' in event), 'only a heeded answer or a timer ends the attempt').to.equal(true);
    expect(after.output).to.deep.include({ ok: false, code: want.code });
    if (want.code === 'E_BUSY') expect(after.output).to.deep.include({ round: want.round });
    expect(sent, 'a failing step sends nothing').to.deep.equal([]);
  }
  expect(after.status === 'done', 'an output exactly when over').to.equal(after.output !== undefined);
}

describe('node-db coordinator (M2), generated paths', () => {
  const reached = new Set<string>();
  const outcomes = new Set<string>();

  for (const [name, input] of inputs) {
    it(`${name}: every path decides only what a majority allows`, () => {
      const offered = eventsFor(input);
      const paths = getShortestPaths(ndbCoordinatorMachine, {
        input,
        events: (s) => (s.status === 'done' ? [] : offered),
        serializeState: serialize,
      });
      expect(paths.length).to.be.greaterThan(0);
      for (const p of paths) {
        reached.add(String(p.state.value));
        const events = pathEvents(p.steps);
        const { snapshots, emitted } = replay(ndbCoordinatorMachine, input, events);
        const [first] = snapshots;
        if (!input.quorate || !input.anchors.includes(input.self)) {
          expect(first.value).to.equal('failed');
          expect(first.output?.ok === false && first.output.code).to.equal(input.quorate ? 'E_NOT_ANCHOR' : 'E_NO_QUORUM');
          expect(emitted[0], 'ends without a word').to.deep.equal([]);
        } else {
          expect(first.value).to.equal('preparing');
          const prepares = emitted[0] as unknown as SendOut[];
          expect(prepares.map((m) => m.to), 'prepares every anchor, itself included').to.deep.equal(input.anchors);
          for (const m of prepares) expect(m).to.deep.include({ kind: 'ndb.prepare', body: { version: input.version, ballot: input.ballot } });
        }
        const ledger = new Ledger(input);
        for (let i = 1; i < snapshots.length; i++) checkStep(input, ledger, snapshots[i - 1], events[i - 1], emitted[i], snapshots[i]);
        const out = p.state.output;
        if (out) outcomes.add(out.ok ? `ok/${out.own ? 'own' : 'other'}` : out.code);
      }
    });
  }

  it('reaches every resting state and every outcome across the inputs', () => {
    // `checking` is eventless (it only routes to failed or preparing), so no snapshot rests in it.
    const want = leafStates(ndbCoordinatorMachine).filter((s) => s !== 'checking');
    expect([...reached].sort()).to.deep.equal(want.sort());
    expect([...outcomes].sort()).to.deep.equal(
      ['E_BUSY', 'E_NOT_ANCHOR', 'E_NO_QUORUM', 'E_STALE', 'E_TIMEOUT', 'E_UNKNOWN_NODE', 'ok/other', 'ok/own'].sort(),
    );
  });
});
