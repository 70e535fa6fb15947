/**
 * A fresh temporary directory per spec, and the stores a spec opens in it,
 * closed and removed after each spec (mocha hooks, registered by the call).
 * For specs of the LMDB-backed stores.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempStores<T> {
  /** This spec's directory. */
  readonly dir: string;
  /** Opens a store in this spec's directory; it is closed after the spec. */
  open(): T;
}

export function tempStores<T extends { close(): Promise<void> }>(prefix: string, open: (dir: string) => T): TempStores<T> {
  let dir = '';
  const stores: T[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get dir() {
      return dir;
    },
    open() {
      const s = open(dir);
      stores.push(s);
      return s;
    },
  };
}
