/**
 * Opening trace files for `mangrove trace`: records read lazily, one file
 * at a time as the merge asks, and file problems turned into errors a user
 * can act on (a missing file, a file that is not a trace).
 */
import { MangroveError } from '../../bus/errors.js';
import { streamEntries, streamTrace, traceNodes, TraceFormatError, type TruncatedTail } from '../../bus/trace/trace.js';
import type { TraceEntry, TraceRecord } from '../../bus/transport/transport.js';
import { trackFile, type FileCounts } from './query.js';

export interface OpenTrace {
  file: string;
  /** Read on demand; the file is opened by the first `next()`. */
  records: Iterable<TraceRecord>;
  /** Filled in as the records are read. */
  counts: FileCounts;
}

export function openTrace(file: string, onTruncated: (tail: TruncatedTail) => void): OpenTrace {
  const counts: FileCounts = { records: 0, outOfOrder: 0 };
  function* records(): Generator<TraceRecord, void, undefined> {
    try {
      yield* trackFile(streamTrace(file, onTruncated), counts);
    } catch (err) {
      throw userError(file, err);
    }
  }
  return { file, records: records(), counts };
}

/** Every record of a trace, start and timer records too, in file order (for `trace check`, which replays). */
export function readEntries(file: string, onTruncated: (tail: TruncatedTail) => void): TraceEntry[] {
  try {
    return [...streamEntries(file, onTruncated)];
  } catch (err) {
    throw userError(file, err);
  }
}

/** The ids of the nodes that recorded `files`, for resolving --node prefixes. */
export function recordingNodes(files: readonly string[]): Set<string> {
  const ids = new Set<string>();
  for (const file of files) {
    try {
      for (const id of traceNodes(file)) ids.add(id);
    } catch (err) {
      throw userError(file, err);
    }
  }
  return ids;
}

export function userError(file: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new MangroveError('E_NOT_FOUND', `no trace file ${file}`);
  if (code === 'EISDIR') return new MangroveError('E_BAD_ARGUMENT', `${file} is a directory, not a trace file`);
  if (code === 'EACCES') return new MangroveError('E_STORAGE', `cannot read ${file}: permission denied`);
  // A file whose very first record is wrong was never a trace: the user named
  // the wrong file. A later bad record is a damaged trace (E_BAD_MESSAGE).
  if (err instanceof TraceFormatError && err.record === 1) {
    return new MangroveError('E_BAD_ARGUMENT', `${file} is not a Mangrove trace: its first record ${err.why}`);
  }
  return err;
}
