/**
 * What a conformance rule is (SPEC.md M27): a pure function over trace
 * records that names the records breaking a protocol invariant, with the
 * timing it reads (check.ts builds the context and runs the rules).
 */
import type { NodeSettings } from '../../actors/settings.js';
import type { TraceEntry, TraceRecord } from '../../bus/transport/transport.js';

/** `replay` is no rule set: every node rebuilt and fed its recorded inputs (replay.ts). */
export const PROTOCOLS = ['heartbeat', 'quorum', 'node-db', 'pan', 'recovery', 'page', 'replay'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface Violation {
  /** The rule's stable name, e.g. `hb.alive-within-deadlines`. */
  rule: string;
  /** The node whose behaviour broke the rule. */
  node: string;
  /** When (record time) it showed. */
  t: number;
  detail: string;
  /** The records that show it, earliest first. */
  records: TraceEntry[];
}

/** Timing the rules read; see buildContext. */
export interface CheckContext {
  /** A node's heartbeat period in ms, or undefined if neither inferred nor given. */
  periodOf(node: string): number | undefined;
  /** Slack in ms for a node: one tick (period / 4) plus the largest delivery delay seen (at least 1 ms). */
  slackOf(node: string): number | undefined;
  /** Largest send→recv delay observed for one envelope, at least 1 ms. */
  readonly delayMs: number;
  /** A node's settings from its latest start record, if the traces hold one. */
  settingsOf(node: string): NodeSettings | undefined;
  /** Votes of every anchor the start records name (empty without start records). */
  readonly anchors: ReadonlyMap<string, number>;
  /** Every envelope kind the records hold, sent or received: a rule with nothing of its own to read says so. */
  readonly kinds: ReadonlySet<string>;
}

export interface Rule {
  name: string;
  protocol: Protocol;
  /** One sentence for `--help`. */
  description: string;
  /** Returns a reason to skip (the trace cannot support the rule), or undefined. */
  needs?(ctx: CheckContext): string | undefined;
  check(records: readonly TraceRecord[], ctx: CheckContext): Violation[];
}
