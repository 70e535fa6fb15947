/**
 * `mangrove trace …`: reading the message traces nodes record (`start
 * --trace`, `local --trace`, `sim --trace`): CBOR sequences of
 * {t, node, dir, env}. The rules (merge, filters, counts) live in
 * ../trace/query.ts; this file parses options, opens files and prints.
 */
import { once } from 'node:events';
import type { Command } from 'commander';
import type { TruncatedTail } from '../../bus/trace/trace.js';
import type { TraceRecord } from '../../bus/transport/transport.js';
import { examples, ExitWith, jsonLine, linesPerWrite, positive, print } from './util.js';
import type { FilterSpec } from '../trace/query.js';
import { heartbeatRules } from '../conformance/rules/heartbeat.js';
import { nodeDbRules } from '../conformance/rules/node-db.js';
import { pageRules } from '../conformance/rules/page.js';
import { panRules } from '../conformance/rules/pan.js';
import { quorumRules } from '../conformance/rules/quorum.js';
import { recoveryRules } from '../conformance/rules/recovery.js';
import { REPLAY_RULE_HELP } from '../conformance/replay/rules.js';

/** Repeated `--kind a --kind b` adds up, like `--kind a,b`. No default
 * value, so help does not print `(default: [])`. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

interface FilterOptions {
  kind?: string[];
  node?: string[];
}

interface ShowOptions extends FilterOptions {
  dir?: string;
  since?: string;
  until?: string;
  limit?: number;
  json?: boolean;
}

export function addTraceCommands(program: Command): void {
  const trace = program.command('trace').description('read message traces recorded by nodes (`start --trace`, `local --trace`, `sim --trace`)');
  addShowCommand(trace);
  addStatsCommand(trace);
  addCheckCommand(trace);
}

/** A command over trace files, with the filters `show` and `stats` share: which kinds, which recording nodes. */
function filesCommand(trace: Command, name: string, description: string, verb: string): Command {
  return trace
    .command(name)
    .description(description)
    .argument('<files...>', 'trace files')
    .option('--kind <kinds>', `${verb} these kinds, comma-separated; \`hb.\` is every heartbeat kind`, collect)
    .option('--node <ids>', `${verb} records made by these nodes, comma-separated; a unique prefix of an id is enough`, collect);
}

function addShowCommand(trace: Command): void {
  filesCommand(trace, 'show', 'print the records of one or more traces, merged in time order', 'only')
    .option('--dir <dir>', 'only `send` or only `recv` records')
    .option('--since <ms>', 'only records at or after this time: ms as `t` in --json, or +MS after the first record')
    .option('--until <ms>', 'only records at or before this time (same forms as --since)')
    .option('--limit <n>', 'stop after N records', positive)
    .option('--json', 'one JSON object per record, as recorded (bytes and bigints as 0x-hex)')
    .addHelpText(
      'after',
      examples(
        'mangrove trace show traces/node-0.trace',
        'mangrove trace show traces/*.trace --kind hb. --node 3945134a --limit 50',
        'mangrove trace show sim.trace --kind ndb.commit,ndb.accept --since 2000 --until 2500',
        'mangrove trace show traces/*.trace --since +1500 --dir send',
        'mangrove trace show traces/*.trace --json | jq .env.kind',
        '',
        'Times: records of a simulated run show seconds since the run began (12.345s).',
        'Records stamped with wall-clock time show the UTC time of day and then the',
        'offset from the first record of the given files (+1.250s), before any filter,',
        'so a record shows the same offset whatever the filters; +MS in --since and',
        '--until counts from the same record. Both bounds are inclusive.',
        'Each file is read in order and merged by time; records at the same time keep',
        'the order of their file, and the files the order given.',
      ),
    )
    .action((files: string[], opts: ShowOptions) => show(files, opts));
}

function addStatsCommand(trace: Command): void {
  filesCommand(trace, 'stats', 'count the records of one or more traces by kind and by node, sent and received', 'count only')
    .option('--json', 'one JSON object: {records, spanMs, firstT, lastT, recordsPerSecond, byKind, byNode, files}')
    .addHelpText(
      'after',
      examples(
        'mangrove trace stats traces/*.trace',
        'mangrove trace stats sim.trace --kind hb. --json | jq .byNode',
        '',
        'A file that ends in a torn record (its writer was killed) is counted up to it, and the table of files says so.',
      ),
    )
    .action((files: string[], opts: FilterOptions & { json?: boolean }) => stats(files, opts));
}

function addCheckCommand(trace: Command): void {
  const rules = [...heartbeatRules, ...quorumRules, ...nodeDbRules, ...panRules, ...recoveryRules, ...pageRules, ...Object.entries(REPLAY_RULE_HELP).map(([name, description]) => ({ name, description }))];
  const width = Math.max(...rules.map((rule) => rule.name.length));
  trace
    .command('check')
    .description('check one or more traces against the protocol rules (SPEC.md M27); exit 1 if any is broken')
    .argument('<files...>', 'trace files')
    .option('--protocol <name>', 'only the rules of heartbeat, quorum, node-db, pan, recovery or page, or replay alone (comma-separated), or all', 'all')
    .option('--period <ms>', 'heartbeat period for monitors whose period cannot be inferred from their pulses', positive)
    .option('--json', 'one JSON object: {records, rules, skipped, replay: {nodes, incarnations, inputs, sends}, violations: [{rule, node, t, detail, records}]}')
    .addHelpText(
      'after',
      [
        '\nRules:',
        ...rules.map((rule) => `  ${rule.name.padEnd(width)}  ${rule.description}`),
        examples(
          'mangrove trace check traces/*.trace',
          'mangrove trace check sim.trace --protocol heartbeat --period 1000',
          'mangrove trace check traces/*.trace --protocol recovery,page',
          'mangrove trace check traces/*.trace --json | jq .violations',
          '',
          'Each monitor\'s period is the median interval between its pulses to one member;',
          'slack is a quarter period plus the longest send-to-receive delay in the traces.',
          'A rule whose messages the traces do not hold (no rebuild round, no page',
          'traffic) is skipped, and the summary says so.',
          '',
          'Replay rebuilds each node from its start record (settings, random seed, stored',
          'state) and feeds it the envelopes and timers the trace shows it took, in order;',
          'after each, the node must have sent what its machines send. Durations (…Ms',
          'fields) may differ by the clock spread the trace records. Traces made before',
          'start records existed are checked by the rules alone.',
          '',
          'Exit status: 0 no rule broken, 1 some rule broken, 2 bad arguments or a trace',
          'that cannot be read.',
        ),
      ].join('\n'),
    )
    .action((files: string[], opts: { protocol: string; period?: number; json?: boolean }) => check(files, opts));
}

async function check(files: string[], opts: { protocol: string; period?: number; json?: boolean }): Promise<void> {
  const c = await import('../conformance/check.js');
  const f = await import('../trace/files.js');
  const protocols = c.parseProtocol(opts.protocol);
  let sources;
  try {
    sources = files.map((file) => f.readEntries(file, (tail) => warn(`${file}: ignored a torn last record (${tail.bytes} bytes at byte ${tail.offset})`)));
  } catch (err) {
    // Exit 1 says a rule is broken; a trace that cannot be read says nothing of the sort.
    throw new ExitWith(err, 2);
  }
  const result = await c.checkEntries(sources, { protocols, periodMs: opts.period });
  if (opts.json) print(jsonLine(result));
  else {
    const origin = Math.min(...sources.map((entries) => entries[0]?.t ?? Infinity));
    const out = new Output();
    for (const v of result.violations) await out.line(c.formatViolation(v, origin));
    const broken = new Set(result.violations.map((v) => v.rule)).size;
    const n = result.violations.length;
    const skipped = result.skipped.map((s) => `; skipped ${s.rule}: ${s.reason}`).join('');
    const r = result.replay;
    const replayed = r && r.nodes > 0 ? `; replayed ${r.nodes} node${r.nodes === 1 ? '' : 's'} (${r.incarnations} incarnations, ${r.inputs} inputs, ${r.sends} sends)` : '';
    await out.line(`${n} violation${n === 1 ? '' : 's'} of ${broken} rule${broken === 1 ? '' : 's'}; ${result.rules.length} rules checked over ${result.records} records${replayed}${skipped}`);
    await out.flush();
  }
  if (result.violations.length > 0) process.exitCode = 1;
}

async function show(files: string[], opts: ShowOptions): Promise<void> {
  const q = await import('../trace/query.js');
  const f = await import('../trace/files.js');
  const { formatRecord } = await import('../../bus/trace/trace.js');
  // Every option is checked before a file is read: a typo fails at once.
  const spec: FilterSpec = {
    kinds: opts.kind ? q.kindMatcher(q.listValues('--kind', opts.kind)) : undefined,
    dir: opts.dir === undefined ? undefined : q.parseDir(opts.dir),
    since: opts.since === undefined ? undefined : q.parseTimePoint('--since', opts.since),
    until: opts.until === undefined ? undefined : q.parseTimePoint('--until', opts.until),
  };
  q.checkWindow(spec.since, spec.until);
  const nodeValues = opts.node ? q.listValues('--node', opts.node) : undefined;
  if (nodeValues) spec.nodes = q.resolveNodes(nodeValues, f.recordingNodes(files));

  const opened = files.map((file) => f.openTrace(file, (tail) => warn(`${file}: ignored a torn last record (${tail.bytes} bytes at byte ${tail.offset})`)));
  const out = new Output();
  let keep: ((rec: TraceRecord) => boolean) | undefined;
  let originMs = 0;
  let shown = 0;
  try {
    for (const rec of q.mergeByTime(opened.map((o) => o.records))) {
      if (keep === undefined) {
        originMs = rec.t;
        keep = q.compileFilter(spec, originMs);
      }
      if (!keep(rec)) continue;
      await out.line(opts.json ? jsonLine(rec) : formatRecord(rec, originMs));
      if (++shown === opts.limit) break;
    }
  } finally {
    // The records before a damaged one are whole and worth seeing.
    await out.flush();
  }
  for (const o of opened) {
    if (o.counts.outOfOrder > 0) {
      const n = o.counts.outOfOrder;
      warn(`${o.file}: ${n} record${n === 1 ? ' is' : 's are'} earlier than the one before (the node's clock went back), shown in file order`);
    }
  }
}

async function stats(files: string[], opts: FilterOptions & { json?: boolean }): Promise<void> {
  const q = await import('../trace/query.js');
  const f = await import('../trace/files.js');
  const kinds = opts.kind ? q.kindMatcher(q.listValues('--kind', opts.kind)) : undefined;
  const nodeValues = opts.node ? q.listValues('--node', opts.node) : undefined;
  const tally = new q.Tally();
  const fileStats = [];
  for (const file of files) {
    let tail: TruncatedTail | undefined;
    const o = f.openTrace(file, (t) => (tail = t));
    for (const rec of o.records) tally.add(rec);
    fileStats.push({ file, records: o.counts.records, truncated: tail !== undefined, tornBytes: tail?.bytes ?? 0, outOfOrder: o.counts.outOfOrder });
  }
  const nodes = nodeValues ? q.resolveNodes(nodeValues, tally.nodes()) : undefined;
  const result = q.summarize(tally, { kinds, nodes }, fileStats);
  if (opts.json) return print(jsonLine(result));
  const { renderStats } = await import('./trace-render.js');
  print(renderStats(result));
}

function warn(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * Lines to stdout in batches of linesPerWrite. It waits for a slow reader
 * (a pager, `| head`), or a large trace would pile up in memory as queued writes.
 */
class Output {
  private lines: string[] = [];

  async line(text: string): Promise<void> {
    this.lines.push(text);
    if (this.lines.length >= linesPerWrite) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.lines.length === 0) return;
    const ready = process.stdout.write(`${this.lines.join('\n')}\n`);
    this.lines = [];
    if (!ready) await once(process.stdout, 'drain');
  }
}
