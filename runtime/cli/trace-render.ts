/**
 * `mangrove trace stats` as people read it: a few summary lines, then small
 * tables by kind, by node and by file. A pure function of the numbers, so a
 * spec can check exactly what a user would see.
 */
import { formatTime, isWallClock } from '../../bus/trace/trace.js';
import { table } from './render.js';
import type { SendRecv, TraceStats } from '../trace/query.js';

export const renderLimits = {
  /** Node rows shown; a simulated cluster of 10,000 nodes would scroll for pages. */
  nodeRowsMax: 40,
} as const;

export function renderStats(s: TraceStats): string {
  const held = s.files.reduce((n, f) => n + f.records, 0);
  const summary = [
    ['records', `${s.records} of ${held} in ${plural(s.files.length, 'file')}`],
    ['span', s.firstT === null || s.lastT === null ? '-' : `${seconds(s.spanMs)}, from ${when(s.firstT)} to ${when(s.lastT)}`],
    ['rate', s.recordsPerSecond === null ? '-' : `${s.recordsPerSecond.toFixed(1)} records/s`],
  ];
  const width = Math.max(...summary.map(([k]) => k.length));
  const parts = [summary.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')];

  const kinds = Object.entries(s.byKind);
  if (kinds.length > 0) parts.push(countTable('KIND', kinds, kinds.length));

  // Busiest first, so the rows that are cut are the quiet ones.
  const nodes = Object.entries(s.byNode).sort(([a, x], [b, y]) => total(y) - total(x) || (a < b ? -1 : 1));
  if (nodes.length > 0) {
    const cut = nodes.length - renderLimits.nodeRowsMax;
    const shown = countTable('NODE', nodes, renderLimits.nodeRowsMax);
    parts.push(cut > 0 ? `${shown}\n(${plural(cut, 'more node')} in the total; --json lists them all)` : shown);
  }

  const fileRows = s.files.map((f) => [f.file, String(f.records), fileNote(f)]);
  parts.push(table(['FILE', 'RECORDS', 'NOTE'], rightAlign(['FILE', 'RECORDS', 'NOTE'], fileRows, [1])));
  return parts.join('\n\n');
}

/** The first `rowsMax` entries with sent, received and total counts, then a total row over all of them. */
function countTable(head: string, entries: readonly [string, SendRecv][], rowsMax: number): string {
  const headers = [head, 'SEND', 'RECV', 'TOTAL'];
  const row = (key: string, c: SendRecv) => [key, String(c.send), String(c.recv), String(total(c))];
  const rows = entries.slice(0, rowsMax).map(([key, c]) => row(key, c));
  if (entries.length > 1) {
    rows.push(row('total', entries.reduce((acc, [, c]) => ({ send: acc.send + c.send, recv: acc.recv + c.recv }), { send: 0, recv: 0 })));
  }
  return table(headers, rightAlign(headers, rows, [1, 2, 3]));
}

function fileNote(f: TraceStats['files'][number]): string {
  const notes: string[] = [];
  if (f.truncated) notes.push(`torn last record, ${f.tornBytes} bytes ignored`);
  if (f.outOfOrder > 0) notes.push(`${plural(f.outOfOrder, 'record')} earlier than the one before (clock went back)`);
  return notes.join('; ');
}

/** Pads the cells of numeric columns on the left, so digits line up under each other. */
function rightAlign(headers: readonly string[], rows: string[][], columns: readonly number[]): string[][] {
  for (const c of columns) {
    const width = Math.max(headers[c].length, ...rows.map((r) => r[c].length));
    for (const r of rows) r[c] = r[c].padStart(width);
  }
  return rows;
}

function total(c: SendRecv): number {
  return c.send + c.recv;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)} s`;
}

/** Stats span whole runs, so wall-clock times keep their date. */
function when(t: number): string {
  return isWallClock(t) ? new Date(t).toISOString() : formatTime(t).trim();
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
