/**
 * The durable page register (runtime/conformance/linearizability/durable-register.ts):
 * hand-written histories with crashes, one per clause of the rule, each
 * with the variant that breaks it; then generated histories, without
 * crashes against the plain register and with crashes against a checker
 * that tries every order.
 */
import { expect } from 'chai';
import { durableRegisterModel, type DurableInput, type DurableOp, type DurableState } from '../../../../runtime/conformance/linearizability/durable-register.js';
import { registerModel, type RegisterOp, type RegisterOutput } from '../../../../runtime/conformance/linearizability/register.js';
import { checkLinearizable, type LinResult } from '../../../../runtime/conformance/linearizability/search.js';
import { SeededRandom } from '../../../../runtime/world/random.js';

const PAGE_BYTES = 4096;
const EMPTY = new Uint8Array(0);
const ZEROS = new Uint8Array(PAGE_BYTES);
const A = Uint8Array.of(0xaa);
const B = Uint8Array.of(0xbb);
const C = Uint8Array.of(0xcc);

/** A page whose every 8-byte word is the writer's token, as the engine's simulation writes them. */
function pageOf(token: number): Uint8Array {
  const data = new Uint8Array(PAGE_BYTES);
  const view = new DataView(data.buffer);
  for (let i = 0; i < PAGE_BYTES; i += 8) view.setFloat64(i, token);
  return data;
}

function write(client: string, value: Uint8Array, call: number, ret?: number): DurableOp {
  return { client, input: { kind: 'write', page: 'p', value }, call, ret };
}

function read(client: string, value: Uint8Array, call: number, ret: number): DurableOp {
  return { client, input: { kind: 'read', page: 'p' }, call, ret, output: value.slice() };
}

function flush(client: string, call: number, ret?: number): DurableOp {
  return { client, input: { kind: 'flush', page: 'p' }, call, ret };
}

/** What the harness records for a node that crashed at `at`. */
function crash(node: string, at: number): DurableOp {
  return { client: node, input: { kind: 'crash', page: 'p' }, call: at, ret: at };
}

function check(ops: DurableOp[], initial: Uint8Array = EMPTY): LinResult<DurableInput, RegisterOutput> {
  return checkLinearizable(durableRegisterModel(initial), ops);
}

function failure(result: LinResult<DurableInput, RegisterOutput>): Extract<LinResult<DurableInput, RegisterOutput>, { ok: false }> {
  if (result.ok !== false) throw new Error(`expected a violation, got ${JSON.stringify(result)}`);
  return result;
}

describe('runtime/conformance/linearizability/durable-register', () => {
  describe('the rule, clause by clause', () => {
    it('keeps a flushed write through a crash', () => {
      const ops = [write('c1', A, 0, 1), flush('c1', 2, 3), crash('home', 10)];
      expect(check([...ops, read('c2', A, 11, 12)])).to.deep.include({ ok: true, partitions: 1 });
      // The flush made A durable: the crash cannot take the page back to the initial value.
      expect(check([...ops, read('c2', EMPTY, 11, 12)]).ok).to.equal(false);
    });

    it('may lose a write that was not flushed when the node crashed', () => {
      const ops = [write('c1', A, 0, 1), flush('c1', 2, 3), write('c1', B, 4, 5), crash('home', 10)];
      expect(check([...ops, read('c2', A, 11, 12)]).ok, 'lost').to.equal(true);
      expect(check([...ops, read('c2', B, 11, 12)]).ok, 'survived').to.equal(true);
      // Without the crash, reading A after B is a stale read.
      expect(check(ops.filter((op) => op.input.kind !== 'crash').concat(read('c2', A, 11, 12))).ok, 'no crash').to.equal(false);
    });

    it('never reads a lost write again, nor an older value after a newer one without a crash between', () => {
      const ops = [write('c1', A, 0, 1), flush('c1', 2, 3), write('c1', B, 4, 5), crash('home', 10)];
      const stale = read('c2', A, 13, 14);
      const r = failure(check([...ops, read('c2', B, 11, 12), stale]));
      expect(r.op).to.equal(stale);
      expect(r.explanation).to.include('home crash p [10, 10]');
      // A loss then a read of the lost value: the crash left one value, and no crash came since.
      expect(check([...ops, read('c2', A, 11, 12), read('c2', B, 13, 14)]).ok).to.equal(false);
      // A second crash may take the page back again, to the durable value…
      expect(check([...ops, read('c2', B, 11, 12), crash('home', 12.5), stale]).ok, 'further back').to.equal(true);
      // …and, the check being more lenient than the rule here, bring back the value the first one lost.
      expect(check([...ops, read('c2', A, 11, 12), crash('home', 12.5), read('c2', B, 13, 14)]).ok, 'brought back').to.equal(true);
    });

    it('never loses a flushed write, even when a later flush made a newer one durable', () => {
      const ops = [write('c1', A, 0, 1), flush('c1', 2, 3), write('c1', B, 4, 5), flush('c1', 6, 7), crash('home', 10)];
      const lost = read('c2', A, 11, 12);
      const r = failure(check([...ops, lost]));
      expect(r.op).to.equal(lost);
      expect(r.explanation).to.include('state after it: 0xbb, durable');
      expect(check([...ops, read('c2', B, 11, 12)]).ok).to.equal(true);
    });

    it('catches a reader still seeing a 4 KiB page from before the restart', () => {
      const [v1, v2] = [pageOf(1), pageOf(2)];
      const ops = [
        write('a', v1, 0, 1),
        flush('a', 2, 3),
        read('c', v1, 4, 5),
        crash('home', 10),
        write('a', v2, 11, 12),
        flush('a', 13, 14),
      ];
      const stale = read('c', v1, 15, 16);
      const r = failure(check([...ops, stale], ZEROS));
      expect(r.op).to.equal(stale);
      expect(r.explanation).to.match(/no order places c read p → 4096 B 0x3ff0000000000000… fnv [0-9a-f]{8} \[15, 16\]/);
      expect(check([...ops, read('c', v2, 15, 16)], ZEROS).ok).to.equal(true);
    });

    it('may take an unflushed page back to its initial value, which a read may then see', () => {
      const [v1, v2] = [pageOf(1), pageOf(2)];
      const ops = [read('c2', ZEROS, 0, 1), write('c1', v1, 2, 3), write('c1', v2, 4, 5), read('c2', v2, 6, 7), crash('home', 10)];
      expect(check([...ops, read('c2', ZEROS, 11, 12)], ZEROS)).to.deep.include({ ok: true, partitions: 1 });
      // A read that returned at the crash time is concurrent with it, so it may come after it too.
      expect(check([...ops, read('c2', ZEROS, 9, 10)], ZEROS).ok, 'returned at the crash').to.equal(true);
      // Before the crash, the initial value is gone once a write returned…
      expect(check([...ops, read('c2', ZEROS, 8, 9)], ZEROS).ok, 'before the crash').to.equal(false);
      // …and after it, once a flush made a write durable.
      expect(check([...ops.slice(0, 4), flush('c1', 8, 9), crash('home', 10), read('c2', ZEROS, 11, 12)], ZEROS).ok, 'flushed').to.equal(false);
    });

    it('lets a flush that never returned have made its value durable, or not', () => {
      const ops = [write('c1', A, 0, 1), flush('c1', 2, 3), write('c1', B, 4, 5), write('c1', C, 8, 9), crash('home', 20)];
      const pending = [...ops.slice(0, 3), flush('c1', 6), ...ops.slice(3)];
      const returned = [...ops.slice(0, 3), flush('c1', 6, 7), ...ops.slice(3)];
      // A, the value before the flush: only if the flush did not happen.
      expect(check([...pending, read('c2', A, 21, 22)]).ok, 'did not happen').to.equal(true);
      expect(check([...returned, read('c2', A, 21, 22)]).ok, 'happened').to.equal(false);
      // B, the value it flushed, and C, written after it: either way.
      for (const value of [B, C]) {
        expect(check([...pending, read('c2', value, 21, 22)]).ok).to.equal(true);
        expect(check([...returned, read('c2', value, 21, 22)]).ok).to.equal(true);
      }
    });
  });

  describe('the model', () => {
    const model = durableRegisterModel(EMPTY);
    const crashInput: DurableInput = { kind: 'crash', page: 'p' };

    function after(...inputs: DurableInput[]): DurableState {
      return inputs.reduce((s, input) => model.step(s, input, undefined)[0], model.init());
    }

    it('lets a crash leave any value written since the durable point, keeping them all, and changes no state it is given', () => {
      const s = after({ kind: 'write', page: 'p', value: A }, { kind: 'flush', page: 'p' }, { kind: 'write', page: 'p', value: B }, { kind: 'write', page: 'p', value: C });
      const frozen = model.key(s);
      const next = model.step(s, crashInput, undefined);
      expect(next.map((n) => Buffer.from(n.value).toString('hex'))).to.have.members(['aa', 'bb', 'cc']);
      expect(new Set(next.map((n) => model.key(n))).size).to.equal(3);
      expect(next.every((n) => n.candidates.size === 3)).to.equal(true);
      expect(model.key(s)).to.equal(frozen);
      expect(model.step(s, { kind: 'flush', page: 'p' }, undefined)[0].candidates.size).to.equal(1);
      expect(s.candidates.size, 'the flush left its input alone').to.equal(3);
      expect(model.describeState?.(s)).to.equal('0xcc; a crash may leave any of 3 values: 0xaa, 0xbb, 0xcc');
    });

    it('keys states by value and candidates, by content', () => {
      const w = (value: Uint8Array): DurableInput => ({ kind: 'write', page: 'p', value });
      expect(model.key(after(w(A), w(B)))).to.equal(model.key(after(w(A.slice()), w(B.slice()))));
      expect(model.key(after(w(A), w(B)))).to.not.equal(model.key(after(w(B))));
      expect(model.key(after(w(A), w(B)))).to.not.equal(model.key(after(w(B), w(A))));
      expect(model.key(after(w(A), w(B)))).to.not.equal(model.key(after(w(A), { kind: 'flush', page: 'p' }, w(B))));
      // A write of a candidate's content adds nothing.
      expect(model.key(after(w(A), w(B), w(A)))).to.equal(model.key(after(w(B), w(A))));
    });

    it('counts only reads as read-only', () => {
      expect(model.readOnly?.({ kind: 'read', page: 'p' })).to.equal(true);
      for (const input of [{ kind: 'flush', page: 'p' }, crashInput, { kind: 'write', page: 'p', value: A }] as const) expect(model.readOnly?.(input)).to.equal(false);
    });
  });

  describe('generated histories', () => {
    it('agrees with the plain register on 200 small histories without crashes', () => {
      let linearizable = 0;
      for (let seed = 1; seed <= 200; seed++) {
        const ops = smallHistory(new SeededRandom(seed), { crashes: false });
        const plain = checkLinearizable(registerModel(), ops.filter(isPlain)).ok;
        expect(check(ops).ok, `replay with seed ${seed}: ${JSON.stringify(ops.map(show))}`).to.equal(plain);
        if (plain === true) linearizable++;
      }
      // Both answers must be common for the comparison to mean anything.
      expect(linearizable).to.be.within(40, 160);
    });

    it('agrees with trying every order on 2,000 small histories with crashes', () => {
      let linearizable = 0;
      let onlyThroughALoss = 0;
      for (let seed = 1; seed <= 2000; seed++) {
        const ops = smallHistory(new SeededRandom(seed).derive('crashes'), { crashes: true });
        const expected = bruteForce(ops);
        expect(check(ops).ok, `replay with seed ${seed}: ${JSON.stringify(ops.map(show))}`).to.equal(expected);
        if (expected) linearizable++;
        if (expected && checkLinearizable(registerModel(), ops.filter(isPlain)).ok !== true) onlyThroughALoss++;
      }
      expect(linearizable).to.be.within(400, 1600);
      // Histories that a crash's loss explains, or the crashes would not be tested.
      expect(onlyThroughALoss).to.be.greaterThan(20);
    });
  });
});

// ---------------------------------------------------------------------------
// Small histories and a checker that tries everything

const VALUES = [EMPTY, A, B, C];

/**
 * 2 to 10 operations on one page by 2 clients and a node that crashes,
 * with many ties; values from a set of 3, some operations never returning,
 * reads mostly of the value a register would show, which a crash may
 * change to any value.
 */
function smallHistory(rng: SeededRandom, opts: { crashes: boolean }): DurableOp[] {
  const ops: DurableOp[] = [];
  const n = 2 + rng.int(9);
  const nextFree = [0, 0];
  let current = EMPTY;
  for (let i = 0; i < n; i++) {
    const c = rng.int(2);
    const call = nextFree[c] + rng.int(3);
    const ret = rng.int(5) === 0 ? undefined : call + rng.int(3);
    const kind = rng.int(opts.crashes ? 12 : 10);
    if (kind >= 10) {
      ops.push(crash('home', call));
      if (rng.int(2) === 0) current = VALUES[rng.int(4)];
      continue;
    }
    nextFree[c] = ret ?? call;
    if (kind < 4) {
      current = VALUES[1 + rng.int(3)];
      ops.push(write(`c${c}`, current, call, ret));
    } else if (kind < 8) {
      const output = rng.int(3) === 0 ? VALUES[rng.int(4)] : current;
      ops.push({ client: `c${c}`, input: { kind: 'read', page: 'p' }, call, ret, output: ret === undefined ? undefined : output.slice() });
    } else {
      ops.push(flush(`c${c}`, call, ret));
    }
  }
  return ops;
}

function isPlain(op: DurableOp): op is RegisterOp {
  return op.input.kind !== 'crash';
}

/**
 * Whether some order of all returned operations and any of the others
 * follows the rule as written: the page's value, its durable value and the
 * values written since the durable point; a returned flush makes the value
 * durable; a crash leaves the durable value or one written since.
 */
function bruteForce(ops: DurableOp[]): boolean {
  const returned = ops.flatMap((op, i) => (op.ret === undefined ? [] : [i]));
  const mustFollow = ops.map((b, j) => ops.flatMap((a, i) => (a.ret !== undefined && i !== j && a.ret < b.call ? [i] : [])));
  const hex = (v: Uint8Array): string => Buffer.from(v).toString('hex');
  interface Page {
    value: string;
    durable: string;
    since: string[];
  }
  const tried = new Set<string>();
  const search = (placed: number, page: Page): boolean => {
    if (returned.every((i) => placed & (1 << i))) return true;
    const key = `${placed}:${page.value}:${page.durable}:${[...new Set(page.since)].sort().join(',')}`;
    if (tried.has(key)) return false;
    tried.add(key);
    return ops.some((op, i) => {
      if (placed & (1 << i) || !mustFollow[i].every((a) => placed & (1 << a))) return false;
      const next = (p: Page): boolean => search(placed | (1 << i), p);
      switch (op.input.kind) {
        case 'read':
          return (op.output === undefined || hex(op.output) === page.value) && next(page);
        case 'write':
          return next({ ...page, value: hex(op.input.value), since: [...page.since, hex(op.input.value)] });
        case 'flush':
          return next({ value: page.value, durable: page.value, since: [] });
        case 'crash':
          return [page.durable, ...page.since].some((value) => next({ ...page, value }));
      }
    });
  };
  return search(0, { value: '', durable: '', since: [] });
}

function show(op: DurableOp): string {
  const { input } = op;
  const what =
    input.kind === 'write' ? `w${Buffer.from(input.value).toString('hex')}` : input.kind === 'read' ? `r${op.output ? Buffer.from(op.output).toString('hex') || '-' : '?'}` : input.kind === 'flush' ? 'f' : 'crash';
  return `${op.client} ${what} [${op.call},${op.ret ?? '∞'}]`;
}
