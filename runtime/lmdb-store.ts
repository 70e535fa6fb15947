/**
 * The node's durable store in production: one LMDB environment under the
 * node's data directory with named databases, `meta` (identity, epoch) and
 * `nodedb` (the node database snapshot, and this anchor's promises for the
 * next version). The in-memory twin is MemoryStore
 * (actors/store.ts).
 *
 * Durability: every write is a synchronous transaction, and the environment
 * is opened with overlappingSync off, so the commit has been flushed to disk
 * when the call returns. (lmdb-js defaults to overlappingSync on Linux, where
 * a "synchronous" commit returns before the flush: a node could then act on
 * a node-database version, crash, and come back without it.)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { MangroveError } from '../bus/errors.js';
import { z } from 'zod';
import { ballot, ndbOp, nodeDbSnapshot, type NodeDbSnapshot } from '../bus/messages.js';
import type { AcceptorState } from '../machines/node-db-subordinate.js';
import type { NodeStore, StoredIdentity } from '../actors/store.js';
import { isPermanentId } from '../machines/identity.js';

/** The environment file inside the data directory (lmdb adds `-lock` beside it). */
export const STORE_FILE = 'node.mdb';

const KEY_IDENTITY = 'identity';
const KEY_EPOCH = 'epoch';
const KEY_SNAPSHOT = 'snapshot';
const KEY_ACCEPTOR = 'acceptor';

const acceptorState = z.object({
  version: z.number().int().nonnegative(),
  promised: ballot.optional(),
  accepted: z.object({ ballot, change: ndbOp }).optional(),
});

export class LmdbStore implements NodeStore {
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly env: RootDatabase,
    private readonly meta: Database,
    private readonly nodedb: Database,
  ) {}

  /** Opens (creating if needed) the store in `dir`. */
  static open(dir: string): LmdbStore {
    let env: RootDatabase | undefined;
    try {
      mkdirSync(dir, { recursive: true });
      env = open({ path: join(dir, STORE_FILE), overlappingSync: false, noSync: false, maxDbs: 8 });
      const meta = env.openDB({ name: 'meta' });
      const nodedb = env.openDB({ name: 'nodedb' });
      return new LmdbStore(dir, env, meta, nodedb);
    } catch (err) {
      void env?.close().catch(() => undefined);
      throw storageError(dir, 'cannot open the store in', err);
    }
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
    this.write('cannot save the identity in', () => this.meta.putSync(KEY_IDENTITY, { id: identity.id, createdMs: identity.createdMs }));
  }

  nextEpoch(): number {
    return this.write('cannot record a new epoch in', () =>
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
    this.write('cannot save the node database in', () => this.nodedb.putSync(KEY_SNAPSHOT, copy));
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
    this.write('cannot save the node-database promises in', () => this.nodedb.putSync(KEY_ACCEPTOR, copy));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.env.close();
    } catch (err) {
      throw storageError(this.dir, 'cannot close the store in', err);
    }
  }

  private read(db: Database, key: string): unknown {
    this.checkOpen();
    try {
      return db.get(key);
    } catch (err) {
      throw storageError(this.dir, `cannot read "${key}" from the store in`, err);
    }
  }

  private write<T>(what: string, fn: () => T): T {
    this.checkOpen();
    try {
      return fn();
    } catch (err) {
      throw storageError(this.dir, what, err);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new MangroveError('E_CLOSED', `the store in ${this.dir} is closed`);
  }
}

function storageError(dir: string, what: string, err: unknown): MangroveError {
  if (err instanceof MangroveError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MangroveError('E_STORAGE', `${what} ${dir}: ${message}`);
}
