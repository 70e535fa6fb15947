/**
 * `mangrove trace check`: protocol rules (SPEC.md M27) checked over recorded
 * traces. The engine merges the traces in time order, works out the timing
 * every rule needs (each monitor's heartbeat period, the slack allowed for
 * delivery), runs the selected rules and collects their violations. Rules
 * are pure functions over records, so a spec can plant a fault in a clean
 * trace and see which rule names it.
 */
import { MangroveError } from '../../bus/errors.js';
import { formatOffset, formatTime, isWallClock } from '../../bus/trace/trace.js';
import { isEnvelopeRecord, type TraceEntry, type TraceRecord, type TraceStart } from '../../bus/transport/transport.js';
import type { NodeSettings } from '../../actors/settings.js';
import { readStartSettings } from '../trace/node-trace.js';
import { mergeByTime } from '../trace/query.js';
import { heartbeatRules } from './rules/heartbeat.js';
import { nodeDbRules } from './rules/node-db.js';
import { pageRules } from './rules/page.js';
import { panRules } from './rules/pan.js';
import { quorumRules } from './rules/quorum.js';
import { recoveryRules } from './rules/recovery.js';
import { REPLAY_RULES } from './replay/rules.js';
import { replayTrace, type ReplayStats } from './replay/replay.js';
import { PROTOCOLS, type CheckContext, type Protocol, type Rule, type Violation } from './rule.js';

export { PROTOCOLS, type CheckContext, type Protocol, type Rule, type Violation } from './rule.js';

export const RULES: readonly Rule[] = [...heartbeatRules, ...quorumRules, ...nodeDbRules, ...panRules, ...recoveryRules, ...pageRules];

export interface CheckOptions {
  /** Protocols to check; all when omitted. */
  protocols?: readonly Protocol[];
  /** Period (ms) for monitors whose period cannot be inferred. */
  periodMs?: number;
  /** The traces' start records: nodes' settings, for rules that need them. */
  starts?: readonly TraceStart[];
}

export interface CheckResult {
  /** Envelope records the rules read. */
  records: number;
  /** Names of the rules that ran. */
  rules: string[];
  /** Rules selected but not run, and why. */
  skipped: { rule: string; reason: string }[];
  violations: Violation[];
  /** What replay covered, when it ran. */
  replay?: ReplayStats;
}

export function parseProtocol(value: string): Protocol[] {
  if (value === 'all') return [...PROTOCOLS];
  const out: Protocol[] = [];
  for (const v of value.split(',').map((s) => s.trim())) {
    if (v === 'all') return [...PROTOCOLS];
    if (!(PROTOCOLS as readonly string[]).includes(v)) {
      throw new MangroveError('E_BAD_ARGUMENT', `--protocol must be one of ${PROTOCOLS.join(', ')} or all, not ${JSON.stringify(v)}`);
    }
    out.push(v as Protocol);
  }
  return out;
}

/** Checks records that are each in time order per source, merged by time. */
export function checkTraces(sources: readonly Iterable<TraceRecord>[], opts: CheckOptions = {}): CheckResult {
  return checkRecords([...mergeByTime(sources)], opts);
}

/**
 * The whole check: the rules over the envelope records of every source
 * merged by time, and replay of every node over each source's entries in
 * recorded order. A node with no start record cannot be replayed; it is
 * listed under `skipped`.
 */
export async function checkEntries(sources: readonly (readonly TraceEntry[])[], opts: CheckOptions = {}): Promise<CheckResult> {
  const envelopes = sources.map((entries) => entries.filter(isEnvelopeRecord));
  const starts = sources.flatMap((entries) => entries.filter((e): e is TraceStart => e.dir === 'start'));
  const result = checkRecords([...mergeByTime(envelopes)], { ...opts, starts });
  if (!(opts.protocols ?? PROTOCOLS).includes('replay')) return result;
  const replay = await replayTrace(sources.flat());
  result.replay = replay.stats;
  if (replay.stats.nodes > 0) result.rules.push(...REPLAY_RULES);
  if (replay.stats.unreplayable.length > 0) {
    result.skipped.push({ rule: 'replay', reason: `no start record for ${replay.stats.unreplayable.join(', ')} (traced before replay was recorded, or by another program)` });
  }
  result.violations.push(...replay.violations);
  result.violations.sort((a, b) => a.t - b.t);
  return result;
}

/** Checks records already in time order. */
export function checkRecords(records: readonly TraceRecord[], opts: CheckOptions = {}): CheckResult {
  const protocols = new Set(opts.protocols ?? PROTOCOLS);
  const ctx = buildContext(records, opts.periodMs, opts.starts);
  const result: CheckResult = { records: records.length, rules: [], skipped: [], violations: [] };
  for (const rule of RULES) {
    if (!protocols.has(rule.protocol)) continue;
    const reason = rule.needs?.(ctx);
    if (reason !== undefined) {
      result.skipped.push({ rule: rule.name, reason });
      continue;
    }
    result.rules.push(rule.name);
    result.violations.push(...rule.check(records, ctx));
  }
  result.violations.sort((a, b) => a.t - b.t);
  return result;
}

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Each monitor's period: the median interval between its consecutive sent
 * level-0 monitor pulses to one recipient. A node with no such pulses takes
 * `periodMs`, else the median of the monitors' periods.
 */
export function buildContext(records: readonly TraceRecord[], periodMs?: number, starts: readonly TraceStart[] = []): CheckContext {
  const settings = new Map<string, NodeSettings>();
  for (const s of starts) {
    try {
      settings.set(s.node, readStartSettings(s));
    } catch {
      // A damaged start record is replay's to report (replay.start); here the node just has no settings.
    }
  }
  const anchors = new Map([...settings.values()].filter((s) => s.anchor && s.votes > 0).map((s) => [s.id, s.votes]));
  const lastTo = new Map<string, number>();
  const intervals = new Map<string, number[]>();
  const sends = new Map<string, number>();
  const kinds = new Set<string>();
  let delayMs = 0;
  for (const r of records) {
    const e = r.env;
    kinds.add(e.kind);
    const key = `${e.from}\u0000${e.epoch}\u0000${e.seq}`;
    if (r.dir === 'send') {
      if (!sends.has(key)) sends.set(key, r.t);
      if (e.kind === 'hb.monitor_pulse' && (e.body as { level?: number }).level === 0) {
        const link = `${r.node}\u0000${e.epoch}\u0000${e.to}`;
        const prev = lastTo.get(link);
        if (prev !== undefined && r.t > prev) {
          let list = intervals.get(r.node);
          if (!list) intervals.set(r.node, (list = []));
          list.push(r.t - prev);
        }
        lastTo.set(link, r.t);
      }
    } else {
      const sent = sends.get(key);
      if (sent !== undefined) delayMs = Math.max(delayMs, r.t - sent);
    }
  }
  delayMs = Math.max(1, delayMs);
  const periods = new Map<string, number>();
  for (const [node, list] of intervals) periods.set(node, median(list)!);
  const fallback = periodMs ?? median([...periods.values()]);
  const periodOf = (node: string): number | undefined => periods.get(node) ?? fallback;
  return {
    delayMs,
    anchors,
    kinds,
    settingsOf: (node) => settings.get(node),
    periodOf,
    slackOf(node) {
      const p = periodOf(node);
      return p === undefined ? undefined : p / 4 + delayMs;
    },
  };
}

/** One line per violation, for people. */
export function formatViolation(v: Violation, originMs?: number): string {
  const t = originMs !== undefined && isWallClock(v.t) ? `${formatTime(v.t)}  ${formatOffset(v.t - originMs)}` : formatTime(v.t);
  return `${t}  ${v.rule}  ${v.node}  ${v.detail}`;
}
