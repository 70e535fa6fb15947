/**
 * What the bus and the actors need of time and chance. Both have a real and a
 * simulated twin in runtime/ (DESIGN.md: every real part has a simulated twin
 * behind one interface). The timer half is XState's own `Clock` shape, so the
 * same object drives machines' `after` delays.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** n random bytes. */
  bytes(n: number): Uint8Array;
}
