/**
 * What every LMDB file of a node shares (the node store, the page store, the
 * transaction log): opening it in the data directory with durable
 * synchronous commits, one close, a closed file refusing use (E_CLOSED), and
 * storage failures reported as E_STORAGE naming what failed and where.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { MangroveError } from '../../bus/errors.js';

export abstract class LmdbFile {
  private closed = false;

  protected constructor(
    readonly dir: string,
    protected readonly env: RootDatabase,
    /** What the file is, for messages: "the page store". */
    private readonly what: string,
  ) {}

  /**
   * Opens (creating if needed) `file` in `dir` and builds the store from the
   * environment; nothing is left open if that fails.
   */
  protected static openIn<T>(dir: string, file: string, what: string, maxDbs: number, build: (env: RootDatabase) => T): T {
    let env: RootDatabase | undefined;
    try {
      mkdirSync(dir, { recursive: true });
      // Every commit is synchronous and durable when it returns: no overlapping or skipped syncs.
      env = open({ path: join(dir, file), overlappingSync: false, noSync: false, maxDbs });
      return build(env);
    } catch (err) {
      void env?.close().catch(() => undefined);
      throw storageError(dir, `cannot open ${what} in`, err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.env.close();
    } catch (err) {
      throw storageError(this.dir, `cannot close ${this.what} in`, err);
    }
  }

  protected checkOpen(): void {
    if (this.closed) throw new MangroveError('E_CLOSED', `${this.what} in ${this.dir} is closed`);
  }

  /** Runs `fn` on the open file; a failure becomes E_STORAGE saying `what` failed. */
  protected attempt<T>(what: string, fn: () => T): T {
    this.checkOpen();
    try {
      return fn();
    } catch (err) {
      throw storageError(this.dir, what, err);
    }
  }
}

export function storageError(dir: string, what: string, err: unknown): MangroveError {
  if (err instanceof MangroveError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MangroveError('E_STORAGE', `${what} ${dir}: ${message}`);
}
