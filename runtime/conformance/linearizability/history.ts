/**
 * What a linearizability check speaks of: a history of operations, each with
 * its call and return times, and the sequential model it is checked against
 * (search.ts runs the check; register.ts is the memory engine's model).
 */

export interface Operation<I, O> {
  /** Who issued it; only for explanations. */
  client: string;
  input: I;
  /** When it was called. */
  call: number;
  /** When it returned; undefined if it never did, so it may have taken effect at any time after `call`, or never. */
  ret?: number;
  /** What it observed; ignored while `ret` is undefined. */
  output?: O;
}

/** A sequential specification the checker linearizes against. */
export interface Model<S, I, O> {
  init(): S;
  /**
   * The states `input` can lead to from `state` while producing `output`;
   * empty when the model cannot produce that output. `output` is undefined
   * for an operation that never returned: the model must then allow any
   * output. More than one state makes the model nondeterministic; each is
   * searched. Must not mutate `state`.
   */
  step(state: S, input: I, output: O | undefined): readonly S[];
  /** Equal for states that behave the same; the memo compares keys, so it must be exact. */
  key(state: S): string;
  /** The object an operation touches; operations on different objects are checked apart. */
  partition?(input: I): string;
  /**
   * True for an operation that never changes the state, whatever the state
   * (`step` gives `[state]` or nothing): a read, a flush. The search places
   * such an operation as soon as the model allows it and never tries it
   * later instead, and leaves it out if it never returned. Only an
   * optimization, but often a large one: without it, a wrong answer is
   * impossible and a slow one likely.
   */
  readOnly?(input: I): boolean;
  /**
   * What the whole partition tells about when operations can have taken
   * effect, beyond their own intervals: for the page register, a write
   * whose value only it wrote took effect before the first read that saw
   * the value returned, and each such read after the write was called; a
   * write that never returned and whose value nobody saw can be left out
   * ('never'). The search uses the narrowed windows as the operations'
   * intervals, so the model must only narrow by what every linearization
   * obeys (and never widens: windows are clipped to [call, ret]). Only an
   * optimization, often a large one: a write that never returned is
   * otherwise a choice for the rest of the search, and one whose value was
   * read stays a choice until it returns.
   */
  narrow?(ops: readonly Operation<I, O>[]): Map<Operation<I, O>, EffectWindow | 'never'>;
  /** One operation for an explanation, e.g. `read → 0x0102`. */
  describe(input: I, output: O | undefined): string;
  /** One state for an explanation; `key` when absent. */
  describeState?(state: S): string;
}

/** When an operation can have taken effect: at `from` or later, by `by` at the latest (no bound when undefined). */
export interface EffectWindow {
  from: number;
  by?: number;
}
