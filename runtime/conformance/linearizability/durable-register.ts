/**
 * The durable page register: the model a page is checked against when its
 * history was recorded while nodes crashed and restarted (search.ts runs
 * the check; register.ts is the model without crashes).
 *
 * The rule, the contract the cluster promises for each page:
 *  1. A write acknowledged by a successful flush is never lost: a flush that
 *     returned made durable the value the page held at the flush's
 *     linearization point, and no later crash takes the page back past it.
 *  2. A write that was not yet flushed when a node crashed may be lost, and
 *     a lost write is not read again: the crash leaves the page one value,
 *     and reads return it until the next write or crash. That value is the
 *     durable one or any value written since the durable point, not
 *     necessarily the latest (a copy surviving on another node may be newer
 *     than the disks, and the recovery keeps the newest surviving copy),
 *     but never a value older than the durable one and never a value that
 *     was never written.
 *  3. Between crashes the page is an atomic register (register.ts): a read
 *     returns the last value written, or the one the last crash left.
 *  4. A flush that failed guarantees nothing.
 * The check is more lenient than rule 2 in one respect: until the next
 * flush, each crash may leave any value written since the durable point,
 * so a second crash may take the page further back, and may also bring
 * back a value that an earlier crash lost.
 *
 * What the recorder must do:
 *  - At each node crash, insert one `crash` operation per page, with call =
 *    ret = the crash time and `client` the crashed node. With
 *    `sequentialClients`, list it at its place in time among that node's
 *    operations, since the search orders a client's operations as listed.
 *  - Leave out flushes that failed. A placed flush shrinks what a later
 *    crash may leave, so a failed flush recorded as returned would report a
 *    loss that the rule allows: the check is sound only if they are left
 *    out. Record a flush whose outcome is unknown as never returned. It
 *    guarantees nothing, so the check ignores it (see `narrow`).
 *  - As for register.ts: leave out writes that definitely failed, and do
 *    not mutate a value after handing it over.
 *
 * The state is the value a read returns and the candidates, the values a
 * crash may leave: the durable value and every value written since the
 * last flush point. A write adds its value to the candidates, a returned
 * flush reduces them to the current value, and a crash picks any of them
 * (the model is nondeterministic there) and keeps them all. The value is
 * always a candidate.
 */
import type { EffectWindow, Model, Operation } from './history.js';
import { contentKeys, formatBytes, narrowRegister, type RegisterInput, type RegisterOp, type RegisterOutput } from './register.js';

export type DurableInput = RegisterInput | { kind: 'crash'; page: string };

export type DurableOp = Operation<DurableInput, RegisterOutput>;

export interface DurableState {
  /** What a read returns now. */
  readonly value: Uint8Array;
  /** What a crash may leave, by content id: the durable value and every value written since. Holds `value`. */
  readonly candidates: ReadonlyMap<number, Uint8Array>;
}

/** Candidates an explanation lists; beyond this it gives only their number. */
const DESCRIBE_CANDIDATES_MAX = 4;

/** A model of independent durable registers, one per page, each starting at `initial`, durable. */
export function durableRegisterModel(initial: Uint8Array = new Uint8Array(0)): Model<DurableState, DurableInput, RegisterOutput> {
  const keyOf = contentKeys();
  const idOf = contentIds(keyOf);
  return {
    init: () => ({ value: initial, candidates: new Map([[idOf(initial), initial]]) }),
    step(state, input, output) {
      switch (input.kind) {
        case 'write':
          return [afterWrite(state, input.value, idOf(input.value))];
        case 'flush':
          return [afterFlush(state, idOf)];
        case 'crash':
          return afterCrash(state, idOf(state.value));
        case 'read':
          // undefined: the read never returned, so any value would do.
          return output === undefined || idOf(output) === idOf(state.value) ? [state] : [];
      }
    },
    key: (state) => `${idOf(state.value)}:${[...state.candidates.keys()].sort((a, b) => a - b).join(',')}`,
    partition: (input) => input.page,
    // A flush shrinks the candidates and a crash may change the value.
    readOnly: (input) => input.kind === 'read',
    narrow: (ops) => narrowDurable(ops, keyOf(initial), keyOf),
    describe(input, output) {
      switch (input.kind) {
        case 'write':
          return `write ${input.page} ${formatBytes(input.value)}`;
        case 'flush':
          return `flush ${input.page}`;
        case 'crash':
          return `crash ${input.page}`;
        case 'read':
          return `read ${input.page} → ${output === undefined ? '?' : formatBytes(output)}`;
      }
    },
    describeState,
  };
}

function afterWrite(state: DurableState, value: Uint8Array, id: number): DurableState {
  if (state.candidates.has(id)) return { value, candidates: state.candidates };
  return { value, candidates: new Map([...state.candidates, [id, value]]) };
}

function afterFlush(state: DurableState, idOf: (v: Uint8Array) => number): DurableState {
  // The value is always a candidate, so a single candidate is the value: nothing to make durable.
  if (state.candidates.size === 1) return state;
  return { value: state.value, candidates: new Map([[idOf(state.value), state.value]]) };
}

/** One state per value the crash may leave, the current value first: losing nothing is the common case. */
function afterCrash(state: DurableState, valueId: number): DurableState[] {
  const out = [state];
  for (const [id, value] of state.candidates) if (id !== valueId) out.push({ value, candidates: state.candidates });
  return out;
}

/**
 * What register.ts's narrowing shows, with the initial-value rule only for
 * reads that returned before the page's first crash (after one, a crash
 * may have taken the page back to the initial value while nothing was
 * flushed), and a flush that never returned left out.
 *
 * Why the flush can go: from equal values, a state whose candidates
 * include another's can do all the other can, since a write adds the same
 * value to both, a flush reduces both to the same value, a read sees the
 * same value, and a crash may leave in the larger whatever it may leave in
 * the smaller. A flush only reduces the candidates and keeps the value, so
 * any linearization that places it stays one without it.
 */
function narrowDurable(ops: readonly DurableOp[], initialKey: string, keyOf: (v: Uint8Array) => string): Map<DurableOp, EffectWindow | 'never'> {
  const firstCrash = ops.reduce((t, op) => (op.input.kind === 'crash' ? Math.min(t, op.call) : t), Infinity);
  const out = new Map<DurableOp, EffectWindow | 'never'>(narrowRegister(ops.filter(isRegisterOp), initialKey, keyOf, firstCrash));
  for (const op of ops) if (op.input.kind === 'flush' && op.ret === undefined) out.set(op, 'never');
  return out;
}

function isRegisterOp(op: DurableOp): op is RegisterOp {
  return op.input.kind !== 'crash';
}

/**
 * Small numbers for contents, so a state's key stays short however large
 * the page: one per distinct content the model has seen, which the
 * histories checked with it bound.
 */
function contentIds(keyOf: (v: Uint8Array) => string): (v: Uint8Array) => number {
  const ids = new Map<string, number>();
  return (v) => {
    const k = keyOf(v);
    let id = ids.get(k);
    if (id === undefined) {
      id = ids.size;
      ids.set(k, id);
    }
    return id;
  };
}

function describeState(state: DurableState): string {
  const n = state.candidates.size;
  if (n === 1) return `${formatBytes(state.value)}, durable`;
  const listed = n <= DESCRIBE_CANDIDATES_MAX ? `: ${[...state.candidates.values()].map(formatBytes).join(', ')}` : '';
  return `${formatBytes(state.value)}; a crash may leave any of ${n} values${listed}`;
}
