/**
 * Generated paths through the page-lock machine (M7 lock and unlock), over
 * four clients (a and b calling through node n1, c and d through n2) and a
 * queue of at most two waiters (so a third is refused E_BUSY: a client that
 * holds never waits, so three clients could never fill a longer queue):
 * every state is reached, and at every step of every
 * path, and for every event from every state reached, the safety claim
 * holds and the answers are what an independent reading of the rules says.
 */
import { expect } from 'chai';
import { transition } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { pageLockMachine, type LockMode, type PageLockEvent, type PageLockSnapshot } from '../../machines/memory/page-lock.js';
import { emittedBy, leafStates, pathEvents, replay, type Emitted } from '../helpers/machine-harness.js';

const WAITERS_MAX = 2;
const input = { waitersMax: WAITERS_MAX };
const VIA: Record<string, string> = { a: 'n1', b: 'n1', c: 'n2', d: 'n2' };
const CLIENTS = Object.keys(VIA);

type LockEvent = Extract<PageLockEvent, { type: 'LOCK' }>;

const locks: LockEvent[] = CLIENTS.flatMap((client) =>
  (['shared', 'exclusive'] as const).flatMap((mode) => [false, true].map((wait) => ({ type: 'LOCK' as const, client, via: VIA[client], mode, wait, ticket: 0 }))),
).map((e, i) => ({ ...e, ticket: i + 1 }));

const events: PageLockEvent[] = [
  ...locks,
  ...CLIENTS.map((client, i): PageLockEvent => ({ type: 'UNLOCK', client, ticket: 100 + i })),
  ...locks.filter((e) => e.wait).map((e): PageLockEvent => ({ type: 'CANCEL', ticket: e.ticket })),
  { type: 'CANCEL', ticket: 99 },
  { type: 'RELEASE_VIA', node: 'n1' },
  { type: 'RELEASE_VIA', node: 'n2' },
  ...CLIENTS.map((client): PageLockEvent => ({ type: 'RELEASE_CLIENT', client })),
];

// ---------------------------------------------------------------------------
// The rules as a user reads them (docs: SPEC.md M7, the issue), written apart
// from the machine: counts in a Map, the queue as requests.

interface Request {
  ticket: number;
  client: string;
  via: string;
  mode: LockMode;
}

interface Ref {
  count: Map<string, number>;
  via: Map<string, string>;
  /** Set by any exclusive grant, cleared only when the last holder goes (a lock never downgrades). */
  exclusive: boolean;
  queue: Request[];
}

type Answer = string; // `ticket:granted` or `ticket:CODE`

const emptyRef = (): Ref => ({ count: new Map(), via: new Map(), exclusive: false, queue: [] });
const cloneRef = (r: Ref): Ref => ({ count: new Map(r.count), via: new Map(r.via), exclusive: r.exclusive, queue: [...r.queue] });

/** May `client` hold `mode` now, the queue aside? Free; or it alone holds; or all share. */
function admits(r: Ref, client: string, mode: LockMode): boolean {
  if (r.count.size === 0) return true;
  if (r.count.size === 1 && r.count.has(client)) return true;
  return !r.exclusive && mode === 'shared';
}

function take(r: Ref, q: Request): void {
  r.count.set(q.client, (r.count.get(q.client) ?? 0) + 1);
  r.via.set(q.client, q.via);
  if (q.mode === 'exclusive') r.exclusive = true;
}

function drop(r: Ref, client: string, released: string[]): void {
  if (!r.count.has(client)) return;
  r.count.delete(client);
  r.via.delete(client);
  released.push(client);
  if (r.count.size === 0) r.exclusive = false;
}

/** Grants the head of the queue while it is admitted: first come, first served. */
function serveQueue(r: Ref, answers: Answer[]): void {
  while (r.queue.length > 0 && admits(r, r.queue[0].client, r.queue[0].mode)) {
    const q = r.queue.shift() as Request;
    take(r, q);
    answers.push(`${q.ticket}:granted`);
  }
}

/** One event: the next state, the answers in order, and who lost their last hold. */
function refStep(before: Ref, e: PageLockEvent): { r: Ref; answers: Answer[]; released: string[] } {
  const r = cloneRef(before);
  const answers: Answer[] = [];
  const released: string[] = [];
  switch (e.type) {
    case 'LOCK': {
      const holds = r.count.has(e.client);
      const waits = r.queue.some((q) => q.client === e.client);
      if (r.queue.some((q) => q.ticket === e.ticket)) answers.push(`${e.ticket}:E_BAD_ARGUMENT`);
      else if (admits(r, e.client, e.mode) && (holds || r.queue.length === 0)) {
        take(r, e);
        answers.push(`${e.ticket}:granted`);
      } else if (holds || waits || !e.wait) answers.push(`${e.ticket}:E_LOCKED`);
      else if (r.queue.length >= WAITERS_MAX) answers.push(`${e.ticket}:E_BUSY`);
      else r.queue.push({ ticket: e.ticket, client: e.client, via: e.via, mode: e.mode });
      break;
    }
    case 'UNLOCK': {
      const n = r.count.get(e.client);
      if (n === undefined) answers.push(`${e.ticket}:E_BAD_ARGUMENT`);
      else {
        answers.push(`${e.ticket}:granted`);
        if (n > 1) r.count.set(e.client, n - 1);
        else drop(r, e.client, released);
      }
      break;
    }
    case 'CANCEL': {
      const i = r.queue.findIndex((q) => q.ticket === e.ticket);
      if (i >= 0) answers.push(`${r.queue.splice(i, 1)[0].ticket}:E_TIMEOUT`);
      break;
    }
    case 'RELEASE_VIA':
    case 'RELEASE_CLIENT': {
      const gone = (client: string, via: string) => (e.type === 'RELEASE_VIA' ? via === e.node : client === e.client);
      for (const q of r.queue.filter((x) => gone(x.client, x.via))) answers.push(`${q.ticket}:E_CLOSED`);
      r.queue = r.queue.filter((x) => !gone(x.client, x.via));
      for (const client of [...r.count.keys()].sort()) if (gone(client, r.via.get(client) ?? '')) drop(r, client, released);
      break;
    }
  }
  serveQueue(r, answers);
  return { r, answers, released: released.sort() };
}

// ---------------------------------------------------------------------------
// The machine seen the same way.

function asRef(s: PageLockSnapshot): Ref {
  const { holders, mode, waiting } = s.context;
  return {
    count: new Map(Object.entries(holders).map(([c, h]) => [c, h.count])),
    via: new Map(Object.entries(holders).map(([c, h]) => [c, h.via])),
    exclusive: mode === 'exclusive',
    queue: waiting.map(({ ticket, client, via, mode: m }) => ({ ticket, client, via, mode: m })),
  };
}

const plain = (r: Ref) => ({ count: Object.fromEntries([...r.count].sort()), via: Object.fromEntries([...r.via].sort()), exclusive: r.exclusive, queue: r.queue });

const answersOf = (emitted: readonly Emitted[]): Answer[] =>
  emitted.flatMap((e) => (e.type === 'granted' ? [`${String(e.ticket)}:granted`] : e.type === 'refused' ? [`${String(e.ticket)}:${String(e.code)}`] : []));

/** Says what went wrong only when it did: tens of thousands of steps are checked. */
type Why = () => string;

function must(cond: boolean, why: Why, what: string): void {
  if (!cond) expect.fail(`${why()}: ${what}`);
}

function same(actual: unknown, expected: unknown, why: Why, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) expect(actual, `${why()}: ${what}`).to.deep.equal(expected);
}

/** The safety claim of machines/memory/page-lock.ts, on one snapshot. */
function checkClaim(s: PageLockSnapshot, why: Why): void {
  const { holders, mode, waiting } = s.context;
  const ids = Object.keys(holders);
  must((mode === null) === (ids.length === 0), why, 'mode is null exactly when nobody holds');
  must(mode !== 'exclusive' || ids.length === 1, why, 'an exclusive holder holds alone');
  must(ids.every((id) => holders[id].count > 0), why, 'every holder holds at least once');
  must(s.value === (ids.length === 0 ? 'free' : 'held'), why, 'free exactly when nobody holds');
  must(waiting.length <= WAITERS_MAX, why, 'the queue keeps its bound');
  must(new Set(waiting.map((w) => w.client)).size === waiting.length, why, 'no client waits twice');
  must(waiting.every((w) => !ids.includes(w.client)), why, 'no client holds and waits');
  if (waiting.length > 0) {
    const head = waiting[0];
    const admitted = ids.length === 0 || (mode === 'shared' && head.mode === 'shared');
    must(!admitted, why, 'a waiter that could hold is granted, not left waiting');
  }
}

/** One step's answers against the claim: one answer per request, grants only in queue order, never to a waiter that left. */
function checkStep(before: PageLockSnapshot, e: PageLockEvent, after: PageLockSnapshot, emitted: readonly Emitted[], why: Why): void {
  checkClaim(after, why);
  const queuedBefore = before.context.waiting.map((w) => w.ticket);
  const queuedAfter = after.context.waiting.map((w) => w.ticket);
  let answers = answersOf(emitted);
  if (e.type === 'LOCK' || e.type === 'UNLOCK') {
    // The request's own answer comes first, unless it waits; the rest answer waiters.
    const queued = e.type === 'LOCK' && queuedAfter.includes(e.ticket) && !queuedBefore.includes(e.ticket);
    if (!queued) {
      must(answers[0]?.split(':')[0] === String(e.ticket), why, 'the request is answered at once');
      answers = answers.slice(1);
    }
    if (e.type === 'LOCK') same(answers, [], why, 'a LOCK answers nobody else');
  }
  const tickets = answers.map((a) => Number(a.split(':')[0]));
  must(new Set(tickets).size === tickets.length, why, 'one answer per waiter');
  // Every waiter that left the queue was answered, once; none other was.
  const left = queuedBefore.filter((t) => !queuedAfter.includes(t));
  same(tickets.filter((t) => queuedBefore.includes(t)).sort(), [...left].sort(), why, 'the waiters that left are answered');
  // Waiters granted are the first of those that stayed in the queue, in queue order.
  const withdrawn = new Set(answers.filter((a) => /:(E_TIMEOUT|E_CLOSED)$/.test(a)).map((a) => Number(a.split(':')[0])));
  const grantedWaiters = answers.filter((a) => a.endsWith(':granted')).map((a) => Number(a.split(':')[0])).filter((t) => queuedBefore.includes(t));
  const stayed = queuedBefore.filter((t) => !withdrawn.has(t));
  same(grantedWaiters, stayed.slice(0, grantedWaiters.length), why, 'grants in FIFO order');
  const released = emitted.filter((x) => x.type === 'released').map((x) => String(x.client)).sort();
  const gone = Object.keys(before.context.holders).filter((c) => !Object.hasOwn(after.context.holders, c)).sort();
  same(released, gone, why, 'released exactly the clients whose last hold went');
}

const serialize = (s: PageLockSnapshot): string => {
  const { holders, mode, waiting } = s.context;
  // Counts above 2 behave as 2 for the next step's shape: capping them keeps the graph finite.
  const capped = Object.entries(holders).sort().map(([c, h]) => [c, Math.min(h.count, 2), h.via]);
  return JSON.stringify([s.value, capped, mode, waiting]);
};

describe('page lock (M7), generated paths', () => {
  const paths = getShortestPaths(pageLockMachine, { input, events, serializeState: (s) => serialize(s) });

  it('reaches every state, and every shape of holders and queue the rules allow', () => {
    const reached = new Set(paths.map((p) => String(p.state.value)));
    expect([...reached].sort()).to.deep.equal(leafStates(pageLockMachine).sort());
    const queues = new Set(paths.map((p) => p.state.context.waiting.length));
    expect([...queues].sort()).to.deep.equal([0, 1, 2]);
    expect(paths.some((p) => p.state.context.mode === 'exclusive' && p.state.context.waiting.length === WAITERS_MAX)).to.equal(true);
    // E_BUSY is reachable: some state has a full queue and a client that neither holds nor waits.
    const full = paths.filter((p) => p.state.context.waiting.length === WAITERS_MAX);
    expect(full.some((p) => Object.keys(p.state.context.holders).length + WAITERS_MAX < CLIENTS.length)).to.equal(true);
    expect(paths.length).to.be.greaterThan(100);
  });

  it('holds the safety claim and answers as the rules say at every step of every path', () => {
    for (const p of paths) {
      const evs = pathEvents(p.steps);
      const { snapshots, emitted } = replay(pageLockMachine, input, evs);
      let ref = emptyRef();
      checkClaim(snapshots[0], () => 'initial');
      evs.forEach((e, i) => {
        const why = () => JSON.stringify(evs.slice(0, i + 1));
        checkStep(snapshots[i], e, snapshots[i + 1], emitted[i + 1], why);
        const want = refStep(ref, e);
        same(answersOf(emitted[i + 1]), want.answers, why, 'the answers the rules give');
        same(plain(asRef(snapshots[i + 1])), plain(want.r), why, 'the holders and queue the rules give');
        ref = want.r;
      });
    }
  });

  it('from every state reached, every event keeps the claim and answers as the rules say', function () {
    // About 21,000 transitions, each checked: a second or two.
    this.timeout(20_000);
    let steps = 0;
    for (const p of paths) {
      const from = p.state;
      for (const e of events) {
        const [after, actions] = transition(pageLockMachine, from, e);
        const emitted = emittedBy(actions);
        const why = () => `${serialize(from)} + ${JSON.stringify(e)}`;
        checkStep(from, e, after, emitted, why);
        const want = refStep(asRef(from), e);
        same(answersOf(emitted), want.answers, why, 'the answers the rules give');
        same(emitted.filter((x) => x.type === 'released').map((x) => x.client).sort(), want.released, why, 'the clients released');
        same(plain(asRef(after)), plain(want.r), why, 'the holders and queue the rules give');
        steps++;
      }
    }
    expect(steps).to.equal(paths.length * events.length);
  });

  it('never grants a cancelled or released waiter, on any path', () => {
    for (const p of paths) {
      const evs = pathEvents(p.steps);
      const { emitted } = replay(pageLockMachine, input, evs);
      const ended = new Set<number>();
      evs.forEach((e, i) => {
        for (const a of answersOf(emitted[i + 1])) {
          const [t, what] = a.split(':');
          const renewed = e.type === 'LOCK' && e.ticket === Number(t);
          if (what === 'granted') must(!ended.has(Number(t)) || renewed, () => JSON.stringify(evs), `ticket ${t} granted after its wait ended`);
          if (what === 'E_TIMEOUT' || what === 'E_CLOSED') ended.add(Number(t));
        }
        // A new LOCK with the same ticket is a new request.
        if (e.type === 'LOCK') ended.delete(e.ticket);
      });
    }
  });
});
