/**
 * The simulator's node store: identity, epoch counter, node database and
 * acceptor state in fields. The twin of lmdb-node-store.ts; both run one
 * compliance suite (spec/unit/runtime/storage/node-store.spec.ts).
 */
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import type { AcceptorState } from '../../machines/membership/node-db-subordinate.js';
import type { NodeStore, StoredIdentity } from '../../actors/storage/node-store.js';

export class MemoryNodeStore implements NodeStore {
  private identity?: StoredIdentity;
  private epoch = 0;
  private db?: NodeDbSnapshot;
  private acceptor?: AcceptorState;
  private rebuildRound = 0;

  loadIdentity(): StoredIdentity | undefined {
    return this.identity;
  }
  saveIdentity(identity: StoredIdentity): void {
    this.identity = identity;
  }
  nextEpoch(): number {
    return ++this.epoch;
  }
  loadNodeDb(): NodeDbSnapshot | undefined {
    return this.db;
  }
  saveNodeDb(db: NodeDbSnapshot): void {
    this.db = db;
  }
  loadAcceptor(): AcceptorState | undefined {
    return this.acceptor;
  }
  saveAcceptor(state: AcceptorState): void {
    this.acceptor = state;
  }
  loadRebuildRound(): number {
    return this.rebuildRound;
  }
  saveRebuildRound(n: number): void {
    this.rebuildRound = Math.max(this.rebuildRound, n);
  }
  async close(): Promise<void> {}
}
