/**
 * Logs of a node process: pino JSON lines, to stdout or appended to a file.
 * Writes are synchronous so the line explaining a crash is on disk before
 * the process exits; a node logs events (a member failed, quorum changed),
 * not every message, so the cost is small.
 */
import { pino, type Logger } from 'pino';
import type { Log } from '../../actors/log.js';
import type { LogLevel } from './config.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: LogLevel;
  /** Append to this file; else to `fd`. */
  file?: string;
  /** stdout (1, the default: a node process's output is its log) or stderr (2: a program's embedded node keeps stdout for the program). */
  fd?: 1 | 2;
}

export function createLogger(opts: LoggerOptions): Logger {
  const destination = pino.destination({ dest: opts.file ?? opts.fd ?? 1, sync: true, append: true, mkdir: opts.file !== undefined });
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      // Logged fields go under "data", so a field named like one of pino's
      // own (a heartbeat `level`, a peer `node`) cannot clobber the line's
      // level or the node it came from.
      nestedKey: 'data',
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

// Compile-time proof that a pino logger is what the actors take as a Log.
const _isLog: (l: Logger) => Log = (l) => l;
void _isLog;

export const throttleLimits = {
  /** Distinct keys remembered; past this the oldest is forgotten. */
  keysMax: 256,
} as const;

type Level = 'debug' | 'info' | 'warn' | 'error';

/**
 * A log line that repeats (a dead peer makes every heartbeat unsendable, a
 * hostile client can send garbage in a loop) is written at most once per
 * interval and key; the next line written says how many were left out.
 */
export function throttledLog(log: Log, level: Level, intervalMs: number, now: () => number = Date.now) {
  const seen = new Map<string, { lastMs: number; suppressed: number }>();
  return (key: string, obj: object, msg: string): void => {
    const t = now();
    const entry = seen.get(key);
    if (entry && t - entry.lastMs < intervalMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    seen.delete(key);
    seen.set(key, { lastMs: t, suppressed: 0 });
    if (seen.size > throttleLimits.keysMax) seen.delete(seen.keys().next().value!);
    log[level](suppressed > 0 ? { ...obj, suppressed } : obj, msg);
  };
}
