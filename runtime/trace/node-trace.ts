/**
 * What a trace records of a node beyond its envelopes, so that replay can
 * rebuild it: a start record per incarnation (its settings, the seed of its
 * randomness, what its store held) and, through a TracedClock, every timer
 * it fires. `traceNode` is how both the node process and the simulator wire
 * a traced node; `readStart` is how replay reads the start record back.
 */
import type { NodeSettings } from '../../actors/settings.js';
import type { NodeStore } from '../../actors/storage/node-store.js';
import type { Clock } from '../../bus/clock.js';
import { MangroveError } from '../../bus/errors.js';
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import { TracedClock } from '../../bus/trace/traced-clock.js';
import type { TraceSink, TraceStart } from '../../bus/transport/transport.js';
import type { AcceptorState } from '../../machines/membership/node-db-subordinate.js';

/** What a start record holds. */
export interface NodeStart {
  settings: NodeSettings;
  /** Seed of the node's SeededRandom for this incarnation. */
  seed: number;
  /** The store's node database and acceptor state as the node found them. */
  db?: NodeDbSnapshot;
  /** Instead of `db`: the database is the one in the start record of this
   * incarnation (`<node>/<epoch>`), earlier in the same trace. A simulated
   * cluster formed in advance gives every node the same database, which
   * would otherwise fill the trace once per node. */
  dbOf?: string;
  acceptor?: AcceptorState;
  /** The highest rebuild round number the store kept (a coordinator numbers its next round above it). */
  rebuildRound?: number;
}

/** Per sink, the databases already written whole, and by which node's start record. */
const written = new WeakMap<TraceSink, WeakMap<NodeDbSnapshot, string>>();

/**
 * Records the start of an incarnation and returns the clock the node must
 * be given (its timers traced). Call before the node is built: the store is
 * read as the node will read it.
 */
export function traceNode(sink: TraceSink, clock: Clock, settings: NodeSettings, seed: number, store: NodeStore): TracedClock {
  const start: NodeStart = { settings: { ...settings }, seed };
  const db = store.loadNodeDb();
  const acceptor = store.loadAcceptor();
  if (db !== undefined) {
    let dbs = written.get(sink);
    if (!dbs) written.set(sink, (dbs = new WeakMap()));
    const holder = dbs.get(db);
    if (holder !== undefined) start.dbOf = holder;
    else {
      start.db = db;
      dbs.set(db, incarnationOf(settings.id, settings.epoch));
    }
  }
  if (acceptor !== undefined) start.acceptor = acceptor;
  const rebuildRound = store.loadRebuildRound();
  if (rebuildRound > 0) start.rebuildRound = rebuildRound;
  sink.note?.({ t: clock.now(), node: settings.id, dir: 'start', start: start as unknown as Record<string, unknown> });
  return new TracedClock(clock, settings.id, sink);
}

/** How `dbOf` names an incarnation. */
export function incarnationOf(node: string, epoch: number): string {
  return `${node}/${epoch}`;
}

/**
 * The start record's content, checked enough that replay can build a node
 * from it. `dbOf` names the incarnation whose start record holds the
 * database; `lookup` finds it.
 */
export function readStart(rec: TraceStart, lookup: (incarnation: string) => NodeDbSnapshot | undefined = () => undefined): NodeStart {
  const s = rec.start;
  const settings = readStartSettings(rec);
  const bad = (what: string): MangroveError => new MangroveError('E_BAD_MESSAGE', `the start record of ${rec.node} at ${rec.t} has ${what}`);
  if (typeof s.seed !== 'number') throw bad('no seed');
  let db = s.db as NodeDbSnapshot | undefined;
  if (typeof s.dbOf === 'string') {
    db = lookup(s.dbOf);
    if (db === undefined) throw bad(`its node database in the start record of ${s.dbOf}, which the trace does not hold before it`);
  }
  if (s.rebuildRound !== undefined && !(typeof s.rebuildRound === 'number' && Number.isSafeInteger(s.rebuildRound) && s.rebuildRound >= 0)) throw bad('a damaged rebuildRound');
  return { settings, seed: s.seed, db, acceptor: s.acceptor as AcceptorState | undefined, rebuildRound: s.rebuildRound as number | undefined };
}

/** The settings in a start record, checked. */
export function readStartSettings(rec: TraceStart): NodeSettings {
  const settings = rec.start.settings as Partial<NodeSettings> | undefined;
  const bad = (what: string): MangroveError => new MangroveError('E_BAD_MESSAGE', `the start record of ${rec.node} at ${rec.t} has ${what}`);
  if (typeof settings !== 'object' || settings === null) throw bad('no settings');
  for (const k of ['id', 'endpoint', 'software'] as const) if (typeof settings[k] !== 'string') throw bad(`no settings.${k}`);
  for (const k of ['epoch', 'pid', 'votes', 'group', 'periodMs', 'quorumTimeoutMs'] as const) {
    if (typeof settings[k] !== 'number') throw bad(`no settings.${k}`);
  }
  for (const k of ['anchor', 'faultInjection'] as const) if (typeof settings[k] !== 'boolean') throw bad(`no settings.${k}`);
  for (const k of ['seeds', 'monitorPreference', 'panPreference'] as const) if (!Array.isArray(settings[k])) throw bad(`no settings.${k}`);
  if (settings.id !== rec.node) throw bad(`settings for ${String(settings.id)}`);
  return settings as NodeSettings;
}
