/**
 * What a node keeps across restarts: its identity, its epoch counter and its
 * copy of the node database. LMDB in production (runtime/storage/lmdb-node-store.ts), a
 * Map in the simulator (MemoryNodeStore, here); one interface for both. The
 * calls are synchronous on purpose: writes here are rare (start-up and
 * node-database commits), must be durable before the node acts on them, and
 * a synchronous path keeps a simulated run a pure function of its seed.
 */
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import type { AcceptorState } from '../../machines/membership/node-db-subordinate.js';

export interface StoredIdentity {
  id: string;
  createdMs: number;
}

export interface NodeStore {
  loadIdentity(): StoredIdentity | undefined;
  saveIdentity(identity: StoredIdentity): void;
  /** Increments and durably records the epoch; returns the new value (first start: 1). */
  nextEpoch(): number;
  loadNodeDb(): NodeDbSnapshot | undefined;
  /** Durable when it returns: a committed node-database version survives a crash. */
  saveNodeDb(db: NodeDbSnapshot): void;
  /** What this anchor promised and accepted for the next version (M2): it must keep its word across a crash. */
  loadAcceptor(): AcceptorState | undefined;
  saveAcceptor(state: AcceptorState): void;
  /** The highest rebuild round number this anchor has used or seen (M14): a coordinator never reuses one after a restart. */
  loadRebuildRound(): number;
  saveRebuildRound(n: number): void;
  close(): Promise<void>;
}
