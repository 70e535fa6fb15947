/**
 * The memory engine in the simulator (M7-M11, M13, M17): clients on several
 * nodes read, write and flush a few shared pages, and lock them, while
 * messages are dropped, duplicated, delayed and reordered and nodes pause
 * (cut off, then back). The whole history is kept and checked linearizable
 * per page (runtime/conformance/linearizability/search.ts, a Porcupine-style
 * search) under the durability rule (durable-register.ts): lost pulses and a
 * pause can make the cluster count a live node failed and rebuild without
 * it, and that node then drops every copy it held in RAM, a crash as far as
 * its unflushed writes go; the workload records it as one. A call refused
 * for a rebuild (E_RECOVERING) is made again, as the client library does.
 * No read may return a torn page. `DEBUG_ENGINE=1` prints every failed call.
 * A spec that breaks invalidation on purpose shows the checker catching it.
 * A failing seed is printed.
 */
import { expect } from 'chai';
import { decode } from '../../bus/codec.js';
import { ENVELOPE_VERSION } from '../../bus/envelope.js';
import { MangroveError } from '../../bus/errors.js';
import { simEndpoint } from '../../bus/transport/sim-network.js';
import type { PageStat, ReadResult } from '../../bus/messages/page.js';
import { addressKey, formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import { checkLinearizable } from '../../runtime/conformance/linearizability/search.js';
import { durableRegisterModel, type DurableOp } from '../../runtime/conformance/linearizability/durable-register.js';
import { SeededRandom } from '../../runtime/world/random.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';
import { arenaBase, arenaOf } from '../../actors/pages/page-space.js';
import { Directory } from '../../machines/memory/directory.js';
import { forSeedsAsync } from '../helpers/sim-checks.js';
import { codeOf, formedCluster, isWhole, pageOf, reserved, sharedPages } from '../helpers/page-workload.js';
import { eventually } from '../helpers/sim-calls.js';

interface Run {
  c: SimCluster;
  pages: bigint[];
  history: DurableOp[];
  torn: string[];
  failures: Record<string, number>;
  /** Calls refused for a rebuild and made again. */
  rebuildRefusals: number;
  /** Nodes that dropped every copy they held (counted failed while alive): crashes to the durability rule. */
  resets: number;
}

interface WorkloadOptions {
  clients: number;
  opsPerClient: number;
  faults: boolean;
  /** Each node's RAM cache budget in pages: a small one makes copies drop and page out (M12). */
  ramPages?: number;
  plant?: (c: SimCluster) => void;
}

async function workload(seed: number, opts: WorkloadOptions): Promise<Run> {
  const r = new SeededRandom(seed);
  const c = await formedCluster(seed, 3 + r.int(3), { ramPages: opts.ramPages });
  const pages = await sharedPages(c, 2);
  opts.plant?.(c);
  if (opts.faults) c.network.configure({ drop: 0.05, duplicate: 0.05, delayMs: [1, 25], reorder: true });
  const run: Run = { c, pages, history: [], torn: [], failures: {}, rebuildRefusals: 0, resets: 0 };
  let token = 0;
  let running = opts.clients;
  const sleep = (ms: number) => new Promise<void>((res) => c.clock.setTimeout(res, ms));
  const resetsSeen = [...Array(c.size).keys()].map((i) => c.node(i)!.engine.recoveryState().resets);
  /** A node that dropped its copies since the last look: one crash op per page, at the time it did. */
  const noteResets = () => {
    for (let i = 0; i < c.size; i++) {
      const { resets, lastResetAt } = c.node(i)!.engine.recoveryState();
      if (resets === resetsSeen[i] || lastResetAt === null) continue;
      resetsSeen[i] = resets;
      run.resets++;
      for (const p of pages) run.history.push({ client: `reset@n${i}`, input: { kind: 'crash', page: formatAddress(p) }, call: lastResetAt, ret: lastResetAt });
    }
  };

  const client = async (k: number) => {
    const cr = r.derive(`client-${k}`);
    const node = cr.int(c.size);
    const name = `c${k}@n${node}`;
    const engine = c.node(node)!.engine;
    for (let n = 0; n < opts.opsPerClient; n++) {
      await sleep(cr.int(30));
      const page = pages[cr.int(pages.length)];
      const addr = addressKey(page);
      const key = formatAddress(page);
      const roll = cr.next();
      let call = c.clock.now();
      // Refused for a rebuild: nothing happened; made again after a pause, as the client library does.
      const again = async <T>(work: () => Promise<T>): Promise<T> => {
        for (;;) {
          try {
            return await work();
          } catch (err) {
            if (!(err instanceof MangroveError) || err.code !== 'E_RECOVERING') throw err;
            run.rebuildRefusals++;
            if (process.env.DEBUG_ENGINE) console.log(name, c.clock.now(), 'again:', err.message);
            await sleep(20 + cr.int(30));
            call = c.clock.now();
          }
        }
      };
      try {
        if (roll < 0.45) {
          const got = (await again(() => engine.call({ op: 'read', addr, pages: 1 }))) as ReadResult;
          if (!isWhole(got.data)) run.torn.push(`${name} read a torn ${key}`);
          run.history.push({ client: name, input: { kind: 'read', page: key }, call, ret: c.clock.now(), output: new Uint8Array(got.data) });
        } else if (roll < 0.85) {
          const value = pageOf(++token + k / 100);
          // A write refused for a rebuild never took effect; one that fails otherwise may have.
          await again(async () => {
            const op: DurableOp = { client: name, input: { kind: 'write', page: key, value }, call };
            try {
              await engine.call({ op: 'write', addr, data: value });
              op.ret = c.clock.now();
              run.history.push(op);
            } catch (err) {
              if (!(err instanceof MangroveError) || err.code !== 'E_RECOVERING') run.history.push(op);
              throw err;
            }
          });
        } else if (roll < 0.92) {
          await again(() => engine.call({ op: 'flush', addr, pages: 1 }));
          run.history.push({ client: name, input: { kind: 'flush', page: key }, call, ret: c.clock.now() });
        } else if (roll < 0.96) {
          // The program no longer needs the page here: a reader's copy goes, an owner's clean one pages out.
          await again(() => engine.call({ op: 'unreference', addr, pages: 1 }));
        } else {
          // Locks exclude: one client at a time holds a page's exclusive lock.
          await again(() => engine.call({ op: 'lock', addr, mode: 'exclusive' }, name));
          await sleep(cr.int(20));
          await again(() => engine.call({ op: 'unlock', addr }, name));
        }
      } catch (err) {
        const code = err instanceof MangroveError ? err.code : String(err);
        run.failures[code] = (run.failures[code] ?? 0) + 1;
        if (process.env.DEBUG_ENGINE) console.log(name, c.clock.now(), String(err));
      }
    }
    running--;
  };

  const pauses = async () => {
    if (!opts.faults) return;
    while (running > 0) {
      await sleep(200 + r.int(300));
      // A pause well under failure detection (3 periods): the node is cut off, then comes back.
      // With pulses lost around it, the cluster may still count the node failed (see the header).
      const victim = r.int(c.size);
      const rest = [...Array(c.size).keys()].filter((i) => i !== victim).map((i) => c.id(i));
      c.network.partition([[c.id(victim)], rest]);
      await sleep(30 + r.int(90));
      c.network.heal();
    }
  };

  void pauses();
  for (let k = 0; k < opts.clients; k++) void client(k);
  await c.runUntilAsync(
    () => {
      noteResets();
      return running === 0;
    },
    600_000,
    () => `every client to finish (${running} still running)`,
    5,
  );
  c.network.heal();
  return run;
}

/**
 * No call failed but for a lock another client held, or, rarely, a write
 * refused because its node had lost quorum for a moment (M17: a refusal is
 * the right answer then; the write never happened, which the checker allows).
 * Refusals for a rebuild were waited out (the caller made the call again), so
 * they show as progress, which each test asserts.
 */
function expectOnlyRefusals(run: Run): void {
  const { E_LOCKED: _locked, E_NO_QUORUM: noQuorum = 0, ...others } = run.failures;
  expect(others, 'no call failed except on a held lock or without quorum').to.deep.equal({});
  expect(noQuorum, 'refusals for want of quorum are rare').to.be.at.most(run.history.length / 20);
}

function check(run: Run): ReturnType<typeof checkLinearizable> {
  return checkLinearizable(durableRegisterModel(new Uint8Array(PAGE_BYTES)), run.history, { sequentialClients: true });
}

describe('memory engine in the simulator', function () {
  this.timeout(300_000);

  it('histories of reads, writes and flushes on shared pages are linearizable per page, under loss, duplication, reordering and pauses', async () => {
    let ops = 0;
    await forSeedsAsync([11, 12, 13, 14, 15, 16, 17, 18], async (seed) => {
      const run = await workload(seed, { clients: 6, opsPerClient: 25, faults: true });
      expect(run.torn, 'no torn pages').to.deep.equal([]);
      if (process.env.DEBUG_ENGINE) console.log(`seed ${seed}: ${run.history.length} ops, ${run.resets} resets, ${run.rebuildRefusals} rebuild refusals, failures ${JSON.stringify(run.failures)}`);
      const result = check(run);
      expect(result.ok, result.ok ? '' : result.explanation).to.equal(true);
      const writes = run.history.filter((o) => o.input.kind === 'write' && o.ret !== undefined).length;
      const reads = run.history.filter((o) => o.input.kind === 'read').length;
      expect(writes, 'writes returned').to.be.greaterThan(10);
      expect(reads, 'reads returned').to.be.greaterThan(10);
      expectOnlyRefusals(run);
      ops += run.history.length;
      await run.c.stopAll();
    });
    expect(ops).to.be.greaterThan(500);
  });

  it('stays linearizable when copies are dropped and paged out under memory pressure (M12)', async () => {
    let reclaimed = 0;
    await forSeedsAsync([41, 42, 43, 44], async (seed) => {
      const run = await workload(seed, { clients: 6, opsPerClient: 25, faults: true, ramPages: 2 });
      expect(run.torn, 'no torn pages').to.deep.equal([]);
      const result = check(run);
      expect(result.ok, result.ok ? '' : result.explanation).to.equal(true);
      expectOnlyRefusals(run);
      const released = [...Array(run.c.size).keys()].reduce((n, i) => n + run.c.node(i)!.engine.holder.released, 0);
      expect(released, 'copies dropped or paged out to make room').to.be.greaterThan(0);
      reclaimed += [...Array(run.c.size).keys()].reduce((n, i) => n + run.c.node(i)!.engine.scheduler.statsOf('peer.reclaim').dispatched, 0);
      await run.c.stopAll();
    });
    expect(reclaimed, 'owners that keep no disk copy handed pages back to their homes').to.be.greaterThan(0);
  });

  it('the checker catches a planted bug: readers acknowledge invalidations but keep their copies', async () => {
    const run = await workload(21, {
      clients: 6,
      opsPerClient: 25,
      faults: false,
      plant: (c) => {
        for (let i = 0; i < c.size; i++) {
          const holder = c.node(i)!.engine.holder as unknown as { onInvalidate: (b: { addr: Uint8Array; round: number }, addr: bigint, from: string) => void; deps: { send: (to: string, kind: string, body: unknown) => void } };
          holder.onInvalidate = (b, _addr, from) => holder.deps.send(from, 'page.invalidated', { addr: b.addr, round: b.round });
        }
      },
    });
    const result = check(run);
    expect(result.ok, 'the planted bug shows as a non-linearizable page history').to.equal(false);
    if (!result.ok) expect(result.explanation).to.match(/read/);
    await run.c.stopAll();
  });

  it('replaces a failed core holder before the next flush, copying every flushed page to its successor (M11)', async () => {
    const c = await formedCluster(51, 5);
    const e = (i: number) => c.node(i)!.engine;
    const base = await reserved(c, 0, 3);
    await c.settle(e(0).call({ op: 'alloc', addr: addressKey(base), pages: 3, copies: 2 }));
    const before = (await c.settle(e(0).call({ op: 'stat', addr: addressKey(base) }))) as PageStat;
    const lost = c.indexOf(before.coreHolders[1]);
    // The writer holds no core copy: neither the home nor the holder about to fail.
    const w = [1, 2, 3, 4].find((i) => i !== lost)!;
    for (let i = 0; i < 3; i++) await c.settle(e(w).call({ op: 'write', addr: addressKey(base + BigInt(i * PAGE_BYTES)), data: pageOf(i + 1) }));
    await c.settle(e(w).call({ op: 'flush', addr: addressKey(base), pages: 3 }));
    c.crash(lost);
    await c.runUntilAsync(() => [0, w].every((i) => c.status(i)!.nodes.find((n) => n.id === c.id(lost))?.alive === false), 30_000, `the home and the writer to count node ${lost} failed`);

    // The owner writes and flushes page 0 again (made again while the cluster rebuilds after the
    // failure): the home appoints a live holder first, if re-replication has not already.
    await eventually(c, () => e(w).call({ op: 'write', addr: addressKey(base), data: pageOf(9) }));
    const flushed = (await eventually(c, () => e(w).call({ op: 'flush', addr: addressKey(base), pages: 1 }))) as { holders: string[][] };
    const holders = flushed.holders[0];
    expect(holders[0]).to.equal(c.id(0));
    expect(holders[1]).to.not.equal(c.id(lost));
    expect(c.status(0)!.nodes.find((n) => n.id === holders[1])?.alive, 'the new holder is alive').to.equal(true);
    const after = (await eventually(c, () => e(w).call({ op: 'stat', addr: addressKey(base + 2n * BigInt(PAGE_BYTES)) }))) as PageStat;
    expect(after.coreHolders, 'the whole range names the new holder').to.deep.equal(holders);
    // It holds every flushed page of the range on disk, the rewritten one at its new version.
    const disk = c.diskOf(c.indexOf(holders[1]));
    for (let i = 0; i < 3; i++) {
      const stored = disk.get(base + BigInt(i * PAGE_BYTES));
      expect(stored?.data, `page ${i} on the successor's disk`).to.deep.equal(i === 0 ? pageOf(9) : pageOf(i + 1));
    }
    await c.stopAll();
  });

  it('keeps committed transaction-log records across a crash until they are ended, and loses open ones (M7)', async () => {
    const c = await formedCluster(61, 3);
    const e = () => c.node(1)!.engine;
    const rec = (text: string) => new TextEncoder().encode(text);
    const { txn } = (await c.settle(e().call({ op: 'txn_begin' }))) as { txn: number };
    await c.settle(e().call({ op: 'txn_log', txn, record: rec('rename a b') }));
    await c.settle(e().call({ op: 'txn_log', txn, record: rec('update dir') }));
    expect(await c.settle(e().call({ op: 'txn_commit', txn }))).to.deep.include({ txn, state: 'committed', records: 2 });
    const open = ((await c.settle(e().call({ op: 'txn_begin' }))) as { txn: number }).txn;
    await c.settle(e().call({ op: 'txn_log', txn: open, record: rec('never committed') }));

    c.crash(1);
    c.start(1);
    // A restarted node serves once a rebuild has included it (M14).
    await c.runUntilAsync(() => c.status(1)!.quorum && c.node(1)!.engine.recoveryState().serving, 30_000, 'the restarted node to regain quorum and serve');
    const { records } = (await c.settle(e().call({ op: 'txn_read' }))) as { records: { txn: number; seq: number; data: Uint8Array }[] };
    expect(records.map((r) => [r.txn, r.seq, new TextDecoder().decode(r.data)])).to.deep.equal([
      [txn, 1, 'rename a b'],
      [txn, 2, 'update dir'],
    ]);
    const gone = await c.settle(e().call({ op: 'txn_read', txn: open })).catch((err: unknown) => err);
    expect((gone as MangroveError).code).to.equal('E_NOT_FOUND');
    await c.settle(e().call({ op: 'txn_end', txn }));
    expect(((await c.settle(e().call({ op: 'txn_read' }))) as { records: unknown[] }).records).to.deep.equal([]);
    const next = ((await c.settle(e().call({ op: 'txn_begin' }))) as { txn: number }).txn;
    expect(next, 'ids are never reused').to.be.greaterThan(open);
    await c.stopAll();
  });

  it('tells local waiters when a page changes: a copy arrives, is written, is invalidated (M10)', async () => {
    const c = await formedCluster(71, 3);
    const [page] = await sharedPages(c, 1);
    const addr = addressKey(page);
    const seen: string[] = [];
    const sub = c.node(2)!.engine.changes$.subscribe((ch) => ch.addr === page && seen.push(ch.why));
    await c.settle(c.node(2)!.engine.call({ op: 'read', addr, pages: 1 }));
    await c.settle(c.node(2)!.engine.call({ op: 'write', addr, data: pageOf(1) }));
    await c.settle(c.node(1)!.engine.call({ op: 'write', addr, data: pageOf(2) }));
    await c.runAsync(200);
    sub.unsubscribe();
    expect(seen).to.include.members(['arrived', 'written', 'invalidated']);
    expect(seen.indexOf('written')).to.be.greaterThan(seen.indexOf('arrived'));
    expect(seen.lastIndexOf('invalidated')).to.be.greaterThan(seen.indexOf('written'));
    await c.stopAll();
  });

  it('refuses engine requests sent to a node that is not the page\'s home, and drops malformed ones, changing nothing', async () => {
    const c = await formedCluster(81, 3);
    const [page] = await sharedPages(c, 1);
    const home = c.indexOf(((await c.settle(c.node(2)!.engine.call({ op: 'stat', addr: addressKey(page) }))) as PageStat).home);
    const other = [0, 1, 2].find((i) => i !== home)!;
    // What `other` answers the home: read off the network.
    const answers: { kind: string; body: Record<string, unknown> }[] = [];
    c.network.onDeliver((from, to, frame) => {
      const d = decode(frame);
      if (from === c.id(other) && to === c.id(home) && d.ok && d.env.kind.startsWith('page.')) answers.push({ kind: d.env.kind, body: d.env.body as Record<string, unknown> });
    });
    const diskBefore = c.diskOf(other).count();
    const rejectedBefore = c.status(other)!.rejected;

    // Misrouted (the home sends to a node that is not the page's home): refused as a table that is behind (the sender catches up and retries), nothing written.
    const outbox = c.node(home)!.outbox;
    outbox.send(c.id(other), 'page.request', { addr: addressKey(page), rr: 0, mode: 'write', req: 1 });
    outbox.send(c.id(other), 'page.call', { call: 1, req: { op: 'alloc', addr: addressKey(page + 0x10_0000n), pages: 1, copies: 2, volatile: false } });
    // Malformed: the codec drops and counts them before the engine sees them.
    const rogue = c.network.attach('rogue');
    rogue.setPeer(c.id(other), simEndpoint(c.id(other)));
    const raw = (seq: number, kind: string, body: unknown) => rogue.send({ v: ENVELOPE_VERSION, kind, from: 'rogue', to: c.id(other), epoch: 1, seq, body } as never);
    raw(1, 'page.request', { addr: new Uint8Array(3), mode: 'write', req: 2 });
    raw(2, 'page.data', { addr: addressKey(page), req: 1, round: 1, mode: 'read', data: new Uint8Array(10), version: 1, dirty: false });
    await c.runAsync(500);

    expect(answers.find((x) => x.kind === 'page.refused')?.body.code).to.equal('E_RECOVERING');
    expect(answers.filter((x) => x.kind === 'page.answer').map((x) => [x.body.ok, x.body.code])).to.deep.include.members([[false, 'E_RECOVERING']]);
    expect(c.status(other)!.rejected - rejectedBefore, 'malformed bodies dropped and counted').to.equal(2);
    expect(c.diskOf(other).count(), 'no directory page written for an arena the node does not own').to.equal(diskBefore);
    // The page itself is untouched and still served.
    const got = (await c.settle(c.node(other)!.engine.call({ op: 'read', addr: addressKey(page), pages: 1 }))) as ReadResult;
    expect(got.data).to.deep.equal(new Uint8Array(PAGE_BYTES));
    await c.stopAll();
  });

  it('copies every directory change to another node\'s disk before answering (M8)', async () => {
    const c = await formedCluster(91, 3);
    const e = c.node(0)!.engine;
    const base = await reserved(c, 0, 8);
    await c.settle(e.call({ op: 'alloc', addr: addressKey(base + 2n * BigInt(PAGE_BYTES)), pages: 3, copies: 2 }));
    const root = arenaBase(arenaOf(base));
    const mine = c.diskOf(0).get(root)!;
    // The replicas are chosen afresh at each change (by free space): the newest copy is the current one.
    const replicas = [1, 2].filter((i) => c.diskOf(i).get(root)?.version === mine.version);
    expect(replicas, 'a current replica of the directory root').to.have.length.at.least(1);
    const copy = c.diskOf(replicas[0]).get(root)!;
    expect(copy.data).to.deep.equal(mine.data);
    // The replica alone is enough to read the directory back.
    const fromReplica = Directory.open(
      { read: (a) => c.diskOf(replicas[0]).get(a)?.data, write: () => {}, allocate: () => 0n, release: () => {} },
      root,
    );
    expect([...fromReplica.entries()].map((x) => [x.pages, x.state])).to.deep.equal([
      [2, 'reserved'],
      [3, 'materialized'],
      [3, 'reserved'],
    ]);
    await c.stopAll();
  });

  it('unallocates (copies invalidated, disks freed, addresses kept), allocates again zero filled, and deallocates for good (M7)', async () => {
    const c = await formedCluster(101, 3);
    const e = (i: number) => c.node(i)!.engine;
    const [page] = await sharedPages(c, 1);
    const addr = addressKey(page);
    await c.settle(e(2).call({ op: 'write', addr, data: pageOf(5) }));
    await c.settle(e(2).call({ op: 'flush', addr, pages: 1 }));
    await c.settle(e(1).call({ op: 'read', addr, pages: 1 }));
    const { coreHolders } = (await c.settle(e(2).call({ op: 'stat', addr }))) as PageStat;
    const code = (p: Promise<unknown>) => codeOf(c, p);

    await c.settle(e(2).call({ op: 'unallocate', addr, pages: 1 }));
    for (const h of coreHolders) expect(c.diskOf(c.indexOf(h)).has(page), `${h} freed the page on disk`).to.equal(false);
    for (const i of [0, 1, 2]) expect(await code(e(i).call({ op: 'read', addr, pages: 1 })), `node ${i} holds no copy`).to.equal('E_NOT_MATERIALIZED');
    const stat = (await c.settle(e(0).call({ op: 'stat', addr }))) as PageStat;
    expect(stat.state, 'the address stays reserved').to.equal('reserved');

    await c.settle(e(1).call({ op: 'alloc', addr, pages: 1, copies: 2 }));
    const fresh = (await c.settle(e(2).call({ op: 'read', addr, pages: 1 }))) as ReadResult;
    expect(fresh.data, 'allocated again: zero filled').to.deep.equal(new Uint8Array(PAGE_BYTES));

    await c.settle(e(1).call({ op: 'dealloc', addr, pages: 1 }));
    expect(await code(e(2).call({ op: 'read', addr, pages: 1 }))).to.equal('E_NOT_RESERVED');
    expect(await code(e(2).call({ op: 'alloc', addr, pages: 1 }))).to.equal('E_NOT_RESERVED');
    await c.stopAll();
  });

  it('refuses bad calls with their codes and changes nothing', async () => {
    const c = await formedCluster(111, 3);
    const e = c.node(1)!.engine;
    const base = await reserved(c, 1, 4);
    const at = (i: number) => addressKey(base + BigInt(i * PAGE_BYTES));
    await c.settle(e.call({ op: 'alloc', addr: at(0), pages: 2, copies: 2 }));
    const disks = () => [0, 1, 2].map((i) => c.diskOf(i).count());
    const before = disks();
    const code = (op: Parameters<typeof e.call>[0], client?: string) => codeOf(c, e.call(op, client));

    expect(await code({ op: 'write', addr: at(2), data: pageOf(1) }), 'a reserved page without storage').to.equal('E_NOT_MATERIALIZED');
    expect(await code({ op: 'read', addr: addressKey(base + 100n * BigInt(PAGE_BYTES)), pages: 1 }), 'outside any reservation').to.equal('E_NOT_RESERVED');
    expect(await code({ op: 'read', addr: addressKey(0x7_0000_0000_0000_0000n), pages: 1 }), 'an arena no node owns').to.equal('E_NOT_RESERVED');
    expect(await code({ op: 'alloc', addr: at(2), pages: 5 }), 'past the end of the reservation').to.equal('E_NOT_RESERVED');
    expect(await code({ op: 'alloc', addr: at(1), pages: 1 }), 'allocated twice').to.equal('E_EXISTS');
    expect(await code({ op: 'alloc', addr: at(2), pages: 1, copies: 5 }), 'more copies than nodes').to.equal('E_TOO_FEW_NODES');
    expect(await code({ op: 'lock', addr: at(0), mode: 'exclusive' }, 'a')).to.equal('ok');
    expect(await code({ op: 'lock', addr: at(0), mode: 'shared' }, 'b'), 'held by another').to.equal('E_LOCKED');
    expect(await code({ op: 'unlock', addr: at(0) }, 'b'), 'not held by this client').to.equal('E_BAD_ARGUMENT');
    expect(await code({ op: 'txn_log', txn: 999, record: new Uint8Array(1) }), 'no such transaction').to.equal('E_NOT_FOUND');
    expect(await code({ op: 'super_root' }), 'no super-root yet').to.equal('E_NOT_FOUND');
    expect(await code({ op: 'nonsense' } as never), 'no such op-code').to.equal('E_NOT_FOUND');

    expect(disks(), 'nothing written to any disk').to.deep.equal(before);
    const stat = (await c.settle(e.call({ op: 'stat', addr: at(2) }))) as PageStat;
    expect([stat.state, stat.reservation.pages]).to.deep.equal(['reserved', 2]);
    await c.stopAll();
  });

  it('releases the locks of a client that went silent past its lease, and a waiting locker on another node gets them; one that renews keeps its own (M14)', async () => {
    const c = await formedCluster(47, 4);
    const [p, q] = await sharedPages(c, 1);
    const [P, Q] = [addressKey(p), addressKey(q)];
    const e = (i: number) => c.node(i)!.engine;
    const LEASE = 2000;
    await c.settle(e(1).call({ op: 'lock', addr: P, mode: 'exclusive', leaseMs: LEASE }, 'gone'));
    await c.settle(e(1).call({ op: 'lock', addr: Q, mode: 'exclusive', leaseMs: LEASE }, 'stays'));
    const lockedAt = c.clock.now();
    // 'stays' renews a third of its lease apart; 'gone' says nothing more.
    let renewing = true;
    const renew = (): void => {
      if (!renewing) return;
      void e(1).call({ op: 'renew' }, 'stays');
      c.clock.setTimeout(renew, LEASE / 3);
    };
    renew();
    // A locker on node 2 waits for 'gone''s page; it gets it once the lease has run out, not before.
    const waited = c.settle(e(2).call({ op: 'lock', addr: P, mode: 'exclusive', wait: true }, 'next'));
    await waited;
    expect(c.clock.now() - lockedAt, 'granted after the lease').to.be.at.least(LEASE);
    const renewed = (await c.settle(e(1).call({ op: 'renew' }, 'gone'))) as { held: boolean };
    expect(renewed.held, 'the node says the lease ran out').to.equal(false);
    // 'stays' renewed through all of it: its page is still locked for anyone else.
    await c.runAsync(3 * LEASE);
    expect(await codeOf(c, e(3).call({ op: 'lock', addr: Q, mode: 'shared' }, 'other')), 'a renewed lock stays').to.equal('E_LOCKED');
    renewing = false;
    await c.runAsync(2 * LEASE);
    expect(await codeOf(c, e(3).call({ op: 'lock', addr: Q, mode: 'shared' }, 'other')), 'released once it stopped renewing').to.equal('ok');
    // A lock without a lease (the CLI's) outlives any silence.
    await c.settle(e(2).call({ op: 'unlock', addr: P }, 'next'));
    await c.settle(e(2).call({ op: 'lock', addr: P, mode: 'exclusive' }, 'cli'));
    await c.runAsync(5 * LEASE);
    expect(await codeOf(c, e(3).call({ op: 'lock', addr: P, mode: 'exclusive' }, 'other')), 'an unleased lock stays').to.equal('E_LOCKED');
    await c.stopAll();
  });

  it('refuses writes without quorum (E_NO_QUORUM), and cut off from its group reads no copy it holds (it may be stale)', async () => {
    const c = await formedCluster(31, 5);
    const [page] = await sharedPages(c, 1);
    const addr = addressKey(page);
    const data = pageOf(7);
    // Flushed: node 3, its owner, is about to be counted failed, and an unflushed write would go with it.
    await c.settle(c.node(3)!.engine.call({ op: 'write', addr, data }));
    await c.settle(c.node(3)!.engine.call({ op: 'flush', addr, pages: 1 }));
    await c.settle(c.node(4)!.engine.call({ op: 'read', addr, pages: 1 }));
    // Nodes 3 and 4 hold no anchor: cut off, they lose quorum.
    c.network.partition([[c.id(0), c.id(1), c.id(2)], [c.id(3), c.id(4)]]);
    await c.runUntilAsync(() => c.status(4)!.quorum === false, 30_000, 'node 4, cut off from every anchor, to lose quorum');
    const refused = await c.settle(c.node(4)!.engine.call({ op: 'write', addr, data: pageOf(8) })).catch((e: unknown) => e);
    expect((refused as MangroveError).code, 'a write without quorum').to.be.oneOf(['E_NO_QUORUM']);
    // Its read lease ran out when its monitor (on the other side) fell silent: the majority may
    // have rebuilt without it and written since, so it reads nothing it holds until a round includes it.
    expect(await codeOf(c, c.node(4)!.engine.call({ op: 'read', addr, pages: 1 })), 'a read of a held copy').to.be.oneOf(['E_RECOVERING', 'E_NO_QUORUM']);
    // Healed, it is brought back and reads the page again.
    c.network.heal();
    await c.runUntilAsync(() => c.node(4)!.engine.recoveryState().serving, 30_000, 'node 4 to serve again');
    const back = (await c.settle(c.node(4)!.engine.call({ op: 'read', addr, pages: 1 }))) as ReadResult;
    expect(back.data).to.deep.equal(data);
    await c.stopAll();
  });
});
