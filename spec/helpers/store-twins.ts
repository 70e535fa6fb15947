/**
 * The two twins of a store (DESIGN.md: every real part has its twin), as a
 * compliance suite takes them: a factory of stores, one set per test, and a
 * restart. The node-store, page-store and transaction-log suites run the
 * same tests on both twins through this (twinPerTest registers the hooks).
 *
 * A restart is what a node's store goes through when the node restarts:
 * the LMDB twin is closed and opened again on its directory; the memory
 * twin's disk is the store object itself, which a crash leaves as it was
 * (SimCluster keeps it across restarts), so the same object comes back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Closable {
  close(): Promise<void>;
}

export interface StoreTwin<S extends Closable, O = undefined> {
  /** A new, empty store; every store a test opens is closed by tearDown. */
  open(options?: O): S;
  /** The node restarts: the store as its disk keeps it. */
  restart(store: S): Promise<S>;
  tearDown(): Promise<void>;
}

/** Makes a twin per test (call it in a beforeEach). */
export type TwinSetUp<S extends Closable, O = undefined> = () => StoreTwin<S, O>;

export function memoryTwin<S extends Closable, O = undefined>(make: (options?: O) => S): TwinSetUp<S, O> {
  return () => {
    const stores: S[] = [];
    return {
      open: (options) => {
        const s = make(options);
        stores.push(s);
        return s;
      },
      restart: async (store) => store,
      tearDown: async () => {
        for (const s of stores.splice(0)) await s.close();
      },
    };
  };
}

/** Each store opened gets a directory of its own: two live environments on one path would share a writer. */
export function lmdbTwin<S extends Closable, O = undefined>(prefix: string, open: (dir: string, options?: O) => S): TwinSetUp<S, O> {
  return () => {
    const root = mkdtempSync(join(tmpdir(), prefix));
    const homes = new Map<S, { dir: string; options?: O }>();
    let opened = 0;
    const openIn = (dir: string, options?: O): S => {
      const s = open(dir, options);
      homes.set(s, { dir, options });
      return s;
    };
    return {
      open: (options) => openIn(join(root, `store-${opened++}`), options),
      restart: async (store) => {
        const home = homes.get(store);
        if (!home) throw new Error('restart of a store this twin did not open');
        await store.close();
        return openIn(home.dir, home.options);
      },
      tearDown: async () => {
        for (const s of homes.keys()) await s.close();
        homes.clear();
        rmSync(root, { recursive: true, force: true });
      },
    };
  };
}

/**
 * A twin per test, as a compliance suite runs: registers the mocha hooks
 * that make a fresh twin before each test, open its first store and hand it
 * to `opened` (the suite keeps it as its store), and tear the twin down
 * after. What it returns stands for the running test's twin.
 */
export function twinPerTest<S extends Closable, O = undefined>(setUp: TwinSetUp<S, O>, opened: (store: S) => void): StoreTwin<S, O> {
  let twin: StoreTwin<S, O> | undefined;
  const current = (): StoreTwin<S, O> => {
    if (!twin) throw new Error('a store twin is used outside a test');
    return twin;
  };
  beforeEach(() => {
    twin = setUp();
    opened(twin.open());
  });
  afterEach(async () => {
    await twin?.tearDown();
    twin = undefined;
  });
  return {
    open: (options) => current().open(options),
    restart: (store) => current().restart(store),
    tearDown: () => current().tearDown(),
  };
}
