/**
 * The per-node configuration: one JSON file, checked against a schema before
 * anything else starts (DESIGN.md, Config). Every error names the file, the
 * field and what the field must be, and unknown fields are errors, so a
 * typo ("perodMs") stops the node instead of silently keeping a default.
 * Relative paths in the file are relative to the file's folder, so a
 * cluster directory can be moved or started from anywhere. The security
 * fields (keyFile, peers, clients, insecure) are config-keys.ts's.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { z } from 'zod';
import { MangroveError } from '../../bus/errors.js';
import { isPermanentId } from '../../machines/membership/identity.js';
import { isTcpEndpoint } from '../../bus/transport/endpoint.js';
import { checkKeyConfig, keyRules, keySchema, type KeyConfig } from './config-keys.js';
import { HTTP_TOKEN_CHARS_MIN, isLoopback } from '../http/access.js';

export { isTcpEndpoint };

export const configLimits = {
  fileBytesMax: 1024 * 1024,
  anchorsMax: 256,
  preferenceMax: 256,
  periodMsMin: 10,
  periodMsMax: 60_000,
  quorumTimeoutMsMax: 3_600_000,
  /** The node database's own bounds (bus/messages/index.ts nodeEntry). */
  votesMax: 1000,
  groupMax: 2 ** 24,
  pathCharsMax: 4096,
  /** The memory engine (M9, M11). */
  ramMiBMax: 1024 * 1024,
  diskPagesMax: 2 ** 40,
  copiesMax: 8,
} as const;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A validated config: defaults filled, paths absolute. */
export interface NodeConfig extends KeyConfig {
  listen: string;
  dataDir: string;
  anchors: string[];
  anchor: boolean;
  votes: number;
  group: number;
  periodMs: number;
  quorumTimeoutMs: number;
  httpPort?: number;
  /** Where the HTTP port listens; 127.0.0.1 unless set, and then `httpToken` is required (runtime/http/access.ts). */
  httpHost?: string;
  httpToken?: string;
  /** Wire messages one inbound connection may send a second; the excess is refused, counted as 'flood' (bus/transport/flood-gate.ts). */
  floodPerSecond: number;
  faultInjection: boolean;
  monitorPreference: string[];
  panPreference: string[];
  logLevel: LogLevel;
  trace?: string;
  /** RAM cache budget of the memory engine, MiB (M9). */
  ramMiB: number;
  /** Most pages the disk cache holds (M9). */
  diskPages: number;
  /** Core copies of a page when an allocation does not say (M11). */
  copies: number;
}

/** What a config file may hold: the required fields, anything else optional. */
export type NodeConfigInput = Pick<NodeConfig, 'listen' | 'dataDir' | 'anchors'> & Partial<Omit<NodeConfig, 'listen' | 'dataDir' | 'anchors'>>;

export type { ClientKeyEntry } from './config-keys.js';

const endpoint = z.string().refine(isTcpEndpoint);
const permanentId = z.string().refine(isPermanentId);
const path = z.string().min(1).max(configLimits.pathCharsMax);
const int = (min: number, max: number) => z.number().int().min(min).max(max);

const schema = z.strictObject({
  listen: endpoint,
  dataDir: path,
  anchors: z.array(endpoint).min(1).max(configLimits.anchorsMax),
  anchor: z.boolean().default(false),
  votes: int(0, configLimits.votesMax).optional(),
  group: int(0, configLimits.groupMax).default(0),
  periodMs: int(configLimits.periodMsMin, configLimits.periodMsMax).default(1000),
  quorumTimeoutMs: int(1, configLimits.quorumTimeoutMsMax).optional(),
  httpPort: int(0, 65535).optional(),
  httpHost: z.string().min(1).max(255).optional(),
  httpToken: z.string().min(HTTP_TOKEN_CHARS_MIN).max(256).optional(),
  floodPerSecond: int(1, 10_000_000).default(50_000),
  faultInjection: z.boolean().default(false),
  monitorPreference: z.array(permanentId).max(configLimits.preferenceMax).default([]),
  panPreference: z.array(permanentId).max(configLimits.preferenceMax).default([]),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  trace: path.optional(),
  ramMiB: int(1, configLimits.ramMiBMax).default(256),
  diskPages: int(1, configLimits.diskPagesMax).default(1 << 20),
  copies: int(1, configLimits.copiesMax).default(2),
  ...keySchema,
});

const ENDPOINT_RULE = 'a tcp endpoint tcp://HOST:PORT with a concrete host and a port 1-65535, e.g. tcp://127.0.0.1:7400';
const ID_RULE = 'a permanent node id like 0a1b2c3d4e5f-018f2c3a4b5c';

/** What each field must be, in the words an error shows. Items of a list use `item`. */
const rules: Record<keyof NodeConfig, { whole: string; item?: string }> = {
  listen: { whole: ENDPOINT_RULE },
  dataDir: { whole: 'a non-empty path (relative to the config file\'s folder)' },
  anchors: { whole: `a non-empty list of at most ${configLimits.anchorsMax} tcp endpoints`, item: ENDPOINT_RULE },
  anchor: { whole: 'true or false' },
  votes: { whole: `an integer from 0 to ${configLimits.votesMax}` },
  group: { whole: `an integer from 0 to ${configLimits.groupMax}` },
  periodMs: { whole: `a number >= ${configLimits.periodMsMin} (an integer, at most ${configLimits.periodMsMax})` },
  quorumTimeoutMs: { whole: `an integer number of milliseconds, at most ${configLimits.quorumTimeoutMsMax}` },
  httpPort: { whole: 'an integer port from 0 to 65535 (0 picks a free port)' },
  httpHost: { whole: 'a host name or address for the HTTP port (default 127.0.0.1; any other needs "httpToken")' },
  httpToken: { whole: `a string of ${HTTP_TOKEN_CHARS_MIN} to 256 characters that every HTTP request must carry` },
  floodPerSecond: { whole: 'an integer from 1 to 10000000: wire messages one connection may send a second (default 50000)' },
  faultInjection: { whole: 'true or false' },
  monitorPreference: { whole: `a list of at most ${configLimits.preferenceMax} node ids`, item: ID_RULE },
  panPreference: { whole: `a list of at most ${configLimits.preferenceMax} node ids`, item: ID_RULE },
  logLevel: { whole: `one of ${LOG_LEVELS.join(', ')}` },
  trace: { whole: 'a non-empty file path (relative to the config file\'s folder)' },
  ramMiB: { whole: `an integer number of MiB from 1 to ${configLimits.ramMiBMax}` },
  diskPages: { whole: `an integer number of 4 KiB pages from 1 to ${configLimits.diskPagesMax}` },
  copies: { whole: `an integer from 1 to ${configLimits.copiesMax}` },
  ...keyRules,
};

export interface ParseOptions {
  /** Where relative paths point from; defaults to the folder of `sourceName`. */
  baseDir?: string;
}

/** Validates a parsed JSON value; `sourceName` prefixes every error (usually the file name). */
export function parseConfig(obj: unknown, sourceName: string, opts: ParseOptions = {}): NodeConfig {
  const fail = (why: string): never => {
    throw new MangroveError('E_BAD_CONFIG', `${sourceName}: ${why}`);
  };
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) fail('must hold a JSON object');
  const parsed = schema.safeParse(obj);
  if (!parsed.success) fail(describeIssue(parsed.error.issues[0], obj as Record<string, unknown>));
  const c = parsed.data!;

  const votes = c.votes ?? (c.anchor ? 1 : 0);
  if (!c.anchor && votes !== 0) fail(`"votes" must be 0 or absent when "anchor" is false (got ${show(c.votes)})`);
  const quorumTimeoutMs = c.quorumTimeoutMs ?? 8 * c.periodMs;
  if (quorumTimeoutMs <= 3 * c.periodMs) {
    fail(`"quorumTimeoutMs" must exceed 3 × periodMs = ${3 * c.periodMs} (got ${quorumTimeoutMs})`);
  }
  const dup = firstDuplicate(c.anchors);
  if (dup !== undefined) fail(`"anchors" lists ${dup} twice`);
  if (!c.anchor && c.anchors.includes(c.listen)) {
    fail(`"anchors" lists this node's own endpoint ${c.listen}, but "anchor" is false (set "anchor": true or remove it)`);
  }

  const keys = checkKeyConfig(c, c.anchors, sourceName, fail);

  const baseDir = opts.baseDir ?? dirname(resolve(sourceName));
  const config: NodeConfig = {
    listen: c.listen,
    dataDir: resolve(baseDir, c.dataDir),
    anchors: c.anchors,
    anchor: c.anchor,
    votes,
    group: c.group,
    periodMs: c.periodMs,
    quorumTimeoutMs,
    faultInjection: c.faultInjection,
    monitorPreference: c.monitorPreference,
    panPreference: c.panPreference,
    logLevel: c.logLevel,
    ramMiB: c.ramMiB,
    diskPages: c.diskPages,
    copies: c.copies,
    floodPerSecond: c.floodPerSecond,
    ...keys,
  };
  if (c.keyFile !== undefined) config.keyFile = resolve(baseDir, c.keyFile);
  if (c.httpPort !== undefined) config.httpPort = c.httpPort;
  if (c.httpHost !== undefined) config.httpHost = c.httpHost;
  if (c.httpToken !== undefined) config.httpToken = c.httpToken;
  // Checked here, so a config that would open the port to other machines without a token never starts.
  if (!isLoopback(c.httpHost ?? '127.0.0.1') && c.httpToken === undefined) fail(`"httpHost" ${c.httpHost} lets other machines in: give "httpToken" too, or keep the default 127.0.0.1`);
  if (c.trace !== undefined) config.trace = resolve(baseDir, c.trace);
  return config;
}

/** Reads and validates a config file; every failure is E_BAD_CONFIG naming the file. */
export function loadConfig(file: string): NodeConfig {
  const name = file;
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > configLimits.fileBytesMax) {
      throw new MangroveError('E_BAD_CONFIG', `${name}: ${size} bytes is more than a config may hold (${configLimits.fileBytesMax})`);
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof MangroveError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw new MangroveError('E_BAD_CONFIG', `cannot read config file ${name}: ${why}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new MangroveError('E_BAD_CONFIG', `${name} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(obj, name, { baseDir: dirname(resolve(file)) });
}

/**
 * Writes a config file, validated first so nothing can write a config the
 * node would refuse. Written to a temporary file, synced and renamed, so a
 * crash leaves either the old file or the new one, never half of one.
 * The object is written as given: relative paths stay relative.
 */
export function writeConfig(file: string, cfg: NodeConfigInput): void {
  parseConfig(cfg, file, { baseDir: dirname(resolve(file)) });
  const dir = dirname(resolve(file));
  const tmp = resolve(dir, `.${basename(file)}.${process.pid}.tmp`);
  try {
    mkdirSync(dir, { recursive: true });
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, `${JSON.stringify(cfg, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    throw new MangroveError('E_STORAGE', `cannot write config file ${file}: ${(err as Error).message}`);
  }
}

type Issue = z.core.$ZodIssue;

function describeIssue(issue: Issue, obj: Record<string, unknown>): string {
  if (issue.code === 'unrecognized_keys' && issue.path.length > 0) {
    const [field, ...rest] = issue.path as (string | number)[];
    const rule = rules[field as keyof NodeConfig];
    return `"${String(field)}${rest.map((k) => `[${String(k)}]`).join('')}" has an unknown field "${issue.keys[0]}": it must be ${rule?.item ?? rule?.whole ?? 'as documented'}`;
  }
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    const near = closest(key, Object.keys(rules));
    const hint = near ? ` (did you mean "${near}"?)` : '';
    return `unknown field "${key}"${hint}; the fields are ${Object.keys(rules).join(', ')}`;
  }
  const [field, ...rest] = issue.path as (string | number)[];
  const rule = rules[field as keyof NodeConfig];
  const name = `"${String(field)}${rest.map((k) => `[${String(k)}]`).join('')}"`;
  const value = valueAt(obj, issue.path as (string | number)[]);
  if (!rule) return `${name}: ${issue.message}`;
  if (rest.length === 0 && value === undefined) return `${name} is required: ${rule.whole}`;
  const expect = rest.length > 0 && rule.item ? rule.item : rule.whole;
  return `${name} must be ${expect} (got ${show(value)})`;
}

function valueAt(obj: unknown, path: (string | number)[]): unknown {
  let v = obj;
  for (const k of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string | number, unknown>)[k];
  }
  return v;
}

/** JSON of the offending value, clipped so a huge value cannot flood the message. */
function show(v: unknown): string {
  const s = v === undefined ? 'nothing' : JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 79)}…` : s;
}

function firstDuplicate(items: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (const x of items) {
    if (seen.has(x)) return x;
    seen.add(x);
  }
  return undefined;
}

/** The known field at edit distance <= 2, for "did you mean". */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
