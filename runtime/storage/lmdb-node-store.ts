/**
 * The node's durable store in production: one LMDB environment under the
 * node's data directory with named databases, `meta` (identity, epoch) and
 * `nodedb` (the node database snapshot, and this anchor's promises for the
 * next version). The in-memory twin is MemoryNodeStore
 * (actors/storage/node-store.ts).
 *
 * Durability: every write is a synchronous transaction, and the environment
 * is opened with overlappingSync off, so the commit has been flushed to disk
 * when the call returns. (lmdb-js defaults to overlappingSync on Linux, where
 * a "synchronous" commit returns before the flush: a node could then act on
 * a node-database version, crash, and come back without it.)
 */
import type { Database, RootDatabase } from 'lmdb';
import { LmdbFile } from './lmdb-file.js';
import { MangroveError } from '../../bus/errors.js';
import { z } from 'zod';
import { ballot, ndbOp, nodeDbSnapshot, type NodeDbSnapshot } from '../../bus/messages/index.js';
import type { AcceptorState } from '../../machines/membership/node-db-subordinate.js';
import type { NodeStore, StoredIdentity } from '../../actors/storage/node-store.js';
import { isPermanentId } from '../../machines/membership/identity.js';

/** The environment file inside the data directory (lmdb adds `-lock` beside it). */
export const STORE_FILE = 'node.mdb';

const KEY_IDENTITY = 'identity';
const KEY_EPOCH = 'epoch';
const KEY_SNAPSHOT = 'snapshot';
const KEY_ACCEPTOR = 'acceptor';
const KEY_REBUILD_ROUND = 'rebuild-round';

const acceptorState = z.object({
  version: z.number().int().nonnegative(),
  promised: ballot.optional(),
  accepted: z.object({ ballot, change: ndbOp }).optional(),
});

export class LmdbNodeStore extends LmdbFile implements NodeStore {
  private constructor(
    dir: string,
    env: RootDatabase,
    private readonly meta: Database,
    private readonly nodedb: Database,
  ) {
    super(dir, env, 'the store');
  }

  /** Opens (creating if needed) the store in `dir`. */
  static open(dir: string): LmdbNodeStore {
    return this.openIn(dir, STORE_FILE, 'the store', 8, (env) => new LmdbNodeStore(dir, env, env.openDB({ name: 'meta' }), env.openDB({ name: 'nodedb' })));
  }

  loadIdentity(): StoredIdentity | undefined {
    const v = this.read(this.meta, KEY_IDENTITY) as Partial<StoredIdentity> | undefined;
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || v === null || typeof v.id !== 'string' || !isPermanentId(v.id) || typeof v.createdMs !== 'number') {
      throw new MangroveError('E_STORAGE', `the identity stored in ${this.dir} is damaged; move the directory away to start as a new node`);
    }
    return { id: v.id, createdMs: v.createdMs };
  }

  saveIdentity(identity: StoredIdentity): void {
    this.attempt('cannot save the identity in', () => this.meta.putSync(KEY_IDENTITY, { id: identity.id, createdMs: identity.createdMs }));
  }

  nextEpoch(): number {
    return this.attempt('cannot record a new epoch in', () =>
      // Read and bump in one transaction: two starts can never share an epoch.
      this.env.transactionSync(() => {
        const prev = this.meta.get(KEY_EPOCH);
        if (prev !== undefined && !(Number.isSafeInteger(prev) && prev >= 0)) {
          throw new MangroveError('E_STORAGE', `the epoch stored in ${this.dir} is damaged (${JSON.stringify(prev)})`);
        }
        const next = (prev ?? 0) + 1;
        this.meta.putSync(KEY_EPOCH, next);
        return next;
      }),
    );
  }

  loadNodeDb(): NodeDbSnapshot | undefined {
    const v = this.read(this.nodedb, KEY_SNAPSHOT);
    if (v === undefined) return undefined;
    const parsed = nodeDbSnapshot.safeParse(v);
    if (!parsed.success) {
      throw new MangroveError('E_STORAGE', `the node database stored in ${this.dir} is damaged: ${parsed.error.issues[0]?.message}`);
    }
    return parsed.data;
  }

  saveNodeDb(db: NodeDbSnapshot): void {
    // A plain copy: the snapshot may be a frozen machine context or carry extra fields.
    const copy: NodeDbSnapshot = { version: db.version, nodes: db.nodes.map((n) => ({ ...n })) };
    // The arena table is the top of the disk directory (M8): it must survive a restart with the rest.
    if (db.arenas !== undefined) copy.arenas = db.arenas.map((a) => ({ ...a }));
    if (db.nextArena !== undefined) copy.nextArena = db.nextArena;
    this.attempt('cannot save the node database in', () => this.nodedb.putSync(KEY_SNAPSHOT, copy));
  }

  loadAcceptor(): AcceptorState | undefined {
    const v = this.read(this.nodedb, KEY_ACCEPTOR);
    if (v === undefined) return undefined;
    const parsed = acceptorState.safeParse(v);
    if (!parsed.success) {
      throw new MangroveError('E_STORAGE', `the node-database promises stored in ${this.dir} are damaged: ${parsed.error.issues[0]?.message}`);
    }
    return parsed.data;
  }

  saveAcceptor(state: AcceptorState): void {
    const copy = JSON.parse(JSON.stringify(state)) as AcceptorState;
    this.attempt('cannot save the node-database promises in', () => this.nodedb.putSync(KEY_ACCEPTOR, copy));
  }

  loadRebuildRound(): number {
    const v = this.read(this.meta, KEY_REBUILD_ROUND);
    if (v === undefined) return 0;
    if (!Number.isSafeInteger(v) || (v as number) < 0) throw new MangroveError('E_STORAGE', `the rebuild round stored in ${this.dir} is damaged (${JSON.stringify(v)})`);
    return v as number;
  }

  saveRebuildRound(n: number): void {
    // Never lowered: a round number once used stays used.
    this.attempt('cannot save the rebuild round in', () =>
      this.env.transactionSync(() => {
        const prev = this.meta.get(KEY_REBUILD_ROUND);
        if (typeof prev !== 'number' || prev < n) this.meta.putSync(KEY_REBUILD_ROUND, n);
      }),
    );
  }

  private read(db: Database, key: string): unknown {
    return this.attempt(`cannot read "${key}" from the store in`, () => db.get(key));
  }
}
