/**
 * The linearizability checker (runtime/conformance/linearizability/search.ts) over
 * page-register histories: hand-written cases that name what each one
 * proves, then histories generated from a real atomic register (each
 * operation takes effect at one point inside its interval) over many seeds,
 * unchanged and with one read made stale.
 */
import { expect } from 'chai';
import {
  checkLinearizable,
  type LinOptions,
  type LinResult,
  type Model,
  type Operation,
} from '../../../../runtime/conformance/linearizability/search.js';
import { registerModel, type RegisterInput, type RegisterOp, type RegisterOutput } from '../../../../runtime/conformance/linearizability/register.js';
import { SeededRandom } from '../../../../runtime/world/random.js';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const EMPTY = new Uint8Array(0);

function write(client: string, page: string, value: Uint8Array, call: number, ret?: number): RegisterOp {
  return { client, input: { kind: 'write', page, value }, call, ret };
}

function read(client: string, page: string, value: Uint8Array, call: number, ret: number): RegisterOp {
  return { client, input: { kind: 'read', page }, call, ret, output: value };
}

function check(ops: RegisterOp[], opts: LinOptions = {}): LinResult<RegisterInput, RegisterOutput> {
  return checkLinearizable(registerModel(), ops, opts);
}

function failure(result: LinResult<RegisterInput, RegisterOutput>): Extract<LinResult<RegisterInput, RegisterOutput>, { ok: false }> {
  if (result.ok !== false) throw new Error(`expected a violation, got ${JSON.stringify(result)}`);
  return result;
}

const A = bytes(0xaa);
const B = bytes(0xbb);
const C = bytes(0xcc);

describe('runtime/conformance/linearizability/search', () => {
  describe('hand-written page histories', () => {
    it('accepts a sequential history, and reads of the initial value', () => {
      const r = check([read('c1', 'p', EMPTY, 0, 1), write('c1', 'p', A, 2, 3), read('c2', 'p', A, 4, 5), write('c2', 'p', B, 6, 7), read('c1', 'p', B, 8, 9)]);
      expect(r).to.deep.include({ ok: true, partitions: 1 });
    });

    it('accepts an empty history', () => {
      expect(check([])).to.deep.equal({ ok: true, partitions: 0, steps: 0 });
    });

    it('accepts either order of overlapping writes', () => {
      const writes = [write('c1', 'p', A, 0, 10), write('c2', 'p', B, 5, 15)];
      expect(check([...writes, read('c3', 'p', A, 20, 30)]).ok).to.equal(true);
      expect(check([...writes, read('c3', 'p', B, 20, 30)]).ok).to.equal(true);
      // …but not both orders at once: B then A, then A again is fine; A then B then A is not.
      expect(check([...writes, read('c3', 'p', B, 20, 21), read('c3', 'p', A, 22, 23)]).ok).to.equal(false);
    });

    it('catches a stale read and names the read, the page and the values', () => {
      const stale = read('c3', 'p7', A, 4, 5);
      const r = failure(check([write('c1', 'p7', A, 0, 1), write('c2', 'p7', B, 2, 3), stale]));
      expect(r.partition).to.equal('p7');
      expect(r.op).to.equal(stale);
      expect(r.prefix.map((op) => op.client)).to.deep.equal(['c1', 'c2']);
      expect(r.explanation).to.include('no order places c3 read p7 → 0xaa [4, 5]');
      expect(r.explanation).to.include('state after it: 0xbb');
      expect(r.explanation).to.include('c3 read p7 → 0xaa [4, 5]: not allowed in this state');
    });

    it('catches a read of a value nobody wrote (a torn page)', () => {
      const torn = bytes(0xaa, 0xbb, 0, 0);
      const ops = [write('c1', 'p', bytes(0xaa, 0xaa, 0, 0), 0, 10), write('c2', 'p', bytes(0xbb, 0xbb, 0, 0), 0, 10), read('c3', 'p', torn, 5, 15)];
      const r = failure(check(ops));
      expect(r.op.output).to.equal(torn);
      expect(r.explanation).to.include('0xaabb0000');
    });

    it('treats a return and a call at the same time as concurrent', () => {
      // Strict precedence: the write ends at 5 and the read starts at 5, so the read may come first.
      expect(check([write('c1', 'p', A, 0, 5), read('c2', 'p', EMPTY, 5, 6)]).ok).to.equal(true);
      expect(check([write('c1', 'p', A, 0, 5), read('c2', 'p', EMPTY, 6, 7)]).ok).to.equal(false);
    });

    it('accepts a write that never returned whether or not it took effect', () => {
      const ops = [write('c1', 'p', A, 0, 1), write('c2', 'p', B, 2)];
      expect(check([...ops, read('c3', 'p', A, 10, 11)]).ok, 'never took effect').to.equal(true);
      expect(check([...ops, read('c3', 'p', B, 10, 11)]).ok, 'took effect').to.equal(true);
      expect(check([...ops, read('c3', 'p', A, 10, 11), read('c3', 'p', B, 12, 13)]).ok, 'took effect late').to.equal(true);
    });

    it('accepts a read of a value whose write never returned, but not before the write was called', () => {
      expect(check([write('c1', 'p', A, 5), read('c2', 'p', A, 10, 11)]).ok).to.equal(true);
      const r = failure(check([write('c1', 'p', A, 20), read('c2', 'p', A, 10, 11)]));
      expect(r.explanation).to.include('c1 write p 0xaa [20, never returned]');
    });

    it('does not let a write that never returned take effect twice or be undone', () => {
      const ops = [write('c1', 'p', A, 0, 1), write('c2', 'p', B, 2), read('c3', 'p', B, 10, 11), read('c3', 'p', A, 12, 13)];
      expect(check(ops).ok).to.equal(false);
      expect(check([write('c1', 'p', A, 0), read('c2', 'p', A, 1, 2), read('c3', 'p', EMPTY, 3, 4)]).ok).to.equal(false);
    });

    it('lets a write that never returned land late when another wrote the same value', () => {
      // Values are not unique here, so nothing ties the pending write to the first read of A.
      const ops = [write('c1', 'p', A, 0, 1), write('c2', 'p', A, 2), write('c3', 'p', B, 3, 4), read('c4', 'p', B, 5, 6), read('c4', 'p', A, 7, 8)];
      expect(check(ops).ok).to.equal(true);
      expect(check(ops.filter((op) => op.client !== 'c2')).ok).to.equal(false);
    });

    it('requires a read of the initial value to come before every write', () => {
      expect(check([write('c1', 'p', A, 0, 10), read('c2', 'p', EMPTY, 5, 15), read('c3', 'p', A, 6, 7)]).ok).to.equal(true);
      const r = failure(check([write('c1', 'p', A, 0, 1), read('c2', 'p', EMPTY, 5, 15)]));
      expect(r.op.client).to.equal('c2');
    });

    it('orders a client\'s operations at equal times only when told its clients are sequential', () => {
      const ops = [write('c1', 'p', A, 5, 5), read('c1', 'p', EMPTY, 5, 5)];
      expect(check(ops).ok, 'equal times overlap').to.equal(true);
      expect(check(ops, { sequentialClients: true }).ok, 'the read came after the write').to.equal(false);
      // A client that gave up on an operation orders nothing after it: the write may still land.
      const gaveUp = [write('c1', 'p', A, 0), read('c1', 'p', EMPTY, 1, 2), read('c1', 'p', A, 3, 4)];
      expect(check(gaveUp, { sequentialClients: true }).ok).to.equal(true);
    });

    it('ignores flushes and reads that never returned', () => {
      const ops: RegisterOp[] = [
        write('c1', 'p', A, 0, 1),
        { client: 'c2', input: { kind: 'flush', page: 'p' }, call: 0, ret: 3 },
        { client: 'c3', input: { kind: 'read', page: 'p' }, call: 0 },
        read('c1', 'p', A, 4, 5),
      ];
      expect(check(ops)).to.deep.include({ ok: true, partitions: 1 });
    });

    it('checks pages independently and names the page that breaks', () => {
      const ops = [
        write('c1', 'p1', A, 0, 1),
        write('c1', 'p2', A, 2, 3),
        write('c2', 'p2', B, 4, 5),
        read('c3', 'p1', A, 6, 7),
        read('c3', 'p2', A, 8, 9),
        write('c2', 'p3', C, 0, 100),
        read('c2', 'p3', C, 101, 102),
      ];
      const r = failure(check(ops));
      expect(r.partition).to.equal('p2');
      expect(r.ops).to.have.length(3);
      expect(r.explanation).to.include('partition "p2"');
      expect(check(ops.filter((op) => op.input.page !== 'p2'))).to.deep.include({ ok: true, partitions: 2 });
    });

    it('keys large values by content, not by array identity', () => {
      const page = new Uint8Array(4096).fill(7);
      const ops = [write('c1', 'p', page, 0, 1), read('c2', 'p', page.slice(), 2, 3)];
      expect(check(ops).ok).to.equal(true);
      const other = page.slice();
      other[4000] = 8;
      const r = failure(check([...ops, read('c2', 'p', other, 4, 5)]));
      expect(r.explanation).to.match(/4096 B 0x0707070707070707… fnv [0-9a-f]{8}/);
    });

    it('starts every page at the given initial value', () => {
      const zeros = new Uint8Array(4096);
      const r = checkLinearizable(registerModel(zeros), [read('c1', 'p', new Uint8Array(4096), 0, 1)]);
      expect(r.ok).to.equal(true);
      expect(check([read('c1', 'p', new Uint8Array(4096), 0, 1)]).ok).to.equal(false);
    });

    it('rejects operations with bad intervals', () => {
      expect(() => check([read('c1', 'p', A, 5, 4)])).to.throw(/E_BAD_ARGUMENT|before its call/);
      expect(() => check([read('c1', 'p', A, Number.NaN, 4)])).to.throw(/call must be a finite time/);
      expect(() => check([], { maxSteps: 0 })).to.throw(/maxSteps/);
    });
  });

  describe('a generic, nondeterministic model', () => {
    // A counter whose `inc` adds 1 or 2; the search must try both.
    type CounterInput = { kind: 'inc' } | { kind: 'get' };
    const counter: Model<number, CounterInput, number> = {
      init: () => 0,
      step: (n, input, output) => (input.kind === 'inc' ? [n + 1, n + 2] : output === undefined || output === n ? [n] : []),
      key: (n) => String(n),
      describe: (input, output) => (input.kind === 'inc' ? 'inc' : `get → ${output}`),
    };
    const inc = (client: string, call: number, ret: number): Operation<CounterInput, number> => ({ client, input: { kind: 'inc' }, call, ret });
    const get = (client: string, n: number, call: number, ret: number): Operation<CounterInput, number> => ({ client, input: { kind: 'get' }, call, ret, output: n });

    for (const [n, ok] of [[2, true], [3, true], [4, true], [5, false], [1, false]] as const) {
      it(`two incs then get → ${n} is ${ok ? '' : 'not '}linearizable`, () => {
        const r = checkLinearizable(counter, [inc('a', 0, 1), inc('b', 2, 3), get('c', n, 4, 5)]);
        expect(r.ok).to.equal(ok);
      });
    }

    it('puts everything in one partition without a partition function', () => {
      expect(checkLinearizable(counter, [inc('a', 0, 1), get('b', 1, 2, 3)])).to.deep.include({ ok: true, partitions: 1 });
    });
  });

  describe('generated histories of an atomic register', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const shape = shapeFor(seed);
      it(`seed ${seed}: linearizable as recorded; caught with one read made stale (${shape.clients} clients, ${shape.pages} pages)`, () => {
        const { ops } = generate(new SeededRandom(seed), shape);
        // Odd seeds use only the intervals; even seeds also the clients' order, which these generated clients obey.
        const opts = { sequentialClients: seed % 2 === 0, maxSteps: 10_000_000 };
        const ok = check(ops, opts);
        expect(ok.ok, `replay with seed ${seed}: ${JSON.stringify(ok)}`).to.equal(true);
        const mutated = makeOneReadStale(new SeededRandom(seed).derive('stale'), ops);
        if (mutated === undefined) return;
        const bad = check(mutated.ops, opts);
        expect(bad.ok, `replay with seed ${seed}: ${mutated.what}`).to.equal(false);
        expect(failure(bad).partition, `replay with seed ${seed}`).to.equal(mutated.page);
      });
    }

    it('makes a read stale in most generated histories', () => {
      let made = 0;
      for (let seed = 1; seed <= 300; seed++) {
        const { ops } = generate(new SeededRandom(seed), shapeFor(seed));
        if (makeOneReadStale(new SeededRandom(seed).derive('stale'), ops)) made++;
      }
      expect(made).to.be.greaterThan(240);
    });
  });

  describe('against brute force', () => {
    // Every order of every subset, on small histories with ties, repeated values and pending operations: the pruning must lose nothing.
    // Two pages test locality; with sequential clients one page, as the checker uses a client's order only within a page.
    for (const sequentialClients of [false, true]) {
      it(`agrees on 3,000 small random histories${sequentialClients ? ' with sequential clients' : ''}`, () => {
        let linearizable = 0;
        for (let seed = 1; seed <= 3000; seed++) {
          const ops = smallHistory(new SeededRandom(seed), sequentialClients ? 1 : 2);
          const expected = bruteForce(ops, sequentialClients);
          const got = check(ops, { sequentialClients });
          expect(got.ok, `replay with seed ${seed}: ${JSON.stringify(ops.map(show))}`).to.equal(expected);
          if (expected) linearizable++;
        }
        // Both answers must be common for the comparison to mean anything.
        expect(linearizable).to.be.within(600, 2400);
      });
    }
  });

  describe('limits', () => {
    it('gives up with unknown when the step budget runs out', () => {
      // 22 concurrent writes and a read of a value none wrote: refuting it means trying every subset.
      const ops = Array.from({ length: 22 }, (_, i) => write(`c${i}`, 'p', bytes(i + 1), 0, 100));
      ops.push(read('r', 'p', bytes(0xff), 50, 150), write('c1', 'q', A, 0, 1));
      const r = check(ops, { maxSteps: 20_000 });
      expect(r).to.deep.include({ ok: 'unknown', reason: 'E_TIMEOUT', partitions: ['p'] });
      expect(r.steps).to.be.at.most(20_000 + 10);
    });

    it('reports a violation in one partition even when another ran out of steps', () => {
      const ops = Array.from({ length: 22 }, (_, i) => write(`c${i}`, 'p', bytes(i + 1), 0, 100));
      ops.push(read('r', 'p', bytes(0xff), 50, 150), write('c1', 'q', A, 0, 1), write('c1', 'q', B, 2, 3), read('c2', 'q', A, 4, 5));
      expect(failure(check(ops, { maxSteps: 20_000 })).partition).to.equal('q');
    });

    it('checks 10,000 operations over 50 pages with 8 clients', () => {
      const { ops } = generate(new SeededRandom(42), { clients: 8, pages: 50, opsPerClient: 1250, durMax: 20, gapMax: 3, pendingP: 0.01, readP: 0.5 });
      expect(ops).to.have.length(10_000);
      expect(check(ops)).to.deep.include({ ok: true, partitions: 50 });
    });

    it('checks and refutes 200 heavily overlapping operations on one page', () => {
      const { ops } = generate(new SeededRandom(7), { clients: 8, pages: 1, opsPerClient: 25, durMax: 60, gapMax: 1, pendingP: 0, readP: 0.5 });
      expect(check(ops).ok).to.equal(true);
      const mutated = makeOneReadStale(new SeededRandom(7).derive('stale'), ops);
      expect(mutated, 'a stale read to plant').to.not.equal(undefined);
      expect(check(mutated?.ops ?? []).ok).to.equal(false);
    });
  });
});

// ---------------------------------------------------------------------------
// A recorded atomic register

interface Shape {
  clients: number;
  pages: number;
  opsPerClient: number;
  /** Longest interval of an operation, in ms. */
  durMax: number;
  /** Longest pause between a client's operations. */
  gapMax: number;
  /** Chance an operation never returns. */
  pendingP: number;
  readP: number;
}

function shapeFor(seed: number): Shape {
  const rng = new SeededRandom(seed).derive('shape');
  return {
    clients: 2 + rng.int(7),
    pages: 1 + rng.int(4),
    opsPerClient: 5 + rng.int(30),
    durMax: 1 + rng.int(30),
    gapMax: rng.int(5),
    pendingP: rng.int(3) === 0 ? 0.05 : 0,
    readP: 0.3 + rng.next() * 0.4,
  };
}

/** A history where each operation took effect at one point inside its interval (or, never having returned, any time after its call, or never). */
function generate(rng: SeededRandom, shape: Shape): { ops: RegisterOp[] } {
  const ops: RegisterOp[] = [];
  const effectAt: (number | undefined)[] = [];
  let written = 0;
  for (let c = 0; c < shape.clients; c++) {
    let t = rng.int(shape.gapMax + 1);
    for (let k = 0; k < shape.opsPerClient; k++) {
      const page = `p${rng.int(shape.pages)}`;
      const dur = rng.int(shape.durMax + 1);
      const pending = rng.next() < shape.pendingP;
      const input: RegisterInput =
        rng.next() < shape.readP ? { kind: 'read', page } : { kind: 'write', page, value: Uint8Array.of(0, 0, ++written >> 8, written & 0xff) };
      ops.push({ client: `c${c}`, input, call: t, ret: pending ? undefined : t + dur });
      // A client that gave up goes on with its next operation; what it gave up on may still land later, or never.
      effectAt.push(pending ? (rng.int(2) === 0 ? undefined : t + rng.int(4 * shape.durMax + 1)) : t + rng.int(dur + 1));
      t += dur + rng.int(shape.gapMax + 1);
    }
  }
  const order = ops.map((_, i) => i).filter((i) => effectAt[i] !== undefined);
  order.sort((a, b) => (effectAt[a] as number) - (effectAt[b] as number) || a - b);
  const pages = new Map<string, Uint8Array>();
  for (const i of order) {
    const { input } = ops[i];
    if (input.kind === 'write') pages.set(input.page, input.value);
    else if (input.kind === 'read' && ops[i].ret !== undefined) ops[i].output = (pages.get(input.page) ?? EMPTY).slice();
  }
  return { ops };
}

/**
 * The same history with one returned read changed to a value that was
 * certainly overwritten before the read began: a write w, then a write w2
 * called after w returned, then the read called after w2 returned. Values
 * are unique, so no linearization explains it.
 */
function makeOneReadStale(rng: SeededRandom, ops: RegisterOp[]): { ops: RegisterOp[]; page: string; what: string } | undefined {
  const returnedWrites = ops.filter((op) => op.input.kind === 'write' && op.ret !== undefined);
  const candidates: { read: number; values: Uint8Array[] }[] = [];
  ops.forEach((op, i) => {
    if (op.input.kind !== 'read' || op.ret === undefined) return;
    const page = op.input.page;
    const onPage = returnedWrites.filter((w) => w.input.page === page);
    const before = onPage.filter((w) => (w.ret as number) < op.call);
    if (before.length === 0) return;
    const lastCall = Math.max(...before.map((w) => w.call));
    const values = [EMPTY, ...onPage.filter((w) => (w.ret as number) < lastCall).map((w) => (w.input as { value: Uint8Array }).value)];
    candidates.push({ read: i, values });
  });
  if (candidates.length === 0) return undefined;
  const pick = candidates[rng.int(candidates.length)];
  const value = pick.values[rng.int(pick.values.length)];
  const copy = ops.map((op) => ({ ...op }));
  const target = copy[pick.read];
  target.output = value.slice();
  return { ops: copy, page: target.input.page, what: `${target.client} read at [${target.call}, ${target.ret}] made to return ${Buffer.from(value).toString('hex') || '(empty)'}` };
}

// ---------------------------------------------------------------------------
// Small histories and a checker that tries everything

const VALUES = [EMPTY, A, B, C];

/** Up to 7 operations at times 0..6 (many ties), values from a set of 3, some never returning; reads mostly see a value a real register could show. */
function smallHistory(rng: SeededRandom, pages: number): RegisterOp[] {
  const ops: RegisterOp[] = [];
  const n = 1 + rng.int(7);
  const clients = 1 + rng.int(4);
  const nextFree = new Array<number>(clients).fill(0);
  let current: Uint8Array = EMPTY;
  for (let i = 0; i < n; i++) {
    const c = rng.int(clients);
    const call = nextFree[c] + rng.int(3);
    const ret = rng.int(5) === 0 ? undefined : call + rng.int(3);
    nextFree[c] = ret ?? call;
    const page = `p${rng.int(pages)}`;
    const kind = rng.int(10);
    if (kind < 4) {
      current = VALUES[1 + rng.int(3)];
      ops.push(write(`c${c}`, page, current, call, ret));
    } else if (kind < 9) {
      const output = rng.int(3) === 0 ? VALUES[rng.int(4)] : current;
      ops.push({ client: `c${c}`, input: { kind: 'read', page }, call, ret, output: ret === undefined ? undefined : output.slice() });
    } else {
      ops.push({ client: `c${c}`, input: { kind: 'flush', page }, call, ret });
    }
  }
  return ops;
}

/** Whether some order of all returned operations and any of the others fits a register per page, by trying them all. */
function bruteForce(ops: RegisterOp[], sequentialClients: boolean): boolean {
  const returned = ops.flatMap((op, i) => (op.ret === undefined ? [] : [i]));
  const mustFollow = ops.map((b, j) =>
    ops.flatMap((a, i) => {
      if (a.ret === undefined || i === j) return [];
      const byTime = a.ret < b.call;
      const byClient = sequentialClients && a.client === b.client && i < j;
      return byTime || byClient ? [i] : [];
    }),
  );
  const same = (x: Uint8Array, y: Uint8Array): boolean => x.length === y.length && x.every((v, k) => v === y[k]);
  const tried = new Set<string>();
  const search = (placed: number, state: Map<string, Uint8Array>): boolean => {
    if (returned.every((i) => placed & (1 << i))) return true;
    const key = `${placed}:${[...state].map(([p, v]) => `${p}=${Buffer.from(v).toString('hex')}`).join(',')}`;
    if (tried.has(key)) return false;
    tried.add(key);
    return ops.some((op, i) => {
      if (placed & (1 << i) || !mustFollow[i].every((a) => placed & (1 << a))) return false;
      const value = state.get(op.input.page) ?? EMPTY;
      if (op.input.kind === 'read' && op.ret !== undefined && !same(op.output ?? EMPTY, value)) return false;
      const next = new Map(state);
      if (op.input.kind === 'write') next.set(op.input.page, op.input.value);
      return search(placed | (1 << i), next);
    });
  };
  return search(0, new Map());
}

function show(op: RegisterOp): string {
  const what = op.input.kind === 'write' ? `w${Buffer.from(op.input.value).toString('hex')}` : op.input.kind === 'read' ? `r${op.output ? Buffer.from(op.output).toString('hex') || '-' : '?'}` : 'f';
  return `${op.client} ${op.input.page} ${what} [${op.call},${op.ret ?? '∞'}]`;
}
