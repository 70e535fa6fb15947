/**
 * What the memory engine's applets compose (SPEC.md M13): one node's
 * elements and the few helpers every applet needs. The engine
 * (page-engine.ts) builds it; applets/local.ts and applets/home.ts register
 * their op-codes over it.
 */
import type { InspectionEvent } from 'xstate';
import type { Clock } from '../../bus/clock.js';
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import type { CoreHolderDeps } from '../pages/core-holders.js';
import type { FlowScheduler } from './flow-scheduler.js';
import type { GroupCommit } from '../pages/group-commit.js';
import type { Log } from '../log.js';
import type { Outbox } from '../outbox.js';
import type { PageHolder } from '../pages/page-holder.js';
import type { PageHomes } from '../pages/page-homes.js';
import type { PageSpace } from '../pages/page-space.js';
import type { PageStore } from '../storage/page-store.js';
import type { PeerCalls } from './peer-calls.js';
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
  /** How long a read waits on a home the membership counts failed before it reads a core holder's durable copy. */
  homeWaitMs: number;
}

export const engineDefaults: EngineSettings = { ramBytes: 256 * 1024 * 1024, copies: 2, retryMs: 200, timeoutMs: 10_000, homeWaitMs: 1000 };

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
  inspect?: (e: InspectionEvent) => void;
}

export interface EngineParts {
  readonly deps: PageEngineDeps;
  readonly scheduler: FlowScheduler;
  readonly cache: RamCache;
  readonly holder: PageHolder;
  readonly homes: PageHomes;
  readonly space: PageSpace;
  readonly calls: PeerCalls;
  readonly commits: GroupCommit;
  readonly core: CoreHolderDeps;
  /** Free RAM and disk per node, for placement (M12). */
  readonly policy: SpacePolicy;
  readonly stats: { readsFromHolders: number; staleRound: number };
  /** The responsible node (the home) of `addr`. */
  homeOf(addr: bigint): string;
  /** This node's arena (M7): its short id + 1. */
  ownArena(): bigint;
  /** Throws E_NO_QUORUM unless this node has quorum (M17). */
  needQuorum(what: string): void;
  /** Copies the directory pages written since the last call to their replicas (M8); call after every directory change. */
  syncDirectory(): Promise<void>;
  /** Waits for `work`, at most `ms` (the access timeout by default); the work itself goes on. */
  within<T>(work: Promise<T>, what: string, ms?: number): Promise<T>;
  /** The rebuild's repopulation in progress (M14), if any. */
  repopulation(): Repopulation | undefined;
}

/** The flow scheduler's key for one page: its requests run one at a time. */
export const pageKey = (addr: bigint): string => `page:${addr.toString(16)}`;
