/**
 * Generated paths through one anchor's node-db lock: every state is
 * reached; on every path the anchor holds at most one lock, only ever for
 * db.version + 1 with a change that applies, answers ok only for the lock it
 * then holds, and changes its db only by committing that lock or adopting a
 * newer snapshot.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import type { NdbOp, NodeDbSnapshot } from '../../bus/messages.js';
import { shortIdOf } from '../../machines/identity.js';
import { applyChange, genesis } from '../../machines/node-db.js';
import {
  machineName,
  ndbSubordinateMachine,
  type NdbSubordinateEvent,
  type NdbSubordinateSnapshot,
} from '../../machines/node-db-subordinate.js';
import { afterEvent, leafStates, pathEvents, replay, type Emitted } from '../helpers/machine-harness.js';

const VERSION_MAX = 4;
const db1 = genesis(['a', 'b', 'c'].map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 })));
const input = { self: 'b', db: db1, lockTimeoutMs: 1000 };

const add = (prefix: string, version: number, slot: number): NdbOp => ({
  op: 'add',
  node: { id: `${prefix}${version}`, shortId: shortIdOf(0, slot), endpoint: 'tcp://n:1', anchor: false, votes: 0, group: 0 },
});

function eventsFor(s: NdbSubordinateSnapshot): NdbSubordinateEvent[] {
  const v = s.context.db.version + 1;
  if (v > VERSION_MAX) return [];
  const newer: NodeDbSnapshot = { version: v + 1, nodes: s.context.db.nodes };
  return [
    { type: 'PREPARE', from: 'a', version: v, change: add('n', v, 10 + v) },
    { type: 'PREPARE', from: 'c', version: v, change: add('m', v, 30 + v) },
    { type: 'PREPARE', from: 'a', version: v + 1, change: add('n', v + 1, 20 + v) },
    { type: 'PREPARE', from: 'c', version: v, change: { op: 'delete', id: 'nobody' } },
    { type: 'COMMIT', from: 'a', version: v },
    { type: 'COMMIT', from: 'c', version: v },
    { type: 'ABORT', from: 'a', version: v },
    { type: 'BEGIN_LOCAL', version: v, change: add('s', v, 50 + v) },
    { type: 'END_LOCAL', commit: true },
    { type: 'END_LOCAL', commit: false },
    { type: 'ADOPT', db: newer },
    afterEvent(machineName, 'lockTimeout', 'locked') as unknown as NdbSubordinateEvent,
  ];
}

function checkSnapshot(s: NdbSubordinateSnapshot): void {
  const { lock, db } = s.context;
  expect(s.value === 'locked', 'locked exactly when a lock is held').to.equal(lock !== undefined);
  if (lock) {
    expect(lock.version).to.equal(db.version + 1);
    expect(applyChange(db, lock.change).ok, 'a held change applies').to.equal(true);
  }
}

describe('node-db subordinate (M2), generated paths', () => {
  const paths = getShortestPaths(ndbSubordinateMachine, {
    input,
    events: eventsFor,
    serializeState: (s, e) =>
      JSON.stringify([s.value, s.context.db.version, s.context.lock?.coordinator ?? null, (e as { type: string } | undefined)?.type]),
    limit: 20_000,
  });

  it('reaches every state, and versions up to the cap', () => {
    const reached = new Set(paths.map((p) => String(p.state.value)));
    expect([...reached].sort()).to.deep.equal(leafStates(ndbSubordinateMachine).sort());
    expect(Math.max(...paths.map((p) => p.state.context.db.version))).to.equal(VERSION_MAX + 1);
  });

  it('never holds two locks, nor one it could not commit', () => {
    for (const p of paths) checkSnapshot(p.state);
  });

  it('answers ok only for the lock it then holds, and changes its db only by commit or adoption', () => {
    for (const p of paths) {
      const evs = pathEvents(p.steps);
      const { snapshots, emitted } = replay(ndbSubordinateMachine, input, evs);
      for (let i = 1; i < snapshots.length; i++) {
        const before = snapshots[i - 1].context;
        const after = snapshots[i].context;
        const event = evs[i - 1];
        const out: Emitted[] = emitted[i];
        checkSnapshot(snapshots[i]);
        const oks = out.filter((e) => e.type === 'send' && (e.body as { ok: boolean }).ok);
        if (oks.length > 0) {
          expect(event.type).to.equal('PREPARE');
          if (event.type !== 'PREPARE') continue;
          expect(after.lock).to.deep.equal({ coordinator: event.from, version: event.version, change: event.change });
          expect(before.lock === undefined || JSON.stringify(before.lock) === JSON.stringify(after.lock)).to.equal(true);
        }
        const committed = out.filter((e) => e.type === 'committed');
        const adopted = out.filter((e) => e.type === 'adopted');
        if (after.db === before.db) {
          expect(committed.length + adopted.length).to.equal(0);
        } else if (committed.length === 1) {
          const want = applyChange(before.db, before.lock!.change);
          expect(want.ok && want.db).to.deep.equal(after.db);
          expect(committed[0].db).to.equal(after.db);
        } else {
          expect(adopted).to.have.length(1);
          expect(after.db.version).to.be.greaterThan(before.db.version);
          expect(before.lock).to.equal(undefined);
        }
      }
    }
  });
});
