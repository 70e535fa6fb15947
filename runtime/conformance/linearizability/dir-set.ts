/**
 * A directory as a set of names: the sequential model the file system's
 * directory histories are checked against (search.ts; spec/sim/fs.sim.spec.ts).
 * `add` is an exclusive create (it succeeds only for a name not in the set,
 * else it answers `exists`), `remove` an unlink (`missing` when the name is
 * not there), `move` a rename within the directory (atomic: the old name
 * goes and the new one comes in one step, replacing it), and `list` a
 * readdir that sees the whole set at one instant.
 */
import type { Model, Operation } from './history.js';

export type DirInput =
  | { kind: 'add'; dir: string; name: string }
  | { kind: 'remove'; dir: string; name: string }
  | { kind: 'move'; dir: string; from: string; to: string }
  | { kind: 'list'; dir: string };

/** What an operation answered: ok, the name was there already or not there, or a listing (sorted). */
export type DirOutput = 'ok' | 'exists' | 'missing' | string[];

export type DirOp = Operation<DirInput, DirOutput>;

const keyOf = (s: ReadonlySet<string>): string => [...s].sort().join('\u0000');

export function dirSetModel(): Model<ReadonlySet<string>, DirInput, DirOutput> {
  return {
    init: () => new Set<string>(),
    step(state, input, output) {
      switch (input.kind) {
        case 'add':
          if (state.has(input.name)) return output === undefined || output === 'exists' ? [state] : [];
          return output === undefined || output === 'ok' ? [new Set([...state, input.name])] : [];
        case 'remove': {
          if (!state.has(input.name)) return output === undefined || output === 'missing' ? [state] : [];
          if (output !== undefined && output !== 'ok') return [];
          const next = new Set(state);
          next.delete(input.name);
          return [next];
        }
        case 'move': {
          if (!state.has(input.from)) return output === undefined || output === 'missing' ? [state] : [];
          if (output !== undefined && output !== 'ok') return [];
          const next = new Set(state);
          next.delete(input.from);
          next.add(input.to);
          return [next];
        }
        case 'list':
          return output === undefined || (Array.isArray(output) && keyOf(new Set(output)) === keyOf(state)) ? [state] : [];
      }
    },
    key: keyOf,
    partition: (input) => input.dir,
    readOnly: (input) => input.kind === 'list',
    describe(input, output) {
      const out = output === undefined ? '?' : Array.isArray(output) ? `[${output.join(', ')}]` : output;
      switch (input.kind) {
        case 'add':
          return `add ${input.name} → ${out}`;
        case 'remove':
          return `remove ${input.name} → ${out}`;
        case 'move':
          return `move ${input.from} → ${input.to}: ${out}`;
        case 'list':
          return `list → ${out}`;
      }
    },
    describeState: (s) => `{${[...s].sort().join(', ')}}`,
  };
}
