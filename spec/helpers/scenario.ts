/**
 * Scenarios as text (DESIGN.md, house style; etcd raft's testdata/*.txt run
 * by cockroachdb/datadriven). A scenario file, spec/scenarios/<folder>/*.txt,
 * is a list of steps, each a command and the output it produced:
 *
 *     # A comment: what the scenario shows (kept by REWRITE=1).
 *     start b member slot=1 monitor={id:a,anchor:false}
 *     ----
 *     state: following
 *     emitted: (none)
 *
 *     tick 13
 *     ----
 *     state: candidate
 *     emitted:
 *       @25 member_pulse to=a
 *       @125 member_pulse to=a
 *       @225 member_pulse to=a
 *       @325 claim
 *
 * A step is a command line (more argument lines may follow it), a `----`
 * line, and the output up to the next blank line. Lines starting with `#`
 * between steps are comments. The runner replays the steps on one SimClock
 * and compares each output block with what the machines produced; with
 * `REWRITE=1` in the environment it writes the produced output back in
 * place instead, keeping steps and comments, for review with `git diff`.
 *
 * Commands (NAME: an actor; it may be left out while the file has one):
 * - `start [NAME] [KIND] key=value…`: creates an actor of the folder's
 *   machine KIND (left out when the folder has one) named NAME (default: the
 *   kind), with the input the folder's table builds from the arguments.
 * - `send [NAME] TYPE key=value…`: sends the event `{type: TYPE, …}` (the
 *   table may fill in fields, e.g. the clock's time, or expand shorthands).
 * - `advance MS`, `tick N`: runs the clock MS milliseconds, or N ticks of the
 *   first running actor's `tickMs`; reports every actor running before it.
 * - `crash [NAME]`: stops the actor, and prints what it persisted (`kept`).
 * - `restart [NAME]`: starts the actor's machine again, from what it kept
 *   where the table says how (e.g. an acceptor's promises), else afresh.
 * - `show [NAME] f1,f2.sub`: prints those context fields (or table views),
 *   now and after every later step of that actor; `show -` stops.
 * Arguments are `key=value`, or one `{…}` object merged in. Values use the
 * notation the output uses: numbers, true/false/null/undefined, "strings"
 * or bare words, [a,b], {key:value}, <0a0b> bytes, 0x1f bigints.
 *
 * A step the harness cannot run (a typo, an actor in the wrong state)
 * prints `error: …` and fails the file, under REWRITE=1 too; the run goes
 * on, so a behaviour change shows as a diff of every step it changes.
 *
 * Output per reported actor (under a `NAME:` header, indented, once the
 * file has several): `state:` the state value (dotted when nested, with
 * `(done)`, `(stopped)` or `(error)`), `emitted:` the emitted events in
 * order (XState `emit`; `@ms` stamps during advance/tick), `output:` when
 * done, `error:` on an actor error, then the fields asked for by `show`.
 * Events print as `type key=value…` and `send` events as `send KIND to=ID
 * key=value…` (the body's fields); keys are sorted, Uint8Array prints as
 * <hex>, bigint as 0x hex. A folder may describe its own values (e.g.
 * bitmaps as slot lists) by a `describe` hook.
 *
 * The runner is spec/scenarios/scenarios.spec.ts, the table of folders and
 * their machines spec/scenarios/machines.ts; spec/scenarios/README.md says
 * how to run and record.
 */
import { createActor, type AnyActorRef, type AnyStateMachine, type EventObject } from 'xstate';
import { SimClock } from '../../runtime/world/clock.js';

export type Args = Record<string, unknown>;

/** What a table hook may read when it builds an event. */
export interface EventScope {
  now: number;
  context: Record<string, unknown>;
  startArgs: Args;
}

/** One machine a folder's scenarios can start. */
export interface MachineKind {
  machine: AnyStateMachine;
  /** The machine's input from the start step's arguments and the actor's name. */
  input(args: Args, name: string): unknown;
  /** The event of a send step; default `{ type, ...args }`. */
  event?(type: string, args: Args, scope: EventScope): EventObject;
  /** Records in `store` what a crash would not lose, from one emitted event. */
  persist?(store: Args, emitted: EventObject): void;
  /** The input after a restart; default: the input it started with. */
  restart?(input: unknown, store: Args): unknown;
  /** Derived fields `show` may name, beside the context's own. */
  views?: Record<string, (context: Record<string, unknown>) => unknown>;
}

export interface ScenarioFolder {
  kinds: Record<string, MachineKind>;
  /** Replaces a value by a more readable one before it is printed; undefined keeps it. */
  describe?(value: unknown): unknown;
}

export type ScenarioTable = Record<string, ScenarioFolder>;

// ---------------------------------------------------------------------------
// The value notation, read and written.

const WORD = /[^\s,[\]{}<>"]/;

class Reader {
  i = 0;
  constructor(readonly src: string) {}

  fail(why: string): never {
    throw new Error(`${why} at column ${this.i + 1} of ${JSON.stringify(this.src)}`);
  }

  skip(): void {
    while (this.i < this.src.length && /\s/.test(this.src[this.i])) this.i++;
  }

  value(): unknown {
    this.skip();
    const c = this.src[this.i];
    if (c === '{') return this.object();
    if (c === '[') return this.list('[', ']');
    if (c === '"') return this.string();
    if (c === '<') return this.bytes();
    return wordValue(this.word(false));
  }

  word(key: boolean): string {
    const start = this.i;
    while (this.i < this.src.length && WORD.test(this.src[this.i]) && !(key && this.src[this.i] === ':')) this.i++;
    if (this.i === start) this.fail('expected a value');
    return this.src.slice(start, this.i);
  }

  string(): string {
    const m = /^"(?:[^"\\]|\\.)*"/.exec(this.src.slice(this.i));
    if (!m) this.fail('unterminated string');
    this.i += m[0].length;
    return JSON.parse(m[0]) as string;
  }

  bytes(): Uint8Array {
    const m = /^<([0-9a-fA-F]*)>/.exec(this.src.slice(this.i));
    if (!m || m[1].length % 2 !== 0) this.fail('bad <hex> bytes');
    this.i += m[0].length;
    return Uint8Array.from(m[1].match(/../g) ?? [], (h) => parseInt(h, 16));
  }

  expect(c: string): void {
    this.skip();
    if (this.src[this.i] !== c) this.fail(`expected ${c}`);
    this.i++;
  }

  /** Comma-separated items up to `close`, each read by `item`. */
  items(close: string, item: () => void): void {
    this.skip();
    if (this.src[this.i] === close) return void this.i++;
    for (;;) {
      item();
      this.skip();
      if (this.src[this.i] === close) return void this.i++;
      this.expect(',');
    }
  }

  list(open: string, close: string): unknown[] {
    this.expect(open);
    const out: unknown[] = [];
    this.items(close, () => out.push(this.value()));
    return out;
  }

  object(): Args {
    this.expect('{');
    const out: Args = {};
    this.items('}', () => {
      this.skip();
      const key = this.src[this.i] === '"' ? this.string() : this.word(true);
      this.expect(':');
      out[key] = this.value();
    });
    return out;
  }
}

function wordValue(w: string): unknown {
  if (w === 'true') return true;
  if (w === 'false') return false;
  if (w === 'null') return null;
  if (w === 'undefined') return undefined;
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(w)) return Number(w);
  if (/^0x[0-9a-fA-F]+$/.test(w)) return BigInt(w);
  return w;
}

/** One value in the scenario notation (a superset of JSON). */
export function parseValue(src: string): unknown {
  const r = new Reader(src);
  const v = r.value();
  r.skip();
  if (r.i !== src.length) r.fail('unexpected text after the value');
  return v;
}

const isPlain = (v: unknown): v is Args =>
  typeof v === 'object' && v !== null && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

const formatKey = (k: string): string => (/^[\w.$-]+$/.test(k) ? k : JSON.stringify(k));

function formatString(s: string): string {
  const bare = s.length > 0 && [...s].every((c) => WORD.test(c)) && wordValue(s) === s;
  return bare ? s : JSON.stringify(s);
}

/** A value in the notation `parseValue` reads: sorted keys, so equal values print alike. */
export function formatValue(value: unknown, describe?: (v: unknown) => unknown): string {
  const d = describe?.(value);
  const v = d === undefined ? value : d;
  const f = (x: unknown) => formatValue(x, describe);
  if (v === undefined) return 'undefined';
  if (v === null || typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (typeof v === 'string') return formatString(v);
  if (v instanceof Uint8Array) return `<${Buffer.from(v).toString('hex')}>`;
  if (Array.isArray(v)) return `[${v.map(f).join(',')}]`;
  if (v instanceof Set) return `Set[${[...v].map(f).sort().join(',')}]`;
  if (v instanceof Map) return `Map{${[...v].map(([k, x]) => `${f(k)}:${f(x)}`).sort().join(',')}}`;
  if (typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${formatKey(k)}:${f((v as Args)[k])}`).join(',')}}`;
  }
  return String(v);
}

/** An emitted event on one line: `type key=value…`, or `send KIND to=ID key=value…`. */
export function formatEvent(e: EventObject, describe?: (v: unknown) => unknown): string {
  const { type, ...rest } = e as EventObject & Args;
  let head = type;
  let fields: Args = rest;
  if (type === 'send' && typeof rest.kind === 'string' && typeof rest.to === 'string') {
    const { kind, to, body, ...other } = rest;
    head = `send ${kind} to=${formatString(to)}`;
    fields = isPlain(body) ? { ...other, ...body } : { ...other, body };
  }
  const parts = Object.keys(fields).sort().map((k) => `${formatKey(k)}=${formatValue(fields[k], describe)}`);
  return [head, ...parts].join(' ');
}

export function formatState(value: unknown): string {
  if (typeof value === 'string') return value;
  if (isPlain(value)) {
    return Object.keys(value)
      .map((k) => `${k}.${formatState(value[k])}`)
      .join('+');
  }
  return formatValue(value);
}

// ---------------------------------------------------------------------------
// Files: steps with their output blocks.

export interface Step {
  /** 1-based line of the command. */
  line: number;
  /** The command and its argument lines, joined. */
  command: string;
  /** 0-based [start, end) of the output block's lines. */
  outputStart: number;
  outputEnd: number;
  expected: string[];
}

export function parseScenario(text: string, file: string): { lines: string[]; steps: Step[] } {
  const lines = text.split('\n');
  const steps: Step[] = [];
  let i = 0;
  while (i < lines.length) {
    const l = lines[i];
    if (l.trim() === '' || l.startsWith('#')) {
      i++;
      continue;
    }
    const line = i + 1;
    const parts: string[] = [];
    while (i < lines.length && lines[i].trim() !== '----') {
      if (lines[i].trim() === '') throw new Error(`${file}:${line}: the step has no ---- line before its output`);
      if (!lines[i].startsWith('#')) parts.push(lines[i].trim());
      i++;
    }
    if (i === lines.length) throw new Error(`${file}:${line}: the step has no ---- line before its output`);
    i++;
    const outputStart = i;
    while (i < lines.length && lines[i].trim() !== '') i++;
    steps.push({ line, command: parts.join(' '), outputStart, outputEnd: i, expected: lines.slice(outputStart, i) });
  }
  return { lines, steps };
}

interface Command {
  verb: string;
  positional: string[];
  args: Args;
}

/** Splits at spaces outside brackets and quotes. */
function tokens(src: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = '';
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (quoted) {
      if (c === '\\') cur += src[i++];
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if ('[{<'.includes(c)) depth++;
    else if (']}>'.includes(c)) depth--;
    else if (/\s/.test(c) && depth === 0) {
      if (cur) out.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur) out.push(cur);
  return out;
}

export function parseCommand(src: string): Command {
  const [verb, ...rest] = tokens(src);
  const positional: string[] = [];
  const args: Args = {};
  for (const t of rest) {
    const kv = /^([A-Za-z_][\w.-]*)=(.*)$/s.exec(t);
    if (kv) args[kv[1]] = parseValue(kv[2]);
    else if (t.startsWith('{')) Object.assign(args, parseValue(t) as Args);
    else positional.push(t);
  }
  return { verb, positional, args };
}

// ---------------------------------------------------------------------------
// Running: actors on one SimClock.

interface Live {
  name: string;
  kind: MachineKind;
  startArgs: Args;
  input: unknown;
  actor: AnyActorRef;
  /** Emitted since the actor was last reported; `at` during a step that moved the clock. */
  pending: { at?: number; event: EventObject }[];
  store: Args;
  show: string[];
  error?: unknown;
  crashed: boolean;
}

type Snap = { value: unknown; status: string; context: Record<string, unknown>; output?: unknown };

const snapOf = (live: Live): Snap => live.actor.getSnapshot() as Snap;

function fieldOf(live: Live, path: string): unknown {
  const [head, ...rest] = path.split('.');
  const context = snapOf(live).context;
  const view = live.kind.views?.[head];
  let v: unknown = view ? view(context) : context[head];
  for (const k of rest) v = isPlain(v) || Array.isArray(v) ? (v as Args)[k] : undefined;
  return v;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One scenario file's world: its actors and their clock. */
export class ScenarioRun {
  readonly clock = new SimClock();
  private readonly actors = new Map<string, Live>();
  private moving = false;

  constructor(
    private readonly folder: ScenarioFolder,
    /** Whether the file starts more than one actor, so reports are headed by name. */
    private readonly several: boolean,
  ) {}

  /** The actor's name and kind a start command names. */
  static startNames(folder: ScenarioFolder, positional: readonly string[]): { name: string; kind: string } {
    const kinds = Object.keys(folder.kinds);
    const [first, second] = positional;
    if (second !== undefined) return { name: first, kind: second };
    if (first !== undefined && kinds.length > 1 && kinds.includes(first)) return { name: first, kind: first };
    if (kinds.length !== 1) throw new Error(`start needs a kind, one of ${kinds.join(', ')}`);
    return { name: first ?? kinds[0], kind: kinds[0] };
  }

  /** Stops every actor, so nothing outlives the file's run. */
  stopAll(): void {
    for (const live of this.actors.values()) if (!live.crashed) live.actor.stop();
  }

  step(src: string): string[] {
    const c = parseCommand(src);
    switch (c.verb) {
      case 'start':
        return this.start(c);
      case 'send':
        return this.send(c);
      case 'advance':
        return this.advance(Number(c.positional[0]));
      case 'tick':
        return this.advance(Number(c.positional[0]) * this.tickMs());
      case 'crash':
        return this.crash(this.target(c.positional[0]));
      case 'restart':
        return this.restart(this.target(c.positional[0]));
      case 'show':
        return this.show(c.positional);
      default:
        throw new Error(`unknown command ${JSON.stringify(c.verb)}: start, send, advance, tick, crash, restart, show`);
    }
  }

  private target(name: string | undefined): Live {
    if (name !== undefined) {
      const live = this.actors.get(name);
      if (!live) throw new Error(`no actor ${name}; started: ${[...this.actors.keys()].join(', ') || 'none'}`);
      return live;
    }
    if (this.actors.size !== 1) throw new Error(`name the actor: ${[...this.actors.keys()].join(', ') || 'none started'}`);
    return [...this.actors.values()][0];
  }

  private spawn(name: string, kind: MachineKind, startArgs: Args, input: unknown, show: string[], store: Args = {}): Live {
    const actor = createActor(kind.machine, { clock: this.clock, input });
    const live: Live = { name, kind, startArgs, input, actor, pending: [], store, show, crashed: false };
    actor.on('*', (event: EventObject) => {
      live.pending.push({ at: this.moving ? this.clock.now() : undefined, event });
      kind.persist?.(live.store, event);
    });
    actor.subscribe({ error: (err: unknown) => (live.error = err) });
    this.actors.set(name, live);
    actor.start();
    return live;
  }

  private start(c: Command): string[] {
    const { name, kind: kindName } = ScenarioRun.startNames(this.folder, c.positional);
    const kind = this.folder.kinds[kindName];
    if (!kind) throw new Error(`no kind ${kindName} here: ${Object.keys(this.folder.kinds).join(', ')}`);
    const old = this.actors.get(name);
    if (old && !old.crashed && snapOf(old).status === 'active') throw new Error(`${name} is running: crash it first`);
    return this.report([this.spawn(name, kind, c.args, kind.input(c.args, name), old?.show ?? [])]);
  }

  private send(c: Command): string[] {
    const [a, b] = c.positional;
    const live = this.target(b === undefined ? undefined : a);
    const type = b ?? a;
    if (type === undefined) throw new Error('send needs an event type');
    if (live.crashed) throw new Error(`${live.name} has crashed: restart it first`);
    const scope = { now: this.clock.now(), context: snapOf(live).context, startArgs: live.startArgs };
    live.actor.send(live.kind.event?.(type, c.args, scope) ?? { type, ...c.args });
    return this.report([live]);
  }

  private tickMs(): number {
    for (const live of this.running()) {
      const t = snapOf(live).context.tickMs;
      if (typeof t === 'number') return t;
    }
    throw new Error('tick needs a running actor with a tickMs');
  }

  private running(): Live[] {
    return [...this.actors.values()].filter((l) => !l.crashed && snapOf(l).status === 'active');
  }

  private advance(ms: number): string[] {
    if (!Number.isFinite(ms) || ms < 0) throw new Error('advance and tick need a count');
    const before = this.running();
    this.moving = true;
    try {
      this.clock.advance(ms);
    } finally {
      this.moving = false;
    }
    return before.length === 0 ? ['(no actor running)'] : this.report(before);
  }

  private crash(live: Live): string[] {
    live.actor.stop();
    live.crashed = true;
    live.pending = [];
    const kept = Object.keys(live.store).sort();
    const lines = ['crashed', ...(kept.length === 0 ? ['kept: (nothing)'] : ['kept:', ...kept.map((k) => `  ${k}: ${this.fmt(live.store[k])}`)])];
    return this.head(live, lines);
  }

  private restart(live: Live): string[] {
    if (!live.crashed) live.actor.stop();
    const input = live.kind.restart ? live.kind.restart(live.input, live.store) : live.input;
    return this.report([this.spawn(live.name, live.kind, live.startArgs, input, live.show, live.store)]);
  }

  private show(positional: readonly string[]): string[] {
    const live = this.target(positional.length > 1 ? positional[0] : undefined);
    const fields = positional.at(-1) ?? '-';
    live.show = fields === '-' ? [] : fields.split(',').filter((f) => f !== '');
    return this.report([live]);
  }

  private fmt(v: unknown): string {
    return formatValue(v, this.folder.describe?.bind(this.folder));
  }

  private head(live: Live, lines: string[]): string[] {
    return this.several ? [`${live.name}:`, ...lines.map((l) => `  ${l}`)] : lines;
  }

  private report(lives: readonly Live[]): string[] {
    return lives.flatMap((live) => this.head(live, this.describeActor(live)));
  }

  private describeActor(live: Live): string[] {
    const snap = snapOf(live);
    const status = snap.status === 'active' ? '' : ` (${snap.status})`;
    const lines = [`state: ${formatState(snap.value)}${status}`];
    const describe = this.folder.describe?.bind(this.folder);
    const events = live.pending.map((p) => `${p.at === undefined ? '' : `@${p.at} `}${formatEvent(p.event, describe)}`);
    live.pending = [];
    lines.push(...(events.length === 0 ? ['emitted: (none)'] : ['emitted:', ...events.map((e) => `  ${e}`)]));
    if (snap.status === 'done') lines.push(`output: ${this.fmt(snap.output)}`);
    if (live.error !== undefined) lines.push(`error: ${errorText(live.error)}`);
    for (const f of live.show) lines.push(`${f}: ${this.fmt(fieldOf(live, f))}`);
    return lines;
  }
}

// ---------------------------------------------------------------------------
// Comparing and rewriting.

export interface Mismatch {
  /** 1-based line of the step's command. */
  stepLine: number;
  /** 1-based line of the first output line that differs. */
  line: number;
  message: string;
}

/** A line diff of a step's recorded output against what it produced, `-` recorded, `+` produced. */
function diffLines(expected: readonly string[], actual: readonly string[], firstLine: number): { first: number; text: string[] } {
  const n = expected.length;
  const m = actual.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = expected[i] === actual[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const text: string[] = [];
  let first = -1;
  let i = 0;
  let j = 0;
  const at = (k: number) => String(firstLine + k).padStart(4);
  while (i < n || j < m) {
    if (i < n && j < m && expected[i] === actual[j]) {
      text.push(`${at(i)}   ${expected[i]}`);
      i++;
      j++;
    } else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      if (first < 0) first = firstLine + i;
      text.push(`${at(i)} - ${expected[i]}`);
      i++;
    } else {
      if (first < 0) first = firstLine + i;
      text.push(`${' '.repeat(4)} + ${actual[j]}`);
      j++;
    }
  }
  return { first, text };
}

const trimEnd = (lines: readonly string[]): string[] => lines.map((l) => l.trimEnd());

export interface ScenarioResult {
  mismatches: Mismatch[];
  /** Steps the harness could not run (a typo, or an actor in the wrong state): never recorded. */
  errors: string[];
  /** The file with every output block replaced by what was produced. */
  rewritten: string;
}

/** Replays one scenario file's text against the folder's machines. */
export function runScenario(text: string, file: string, folder: ScenarioFolder): ScenarioResult {
  const { lines, steps } = parseScenario(text, file);
  const names = new Set<string>();
  for (const s of steps) {
    const c = parseCommand(s.command);
    if (c.verb === 'start') names.add(ScenarioRun.startNames(folder, c.positional).name);
  }
  const run = new ScenarioRun(folder, names.size > 1);
  const mismatches: Mismatch[] = [];
  const errors: string[] = [];
  const out: string[] = [];
  let copied = 0;
  for (const s of steps) {
    let actual: string[];
    try {
      actual = trimEnd(run.step(s.command));
    } catch (err) {
      // The run goes on, so a behaviour change that makes a later step
      // impossible still shows as a diff of every step it changes.
      actual = [`error: ${errorText(err)}`];
      errors.push(`${file}:${s.line}: ${s.command}: ${errorText(err)}`);
    }
    out.push(...lines.slice(copied, s.outputStart), ...actual);
    copied = s.outputEnd;
    const expected = trimEnd(s.expected);
    if (expected.join('\n') === actual.join('\n')) continue;
    const d = diffLines(expected, actual, s.outputStart + 1);
    const message = [`${file}:${d.first}: the output of \`${s.command}\` (line ${s.line}) differs; - recorded, + produced:`, ...d.text].join('\n');
    mismatches.push({ stepLine: s.line, line: d.first, message });
  }
  out.push(...lines.slice(copied));
  run.stopAll();
  return { mismatches, errors, rewritten: out.join('\n') };
}

/** The report a failing scenario prints, with the way to record new output. */
export function mismatchReport(result: ScenarioResult): string {
  const errors = result.errors.length === 0 ? [] : [`Steps that could not run:\n${result.errors.join('\n')}`];
  const advice = result.mismatches.length === 0 ? [] : ['If the new output is right, record it with REWRITE=1 and review the git diff.'];
  return [...errors, ...result.mismatches.map((m) => m.message), ...advice].join('\n\n');
}
