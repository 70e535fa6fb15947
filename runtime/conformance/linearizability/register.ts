/**
 * The page register: the sequential model of one page that the memory
 * engine's histories are checked against (search.ts). A read
 * returns the bytes of the last write, or the initial value; a flush only
 * makes the page durable, so it never changes or reveals the value.
 *
 * Values are compared by content, and the model keys states by content
 * once per array object (a WeakMap), so a 4 KiB page costs one conversion
 * per distinct write or read value, not one per search step. A recorder must
 * therefore not mutate a value after handing it over.
 */
import type { EffectWindow, Model, Operation } from './history.js';

export type RegisterInput =
  | { kind: 'read'; page: string }
  | { kind: 'write'; page: string; value: Uint8Array }
  | { kind: 'flush'; page: string };

/** A read's value; undefined for writes and flushes. */
export type RegisterOutput = Uint8Array | undefined;

export type RegisterOp = Operation<RegisterInput, RegisterOutput>;

/** Bytes shown in full; longer values show a head and a digest. */
const SHOW_BYTES_MAX = 16;

/** A model of independent registers, one per page, each starting at `initial`. */
export function registerModel(initial: Uint8Array = new Uint8Array(0)): Model<Uint8Array, RegisterInput, RegisterOutput> {
  const keyOf = contentKeys();
  return {
    init: () => initial,
    step(state, input, output) {
      switch (input.kind) {
        case 'write':
          return [input.value];
        case 'flush':
          return [state];
        case 'read':
          // undefined: the read never returned, so any value would do.
          return output === undefined || keyOf(output) === keyOf(state) ? [state] : [];
      }
    },
    key: keyOf,
    partition: (input) => input.page,
    readOnly: (input) => input.kind !== 'write',
    narrow: (ops) => narrowRegister(ops, keyOf(initial), keyOf, Infinity),
    describe(input, output) {
      switch (input.kind) {
        case 'write':
          return `write ${input.page} ${formatBytes(input.value)}`;
        case 'flush':
          return `flush ${input.page}`;
        case 'read':
          return `read ${input.page} → ${output === undefined ? '?' : formatBytes(output)}`;
      }
    },
    describeState: formatBytes,
  };
}

/**
 * Windows implied by reads of values that only one write produced. Such a
 * read saw that write, so the write took effect before the read returned
 * (before the first such read returned, for all of them) and the read after
 * the write was called. A read of the initial value, when no write produced
 * it and it returned before `crashFreeBefore`, came before every write: only
 * a write changes the page until a crash, and a crash may take it back to
 * the initial value (durable-register.ts). A write that never returned and
 * whose value nobody saw can be left out: any linearization without it is
 * just as good, since no read can have come between it and the next write.
 */
export function narrowRegister(
  ops: readonly RegisterOp[],
  initialKey: string,
  keyOf: (v: Uint8Array) => string,
  /** The page's first crash; Infinity for a model without crashes. */
  crashFreeBefore: number,
): Map<RegisterOp, EffectWindow | 'never'> {
  const writers = new Map<string, RegisterOp[]>();
  const readers = new Map<string, RegisterOp[]>();
  for (const op of ops) {
    if (op.input.kind === 'write') push(writers, keyOf(op.input.value), op);
    else if (op.input.kind === 'read' && op.ret !== undefined && op.output !== undefined) push(readers, keyOf(op.output), op);
  }
  const out = new Map<RegisterOp, EffectWindow | 'never'>();
  const windowOf = (op: RegisterOp): EffectWindow => {
    const w = out.get(op);
    return w === undefined || w === 'never' ? { from: op.call, by: op.ret } : w;
  };
  for (const [key, [write, ...others]] of writers) {
    if (others.length > 0 || key === initialKey) continue;
    const seen = readers.get(key) ?? [];
    if (seen.length === 0) {
      if (write.ret === undefined) out.set(write, 'never');
      continue;
    }
    const by = seen.reduce((t, r) => Math.min(t, r.ret as number), write.ret ?? Infinity);
    out.set(write, { from: write.call, by });
    for (const r of seen) out.set(r, { from: Math.max(r.call, write.call), by: r.ret });
  }
  if (!writers.has(initialKey)) {
    const firstBy = ops.reduce((t, op) => (op.input.kind === 'write' ? Math.min(t, windowOf(op).by ?? Infinity) : t), Infinity);
    for (const r of readers.get(initialKey) ?? []) {
      if ((r.ret ?? Infinity) < crashFreeBefore) out.set(r, { from: r.call, by: Math.min(r.ret as number, firstBy) });
    }
  }
  return out;
}

/**
 * A key by content for byte arrays, converted once per array object (a
 * WeakMap), so a 4 KiB page costs one conversion per distinct array, not
 * one per search step.
 */
export function contentKeys(): (v: Uint8Array) => string {
  const keys = new WeakMap<Uint8Array, string>();
  return (v) => {
    let k = keys.get(v);
    if (k === undefined) {
      k = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1');
      keys.set(v, k);
    }
    return k;
  };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** Hex for short values; length, head and an FNV-1a digest for long ones, so two pages differing deep inside still look different. */
export function formatBytes(v: Uint8Array): string {
  if (v.length === 0) return '(empty)';
  if (v.every((b) => b === 0)) return `${v.length} B of zeros`;
  const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  if (v.length <= SHOW_BYTES_MAX) return `0x${hex(v)}`;
  let h = 0x811c9dc5;
  for (const b of v) h = Math.imul(h ^ b, 0x01000193);
  return `${v.length} B 0x${hex(v.subarray(0, 8))}… fnv ${(h >>> 0).toString(16).padStart(8, '0')}`;
}
