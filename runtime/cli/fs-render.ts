/**
 * What `mangrove fs …` shows, and the small rules its commands share: how a
 * Mangrove path is written back to the user (`FILESET:/a/b`), a file's mode
 * as `ls -l` spells it, times, byte counts and the transfer meter of `put`
 * and `get`. Pure functions of their input (the meter takes its clock and
 * its output), so a spec can check exactly what a user would see.
 *
 * Loaded by `mangrove fs` only: nothing here imports the client library.
 */
import type { FsDirEntry, FsStat } from '../../bus/messages/fs.js';
import { parseFsPath } from '../../machines/fs/names.js';
import type { CheckReport, FilesetInfo } from '../client/files.js';

const MIB = 1024 * 1024;

// ---- paths ----

/** `FILESET:/a/b` with its fileset spelled out and one leading '/': how every command names a path back. */
export function canonicalPath(text: string): string {
  const { fileset, path } = parseFsPath(text);
  return `${fileset}:${path.startsWith('/') ? path : `/${path}`}`;
}

/** The entry `name` inside the directory `dir` (a Mangrove path). */
export function childPath(dir: string, name: string): string {
  const { fileset, path } = parseFsPath(dir);
  const base = path.replace(/\/+$/, '');
  return `${fileset}:${base === '' || base.startsWith('/') ? base : `/${base}`}/${name}`;
}

/** The last name of a Mangrove path; '' for a fileset's root. */
export function lastName(text: string): string {
  const parts = parseFsPath(text).path.split('/').filter((p) => p !== '' && p !== '.');
  return parts.at(-1) ?? '';
}

/** A path that ends in '/' names a directory, whatever is there. */
export function namesDirectory(text: string): boolean {
  return parseFsPath(text).path.endsWith('/');
}

// ---- modes, times, sizes ----

/** Permission bits from `--mode`: octal digits, at most 4 (0755, 1777). */
export function parseMode(text: string): number | null {
  return /^[0-7]{1,4}$/.test(text) ? Number.parseInt(text, 8) : null;
}

/** `drwxr-xr-x`, as `ls -l`: the type, then rwx for user, group, other, with setuid, setgid and sticky shown in the x places. */
export function modeString(type: FsStat['type'], mode: number): string {
  const kind = type === 'dir' ? 'd' : type === 'symlink' ? 'l' : '-';
  const triad = (bits: number, special: boolean, mark: string) =>
    `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${special ? (bits & 1 ? mark : mark.toUpperCase()) : bits & 1 ? 'x' : '-'}`;
  return kind + triad((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') + triad((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') + triad(mode & 7, (mode & 0o1000) !== 0, 't');
}

/** The permission bits as 4 octal digits (`0755`). */
export function octalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** `2025-01-02 03:04:05`, in UTC (the help says so): the same on every host. */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

export function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Columns separated by two spaces; `right` names the columns aligned right (numbers); the last column is not padded. */
export function columns(rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), []);
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 && !right.includes(i) ? c : right.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

// ---- ls, stat ----

/** One entry of `ls --json`: exactly these four fields, mtime as an ISO string. */
export interface LsJsonEntry {
  name: string;
  type: FsStat['type'];
  size: number;
  mtime: string;
}

export function lsJson(entries: readonly FsDirEntry[]): LsJsonEntry[] {
  return entries.map((e) => ({ name: e.name, type: e.type, size: e.size, mtime: new Date(e.mtimeMs).toISOString() }));
}

/** Entries in name order (bytewise on UTF-16, as `LC_ALL=C ls`). */
export function byName<T extends { name: string }>(entries: readonly T[]): T[] {
  return [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** `ls`: a header, then type, size, mtime and name (a directory's with a trailing '/'). */
export function renderLs(entries: readonly FsDirEntry[]): string {
  if (entries.length === 0) return '(empty)';
  const rows = entries.map((e) => [e.type === 'symlink' ? 'link' : e.type, String(e.size), formatTime(e.mtimeMs), e.type === 'dir' ? `${e.name}/` : e.name]);
  return columns([['TYPE', 'SIZE', 'MODIFIED (UTC)', 'NAME'], ...rows], [1]);
}

/** `ls -l`: mode, links, uid, gid, size, mtime, name (and a link's target, when known). */
export function renderLsLong(entries: readonly FsDirEntry[], targets: ReadonlyMap<string, string> = new Map()): string {
  const rows = entries.map((e) => {
    const target = targets.get(e.name);
    return [modeString(e.type, e.mode), String(e.nlink), String(e.uid), String(e.gid), String(e.size), formatTime(e.mtimeMs), target === undefined ? e.name : `${e.name} -> ${target}`];
  });
  return rows.length === 0 ? 'total 0' : columns(rows, [1, 2, 3, 4]);
}

export function renderStat(path: string, s: FsStat, target?: string): string {
  const rows: [string, string][] = [
    ['path', target === undefined ? path : `${path} -> ${target}`],
    ['type', s.type === 'symlink' ? 'symbolic link' : s.type === 'dir' ? 'directory' : 'file'],
    ['size', `${plural(s.size, 'byte')} (${plural(s.blocks, 'block')} of 512)`],
    ['mode', `${octalMode(s.mode)} (${modeString(s.type, s.mode)})`],
    ['links', String(s.nlink)],
    ['owner', `uid ${s.uid}, gid ${s.gid}`],
    ['inode', String(s.ino)],
    ['accessed', `${formatTime(s.atimeMs)} UTC`],
    ['modified', `${formatTime(s.mtimeMs)} UTC`],
    ['changed', `${formatTime(s.ctimeMs)} UTC`],
    ['born', `${formatTime(s.birthtimeMs)} UTC`],
  ];
  return columns(rows);
}

// ---- filesets, check, df ----

/** A fileset as `fileset list --json` gives it: stable fields, the time as ISO. */
export function filesetJson(f: FilesetInfo): { name: string; id: number; state: string; created: string; readOnly: boolean; comment: string } {
  return { name: f.name, id: f.id, state: f.state, created: new Date(f.createdMs).toISOString(), readOnly: f.attrs.readOnly, comment: f.attrs.comment };
}

export function renderFilesets(list: readonly FilesetInfo[]): string {
  const rows = byName(list).map((f) => [f.name, String(f.id), f.attrs.readOnly ? `${f.state}, read-only` : f.state, formatTime(f.createdMs), f.attrs.comment]);
  return columns([['NAME', 'ID', 'STATE', 'CREATED (UTC)', 'COMMENT'], ...rows], [1]);
}

export function renderFileset(f: FilesetInfo): string {
  const comment = f.attrs.comment === '' ? '' : `, comment ${JSON.stringify(f.attrs.comment)}`;
  return `fileset ${f.name} (id ${f.id}): ${f.state}, ${f.attrs.readOnly ? 'read-only' : 'read-write'}${comment}`;
}

/** `fs check`: what it walked, every repair, every problem, and the verdict. */
export function renderCheck(r: CheckReport, repair: boolean): string {
  const lines = [`fileset ${r.fileset}: checked ${r.directories} director${r.directories === 1 ? 'y' : 'ies'} and ${plural(r.files, 'file')}`];
  for (const what of r.repairs) lines.push(`repaired: ${what}`);
  for (const what of r.problems) lines.push(`problem: ${what}`);
  if (r.problems.length > 0) lines.push(`${plural(r.problems.length, 'problem')} remain${r.problems.length === 1 ? 's' : ''}${repair ? '' : ' (checked with --no-repair: nothing was changed)'}`);
  else lines.push(r.repairs.length === 0 ? 'clean' : `clean after ${plural(r.repairs.length, 'repair')}`);
  return lines.join('\n');
}

export interface Statfs {
  fileset: string;
  totalPages: number;
  freePages: number;
  pageBytes: number;
}

export function renderDf(s: Statfs): string {
  const used = s.totalPages - s.freePages;
  const pct = s.totalPages === 0 ? 0 : Math.round((100 * used) / s.totalPages);
  return columns(
    [
      ['FILESET', 'SIZE', 'USED', 'FREE', 'USE%'],
      [s.fileset, mib(s.totalPages * s.pageBytes), mib(used * s.pageBytes), mib(s.freePages * s.pageBytes), `${pct}%`],
    ],
    [1, 2, 3, 4],
  );
}

// ---- transfers ----

/** What a finished put or get says: bytes, time and rate. */
export function renderTransfer(verb: string, bytes: number, ms: number, from: string, to: string): string {
  return `${verb} ${mib(bytes)} (${plural(bytes, 'byte')}) from ${from} to ${to} in ${(ms / 1000).toFixed(2)} s (${rate(bytes, ms)})`;
}

function rate(bytes: number, ms: number): string {
  return `${(bytes / MIB / Math.max(ms, 1) * 1000).toFixed(1)} MiB/s`;
}

export interface MeterOptions {
  /** `put` or `get`: the first word of each line. */
  verb: string;
  /** Bytes in all, when known (stdin's are not). */
  total: number | undefined;
  now(): number;
  write(text: string): void;
  /** A terminal: each line overwrites the last; otherwise one line each. */
  tty: boolean;
  /** Only transfers larger than this are shown; default 8 MiB. */
  thresholdBytes?: number;
  /** At most one line this often; default 200 ms. */
  everyMs?: number;
}

/**
 * The progress of a long transfer on stderr: bytes done of the total and
 * the rate, at most every `everyMs`, and only for a transfer above
 * `thresholdBytes` (a transfer whose size is unknown shows once it has
 * passed it).
 */
export class Meter {
  private readonly startMs: number;
  private lastMs = Number.NEGATIVE_INFINITY;
  private shown = false;

  constructor(private readonly o: MeterOptions) {
    this.startMs = o.now();
  }

  update(done: number): void {
    const threshold = this.o.thresholdBytes ?? 8 * MIB;
    if ((this.o.total ?? done) <= threshold) return;
    const now = this.o.now();
    if (now - this.lastMs < (this.o.everyMs ?? 200)) return;
    this.lastMs = now;
    this.show(done, now);
  }

  /** The last line, once the transfer is over (only if any was shown). */
  finish(done: number): void {
    if (!this.shown) return;
    this.show(done, this.o.now());
    if (this.o.tty) this.o.write('\n');
  }

  private show(done: number, now: number): void {
    this.shown = true;
    const line = meterLine(this.o.verb, done, this.o.total, now - this.startMs);
    this.o.write(this.o.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }
}

/** `put 12.0 of 64.0 MiB (18%), 21.3 MiB/s`. */
export function meterLine(verb: string, done: number, total: number | undefined, elapsedMs: number): string {
  const of = total === undefined ? mib(done) : `${(done / MIB).toFixed(1)} of ${mib(total)} (${total === 0 ? 100 : Math.floor((100 * done) / total)}%)`;
  return `${verb} ${of}, ${rate(done, elapsedMs)}`;
}
