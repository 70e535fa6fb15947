/**
 * One compliance suite for both node stores, MemoryNodeStore and
 * LmdbNodeStore (spec/helpers/store-twins.ts), then what only the real one
 * can show: a write committed before a SIGKILL, the data directory made or
 * refused, calls refused after close (the memory twin's close keeps
 * nothing to release, and the simulator never closes it).
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NodeDbSnapshot } from '../../../../bus/messages/index.js';
import { isMangroveError } from '../../../../bus/errors.js';
import type { NodeStore } from '../../../../actors/storage/node-store.js';
import { LmdbNodeStore } from '../../../../runtime/storage/lmdb-node-store.js';
import { MemoryNodeStore } from '../../../../runtime/storage/memory-node-store.js';
import { lmdbTwin, memoryTwin, twinPerTest, type TwinSetUp } from '../../../helpers/store-twins.js';

const identity = { id: '0a1b2c3d4e5f-018f2c3a4b5c', createdMs: 1_700_000_000_000 };
const db: NodeDbSnapshot = {
  version: 7,
  nodes: [
    { id: identity.id, shortId: 0, endpoint: 'tcp://127.0.0.1:7400', anchor: true, votes: 1, group: 0 },
    { id: '0f0e0d0c0b0a-018f2c3a4b5d', shortId: 65, endpoint: 'tcp://127.0.0.1:7401', anchor: false, votes: 0, group: 1 },
  ],
};

function nodeStoreCompliance(name: string, setUp: TwinSetUp<NodeStore>): void {
  describe(`${name}: node store compliance`, () => {
    let s: NodeStore;
    const twin = twinPerTest(setUp, (first) => (s = first));

    it('starts empty', () => {
      expect(s.loadIdentity()).to.equal(undefined);
      expect(s.loadNodeDb()).to.equal(undefined);
      expect(s.loadAcceptor()).to.equal(undefined);
    });

    it("keeps an anchor's node-database promises across a restart", async () => {
      expect(s.loadAcceptor()).to.equal(undefined);
      const acceptor = {
        version: 8,
        promised: { round: 4, by: `${identity.id}/3` },
        accepted: { ballot: { round: 3, by: `${identity.id}/2` }, change: { op: 'delete' as const, id: '0f0e0d0c0b0a-018f2c3a4b5d' } },
      };
      s.saveAcceptor(acceptor);
      s = await twin.restart(s);
      expect(s.loadAcceptor()).to.deep.equal(acceptor);
    });

    it('keeps the identity across a restart', async () => {
      s.saveIdentity(identity);
      expect(s.loadIdentity()).to.deep.equal(identity);
      s = await twin.restart(s);
      expect(s.loadIdentity()).to.deep.equal(identity);
    });

    it('gives every start a new epoch, also after a restart', async () => {
      expect(s.nextEpoch()).to.equal(1);
      expect(s.nextEpoch()).to.equal(2);
      s = await twin.restart(s);
      expect(s.nextEpoch()).to.equal(3);
    });

    it('keeps the newest node database across a restart', async () => {
      s.saveNodeDb(db);
      s.saveNodeDb({ ...db, version: 8 });
      s = await twin.restart(s);
      expect(s.loadNodeDb()).to.deep.equal({ ...db, version: 8 });
    });

    it('keeps the arena table with the node database (M8: the top of the disk directory)', async () => {
      const withArenas: NodeDbSnapshot = {
        ...db,
        version: 9,
        arenas: [
          { arena: 0, home: identity.id, gen: 1, madeFor: identity.id },
          { arena: 3, home: db.nodes[1].id, gen: 4, madeFor: identity.id },
        ],
        nextArena: 5,
      };
      s.saveNodeDb(withArenas);
      s = await twin.restart(s);
      expect(s.loadNodeDb()).to.deep.equal(withArenas);
    });

    it('keeps the highest rebuild round across a restart, never lowering it', async () => {
      expect(s.loadRebuildRound()).to.equal(0);
      s.saveRebuildRound(12);
      s.saveRebuildRound(7);
      s = await twin.restart(s);
      expect(s.loadRebuildRound()).to.equal(12);
    });
  });
}

nodeStoreCompliance('MemoryNodeStore', memoryTwin(() => new MemoryNodeStore()));
nodeStoreCompliance('LmdbNodeStore', lmdbTwin('mangrove-store-', (dir) => LmdbNodeStore.open(dir)));

describe('runtime/storage/lmdb-node-store', () => {
  let dir: string;
  const open: LmdbNodeStore[] = [];
  const openStore = (path = dir) => {
    const s = LmdbNodeStore.open(path);
    open.push(s);
    return s;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mangrove-store-'));
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('has committed a write when the call returns: a process killed right after loses nothing', () => {
    const module = pathToFileURL(join(process.cwd(), 'runtime', 'storage', 'lmdb-node-store.ts')).href;
    const script = `
      const { LmdbNodeStore } = await import(${JSON.stringify(module)});
      const s = LmdbNodeStore.open(${JSON.stringify(dir)});
      s.nextEpoch();
      s.saveNodeDb(${JSON.stringify(db)});
      process.kill(process.pid, 'SIGKILL');`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.signal, r.stderr).to.equal('SIGKILL');
    const s = openStore();
    expect(s.loadNodeDb()).to.deep.equal(db);
    expect(s.nextEpoch()).to.equal(2);
  });

  it('creates the data directory when it is missing', () => {
    const s = openStore(join(dir, 'a', 'b'));
    s.saveIdentity(identity);
    expect(s.loadIdentity()).to.deep.equal(identity);
  });

  it('refuses a directory it cannot use, naming it', () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    try {
      LmdbNodeStore.open(join(file, 'data'));
      expect.fail('opened a store under a file');
    } catch (err) {
      expect(isMangroveError(err) && err.code).to.equal('E_STORAGE');
      expect((err as Error).message).to.include(join(file, 'data'));
    }
  });

  it('refuses calls after close', async () => {
    const s = openStore();
    await s.close();
    expect(() => s.nextEpoch()).to.throw(/closed/);
  });
});
