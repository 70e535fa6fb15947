import { expect } from 'chai';
import type { Identity, NodeDbSnapshot, NodeEntry } from '../../../../bus/messages/index.js';
import { MEMBERS_PER_GROUP_MAX, shortIdOf } from '../../../../machines/membership/identity.js';
import { genesis } from '../../../../machines/membership/node-db.js';
import {
  ATTEMPTS_MAX,
  QUEUE_MAX,
  RETRIED,
  backoffPeriods,
  changeFor,
  conclusionOf,
  entryIsCurrent,
  fetchIsDue,
  fetchTarget,
  joinTarget,
  nextTry,
} from '../../../../machines/membership/node-db-turns.js';
import { nodeAt } from '../../../fixtures/node-entries.js';

const anchor = (id: string): Identity => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 });
const db1 = genesis(['a', 'b', 'c'].map(anchor));
const [a, b, c] = db1.nodes;
const n: NodeEntry = { ...nodeAt('n', 5), pid: 3 };
const dbN: NodeDbSnapshot = { version: 2, nodes: [...db1.nodes, n] };
const identityOf = ({ shortId: _, ...rest }: NodeEntry): Identity => rest;

/** A random source that answers `value` and records what it was asked. */
const recording = (value = 1) => {
  const asked: number[] = [];
  return { asked, int: (k: number) => (asked.push(k), value) };
};

describe('node-db rules of turn (M2)', () => {
  it('names its limits', () => {
    expect([QUEUE_MAX, ATTEMPTS_MAX]).to.deep.equal([256, 12]);
    expect(RETRIED).to.deep.equal(['E_BUSY', 'E_STALE', 'E_TIMEOUT']);
  });

  describe('entryIsCurrent', () => {
    it('holds when the entry says what the node says of itself, pid included', () => {
      const me = identityOf(n);
      expect(entryIsCurrent(n, me)).to.equal(true);
      expect(entryIsCurrent(undefined, me)).to.equal(false);
      const changed: Partial<Identity>[] = [{ endpoint: 'tcp://n:2' }, { anchor: true }, { votes: 1 }, { group: 1 }, { pid: 4 }, { pid: undefined }];
      for (const over of changed) expect(entryIsCurrent(n, { ...me, ...over }), JSON.stringify(over)).to.equal(false);
    });
  });

  describe('joinTarget', () => {
    it('goes round the anchors, one a turn', () => {
      expect([0, 1, 2, 3, 4, 7].map((turn) => joinTarget([a, b, c], turn)?.id)).to.deep.equal(['a', 'b', 'c', 'a', 'b', 'b']);
      expect(joinTarget([], 0)).to.equal(undefined);
      expect(joinTarget([], 5)).to.equal(undefined);
    });
  });

  describe('changeFor', () => {
    it('passes an explicit change through', () => {
      const change = { op: 'delete' as const, id: 'b' };
      expect(changeFor(db1, { change })).to.equal(change);
    });

    it('adds a new node at the lowest free slot of its group', () => {
      expect(changeFor(db1, { join: identityOf(n) })).to.deep.equal({ op: 'add', node: { ...identityOf(n), shortId: shortIdOf(0, 3) } });
      const elsewhere = { ...identityOf(n), group: 2 };
      expect(changeFor(db1, { join: elsewhere })).to.deep.equal({ op: 'add', node: { ...elsewhere, shortId: shortIdOf(2, 0) } });
    });

    it('has nothing to change for a current entry: the update is done, at this version', () => {
      expect(changeFor(dbN, { join: identityOf(n) })).to.deep.equal({ ok: true, version: 2, change: { op: 'change', node: n }, own: true });
    });

    it('keeps the short id of a node that restarted in its group, and moves one that changed group', () => {
      const restarted = { ...identityOf(n), pid: 4, endpoint: 'tcp://n:2' };
      expect(changeFor(dbN, { join: restarted })).to.deep.equal({ op: 'change', node: { ...restarted, shortId: n.shortId } });
      const moved = { ...identityOf(n), group: 1 };
      expect(changeFor(dbN, { join: moved })).to.deep.equal({ op: 'change', node: { ...moved, shortId: shortIdOf(1, 0) } });
    });

    it('refuses a node whose group is full', () => {
      const full: NodeDbSnapshot = {
        version: 1,
        nodes: Array.from({ length: MEMBERS_PER_GROUP_MAX }, (_, slot) => ({ ...nodeAt(`m${slot}`, 0), shortId: shortIdOf(1, slot), group: 1 })),
      };
      expect(changeFor(full, { join: { ...identityOf(n), group: 1 } })).to.deep.equal({
        ok: false,
        code: 'E_GROUP_FULL',
        reason: `group 1 already has ${MEMBERS_PER_GROUP_MAX} members`,
      });
    });
  });

  describe('conclusionOf', () => {
    it('finishes an update that committed its own change, or failed for good', () => {
      expect(conclusionOf({ ok: true, version: 3, change: { op: 'delete', id: 'x' }, own: true })).to.deep.equal({ then: 'finish' });
      for (const code of ['E_NO_QUORUM', 'E_NOT_ANCHOR', 'E_REJECTED', 'E_EXISTS'] as const) {
        expect(conclusionOf({ ok: false, code, reason: 'r' }), code).to.deep.equal({ then: 'finish' });
      }
    });

    it('tries again at once when another anchor\'s change took the version', () => {
      expect(conclusionOf({ ok: true, version: 3, change: { op: 'delete', id: 'x' }, own: false })).to.deep.equal({ then: 'again', code: 'E_BUSY' });
    });

    it('backs off from a higher ballot (learning its round), a version decided elsewhere (fetching it), and lost messages', () => {
      expect(conclusionOf({ ok: false, code: 'E_BUSY', round: 7, reason: 'r' })).to.deep.equal({ then: 'backoff', code: 'E_BUSY', round: 7, fetch: false });
      expect(conclusionOf({ ok: false, code: 'E_STALE', have: 4, reason: 'r' })).to.deep.equal({ then: 'backoff', code: 'E_STALE', round: undefined, fetch: true });
      expect(conclusionOf({ ok: false, code: 'E_TIMEOUT', reason: 'r' })).to.deep.equal({ then: 'backoff', code: 'E_TIMEOUT', round: undefined, fetch: false });
    });
  });

  describe('backoff and attempts', () => {
    it('pauses one to three periods, by the draw', () => {
      expect([0, 0.25, 0.5, 0.75].map(backoffPeriods)).to.deep.equal([1, 1.5, 2, 2.5]);
      expect(backoffPeriods(0.999_999)).to.be.within(2.999, 3);
    });

    it('retries after the pause until the ATTEMPTS_MAX-th try, then gives up saying why', () => {
      expect(nextTry(0, 'E_BUSY', 1_000, 250)).to.deep.equal({ attempts: 1, notBefore: 1_250 });
      let attempts = 0;
      let last = nextTry(attempts, 'E_TIMEOUT', 0, 0);
      while ('notBefore' in last) last = nextTry((attempts = last.attempts), 'E_TIMEOUT', 0, 0);
      expect(attempts).to.equal(ATTEMPTS_MAX - 1);
      expect(last).to.deep.equal({
        attempts: ATTEMPTS_MAX,
        out: { ok: false, code: 'E_TIMEOUT', reason: `gave up after ${ATTEMPTS_MAX} tries (E_TIMEOUT)` },
      });
    });
  });

  describe('fetching a newer version', () => {
    it('asks at most once a period', () => {
      expect(fetchIsDue(0, -Infinity, 100)).to.equal(true);
      expect(fetchIsDue(1_099, 1_000, 100)).to.equal(false);
      expect(fetchIsDue(1_100, 1_000, 100)).to.equal(true);
    });

    it('asks the anchor that named the version, else the first one alive, else one at random: one draw, only then', () => {
      const r = recording();
      expect(fetchTarget('c', [a, b], new Set(), r)).to.equal('c');
      expect(fetchTarget(undefined, [a, b, c], new Set(['c', 'b']), r)).to.equal('b');
      expect(r.asked, 'no draw while a choice is known').to.deep.equal([]);
      expect(fetchTarget(undefined, [a, b, c], new Set(['x']), r)).to.equal('b');
      expect(r.asked).to.deep.equal([3]);
      expect(fetchTarget(undefined, [], new Set(), recording(0))).to.equal(undefined);
    });
  });
});
