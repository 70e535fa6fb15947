/**
 * What `mangrove trace show` and `trace stats` compute, as pure functions
 * over records: merging several traces in time order, the filters, and the
 * counts. No files and no output here, so a spec can check every rule with
 * records it builds itself.
 */
import { MangroveError } from '../../bus/errors.js';
import { KINDS } from '../../bus/messages/index.js';
import type { TraceRecord } from '../../bus/transport/transport.js';

export const queryLimits = {
  /** Candidates or known ids named in one error message. */
  namesShownMax: 8,
} as const;

// ---------------------------------------------------------------- merging

/**
 * Merges traces that are each in time order into one stream in time order,
 * reading each only as far as needed (a k-way merge on a heap holding one
 * record per source), so memory does not grow with the traces. Stable:
 * records of one source keep their order, and records of several sources at
 * the same time come in source order. A source that goes back in time (a
 * wall clock stepped back) is merged as it stands: its records keep their
 * file order, and `trackFile` counts them so the caller can say so.
 */
export function* mergeByTime(sources: readonly Iterable<TraceRecord>[]): Generator<TraceRecord, void, undefined> {
  const iterators = sources.map((s) => s[Symbol.iterator]());
  try {
    const heap = new RecordHeap();
    iterators.forEach((it, source) => heap.pushNext(it, source));
    for (let top = heap.pop(); top !== undefined; top = heap.pop()) {
      yield top.rec;
      heap.pushNext(iterators[top.source], top.source);
    }
  } finally {
    // A consumer that stops early (--limit) must still close every file.
    for (const it of iterators) it.return?.();
  }
}

interface Head {
  rec: TraceRecord;
  source: number;
}

/** A binary min-heap of each source's next record, by (time, source). */
class RecordHeap {
  private readonly items: Head[] = [];

  pushNext(it: Iterator<TraceRecord>, source: number): void {
    const next = it.next();
    if (next.done) return;
    this.items.push({ rec: next.value, source });
    let i = this.items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): Head | undefined {
    const items = this.items;
    if (items.length === 0) return undefined;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let least = i;
        if (l < items.length && this.before(l, least)) least = l;
        if (r < items.length && this.before(r, least)) least = r;
        if (least === i) break;
        this.swap(i, least);
        i = least;
      }
    }
    return top;
  }

  private before(a: number, b: number): boolean {
    const x = this.items[a];
    const y = this.items[b];
    return x.rec.t < y.rec.t || (x.rec.t === y.rec.t && x.source < y.source);
  }

  private swap(a: number, b: number): void {
    [this.items[a], this.items[b]] = [this.items[b], this.items[a]];
  }
}

/** What reading one file showed, filled in while its records pass by. */
export interface FileCounts {
  records: number;
  /** Records earlier than the record before them in the same file. */
  outOfOrder: number;
}

/** Passes a file's records through, counting them into `counts`. */
export function* trackFile(records: Iterable<TraceRecord>, counts: FileCounts): Generator<TraceRecord, void, undefined> {
  let lastT = -Infinity;
  for (const rec of records) {
    counts.records++;
    if (rec.t < lastT) counts.outOfOrder++;
    lastT = rec.t;
    yield rec;
  }
}

// ---------------------------------------------------------------- filters

/** A point in time from --since/--until: a record time, or ms after the first record. */
export type TimePoint = { ms: number; relative: boolean };

/** What the user asked for, before the traces are read. */
export interface FilterSpec {
  kinds?: (kind: string) => boolean;
  /** Recording node ids, already resolved (resolveNodes). */
  nodes?: ReadonlySet<string>;
  dir?: 'send' | 'recv';
  since?: TimePoint;
  until?: TimePoint;
}

/** Splits comma-separated option values (repeated options add up). */
export function listValues(option: string, values: readonly string[]): string[] {
  const items = values.flatMap((v) => v.split(',')).map((v) => v.trim());
  if (items.length === 0 || items.some((v) => v === '')) {
    throw badArgument(`${option} takes a comma-separated list without empty items (got ${JSON.stringify(values.join(','))})`);
  }
  return items;
}

/**
 * `--kind`: exact kinds, or namespace prefixes ending in a dot (`hb.` is
 * every heartbeat kind). Checked against the kinds this build knows, so a
 * typo is an error rather than a filter that silently matches nothing.
 */
export function kindMatcher(values: readonly string[], known: readonly string[] = KINDS): (kind: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const v of values) {
    if (v.endsWith('.')) {
      if (!known.some((k) => k.startsWith(v))) throw badArgument(`--kind ${v} is not the prefix of any message kind (namespaces: ${namespaces(known)})`);
      prefixes.push(v);
    } else {
      if (!known.includes(v)) throw badArgument(`--kind ${v} is not a message kind (${kindHint(v, known)})`);
      exact.add(v);
    }
  }
  return (kind) => exact.has(kind) || prefixes.some((p) => kind.startsWith(p));
}

/** The kinds of the namespace the user meant, or the namespaces when that one is unknown too. */
function kindHint(value: string, known: readonly string[]): string {
  if (known.some((k) => k.startsWith(`${value}.`))) return `for every ${value}. kind, write ${value}.`;
  const space = `${value.split('.')[0]}.`;
  const near = known.filter((k) => k.startsWith(space));
  return near.length > 0 ? `${space} kinds: ${near.join(', ')}` : `namespaces: ${namespaces(known)}`;
}

function namespaces(known: readonly string[]): string {
  return [...new Set(known.map((k) => `${k.split('.')[0]}.`))].join(', ');
}

/**
 * `--node`: each value is a recording node's id, or a prefix of exactly one
 * (ids are long: `3945134a` is enough when unique). An exact id wins over
 * the longer ids it prefixes. No match and several matches are errors that
 * name what the traces hold.
 */
export function resolveNodes(values: readonly string[], ids: Iterable<string>): Set<string> {
  const all = [...ids].sort();
  const chosen = new Set<string>();
  for (const v of values) {
    if (all.includes(v)) {
      chosen.add(v);
      continue;
    }
    const matches = all.filter((id) => id.startsWith(v));
    if (matches.length === 0) {
      throw badArgument(`--node ${v} matches no node that recorded these traces (${all.length === 0 ? 'they hold no records' : `they hold ${clipNames(all)}`})`);
    }
    if (matches.length > 1) throw badArgument(`--node ${v} is ambiguous: it could be ${clipNames(matches)}; give more of the id`);
    chosen.add(matches[0]);
  }
  return chosen;
}

export function parseDir(value: string): 'send' | 'recv' {
  if (value !== 'send' && value !== 'recv') throw badArgument(`--dir must be send or recv (got ${JSON.stringify(value)})`);
  return value;
}

/** `--since`/`--until`: a record time in ms (as `t` in --json), or `+MS` after the first record. */
export function parseTimePoint(option: string, value: string): TimePoint {
  const m = /^(\+)?(\d+(?:\.\d+)?)$/.exec(value.trim());
  if (!m) throw badArgument(`${option} must be a time in ms like 1500, or +1500 for 1.5 s after the first record (got ${JSON.stringify(value)})`);
  return { ms: Number(m[2]), relative: m[1] === '+' };
}

/** Refuses a window that cannot hold a record; with a relative bound this needs the origin. */
export function checkWindow(since: TimePoint | undefined, until: TimePoint | undefined, originMs?: number): void {
  if (!since || !until) return;
  if (since.relative !== until.relative && originMs === undefined) return;
  const at = (p: TimePoint) => (p.relative ? originMs! + p.ms : p.ms);
  if (at(since) > at(until)) throw badArgument(`--since ${show(since)} is after --until ${show(until)}`);
}

function show(p: TimePoint): string {
  return `${p.relative ? '+' : ''}${p.ms}`;
}

/**
 * The predicate for one run. `originMs` is the time of the first record of
 * the merged traces, before filtering: the zero of `+MS` bounds, as of the
 * offsets `trace show` prints, so both agree whatever the filters.
 * Both bounds are inclusive: simulated timers fire on round times, and
 * `--until 2000` should show what happened at 2.000 s.
 */
export function compileFilter(spec: FilterSpec, originMs: number): (rec: TraceRecord) => boolean {
  checkWindow(spec.since, spec.until, originMs);
  const since = spec.since ? (spec.since.relative ? originMs + spec.since.ms : spec.since.ms) : -Infinity;
  const until = spec.until ? (spec.until.relative ? originMs + spec.until.ms : spec.until.ms) : Infinity;
  const { kinds, nodes, dir } = spec;
  return (rec) =>
    rec.t >= since &&
    rec.t <= until &&
    (dir === undefined || rec.dir === dir) &&
    (nodes === undefined || nodes.has(rec.node)) &&
    (kinds === undefined || kinds(rec.env.kind));
}

// ---------------------------------------------------------------- stats

export interface SendRecv {
  send: number;
  recv: number;
}

interface Cell extends SendRecv {
  firstT: number;
  lastT: number;
}

/**
 * Counts by recording node and kind, gathered in one pass before any filter
 * is applied: `--node` prefixes are resolved against the nodes the traces
 * hold, which are known only at the end, and every filter stats takes is a
 * property of a cell, so filtering afterwards gives the same numbers.
 */
export class Tally {
  /** node → kind → counts. */
  readonly cells = new Map<string, Map<string, Cell>>();

  add(rec: TraceRecord): void {
    let byKind = this.cells.get(rec.node);
    if (!byKind) this.cells.set(rec.node, (byKind = new Map()));
    let cell = byKind.get(rec.env.kind);
    if (!cell) byKind.set(rec.env.kind, (cell = { send: 0, recv: 0, firstT: rec.t, lastT: rec.t }));
    cell[rec.dir]++;
    cell.firstT = Math.min(cell.firstT, rec.t);
    cell.lastT = Math.max(cell.lastT, rec.t);
  }

  nodes(): string[] {
    return [...this.cells.keys()];
  }
}

export interface FileStats {
  file: string;
  /** Every record the file holds, whatever the filters. */
  records: number;
  /** Whether the file ends in a torn record (its writer was killed mid-write). */
  truncated: boolean;
  /** Bytes of the torn record, ignored. */
  tornBytes: number;
  outOfOrder: number;
}

export interface TraceStats {
  /** Records that pass the filters. */
  records: number;
  /** From the first to the last of those records; 0 when there are fewer than 2. */
  spanMs: number;
  firstT: number | null;
  lastT: number | null;
  /** records / span; null when the span is 0. */
  recordsPerSecond: number | null;
  byKind: Record<string, SendRecv>;
  byNode: Record<string, SendRecv>;
  files: FileStats[];
}

/** The numbers `trace stats` prints, for the records that pass `filter`. */
export function summarize(tally: Tally, filter: Pick<FilterSpec, 'kinds' | 'nodes'>, files: FileStats[]): TraceStats {
  const byKind = new Map<string, SendRecv>();
  const byNode = new Map<string, SendRecv>();
  let records = 0;
  let firstT = Infinity;
  let lastT = -Infinity;
  for (const [node, kinds] of tally.cells) {
    if (filter.nodes && !filter.nodes.has(node)) continue;
    for (const [kind, cell] of kinds) {
      if (filter.kinds && !filter.kinds(kind)) continue;
      addTo(byKind, kind, cell);
      addTo(byNode, node, cell);
      records += cell.send + cell.recv;
      firstT = Math.min(firstT, cell.firstT);
      lastT = Math.max(lastT, cell.lastT);
    }
  }
  const spanMs = records > 0 ? lastT - firstT : 0;
  return {
    records,
    spanMs,
    firstT: records > 0 ? firstT : null,
    lastT: records > 0 ? lastT : null,
    recordsPerSecond: spanMs > 0 ? records / (spanMs / 1000) : null,
    byKind: sortedRecord(byKind),
    byNode: sortedRecord(byNode),
    files,
  };
}

function addTo(map: Map<string, SendRecv>, key: string, cell: SendRecv): void {
  const sum = map.get(key) ?? { send: 0, recv: 0 };
  sum.send += cell.send;
  sum.recv += cell.recv;
  map.set(key, sum);
}

/** Keys in order, so JSON output is the same for the same traces. */
function sortedRecord(map: Map<string, SendRecv>): Record<string, SendRecv> {
  return Object.fromEntries([...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---------------------------------------------------------------- helpers

function badArgument(message: string): MangroveError {
  return new MangroveError('E_BAD_ARGUMENT', message);
}

function clipNames(names: readonly string[]): string {
  const shown = names.slice(0, queryLimits.namesShownMax).join(', ');
  return names.length > queryLimits.namesShownMax ? `${shown} and ${names.length - queryLimits.namesShownMax} more` : shown;
}
