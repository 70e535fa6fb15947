/**
 * Failover of arenas and re-replication in the simulator (SPEC.md M15, M16,
 * M17; docs/recovery.md): a home that dies for good has its arenas handed to
 * a directory replica, which serves them (reserve, alloc, free included);
 * every range and directory that lost a copy regains it untouched, so a
 * second failure later loses nothing flushed; copies left on a node nobody
 * names any more are collected; and a 3|2 partition with homes on both
 * sides completes no write on the minority after its quorum lease, while the
 * majority takes the minority's arenas over, and healing leaves one home per
 * arena with every flushed write in place.
 */
import { expect } from 'chai';
import { MangroveError } from '../../bus/errors.js';
import { decode } from '../../bus/codec.js';
import type { PageStat, ReadResult } from '../../bus/messages/page.js';
import { addressKey, PAGE_BYTES, parseAddress } from '../../machines/memory/address.js';
import { arenaEntryOf, arenasOf } from '../../machines/membership/node-db.js';
import { arenaBase, arenaOf, DATA_OFFSET } from '../../actors/pages/page-space.js';
import { SimCluster } from '../../runtime/sim/cluster.js';
import { convergence, forSeedsAsync } from '../helpers/sim-checks.js';
import { eventually } from '../helpers/sim-calls.js';

const PERIOD = 100;

function pageOf(token: number): Uint8Array {
  return new Uint8Array(PAGE_BYTES).fill(token % 251);
}

async function formed(seed: number, nodes: number, copies = 2): Promise<SimCluster> {
  const c = new SimCluster({ seed, nodes, anchors: 3, periodMs: PERIOD, engine: { retryMs: 40, timeoutMs: 5000, scanIntervalMs: 200, gcIntervalMs: 300, copies } });
  c.startAll();
  c.runUntil(() => convergence(c).length === 0, 30_000, () => `the cluster to form (${convergence(c).slice(0, 2).join('; ')})`);
  await c.runUntilAsync(() => [...Array(nodes).keys()].every((i) => c.node(i)!.engine.recoveryState().serving), 30_000, 'every node to serve');
  return c;
}

function underReplicated(c: SimCluster): number {
  let n = 0;
  for (let i = 0; i < c.size; i++) {
    const r = c.status(i)?.replication;
    if (r) n += r.pagesUnderReplicated + r.arenasUnderReplicated;
  }
  return n;
}

/** Pages reserved, allocated (`copies` core copies) and flushed on `home`, each holding its index + 1. */
async function flushedPages(c: SimCluster, home: number, pages: number, copies = 2): Promise<bigint> {
  const e = c.node(home)!.engine;
  const base = parseAddress(((await eventually(c, () => e.call({ op: 'reserve', pages }))) as { address: string }).address);
  await eventually(c, () => e.call({ op: 'alloc', addr: addressKey(base), pages, copies }));
  for (let i = 0; i < pages; i++) {
    const addr = addressKey(base + BigInt(i * PAGE_BYTES));
    await eventually(c, () => c.node((home + 1 + i) % c.size)!.engine.call({ op: 'write', addr, data: pageOf(i + 1) }));
    await eventually(c, () => c.node((home + 1 + i) % c.size)!.engine.call({ op: 'flush', addr, pages: 1 }));
  }
  return base;
}

async function readBack(c: SimCluster, via: number, base: bigint, pages: number): Promise<number[]> {
  const got = (await eventually(c, () => c.node(via)!.engine.call({ op: 'read', addr: addressKey(base), pages }))) as ReadResult;
  return Array.from({ length: pages }, (_, i) => got.data[i * PAGE_BYTES]);
}

describe('failover of arenas and re-replication (M15, M16) in the simulator', function () {
  this.timeout(120_000);

  it('hands a dead home\'s arena to a directory replica that serves it, restores every copy untouched, and loses nothing flushed to a second failure', async () => {
    await forSeedsAsync([301, 302, 303], async (seed) => {
      const c = await formed(seed, 5);
      const home = 3;
      const base = await flushedPages(c, home, 6);
      const arena = Number(arenaOf(base));
      expect(arenaEntryOf(c.node(0)!.database(), arena)?.replicas ?? [], 'the directory has a replica').to.have.length(1);

      c.crash(home);
      await c.runUntilAsync(() => arenaEntryOf(c.node(0)!.database(), arena)?.home !== c.id(home), 30_000, 'the arena to be handed over');
      const entry = arenaEntryOf(c.node(0)!.database(), arena)!;
      expect(entry.gen, 'one generation up').to.equal(2);
      // Readable and writable from every survivor; every flushed page exact.
      const survivors = [0, 1, 2, 4];
      for (const i of survivors) expect(await readBack(c, i, base, 6), `read through node ${i}`).to.deep.equal([1, 2, 3, 4, 5, 6]);
      await eventually(c, () => c.node(1)!.engine.call({ op: 'write', addr: addressKey(base), data: pageOf(77) }));
      await eventually(c, () => c.node(1)!.engine.call({ op: 'flush', addr: addressKey(base), pages: 1 }));
      // The directory is usable: reserve in the arena's new home's own arena, alloc and free the old arena's pages.
      await eventually(c, () => c.node(2)!.engine.call({ op: 'unallocate', addr: addressKey(base + 5n * BigInt(PAGE_BYTES)), pages: 1 }));
      await eventually(c, () => c.node(2)!.engine.call({ op: 'alloc', addr: addressKey(base + 5n * BigInt(PAGE_BYTES)), pages: 1, copies: 2 }));

      // Fencing: a store whose sender learned the core holders at the old generation is refused.
      const holderOf = (await eventually(c, () => c.node(0)!.engine.call({ op: 'stat', addr: addressKey(base) }))) as PageStat;
      const fenced = c.indexOf(holderOf.coreHolders.find((h) => h !== c.id(home))!);
      const answers: { ok: boolean; code?: string }[] = [];
      c.network.onDeliver((_from, to, frame) => {
        const d = decode(frame);
        if (to === c.id(1) && d.ok && d.env.kind === 'page.answer' && (d.env.body as { call: number }).call === 7_000_001) answers.push(d.env.body as { ok: boolean; code?: string });
      });
      c.node(1)!.outbox.send(c.id(fenced), 'page.call', { call: 7_000_001, req: { op: 'store', addr: addressKey(base), version: 1_000, data: pageOf(66), gen: 1 } });
      await c.runAsync(300);
      expect(answers[0], 'a store from generation 1 after the hand-over').to.deep.include({ ok: false, code: 'E_STALE_GEN' });
      expect(c.diskOf(fenced).get(base)?.data[0], 'the durable copy untouched').to.equal(77);

      await c.runUntilAsync(() => underReplicated(c) === 0, 30_000, () => `nothing under-replicated (still ${underReplicated(c)})`);
      const stat = (await eventually(c, () => c.node(0)!.engine.call({ op: 'stat', addr: addressKey(base + BigInt(PAGE_BYTES)) }))) as PageStat;
      expect(stat.coreHolders, 'no dead core holder').to.not.include(c.id(home));
      expect(stat.coreHolders.every((h) => c.status(0)!.nodes.find((n) => n.id === h)?.alive), 'core holders alive').to.equal(true);
      expect(arenaEntryOf(c.node(0)!.database(), arena)?.replicas ?? [], 'the directory regained a replica').to.have.length(1);

      // A second failure later: one more core holder (not the new home) dies; nothing flushed is lost.
      const second = c.indexOf(stat.coreHolders.find((h) => h !== entry.home)!);
      c.crash(second);
      const rest = survivors.filter((i) => i !== second);
      await c.runUntilAsync(() => rest.every((i) => c.status(i)!.nodes.find((n) => n.id === c.id(second))?.alive === false), 30_000, 'the second failure to be seen');
      expect(await readBack(c, rest[0], base, 5)).to.deep.equal([77, 2, 3, 4, 5]);
      await c.stopAll();
    });
  });

  it('acts on no directory change a replica missed until the replica has it (or is replaced), so the replica that takes the arena over knows every range a flush used', async () => {
    await forSeedsAsync([311, 312], async (seed) => {
      const c = await formed(seed, 5);
      const home = 3;
      const e = (i: number) => c.node(i)!.engine;
      const base = await flushedPages(c, home, 2);
      const arena = Number(arenaOf(base));
      const replica = c.indexOf(arenaEntryOf(c.node(0)!.database(), arena)?.replicas?.[0] ?? 'none');
      const next = parseAddress(((await eventually(c, () => e(home).call({ op: 'reserve', pages: 1 }))) as { address: string }).address);
      // The replica's disk refuses the arena's directory pages (and nothing else): it misses the next change.
      const disk = c.diskOf(replica);
      const putMany = disk.putMany.bind(disk);
      let refusing = true;
      disk.putMany = (entries) => {
        if (refusing && entries.some((x) => arenaOf(x.addr) === BigInt(arena) && x.addr < arenaBase(BigInt(arena)) + DATA_OFFSET)) throw new MangroveError('E_STORAGE', 'the disk refuses directory pages (planted)');
        putMany(entries);
      };
      const missed = await c.settle(e(home).call({ op: 'alloc', addr: addressKey(next), pages: 1, copies: 2 })).then(
        () => 'ok',
        (err: MangroveError) => err.code,
      );
      expect(missed, 'an alloc whose change missed a live replica').to.equal('E_RECOVERING');
      // The home acts on the change only once a replica has it: here a new one, as the old one's disk keeps refusing.
      await eventually(c, () => e(1).call({ op: 'write', addr: addressKey(next), data: pageOf(9) }));
      await eventually(c, () => e(1).call({ op: 'flush', addr: addressKey(next), pages: 1 }));
      const now = arenaEntryOf(c.node(0)!.database(), arena)?.replicas ?? [];
      expect(now, 'the replica that missed the change is no longer named').to.not.include(c.id(replica));
      refusing = false;
      // The home dies: the arena's new home knows the range the flush used, and serves it.
      c.crash(home);
      await c.runUntilAsync(() => arenaEntryOf(c.node(0)!.database(), arena)?.home !== c.id(home), 30_000, 'the arena to be handed over');
      expect(arenaEntryOf(c.node(0)!.database(), arena)!.home).to.be.oneOf(now);
      const got = (await eventually(c, () => e(2).call({ op: 'read', addr: addressKey(next), pages: 1 }))) as ReadResult;
      expect(got.data[0], 'the flushed write, through the new home').to.equal(9);
      expect(await readBack(c, 0, base, 2)).to.deep.equal([1, 2]);
      await c.stopAll();
    });
  });

  it('collects a returning node\'s copies that nothing names any more', async () => {
    const c = await formed(311, 5);
    const base = await flushedPages(c, 0, 3);
    const stat = (await eventually(c, () => c.node(0)!.engine.call({ op: 'stat', addr: addressKey(base) }))) as PageStat;
    const holder = c.indexOf(stat.coreHolders.find((h) => h !== c.id(0))!);
    c.crash(holder);
    await c.runUntilAsync(() => underReplicated(c) === 0 && (c.status(0)!.replication.reReplicatedPages ?? 0) >= 3, 30_000, 'the ranges to get a new core holder');
    expect(c.diskOf(holder).has(base), 'the old holder\'s disk still has the copy').to.equal(true);
    c.start(holder);
    await c.runUntilAsync(() => !c.diskOf(holder).has(base), 60_000, 'the returned node to drop the copy nobody names');
    expect(c.status(holder)!.replication.collectedCopies).to.be.at.least(3);
    expect(await readBack(c, holder, base, 3)).to.deep.equal([1, 2, 3]);
    await c.stopAll();
  });

  it('a 3|2 partition with homes on both sides: no write completes on the minority after its lease, the majority takes its arenas over, healing leaves one home per arena and every flushed write', async () => {
    await forSeedsAsync([321, 322], async (seed) => {
      // Three copies of everything: with two nodes on the small side, a directory replica and a core holder are on the big one.
      const c = await formed(seed, 5, 3);
      const minorityHome = 4;
      const majorityHome = 1;
      const small = await flushedPages(c, minorityHome, 2, 3);
      const big = await flushedPages(c, majorityHome, 2, 3);
      const arena = Number(arenaOf(small));
      c.partition([[0, 1, 2], [3, 4]]);
      const cut = c.clock.now();
      // The minority keeps quorum for at most its lease; after it, no write completes there.
      await c.runUntilAsync(() => !c.status(3)!.quorum && !c.status(4)!.quorum, 30_000, 'the minority to lose quorum');
      const refused = await c.settle(c.node(4)!.engine.call({ op: 'write', addr: addressKey(small), data: pageOf(90) }), 30_000).then(
        () => 'ok',
        (err: MangroveError) => err.code,
      );
      expect(refused, 'a write on the minority after its lease').to.be.oneOf(['E_NO_QUORUM', 'E_RECOVERING']);
      // The majority takes the minority's arena over and writes its pages.
      await c.runUntilAsync(() => arenaEntryOf(c.node(0)!.database(), arena)?.home !== c.id(minorityHome), 30_000, 'the majority to take the arena over');
      expect(c.clock.now() - cut, 'the takeover waited past the minority\'s quorum timeout').to.be.greaterThan(8 * PERIOD);
      await eventually(c, () => c.node(2)!.engine.call({ op: 'write', addr: addressKey(small), data: pageOf(91) }));
      await eventually(c, () => c.node(2)!.engine.call({ op: 'flush', addr: addressKey(small), pages: 1 }));
      await eventually(c, () => c.node(0)!.engine.call({ op: 'write', addr: addressKey(big), data: pageOf(92) }));
      await eventually(c, () => c.node(0)!.engine.call({ op: 'flush', addr: addressKey(big), pages: 1 }));

      c.heal();
      c.runUntil(() => convergence(c).length === 0, 30_000, () => `the cluster to heal (${convergence(c).slice(0, 2).join('; ')})`);
      await c.runUntilAsync(() => [0, 1, 2, 3, 4].every((i) => c.node(i)!.engine.recoveryState().serving), 30_000, 'every node to serve again');
      // One home per arena: every node's table agrees.
      const tables = [0, 1, 2, 3, 4].map((i) => JSON.stringify(arenasOf(c.node(i)!.database()).map((a) => [a.arena, a.home, a.gen])));
      expect(new Set(tables).size, 'one arena table everywhere').to.equal(1);
      for (const i of [0, 3, 4]) {
        expect(await readBack(c, i, small, 2), `the minority's pages through node ${i}`).to.deep.equal([91, 2]);
        expect(await readBack(c, i, big, 2), `the majority's pages through node ${i}`).to.deep.equal([92, 2]);
      }
      // The minority's home lost its arena while it was cut off and lives on: it gets a new one, and reserves there again.
      await c.runUntilAsync(() => arenasOf(c.node(0)!.database()).some((a) => a.home === c.id(minorityHome) && a.arena !== 0), 30_000, 'a new arena for the former home');
      const again = await eventually(c, () => c.node(minorityHome)!.engine.call({ op: 'reserve', pages: 1 }));
      expect(Number(arenaOf(parseAddress((again as { address: string }).address))), 'reserved in a new arena of its own').to.not.equal(arena);
      await c.stopAll();
    });
  });
});
