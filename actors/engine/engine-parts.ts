/**
 * What the memory engine's applets compose (SPEC.md M13): one node's
 * elements and the few helpers every applet needs. The engine
 * (page-engine.ts) builds it; applets/local.ts and applets/home.ts register
 * their op-codes over it.
 */
import type { InspectionEvent } from 'xstate';
import type { MangroveError } from '../../bus/errors.js';
import type { Clock } from '../../bus/clock.js';
import type { NdbOp, NodeDbSnapshot } from '../../bus/messages/index.js';
import type { CoreHolderDeps } from '../pages/core-holders.js';
import type { FlowScheduler } from './flow-scheduler.js';
import type { GroupCommit } from '../pages/group-commit.js';
import type { Log } from '../log.js';
import type { Outbox } from '../outbox.js';
import type { PageHolder } from '../pages/page-holder.js';
import type { PageHomes } from '../pages/page-homes.js';
import type { PageLocks } from '../pages/page-locks.js';
import type { PageSpace } from '../pages/page-space.js';
import type { PageStore } from '../storage/page-store.js';
import type { PeerCalls } from './peer-calls.js';
import type { ClientLeases } from './client-leases.js';
import type { RamCache } from '../pages/ram-cache.js';
import type { SpacePolicy } from '../pages/space-policy.js';
import type { TxnLog } from '../pages/txn-log.js';
import type { Repopulation } from '../recovery/repopulation.js';

export interface EngineSettings {
  /** RAM cache budget (M9). */
  ramBytes: number;
  /** Core copies of a page when alloc does not say (M11). */
  copies: number;
  /** Resend interval of coherence messages and calls. */
  retryMs: number;
  /** How long a call to another engine, or one page access, may take. */
  timeoutMs: number;
  /** The pace of the re-replication scan (M15): one step this often. */
  scanIntervalMs: number;
  /** The pace of collecting copies nobody counts on (M15): one step this often; a copy goes after two looks a pass apart. */
  gcIntervalMs: number;
  /** Reads and writes of pages held in the right mode skip the scheduler (fast-path.ts); off only to compare the two paths. */
  fastPath: boolean;
}

export const engineDefaults: EngineSettings = {
  ramBytes: 256 * 1024 * 1024,
  copies: 2,
  retryMs: 200,
  timeoutMs: 10_000,
  scanIntervalMs: 500,
  gcIntervalMs: 5000,
  fastPath: true,
};

export interface PageEngineDeps {
  self: string;
  epoch: number;
  outbox: Outbox;
  clock: Clock;
  store: PageStore;
  txnLog: TxnLog;
  log: Log;
  settings: EngineSettings;
  db(): NodeDbSnapshot;
  isAlive(id: string): boolean;
  quorate(): boolean;
  /**
   * Whether this node's group counted it in lately (its read lease, M14):
   * a node cut off, or paused, past it may have been counted failed and
   * rebuilt without, so it reads none of the copies it holds until it is
   * counted in again (or learns it was left out, and rejoins).
   */
  standing(): boolean;
  /** The primary anchor node as this node knows it (M16), if any; whether it is this node. */
  pan(): string | null;
  isPan(): boolean;
  /** On anchors: runs a node-database update (M2) from here; resolves with the new version. */
  updateNodeDb?: (change: NdbOp) => Promise<number>;
  inspect?: (e: InspectionEvent) => void;
}

export interface EngineParts {
  readonly deps: PageEngineDeps;
  readonly scheduler: FlowScheduler;
  readonly cache: RamCache;
  readonly holder: PageHolder;
  readonly homes: PageHomes;
  /** Page locks at their home (M7, M21's basis). */
  readonly locks: PageLocks;
  /** Leases of the clients that lock through this node: a client that went away loses its locks (M14). */
  readonly leases: ClientLeases;
  readonly space: PageSpace;
  readonly calls: PeerCalls;
  readonly commits: GroupCommit;
  readonly core: CoreHolderDeps;
  /** Free RAM and disk per node, for placement (M12). */
  readonly policy: SpacePolicy;
  readonly stats: { staleRound: number; reReplicatedPages: number; fastCalls: number };
  /** The responsible node (the home) of `addr`. */
  homeOf(addr: bigint): string;
  /** This node's arena (M7): its short id + 1. */
  ownArena(): bigint;
  /** Throws E_NO_QUORUM unless this node has quorum (M17). */
  needQuorum(what: string): void;
  /** Copies the directory pages written since the last call to the arena's replicas (M8, M15); call after every directory change, before answering. */
  syncDirectory(): Promise<void>;
  /** Resolves once every replica of `arena`'s directory has every change this node's has (directory-replicas.ts `catchUp`). */
  directoryCaughtUp(arena: bigint): Promise<void>;
  /** Why requests for pages of `arena` are refused here (its directory did not check out, a replica lacks a change), if they are. */
  arenaRefusal(arena: bigint): MangroveError | undefined;
  /** Waits for `work`, at most `ms` (the access timeout by default); the work itself goes on. */
  within<T>(work: Promise<T>, what: string, ms?: number): Promise<T>;
  /** The rebuild's repopulation in progress (M14), if any. */
  repopulation(): Repopulation | undefined;
}

/** The flow scheduler's key for one page: its requests run one at a time. */
export const pageKey = (addr: bigint): string => `page:${addr.toString(16)}`;
