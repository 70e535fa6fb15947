/**
 * The one polling wait of the specs that run on real time (real processes,
 * real sockets): ask `probe` every `pollMs` until it answers, for at most
 * `timeoutMs`. A wait that runs out is a failure naming what it waited for
 * (E_TIMEOUT), never a value a caller might forget to check. Simulated runs
 * have their own, on virtual time (SimCluster.runUntil).
 */
import { MangroveError } from '../../bus/errors.js';

export interface UntilOptions {
  /** Default 15 s. */
  timeoutMs?: number;
  /** Default 50 ms. */
  pollMs?: number;
}

/** What a probe answers while the wait goes on. */
type NotYet = undefined | null | false;

/**
 * Resolves with the first answer of `probe` that is not undefined, null or
 * false (so a boolean probe resolves with true, a lookup with what it
 * found); rejects with E_TIMEOUT naming `what` once `timeoutMs` has passed.
 * A probe that throws ends the wait with its error.
 */
export async function until<T>(what: string, probe: () => T | NotYet | Promise<T | NotYet>, options: UntilOptions = {}): Promise<Exclude<T, NotYet>> {
  const { timeoutMs = 15_000, pollMs = 50 } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await probe();
    if (answer !== undefined && answer !== null && answer !== false) return answer as Exclude<T, NotYet>;
    if (Date.now() > deadline) throw new MangroveError('E_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
