/**
 * The byte-range lock machine (M21), one path at a time, then a randomized
 * model check: two or three requests and their releases over one lock page
 * with a toy engine page lock (shared or exclusive, FIFO), interleaved by a
 * seeded scheduler, must never grant two incompatible locks at once, and
 * must grant every waiting request once the holders release.
 */
import { expect } from 'chai';
import { createActor, type Actor } from 'xstate';
import {
  ATTEMPTS_MAX,
  byteRangeLockMachine,
  type ByteRangeCommand,
  type ByteRangeLockEvent,
  type ByteRangeLockInput,
} from '../../../../machines/fs/byte-range-lock.js';
import { RANGE_LOCKS_MAX, type RangeLock, type RangeLockMode } from '../../../../machines/fs/byte-ranges.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { Running } from '../../../helpers/machine-harness.js';
import { forSeeds } from '../../../helpers/sim-checks.js';

const lock = (owner: string, start: number, end: number, mode: RangeLockMode = 'exclusive'): RangeLock => ({
  start,
  end,
  mode,
  owner,
  node: 'n1',
  epoch: 1,
  key: 0,
});

const run = (request: RangeLock, more: Omit<ByteRangeLockInput, 'request'> = {}) =>
  new Running(byteRangeLockMachine, { request, ...more }).send({ type: 'START' });

/** The commands emitted since the last call, as `lockPage:shared`, `readPage`, `writePage`, `unlockPage`. */
const commands = (r: Running<typeof byteRangeLockMachine>): string[] =>
  r.drain().map((c) => (c.type === 'lockPage' ? `lockPage:${String(c['mode'])}` : c.type));

const LOCKED = { type: 'PAGE_LOCKED' } as const;
const UNLOCKED = { type: 'PAGE_UNLOCKED' } as const;
const WRITTEN = { type: 'PAGE_WRITTEN' } as const;
const CHANGED = { type: 'PAGE_CHANGED' } as const;
const read = (table: RangeLock[]) => ({ type: 'PAGE_READ', table }) as const;

const mine = lock('h-me', 0, 100);
const theirs = lock('h-other', 50, 150);
const beside = lock('h-other', 100, 200);

/** Drives pass (a) on `table`: shared lock, read, unlock. */
const sharedPass = (r: Running<typeof byteRangeLockMachine>, table: RangeLock[]) => r.send(LOCKED).send(read(table)).send(UNLOCKED);

describe('byte-range lock machine', () => {
  it('takes a compatible lock: a shared pass, then the exclusive pass writes the table', () => {
    const r = run(mine);
    expect(commands(r)).to.deep.equal(['lockPage:shared']);
    r.send(LOCKED).send(read([beside]));
    expect(r.snapshot.context.heldPageLock).to.equal('shared');
    expect(commands(r)).to.deep.equal(['readPage', 'unlockPage']);
    r.send(UNLOCKED);
    expect(r.snapshot.context.heldPageLock).to.equal('none');
    expect(commands(r)).to.deep.equal(['lockPage:exclusive']);
    r.send(LOCKED).send(read([beside]));
    expect(r.snapshot.context.heldPageLock).to.equal('exclusive');
    expect(r.emitted.at(-1)).to.deep.equal({ type: 'writePage', table: [beside, mine] });
    expect(commands(r)).to.deep.equal(['readPage', 'writePage']);
    r.send(WRITTEN);
    expect(commands(r)).to.deep.equal(['unlockPage']);
    r.send(UNLOCKED);
    expect(r.value).to.equal('granted');
    expect(r.snapshot.status).to.equal('done');
    expect(r.snapshot.context).to.deep.include({ heldPageLock: 'none', attempts: 1, conflict: null, failure: null });
  });

  it('refuses a conflicting request that does not wait, naming the conflict, without locking the page exclusively', () => {
    const r = run(mine);
    sharedPass(r, [theirs]);
    expect(r.value).to.equal('refused');
    expect(r.snapshot.context.conflict).to.deep.equal(theirs);
    expect(commands(r)).to.deep.equal(['lockPage:shared', 'readPage', 'unlockPage']);
  });

  it('waits for the page to change, then passes (a) again and is granted', () => {
    const r = run(mine, { wait: true });
    sharedPass(r, [theirs]);
    expect(r.value).to.equal('waiting');
    expect(r.snapshot.context.heldPageLock).to.equal('none');
    r.drain();
    r.send(CHANGED);
    expect(commands(r)).to.deep.equal(['lockPage:shared']);
    expect(r.snapshot.context.attempts).to.equal(2);
    sharedPass(r, []).send(LOCKED).send(read([])).send(WRITTEN).send(UNLOCKED);
    expect(r.value).to.equal('granted');
  });

  it('never grants when a conflicting lock appears between the shared read and the exclusive lock', () => {
    const refused = run(mine);
    sharedPass(refused, []).send(LOCKED).send(read([theirs]));
    expect(refused.snapshot.context.heldPageLock).to.equal('exclusive');
    refused.send(UNLOCKED);
    expect(refused.value).to.equal('refused');
    expect(commands(refused)).to.deep.equal(['lockPage:shared', 'readPage', 'unlockPage', 'lockPage:exclusive', 'readPage', 'unlockPage']);

    const waiter = run(mine, { wait: true });
    sharedPass(waiter, []).send(LOCKED).send(read([theirs])).send(UNLOCKED);
    expect(waiter.value).to.equal('waiting');
    expect(waiter.of('writePage')).to.deep.equal([]);
  });

  it('writes the table it read under the exclusive lock, with whatever compatible lock appeared meanwhile', () => {
    const r = run(mine);
    sharedPass(r, []).send(LOCKED).send(read([beside]));
    expect(r.of('writePage')).to.deep.equal([{ type: 'writePage', table: [beside, mine] }]);
  });

  it('does not lose a change noticed between its read and waiting: it passes (a) again at once', () => {
    const r = run(mine, { wait: true });
    r.send(LOCKED).send(read([theirs])).send(CHANGED).send(UNLOCKED);
    expect(r.value).to.equal('sharedLocking');
    expect(r.snapshot.context.attempts).to.equal(2);
    // A change before the read was asked for is one the read shows.
    const s = run(mine, { wait: true }).send(CHANGED).send(LOCKED).send(read([theirs])).send(UNLOCKED);
    expect(s.value).to.equal('waiting');
  });

  it('gives back a page lock it holds when the engine fails, and none it does not', () => {
    const holding = run(mine);
    sharedPass(holding, []).send(LOCKED).send(read([])).send({ type: 'FAILED', code: 'E_TIMEOUT', message: 'the write timed out' });
    expect(holding.value).to.deep.equal({ unlocking: 'failed' });
    expect(holding.emitted.at(-1)).to.deep.equal({ type: 'unlockPage' });
    holding.send(UNLOCKED);
    expect(holding.value).to.equal('failed');
    expect(holding.snapshot.context).to.deep.include({ heldPageLock: 'none', failure: { code: 'E_TIMEOUT', message: 'the write timed out' } });

    const asking = run(mine);
    asking.drain();
    asking.send({ type: 'FAILED', code: 'E_UNREACHABLE', message: 'the home is gone' });
    expect(asking.value).to.equal('failed');
    expect(commands(asking)).to.deep.equal([]);

    const unlocking = run(mine).send(LOCKED).send(read([]));
    unlocking.drain();
    unlocking.send({ type: 'FAILED', code: 'E_UNREACHABLE', message: 'the unlock was lost' });
    expect(unlocking.value).to.equal('failed');
    expect(commands(unlocking)).to.deep.equal([]);
  });

  it('ends granted when only the last unlock fails: the record is in the table', () => {
    const r = run(mine);
    sharedPass(r, []).send(LOCKED).send(read([])).send(WRITTEN).send({ type: 'FAILED', code: 'E_UNREACHABLE', message: 'lost' });
    expect(r.value).to.equal('granted');
    expect(r.snapshot.context.failure?.code).to.equal('E_UNREACHABLE');
  });

  it('fails E_BUSY, after unlocking, when the table is full', () => {
    const full = Array.from({ length: RANGE_LOCKS_MAX }, (_, i) => lock(`h${i}`, 1000 + i, 1001 + i));
    const r = run(mine);
    sharedPass(r, full).send(LOCKED).send(read(full));
    expect(r.emitted.at(-1)).to.deep.equal({ type: 'unlockPage' });
    r.send(UNLOCKED);
    expect(r.value).to.equal('failed');
    expect(r.snapshot.context.failure?.code).to.equal('E_BUSY');
  });

  it('is cancelled while waiting, and at its next step otherwise, giving back the page lock', () => {
    const waiting = run(mine, { wait: true });
    sharedPass(waiting, [theirs]);
    waiting.drain();
    waiting.send({ type: 'CANCEL' });
    expect(waiting.value).to.equal('cancelled');
    expect(commands(waiting)).to.deep.equal([]);

    const asking = run(mine, { wait: true }).send({ type: 'CANCEL' });
    asking.drain();
    asking.send(LOCKED);
    expect(commands(asking)).to.deep.equal(['unlockPage']);
    asking.send(UNLOCKED);
    expect(asking.value).to.equal('cancelled');
    expect(asking.snapshot.context.heldPageLock).to.equal('none');

    const before = new Running(byteRangeLockMachine, { request: mine }).send({ type: 'CANCEL' });
    expect(before.value).to.equal('cancelled');
    expect(before.emitted).to.deep.equal([]);
  });

  it('fails E_BUSY after attemptsMax passes on a page that keeps changing', () => {
    expect(ATTEMPTS_MAX).to.equal(1000);
    const r = run(mine, { wait: true, attemptsMax: 3 });
    for (let i = 0; i < 3; i++) sharedPass(r, [theirs]).send(CHANGED);
    expect(r.value).to.equal('failed');
    expect(r.snapshot.context.attempts).to.equal(3);
    expect(r.snapshot.context.failure?.code).to.equal('E_BUSY');
    expect(r.of('lockPage')).to.have.length(3);
  });

  it('releases a lock under the exclusive page lock, reporting whether it was there', () => {
    const table = [theirs, mine];
    const r = run(mine, { op: 'release' });
    expect(commands(r)).to.deep.equal(['lockPage:exclusive']);
    r.send(LOCKED).send(read(table));
    expect(r.emitted.at(-1)).to.deep.equal({ type: 'writePage', table: [theirs] });
    r.send({ type: 'CANCEL' }).send(WRITTEN).send(UNLOCKED);
    expect(r.value).to.equal('released');
    expect(r.snapshot.context.found).to.equal(true);

    const absent = run(mine, { op: 'release' }).send(LOCKED).send(read([theirs]));
    expect(absent.of('writePage')).to.deep.equal([]);
    absent.send(UNLOCKED);
    expect(absent.value).to.equal('released');
    expect(absent.snapshot.context.found).to.equal(false);
  });

  it('refuses a malformed request at start', () => {
    const actor = createActor(byteRangeLockMachine, { input: { request: lock('a', 5, 5) } });
    actor.subscribe({ error: () => undefined });
    actor.start();
    expect(actor.getSnapshot().status).to.equal('error');
  });

  describe('model check: concurrent requests over one lock page', () => {
    it('never grants incompatible locks together, and grants every waiter once the holders release (500 seeds)', () => {
      forSeeds(
        Array.from({ length: 500 }, (_, i) => i + 1),
        simulate,
      );
    });
  });
});

/** An independent reading of M21: overlapping ranges, and one of them exclusive. */
const clash = (a: RangeLock, b: RangeLock): boolean => a.start < b.end && b.start < a.end && (a.mode === 'exclusive' || b.mode === 'exclusive');

interface Proc {
  id: string;
  request: RangeLock;
  op: 'lock' | 'release';
  wait: boolean;
  actor: Actor<typeof byteRangeLockMachine>;
  /** Answers to its commands, in order. */
  inbox: ByteRangeLockEvent[];
  /** Page-change notifications, which may overtake answers. */
  notes: ByteRangeLockEvent[];
  cancelled: boolean;
}

const STEPS_MAX = 20_000;

/** One run: 2 or 3 requests, each released some while after its grant. */
function simulate(seed: number): void {
  const rnd = new SeededRandom(seed);
  // The toy engine: the page's table and its page lock (per client, FIFO, no upgrade).
  let table: RangeLock[] = [];
  const holders = new Map<string, RangeLockMode>();
  const queue: { proc: Proc; mode: RangeLockMode }[] = [];
  const procs: Proc[] = [];
  /** Locks granted and not yet being released: the claim is about these. */
  const held: Proc[] = [];

  /** What broke, noted where XState calls back (a throw there would not reach the test) and checked after every step. */
  const broken: string[] = [];
  const check = (ok: boolean, why: string) => {
    if (!ok) broken.push(why);
  };

  const fits = (mode: RangeLockMode) => holders.size === 0 || (mode === 'shared' && [...holders.values()].every((m) => m === 'shared'));
  const grantQueued = () => {
    while (queue.length > 0 && fits(queue[0].mode)) {
      const { proc, mode } = queue.shift()!;
      holders.set(proc.id, mode);
      proc.inbox.push({ type: 'PAGE_LOCKED' });
    }
  };
  const engine = (proc: Proc, cmd: ByteRangeCommand) => {
    switch (cmd.type) {
      case 'lockPage':
        check(!holders.has(proc.id) && !queue.some((q) => q.proc === proc), `${proc.id} asks for a page lock it holds or awaits`);
        queue.push({ proc, mode: cmd.mode });
        grantQueued();
        return;
      case 'readPage':
        check(holders.has(proc.id), `${proc.id} reads without the page lock`);
        proc.inbox.push({ type: 'PAGE_READ', table: structuredClone(table) });
        return;
      case 'writePage':
        check(holders.get(proc.id) === 'exclusive', `${proc.id} writes without the exclusive page lock`);
        for (let i = 0; i < cmd.table.length; i++) {
          for (let j = i + 1; j < cmd.table.length; j++) check(!clash(cmd.table[i], cmd.table[j]), `${proc.id} writes two conflicting locks`);
        }
        table = structuredClone(cmd.table);
        proc.inbox.push({ type: 'PAGE_WRITTEN' });
        for (const other of procs) if (other !== proc && other.actor.getSnapshot().status === 'active') other.notes.push({ type: 'PAGE_CHANGED' });
        return;
      case 'unlockPage':
        check(holders.delete(proc.id), `${proc.id} unlocks a page it does not hold`);
        grantQueued();
        proc.inbox.push({ type: 'PAGE_UNLOCKED' });
        return;
    }
  };

  const spawn = (id: string, request: RangeLock, op: 'lock' | 'release', wait: boolean): Proc => {
    const actor = createActor(byteRangeLockMachine, { input: { request, op, wait } });
    const proc: Proc = { id, request, op, wait, actor, inbox: [{ type: 'START' }], notes: [], cancelled: false };
    actor.on('*', (cmd) => engine(proc, cmd));
    actor.start();
    procs.push(proc);
    return proc;
  };

  /** Records grants as they happen, checking each against the locks held: the safety claim. */
  const seen = new Set<Proc>();
  const observe = () => {
    for (const p of procs) {
      const s = p.actor.getSnapshot();
      if (s.status === 'error') broken.push(`${p.id} crashed: ${String(s.error)}`);
      if (s.status !== 'done' || seen.has(p)) continue;
      seen.add(p);
      if (s.value === 'released') check(s.context.found, `${p.id} released a lock that was not there`);
      if (s.value !== 'granted') continue;
      for (const other of held) check(!clash(other.request, p.request), `${p.id} granted beside ${other.id}`);
      check(table.some((l) => l.owner === p.request.owner && l.start === p.request.start && l.end === p.request.end), `${p.id} granted without its record`);
      held.push(p);
    }
    expect(broken.join('; ')).to.equal('');
  };

  const count = 2 + rnd.int(2);
  const owners = ['h-a', 'h-b', 'h-c'];
  for (let i = 0; i < count; i++) {
    const start = rnd.int(8);
    const end = rnd.int(5) === 0 ? Number.MAX_SAFE_INTEGER : start + 1 + rnd.int(6);
    const request: RangeLock = { start, end, mode: rnd.int(2) === 0 ? 'shared' : 'exclusive', owner: owners[rnd.int(owners.length)], node: 'n1', epoch: 1, key: i };
    spawn(`p${i}`, request, 'lock', rnd.int(4) !== 0);
  }

  const releasing = new Set<Proc>();
  observe();
  for (let step = 0; ; step++) {
    expect(step, 'the run ends').to.be.lessThan(STEPS_MAX);
    type Move = () => void;
    const moves: Move[] = [];
    for (const p of procs) {
      if (p.inbox.length > 0) moves.push(() => p.actor.send(p.inbox.shift()!));
      if (p.notes.length > 0) moves.push(() => p.actor.send(p.notes.shift()!));
      // A caller that gives up: rare, so most waiters live to be granted.
      if (p.op === 'lock' && p.wait && !p.cancelled && p.actor.getSnapshot().status === 'active' && rnd.int(50) === 0) {
        moves.push(() => {
          p.cancelled = true;
          p.actor.send({ type: 'CANCEL' });
        });
      }
    }
    for (const h of held) {
      if (!releasing.has(h)) {
        moves.push(() => {
          releasing.add(h);
          held.splice(held.indexOf(h), 1);
          spawn(`${h.id}-release`, h.request, 'release', false);
        });
      }
    }
    if (moves.length === 0) break;
    moves[rnd.int(moves.length)]();
    observe();
  }

  // Liveness: everyone finished, every waiter that stayed was granted, and every grant was released.
  for (const p of procs) {
    const s = p.actor.getSnapshot();
    expect(s.status, `${p.id} is stuck in ${JSON.stringify(s.value)}`).to.equal('done');
    expect(s.context.heldPageLock, `${p.id} ended holding the page lock`).to.equal('none');
    if (p.op === 'release') expect(s.value).to.equal('released');
    else if (p.cancelled) expect(['granted', 'cancelled']).to.include(s.value);
    else if (p.wait) expect(s.value, `${p.id} waited and was not granted`).to.equal('granted');
    else expect(['granted', 'refused']).to.include(s.value);
  }
  expect(holders.size, 'a page lock is still held').to.equal(0);
  expect(queue, 'a page lock request is still queued').to.deep.equal([]);
  expect(table, 'every granted lock was released').to.deep.equal([]);
}
