import { expect } from 'chai';
import type { Identity, NodeDbSnapshot, NodeEntry } from '../../../../bus/messages/index.js';
import { MEMBERS_PER_GROUP_MAX, shortIdOf } from '../../../../machines/membership/identity.js';
import { applied } from '../../../fixtures/node-entries.js';
import {
  anchorsOf,
  applyChange,
  arenaEntryOf,
  arenasOf,
  arenasServedBy,
  emptyDb,
  findNode,
  genesis,
  keyAt,
  keysOf,
  maxGroup,
  nextShortId,
  reservingArena,
  sameChange,
  sameContents,
  totalVotes,
} from '../../../../machines/membership/node-db.js';

const ident = (id: string, group = 0, votes = 1): Identity => ({
  id,
  endpoint: `tcp://10.0.0.1:${id.length}`,
  anchor: true,
  votes,
  group,
});

const entry = (id: string, shortId: number, over: Partial<NodeEntry> = {}): NodeEntry => ({
  id,
  shortId,
  endpoint: `tcp://host-${id}:7000`,
  anchor: false,
  votes: 0,
  group: Math.floor(shortId / MEMBERS_PER_GROUP_MAX),
  ...over,
});

const mustApply = applied;

describe('node database (M2)', () => {
  describe('emptyDb and genesis', () => {
    it('starts empty at version 0', () => {
      expect(emptyDb()).to.deep.equal({ version: 0, nodes: [] });
    });

    it('holds exactly the configured anchors at version 1', () => {
      const db = genesis([ident('b'), ident('a'), ident('c', 1, 2)]);
      expect(db.version).to.equal(1);
      expect(db.nodes.map((n) => [n.id, n.shortId, n.group, n.votes])).to.deep.equal([
        ['a', shortIdOf(0, 0), 0, 1],
        ['b', shortIdOf(0, 1), 0, 1],
        ['c', shortIdOf(1, 0), 1, 2],
      ]);
      expect(totalVotes(db)).to.equal(4);
    });

    it('builds the same database whatever order the anchors are listed in', () => {
      const anchors = ['e', 'a', 'd', 'b', 'c'].map((id, i) => ident(id, i % 2));
      const want = genesis(anchors);
      for (const order of [[...anchors].reverse(), [anchors[2], anchors[0], anchors[4], anchors[1], anchors[3]]]) {
        expect(genesis(order)).to.deep.equal(want);
      }
    });

    it('keeps the fields of an entry and nothing else', () => {
      const stray = { ...ident('a'), pid: 42, extra: 'x' } as Identity;
      const db = genesis([stray, ident('b')]);
      expect(Object.keys(db.nodes[0]).sort()).to.deep.equal(['anchor', 'endpoint', 'group', 'id', 'pid', 'shortId', 'votes']);
      expect(Object.keys(db.nodes[1])).to.not.include('pid');
    });

    it('refuses a duplicate id and a non-anchor', () => {
      expect(() => genesis([ident('a'), ident('a')])).to.throw(/listed twice/);
      expect(() => genesis([{ ...ident('a'), anchor: false }])).to.throw(/not an anchor/);
    });
  });

  describe('nextShortId', () => {
    it('gives the lowest free slot of the group', () => {
      let db = mustApply(
        emptyDb(),
        { op: 'add', node: entry('x', shortIdOf(2, 0)) },
        { op: 'add', node: entry('y', shortIdOf(2, 2)) },
        { op: 'add', node: entry('z', shortIdOf(3, 1)) },
      );
      expect(nextShortId(db, 2)).to.deep.equal({ ok: true, shortId: shortIdOf(2, 1) });
      expect(nextShortId(db, 3)).to.deep.equal({ ok: true, shortId: shortIdOf(3, 0) });
      expect(nextShortId(db, 7)).to.deep.equal({ ok: true, shortId: shortIdOf(7, 0) });
      db = mustApply(db, { op: 'delete', id: 'x' });
      expect(nextShortId(db, 2)).to.deep.equal({ ok: true, shortId: shortIdOf(2, 0) });
    });

    it('reports a full group of 64', () => {
      let db = emptyDb();
      for (let slot = 0; slot < MEMBERS_PER_GROUP_MAX; slot++) {
        const next = nextShortId(db, 1);
        if (!next.ok) throw new Error(next.reason);
        db = mustApply(db, { op: 'add', node: entry(`n${String(slot).padStart(2, '0')}`, next.shortId) });
      }
      const full = nextShortId(db, 1);
      expect(full.ok).to.equal(false);
      expect(full.ok ? '' : full.code).to.equal('E_GROUP_FULL');
      expect(nextShortId(db, 0).ok).to.equal(true);
      expect(() => genesis(Array.from({ length: 65 }, (_, i) => ident(`a${i}`)))).to.throw(/64 members/);
    });
  });

  describe('applyChange', () => {
    const base = genesis([ident('a'), ident('b')]);

    it('adds, changes and deletes, one version each, keeping nodes sorted by id', () => {
      const added = mustApply(base, { op: 'add', node: entry('0c', shortIdOf(0, 5)) });
      expect(added.version).to.equal(2);
      expect(added.nodes.map((n) => n.id)).to.deep.equal(['0c', 'a', 'b']);
      const changed = mustApply(added, { op: 'change', node: entry('0c', shortIdOf(1, 0), { endpoint: 'tcp://new:1' }) });
      expect(changed.version).to.equal(3);
      expect(findNode(changed, '0c')).to.deep.include({ endpoint: 'tcp://new:1', group: 1 });
      const deleted = mustApply(changed, { op: 'delete', id: 'a' });
      expect(deleted.version).to.equal(4);
      expect(deleted.nodes.map((n) => n.id)).to.deep.equal(['0c', 'b']);
    });

    it('never mutates the snapshot it is given', () => {
      const copy = structuredClone(base);
      mustApply(base, { op: 'add', node: entry('c', shortIdOf(0, 9)) }, { op: 'delete', id: 'a' });
      expect(base).to.deep.equal(copy);
    });

    const refusals: [string, Parameters<typeof applyChange>[1], string, string][] = [
      ['adding an id already present', { op: 'add', node: entry('a', shortIdOf(0, 9)) }, 'E_EXISTS', 'node a is already in the database'],
      ['adding on a short id taken', { op: 'add', node: entry('c', shortIdOf(0, 1)) }, 'E_SHORT_ID_TAKEN', `short id ${shortIdOf(0, 1)} is held by b`],
      [
        'a short id outside the group',
        { op: 'add', node: entry('c', shortIdOf(0, 3), { group: 4 }) },
        'E_BAD_SHORT_ID',
        `short id ${shortIdOf(0, 3)} of c is not in its group 4`,
      ],
      ['deleting an unknown id', { op: 'delete', id: 'zz' }, 'E_UNKNOWN_NODE', 'node zz is not in the database'],
      ['changing an unknown id', { op: 'change', node: entry('zz', 3) }, 'E_UNKNOWN_NODE', 'node zz is not in the database'],
      [
        'changing onto a short id held by another',
        { op: 'change', node: entry('a', shortIdOf(0, 1)) },
        'E_SHORT_ID_TAKEN',
        `short id ${shortIdOf(0, 1)} is held by b`,
      ],
    ];
    for (const [what, change, code, reason] of refusals) {
      it(`refuses ${what} with ${code}, saying why, without throwing`, () => {
        expect(applyChange(base, change)).to.deep.equal({ ok: false, code, reason });
      });
    }

    it('lets a change keep its own short id', () => {
      const r = applyChange(base, { op: 'change', node: { ...findNode(base, 'a')!, votes: 3 } });
      expect(r.ok && totalVotes(r.db)).to.equal(4);
    });
  });

  describe('queries', () => {
    const db = mustApply(
      genesis([ident('a', 0, 2), ident('b')]),
      { op: 'add', node: entry('m', shortIdOf(5, 0)) },
      { op: 'add', node: entry('n', shortIdOf(3, 0), { votes: 7 }) },
    );

    it('counts votes of anchors only', () => {
      expect(totalVotes(db)).to.equal(3);
      expect(anchorsOf(db).map((n) => n.id)).to.deep.equal(['a', 'b']);
    });

    it('finds nodes and the highest group', () => {
      expect(findNode(db, 'm')?.group).to.equal(5);
      expect(findNode(db, 'zz')).to.equal(undefined);
      expect(maxGroup(db)).to.equal(5);
      expect(maxGroup(emptyDb())).to.equal(0);
    });
  });

  describe('sameContents', () => {
    const db = genesis([ident('a'), ident('b'), ident('c')]);

    it('ignores the order of nodes', () => {
      expect(sameContents(db, { ...db, nodes: [...db.nodes].reverse() })).to.equal(true);
    });

    it('tells apart another version, another node, or one field changed', () => {
      expect(sameContents(db, { ...db, version: 2 })).to.equal(false);
      expect(sameContents(db, { ...db, nodes: db.nodes.slice(1) })).to.equal(false);
      const tweaked = { ...db, nodes: db.nodes.map((n, i) => (i === 1 ? { ...n, endpoint: 'tcp://x:1' } : n)) };
      expect(sameContents(db, tweaked)).to.equal(false);
      const doubled = { ...db, nodes: [db.nodes[0], db.nodes[0], db.nodes[1]] };
      expect(sameContents(doubled, { ...db, nodes: [db.nodes[0], db.nodes[1], db.nodes[1]] })).to.equal(false);
    });
  });

  describe('sameChange', () => {
    const node = entry('c', shortIdOf(0, 5));

    it('compares deletes by id, and a delete with nothing else', () => {
      expect(sameChange({ op: 'delete', id: 'c' }, { op: 'delete', id: 'c' })).to.equal(true);
      expect(sameChange({ op: 'delete', id: 'c' }, { op: 'delete', id: 'd' })).to.equal(false);
      expect(sameChange({ op: 'delete', id: 'c' }, { op: 'add', node })).to.equal(false);
      expect(sameChange({ op: 'change', node }, { op: 'delete', id: 'c' })).to.equal(false);
    });

    it('compares adds and changes by op and every field of the entry, not by object', () => {
      expect(sameChange({ op: 'add', node }, { op: 'add', node: structuredClone(node) })).to.equal(true);
      expect(sameChange({ op: 'add', node }, { op: 'change', node })).to.equal(false);
      expect(sameChange({ op: 'change', node }, { op: 'change', node: { ...node, pid: 7 } })).to.equal(false);
    });
  });

  describe('arenas (M8, M16): the top of the disk directory', () => {
    const formed = () => genesis([ident('b'), ident('a'), ident('c')]);

    it('genesis gives arena 0 to the anchor with the lowest short id, and each anchor an arena of its own', () => {
      const db = formed();
      expect(db.arenas).to.deep.equal([
        { arena: 0, home: 'a', gen: 1, madeFor: 'a' },
        { arena: 1, home: 'a', gen: 1, madeFor: 'a' },
        { arena: 2, home: 'b', gen: 1, madeFor: 'b' },
        { arena: 3, home: 'c', gen: 1, madeFor: 'c' },
      ]);
      expect(db.nextArena).to.equal(4);
      expect(reservingArena(db, 'b')).to.deep.equal({ arena: 2, home: 'b', gen: 1, madeFor: 'b' });
    });

    it('never hands an arena number out twice: a new node after a deletion gets a fresh one, even on the freed short id', () => {
      let db = mustApply(formed(), { op: 'add', node: entry('d', 3) });
      expect(arenaEntryOf(db, 4)).to.deep.equal({ arena: 4, home: 'd', gen: 1, madeFor: 'd' });
      db = mustApply(db, { op: 'delete', id: 'd' });
      // The deleted node's arena stays, still naming it, until it is handed over.
      expect(arenaEntryOf(db, 4)?.home).to.equal('d');
      db = mustApply(db, { op: 'add', node: entry('e', 3) });
      expect(findNode(db, 'e')?.shortId).to.equal(3);
      expect(arenasServedBy(db, 'e').map((a) => a.arena)).to.deep.equal([5]);
      expect(db.nextArena).to.equal(6);
    });

    it('hands an arena over one generation up, and refuses a stale generation, an unknown arena or an unknown node', () => {
      const db = mustApply(formed(), { op: 'arena', arena: 2, home: 'c', gen: 2 });
      expect(arenaEntryOf(db, 2)).to.deep.equal({ arena: 2, home: 'c', gen: 2, madeFor: 'b' });
      expect(arenasServedBy(db, 'c').map((a) => a.arena)).to.deep.equal([2, 3]);
      const stale = applyChange(db, { op: 'arena', arena: 2, home: 'a', gen: 2 });
      expect(stale).to.deep.include({ ok: false, code: 'E_STALE_GEN' });
      expect(applyChange(db, { op: 'arena', arena: 9, home: 'a', gen: 1 })).to.deep.include({ ok: false, code: 'E_UNKNOWN_ARENA' });
      expect(applyChange(db, { op: 'arena', arena: 2, home: 'z', gen: 3 })).to.deep.include({ ok: false, code: 'E_UNKNOWN_NODE' });
    });

    it('gives a node that comes back to find its arenas handed over a fresh arena to reserve in', () => {
      let db = mustApply(formed(), { op: 'arena', arena: 2, home: 'c', gen: 2 });
      expect(reservingArena(db, 'b')).to.equal(undefined);
      const b = findNode(db, 'b') as NodeEntry;
      db = mustApply(db, { op: 'change', node: { ...b, epoch: 2 } });
      expect(reservingArena(db, 'b')).to.deep.equal({ arena: 4, home: 'b', gen: 1, madeFor: 'b' });
      // It does not get its old arena back: that one is c's now.
      expect(arenaEntryOf(db, 2)?.home).to.equal('c');
    });

    it('derives the arenas of a snapshot written before arenas moved: arena 0 at the first anchor, short id + 1 for each node', () => {
      const old: NodeDbSnapshot = { version: 4, nodes: [entry('a', 0, { anchor: true, votes: 1 }), entry('n', 5)] };
      expect(arenasOf(old)).to.deep.equal([
        { arena: 0, home: 'a', gen: 1, madeFor: 'a' },
        { arena: 1, home: 'a', gen: 1, madeFor: 'a' },
        { arena: 6, home: 'n', gen: 1, madeFor: 'n' },
      ]);
      const next = mustApply(old, { op: 'add', node: entry('m', 1) });
      expect(arenaEntryOf(next, 7)?.home).to.equal('m');
    });

    it('keeps member keys: one per endpoint, each key at one endpoint, sorted; a rotation replaces, null takes away', () => {
      const [k1, k2, k3] = ['1'.repeat(40), '2'.repeat(40), '3'.repeat(40)];
      const db = formed();
      const one = mustApply(db, { op: 'key', endpoint: 'tcp://h:2', key: k1 });
      const two = mustApply(one, { op: 'key', endpoint: 'tcp://h:1', key: k2 });
      expect(keysOf(two)).to.deep.equal([{ endpoint: 'tcp://h:1', key: k2 }, { endpoint: 'tcp://h:2', key: k1 }]);
      expect([two.version, two.arenas], 'one version each; the arenas untouched').to.deep.equal([db.version + 2, db.arenas]);
      const rotated = mustApply(two, { op: 'key', endpoint: 'tcp://h:2', key: k3 });
      expect(keyAt(rotated, 'tcp://h:2')).to.equal(k3);
      const taken = applyChange(rotated, { op: 'key', endpoint: 'tcp://h:1', key: k3 });
      expect(taken.ok === false && [taken.code, taken.reason]).to.deep.equal(['E_KEY_TAKEN', 'that key is already the key of tcp://h:2: each node has a pair of its own']);
      const gone = mustApply(mustApply(rotated, { op: 'key', endpoint: 'tcp://h:1', key: null }), { op: 'key', endpoint: 'tcp://h:2', key: null });
      expect([keysOf(gone), 'keys' in gone], 'the last key taken away leaves no field').to.deep.equal([[], false]);
      expect(keysOf(gone), 'the same (empty) array each time: the transport indexes keys only when the array changes').to.equal(keysOf(db));
      const none = applyChange(gone, { op: 'key', endpoint: 'tcp://h:1', key: null });
      expect(none.ok === false && none.code).to.equal('E_UNKNOWN_NODE');
      expect(sameContents(one, mustApply(db, { op: 'key', endpoint: 'tcp://h:2', key: k1 }))).to.equal(true);
      expect(sameContents(one, { ...mustApply(db, { op: 'key', endpoint: 'tcp://h:2', key: k2 }) })).to.equal(false);
      expect(sameChange({ op: 'key', endpoint: 'tcp://h:2', key: k1 }, { op: 'key', endpoint: 'tcp://h:2', key: k1 })).to.equal(true);
      expect(sameChange({ op: 'key', endpoint: 'tcp://h:2', key: k1 }, { op: 'key', endpoint: 'tcp://h:2', key: null })).to.equal(false);
    });

    it('counts the arena table in sameContents and in sameChange', () => {
      const db = formed();
      const moved = mustApply(db, { op: 'arena', arena: 1, home: 'b', gen: 2 });
      expect(sameContents({ ...moved, version: db.version }, db)).to.equal(false);
      expect(sameContents(moved, mustApply(db, { op: 'arena', arena: 1, home: 'b', gen: 2 }))).to.equal(true);
      expect(sameChange({ op: 'arena', arena: 1, home: 'b', gen: 2 }, { op: 'arena', arena: 1, home: 'b', gen: 2 })).to.equal(true);
      expect(sameChange({ op: 'arena', arena: 1, home: 'b', gen: 2 }, { op: 'arena', arena: 1, home: 'c', gen: 2 })).to.equal(false);
      expect(sameChange({ op: 'arena', arena: 1, home: 'b', gen: 2 }, { op: 'delete', id: 'b' })).to.equal(false);
    });
  });
});
