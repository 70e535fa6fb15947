/**
 * Replay conformance (M27) over simulated runs: every node, rebuilt from its
 * start record and fed the envelopes and timers the trace shows it took,
 * sends what the trace shows it sent, across loss, duplication, crashes and
 * restarts, partitions, groups, and client requests (status, node-database
 * updates whose replies come late). Planted faults are caught and named.
 * The CLI part runs the built command (dist/; `npm run build` first).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENVELOPE_VERSION } from '../../bus/envelope.js';
import { simEndpoint } from '../../bus/transport/sim-network.js';
import { streamEntries, TraceWriter } from '../../bus/trace/trace.js';
import { isEnvelopeRecord, type TraceEntry, type TraceRecord } from '../../bus/transport/transport.js';
import { checkEntries } from '../../runtime/conformance/check.js';
import { replayTrace, type ReplayResult } from '../../runtime/conformance/replay/replay.js';
import { addressKey, parseAddress } from '../../machines/memory/address.js';
import { mangrove } from '../helpers/run-cli.js';
import { tracedSim } from '../helpers/traced-sim.js';
import { eventually } from '../helpers/sim-calls.js';

const PERIOD = 100;

/** A run with loss, duplication, a crash and restart, a partition, and a client's requests. */
async function simulate(seed: number, nodes: number, groups = 1): Promise<TraceEntry[]> {
  const run = await tracedSim({ seed, nodes, groups, periodMs: PERIOD, faults: { drop: 0.03, duplicate: 0.02, delayMs: [1, 25] } }, async (c) => {
    c.run(3000);
    const client = c.network.attach('client-1');
    let seq = 0;
    const ask = (node: number, kind: string, body: unknown): void => {
      client.setPeer(c.id(node), simEndpoint(c.id(node)));
      client.send({ v: ENVELOPE_VERSION, kind, from: 'client-1', to: c.id(node), epoch: 1, seq: ++seq, body });
    };
    ask(1, 'client.status', {});
    const crashed = nodes - 1;
    c.crash(crashed);
    c.run(1500);
    // Removing a node is a node-database update coordinated by an anchor: a reply that waits on a promise.
    ask(0, 'client.ndb_update', { change: { op: 'delete', id: c.id(crashed) } });
    c.run(1500);
    // The reply waits on a promise, and virtual time does not yield to the event loop: let it settle.
    await new Promise((resolve) => setImmediate(resolve));
    c.partition([[0, 2]]);
    c.run(1500);
    c.heal();
    c.crash(1);
    c.run(500);
    c.start(1);
    c.run(2500);
    ask(2, 'client.status', {});
    // Its machines: a simulated node keeps no watch of them, so it answers E_UNSUPPORTED.
    ask(2, 'client.machines', { after: 3 });
    c.run(500);
  });
  return run.entries;
}

const isSend = (e: TraceEntry, kind: string): e is TraceRecord => e.dir === 'send' && e.env.kind === kind;
/** The answer to the client's node-database update (its second request). */
const isUpdateReply = (e: TraceEntry): e is TraceRecord => isSend(e, 'reply.ok') && e.env.re === 2;

describe('replay conformance', function () {
  this.timeout(60_000);
  let flat: TraceEntry[];

  before(async () => {
    flat = await simulate(11, 6);
  });

  it('replays a simulated run clean: every node, every incarnation, every input', async () => {
    const r = await replayTrace(flat);
    expect(r.violations, JSON.stringify(r.violations.slice(0, 2).map((v) => v.detail))).to.deep.equal([]);
    // Six nodes; node 1 started twice.
    expect(r.stats).to.include({ nodes: 6, incarnations: 7 });
    expect(r.stats.unreplayable).to.deep.equal([]);
    // The client's update was coordinated and answered, and replay matched it.
    expect(flat.filter(isUpdateReply).map((e) => Object.keys(e.env.body as object))).to.deep.equal([['result']]);
  });

  for (const [seed, nodes, groups] of [
    [1, 5, 1],
    [2, 9, 3],
    [3, 12, 2],
    [4, 7, 1],
  ] as const) {
    it(`replays clean: seed ${seed}, ${nodes} nodes in ${groups} group(s)`, async () => {
      const r = await replayTrace(await simulate(seed, nodes, groups));
      expect(r.violations, `seed ${seed}: ${JSON.stringify(r.violations.slice(0, 2).map((v) => v.detail))}`).to.deep.equal([]);
      expect(r.stats.nodes, `seed ${seed}`).to.equal(nodes);
    });
  }

  it('replays the membership protocols clean while the memory engine carries traffic, which replay leaves to the linearizability checker', async () => {
    const { entries } = await tracedSim({ seed: 21, nodes: 4, periodMs: PERIOD, engine: { retryMs: 40 }, faults: { drop: 0.02, delayMs: [1, 20] } }, async (c) => {
      c.run(3000);
      const e = (i: number) => c.node(i)!.engine;
      // Calls are made again if refused for a rebuild (a lost pulse or two can make a node ask for one).
      const { address } = (await eventually(c, () => e(0).call({ op: 'reserve', pages: 4 }))) as { address: string };
      const addr = addressKey(parseAddress(address));
      await eventually(c, () => e(1).call({ op: 'alloc', addr, pages: 4, copies: 2 }));
      for (let i = 0; i < 6; i++) {
        await eventually(c, () => e(i % 4).call({ op: 'write', addr, data: new Uint8Array(4 * 4096).fill(i) }));
        await eventually(c, () => e((i + 2) % 4).call({ op: 'read', addr, pages: 4 }));
      }
      await eventually(c, () => e(3).call({ op: 'flush', addr, pages: 4 }));
      await c.runAsync(1000);
    });
    expect(entries.filter((x) => x.dir === 'send' && x.env.kind.startsWith('page.')).length, 'engine traffic traced').to.be.greaterThan(50);
    const r = await replayTrace(entries);
    expect(r.violations.map((v) => v.detail)).to.deep.equal([]);
    expect(r.stats.nodes).to.equal(4);
  });

  it('a cluster formed in advance writes its shared node database once, and replays clean', async () => {
    const { entries } = await tracedSim({ seed: 8, nodes: 60, groups: 3, preformed: true, periodMs: PERIOD }, (c) => {
      c.run(1500);
      c.crash(0);
      c.crash(9);
      c.run(800);
      c.start(9);
      c.start(0);
      c.run(1200);
    });
    const starts = entries.filter((e) => e.dir === 'start');
    expect(starts.filter((e) => e.start.db !== undefined).length, 'whole databases').to.be.at.most(3);
    expect(starts.filter((e) => e.start.dbOf !== undefined).length, 'references').to.be.at.least(57);
    const r = await replayTrace(entries);
    expect(r.violations.map((v) => v.detail)).to.deep.equal([]);
    expect(r.stats).to.include({ nodes: 60, incarnations: 62 });
  });

  describe('planted faults', () => {
    const plant = (at: number, change: (e: TraceEntry) => TraceEntry | undefined): TraceEntry[] =>
      flat.flatMap((e, i) => (i === at ? [change(e)].filter((x): x is TraceEntry => x !== undefined) : [e]));
    const late = (p: (e: TraceEntry) => boolean): number => flat.findIndex((e, i) => i > flat.length / 2 && p(e));
    const rules = (r: ReplayResult): string[] => r.violations.map((v) => v.rule);

    it('a bitmap bit flipped in a sent monitor pulse', async () => {
      const at = late((e) => isSend(e, 'hb.monitor_pulse'));
      const r = await replayTrace(
        plant(at, (e) => {
          const rec = e as TraceRecord;
          const body = structuredClone(rec.env.body) as { bitmap: Uint8Array };
          body.bitmap[0] ^= 1;
          return { ...rec, env: { ...rec.env, body } };
        }),
      );
      expect(rules(r)).to.deep.equal(['replay.sends']);
      expect(r.violations[0].node).to.equal(flat[at].node);
      expect(r.violations[0].detail).to.match(/body\.bitmap differs/);
    });

    it('a sent pulse deleted', async () => {
      const at = late((e) => isSend(e, 'hb.member_pulse'));
      const r = await replayTrace(plant(at, () => undefined));
      expect(rules(r)).to.deep.equal(['replay.sends']);
      expect(r.violations[0].detail).to.match(/replay also sends hb\.member_pulse/);
    });

    it('a node-database version reused in a commit', async () => {
      const at = flat.findIndex((e) => isSend(e, 'ndb.commit'));
      expect(at, 'the run commits a node-database update').to.be.greaterThan(0);
      const r = await replayTrace(
        plant(at, (e) => {
          const rec = e as TraceRecord;
          const body = rec.env.body as { version: number };
          return { ...rec, env: { ...rec.env, body: { ...body, version: body.version - 1 } } };
        }),
      );
      expect(rules(r)).to.deep.equal(['replay.sends']);
      expect(r.violations[0].detail).to.match(/body\.version is \d+, not \d+/);
    });

    it('a timer firing the node never set', async () => {
      const at = late((e) => e.dir === 'timer');
      const r = await replayTrace(plant(at, (e) => ({ ...e, timer: 1e9 }) as TraceEntry));
      expect(rules(r)).to.deep.equal(['replay.timer']);
    });

    it('a reply the node could not have made', async () => {
      const at = flat.findIndex(isUpdateReply);
      const r = await replayTrace(
        plant(at, (e) => {
          const rec = e as TraceRecord;
          return { ...rec, env: { ...rec.env, body: { result: { version: 99 } } } };
        }),
      );
      expect(rules(r)).to.deep.equal(['replay.reply']);
    });

    it("not a node's answer to client.machines, which comes from its host's watch, not its protocols", async () => {
      const at = flat.findIndex((e) => isSend(e, 'reply.err') && (e.env.body as { code: string }).code === 'E_UNSUPPORTED');
      expect(at, 'the run asks a node its machines').to.be.greaterThan(0);
      // As a node process with an HTTP port answers it; the replayed node has no watch and answers E_UNSUPPORTED.
      const r = await replayTrace(
        plant(at, (e) => {
          const rec = e as TraceRecord;
          return { ...rec, env: { ...rec.env, kind: 'reply.ok', body: { result: { node: rec.node, t: rec.t, actors: [], records: [], last: 0, missed: 0 } } } };
        }),
      );
      expect(r.violations.map((v) => v.detail)).to.deep.equal([]);
    });

    it('a start record with the wrong settings', async () => {
      const at = flat.findIndex((e) => e.dir === 'start');
      const r = await replayTrace(plant(at, (e) => ({ ...e, start: { seed: 1 } }) as TraceEntry));
      expect(rules(r)).to.deep.equal(['replay.start']);
    });

    it('a node without a start record is reported unreplayable, not passed', async () => {
      const first = flat.find((e) => e.dir === 'start')!;
      const r = await checkEntries([flat.filter((e) => !(e.dir === 'start' && e.node === first.node))], { protocols: ['replay'] });
      expect(r.replay!.unreplayable).to.deep.equal([first.node]);
      expect(r.skipped.map((s) => s.rule)).to.deep.equal(['replay']);
    });
  });

  describe('trace files and the CLI', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'mangrove-replay-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('start and timer records survive a trace file, and `trace show` passes over them', async () => {
      const path = join(dir, 'run.trace');
      const w = new TraceWriter(path);
      for (const e of flat) {
        if (isEnvelopeRecord(e)) w.record(e);
        else w.note(e);
      }
      w.close();
      const back = [...streamEntries(path)];
      expect(back.length).to.equal(flat.length);
      expect(back.filter((e) => e.dir === 'timer').length).to.equal(flat.filter((e) => e.dir === 'timer').length);
      expect((await replayTrace(back)).violations).to.deep.equal([]);
      const shown = await mangrove(['trace', 'show', path, '--json', '--limit', '5']);
      expect(shown.code, shown.stderr).to.equal(0);
      for (const line of shown.stdout.trim().split('\n')) expect(JSON.parse(line).dir).to.be.oneOf(['send', 'recv']);
    });

    it('`mangrove sim --trace` records a run that `trace check` replays clean', async () => {
      const path = join(dir, 'sim.trace');
      const sim = await mangrove(['sim', '--nodes', '8', '--groups', '2', '--duration', '20', '--crash', '1', '--loss', '0.02', '--seed', '5', '--trace', path, '--json'], 60_000);
      expect(sim.code, sim.stderr).to.equal(0);
      const run = await mangrove(['trace', 'check', path, '--json'], 60_000);
      expect(run.code, run.stderr).to.equal(0);
      const r = JSON.parse(run.stdout) as { violations: unknown[]; replay: { nodes: number } };
      expect(r.violations).to.deep.equal([]);
      expect(r.replay.nodes).to.equal(8);
    });

    it('a missing trace exits 2, not 1 (which means a rule is broken)', async () => {
      const run = await mangrove(['trace', 'check', join(dir, 'nope.trace')]);
      expect(run.code).to.equal(2);
      expect(run.stderr).to.match(/E_NOT_FOUND: no trace file/);
    });
  });
});
