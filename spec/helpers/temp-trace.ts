/**
 * A trace file of its own for each spec, in a temporary directory that is
 * removed after the spec (mocha hooks, registered by the call), and a way to
 * write records to it as a node does (a TraceWriter, closed at once). For
 * specs of the trace format and its readers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceWriter } from '../../bus/trace/trace.js';
import type { TraceRecord } from '../../bus/transport/transport.js';

export interface TempTrace {
  /** This spec's trace file (not there until something writes it). */
  readonly path: string;
  /** Appends the records to the file, through a TraceWriter of its own. */
  write(recs: readonly TraceRecord[]): void;
}

export function tempTrace(prefix: string): TempTrace {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  return {
    get path() {
      return join(dir, 'run.trace');
    },
    write(recs) {
      const w = new TraceWriter(join(dir, 'run.trace'));
      for (const r of recs) w.record(r);
      w.close();
    },
  };
}
