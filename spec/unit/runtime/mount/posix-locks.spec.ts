/**
 * fcntl semantics over the file system's byte-range locks (runtime/mount/
 * posix-locks.ts): the range arithmetic, and a model check — processes on
 * one mount lock, unlock, upgrade, split and test ranges of one file in a
 * seeded random order, through PosixLocks over a stand-in file system that
 * applies the real byte-range rules (machines/fs/byte-ranges.ts); every
 * answer must be the one POSIX gives, per a byte-by-byte model. The stand-in
 * replaces the node (this is about the mapping, which the cluster specs run
 * for real); it refuses what the node refuses.
 */
import { expect } from 'chai';
import { MangroveError } from '../../../../bus/errors.js';
import type { ClientFsOp } from '../../../../bus/messages/fs.js';
import { conflicts, withLock, withoutLock, type RangeLock } from '../../../../machines/fs/byte-ranges.js';
import type { MangroveClient } from '../../../../runtime/client/pages.js';
import type { PosixLockRequest } from '../../../../runtime/mount/fuse-extras.js';
import type { OpenFiles } from '../../../../runtime/mount/open-files.js';
import { outside, PosixLocks, rangeOf, TO_EOF, uncovered } from '../../../../runtime/mount/posix-locks.js';
import type { Logger } from '../../../../runtime/node/logger.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { forSeedsAsync } from '../../../helpers/sim-checks.js';

const EAGAIN = -11;
/** Bytes the model covers; requests stay inside. */
const BYTES = 16;
const PROCESSES = 3;

/** A node's byte-range locks on one file, by handle, with the node's rules (Win32's, every record advisory here). */
class StandInNode {
  table: RangeLock[] = [];
  readonly client = {
    fsCall: async (op: ClientFsOp): Promise<unknown> => {
      if (op.op === 'lock') {
        expect(op.advisory, 'the mount takes advisory locks').to.equal(true);
        const lock: RangeLock = { start: op.start, end: op.end, mode: op.mode, owner: op.handle, node: 'n', epoch: 1, key: 0, advisory: true };
        if (conflicts(this.table, lock).length > 0) throw new MangroveError('E_LOCKED', 'locked');
        this.table = withLock(this.table, lock);
        return { start: op.start, end: op.end, mode: op.mode };
      }
      if (op.op === 'unlock') {
        const r = withoutLock(this.table, op.handle, op.start, op.end);
        if (!r.removed) throw new MangroveError('E_NOT_FOUND', 'no such lock');
        this.table = r.table;
        return { released: true };
      }
      throw new Error(`unexpected ${op.op}`);
    },
  } as unknown as MangroveClient;

  files(): OpenFiles {
    return { with: <T>(fh: number, _path: string | null, fn: (c: MangroveClient, handle: string) => Promise<T>) => fn(this.client, `h${fh}`) } as unknown as OpenFiles;
  }
}

const quiet = { warn: () => undefined, debug: () => undefined, info: () => undefined } as unknown as Logger;
const never = new AbortController().signal;

function posix(p: number, cmd: 'setlk' | 'getlk', type: 'read' | 'write' | 'unlock', start: number, len: number): PosixLockRequest {
  return { kind: 'posix', path: '/f', fh: p, cmd, type, start, len, pid: 100 + p, owner: BigInt(p) };
}

describe('runtime/mount/posix-locks', () => {
  it('cuts ranges: what is outside a cut, what a set of locks leaves uncovered, and len 0 reaching past the end', () => {
    expect(outside({ start: 0, end: 10, mode: 'shared' }, 3, 5)).to.deep.equal([
      { start: 0, end: 3, mode: 'shared' },
      { start: 5, end: 10, mode: 'shared' },
    ]);
    expect(outside({ start: 0, end: 10, mode: 'shared' }, 0, 10)).to.deep.equal([]);
    expect(outside({ start: 4, end: 10, mode: 'exclusive' }, 0, 6)).to.deep.equal([{ start: 6, end: 10, mode: 'exclusive' }]);
    expect(uncovered([{ start: 2, end: 4, mode: 'shared' }, { start: 6, end: 8, mode: 'exclusive' }], 0, 10)).to.deep.equal([
      { start: 0, end: 2 },
      { start: 4, end: 6 },
      { start: 8, end: 10 },
    ]);
    expect(uncovered([{ start: 0, end: 10, mode: 'shared' }], 2, 3)).to.deep.equal([]);
    expect(rangeOf(5, 0)).to.deep.equal({ start: 5, end: TO_EOF });
    expect(rangeOf(5, 10)).to.deep.equal({ start: 5, end: 15 });
  });

  it('answers fcntl as POSIX does: grants, EAGAIN, upgrades, splits and F_GETLK, over 300 seeds of three processes', async () => {
    await forSeedsAsync(Array.from({ length: 300 }, (_, i) => i + 1), async (seed) => {
      const r = new SeededRandom(seed);
      const node = new StandInNode();
      const locks = new PosixLocks(node.files(), quiet);
      // The model: each process's lock on each byte.
      const held: ('read' | 'write' | null)[][] = Array.from({ length: PROCESSES }, () => new Array<'read' | 'write' | null>(BYTES).fill(null));
      const blocked = (p: number, start: number, end: number, type: 'read' | 'write') =>
        held.some((bytes, q) => q !== p && bytes.slice(start, end).some((h) => h !== null && (h === 'write' || type === 'write')));
      for (let step = 0; step < 60; step++) {
        const p = r.int(PROCESSES);
        const start = r.int(BYTES - 1);
        const len = 1 + r.int(BYTES - start - 1);
        const roll = r.int(10);
        const type = roll < 4 ? 'read' : roll < 8 ? 'write' : 'unlock';
        const what = `seed ${seed} step ${step}: process ${p} ${type} [${start}, ${start + len})`;
        if (r.int(5) === 0 && type !== 'unlock') {
          // F_GETLK looks only at the bytes the process does not hold itself (docs/mount.md): over its own
          // read lock it cannot see another's, and no other can hold anything under its write lock.
          const answer = await locks.handle(posix(p, 'getlk', type, start, len), never);
          const free = Array.from({ length: len }, (_, k) => start + k).every((b) => held[p]![b] !== null || !blocked(p, b, b + 1, type));
          expect(answer.getlk?.type === 'unlock', `${what} F_GETLK`).to.equal(free);
          continue;
        }
        const answer = await locks.handle(posix(p, 'setlk', type, start, len), never);
        if (type !== 'unlock' && blocked(p, start, start + len, type)) {
          expect(answer.errno, `${what} is refused`).to.equal(EAGAIN);
        } else {
          expect(answer.errno, `${what} is granted`).to.equal(0);
          for (let b = start; b < start + len; b++) held[p]![b] = type === 'unlock' ? null : type;
        }
        // The node's table holds exactly what the model says each process holds.
        for (let q = 0; q < PROCESSES; q++) {
          const bytes = new Array<'read' | 'write' | null>(BYTES).fill(null);
          for (const l of node.table.filter((l) => l.owner === `h${q}`)) {
            for (let b = l.start; b < Math.min(l.end, BYTES); b++) {
              expect(bytes[b], `${what}: process ${q} holds byte ${b} once`).to.equal(null);
              bytes[b] = l.mode === 'exclusive' ? 'write' : 'read';
            }
          }
          expect(bytes, `${what}: process ${q}'s locks on the node`).to.deep.equal(held[q]);
        }
      }
    });
  });

  it('gives flock whole-file locks that convert, and unlocks; a refused conversion keeps the lock held', async () => {
    const node = new StandInNode();
    const locks = new PosixLocks(node.files(), quiet);
    const flock = (fh: number, op: 'shared' | 'exclusive' | 'unlock') => locks.handle({ kind: 'flock', path: '/f', fh, op, nonblock: true, owner: BigInt(fh) }, never);
    expect((await flock(1, 'shared')).errno).to.equal(0);
    expect((await flock(2, 'shared')).errno).to.equal(0);
    expect((await flock(1, 'exclusive')).errno, 'another holds it shared').to.equal(EAGAIN);
    expect(node.table.filter((l) => l.owner === 'h1').map((l) => l.mode), 'the refused conversion kept the shared lock').to.deep.equal(['shared']);
    expect((await flock(2, 'unlock')).errno).to.equal(0);
    expect((await flock(1, 'exclusive')).errno).to.equal(0);
    expect(node.table.map((l) => [l.owner, l.mode, l.start, l.end])).to.deep.equal([['h1', 'exclusive', 0, TO_EOF]]);
    expect((await flock(1, 'unlock')).errno).to.equal(0);
    expect(node.table).to.deep.equal([]);
  });

  it('answers a waiting request EINTR once its process is interrupted', async () => {
    const node = new StandInNode();
    const locks = new PosixLocks(node.files(), quiet);
    expect((await locks.handle(posix(1, 'setlk', 'write', 0, 10), never)).errno).to.equal(0);
    const interrupted = new AbortController();
    interrupted.abort();
    const waited = await locks.handle({ ...posix(2, 'setlk', 'write', 0, 10), cmd: 'setlkw' }, interrupted.signal);
    expect(waited.errno).to.equal(-4);
  });
});
