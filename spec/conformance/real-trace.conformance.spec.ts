/**
 * Conformance of real processes (M27): traces recorded by five node
 * processes over ZeroMQ, through a kill -9, a 3|2 partition and its healing,
 * check clean, by the rules and by replaying every node; the same traces
 * with a planted fault do not. The CLI part runs the built command (dist/).
 */
import { expect } from 'chai';
import { readTrace, streamEntries } from '../../bus/trace/trace.js';
import type { TraceEntry, TraceRecord } from '../../bus/transport/transport.js';
import { checkEntries, checkRecords } from '../../runtime/conformance/check.js';
import { mangrove } from '../helpers/run-cli.js';
import { hasBit } from '../../machines/membership/bitmap.js';
import { ProcessCluster } from '../helpers/process-cluster.js';

const PERIOD = 200;
const HIDDEN_PERIODS = 16;

describe('conformance of traces from real processes', function () {
  this.timeout(120_000);
  let cluster: ProcessCluster;
  let records: TraceRecord[] = [];
  let sources: TraceEntry[][] = [];

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 5, anchors: 3, periodMs: PERIOD, trace: true });
    expect(await cluster.waitFor(() => cluster.converged(), 30_000), 'formed').to.be.at.least(0);
    // A quiet stretch first, so one monitor serves long enough to plant a fault in its pulses.
    await new Promise((r) => setTimeout(r, 25 * PERIOD));
    const ids = (await cluster.statuses()).map((s) => s!.self);
    await cluster.kill(4);
    cluster.spawn(4);
    expect(await cluster.waitFor(() => cluster.converged(), 30_000), 'rejoined').to.be.at.least(0);
    const [left, right] = [[0, 3], [1, 2, 4]];
    for (const i of left) await cluster.request(i, 'client.fault', { drop: right.map((j) => ids[j]) });
    for (const i of right) await cluster.request(i, 'client.fault', { drop: left.map((j) => ids[j]) });
    await new Promise((r) => setTimeout(r, 12 * PERIOD));
    for (let i = 0; i < 5; i++) await cluster.request(i, 'client.fault', { heal: true });
    expect(await cluster.waitFor(() => cluster.converged(), 30_000), 'healed').to.be.at.least(0);
    await cluster.stopNodes();
    records = [0, 1, 2, 3, 4].flatMap((i) => readTrace(cluster.tracePath(i))).sort((a, b) => a.t - b.t);
    sources = [0, 1, 2, 3, 4].map((i) => [...streamEntries(cluster.tracePath(i))]);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('checks clean, every rule run', async () => {
    expect(records.length).to.be.greaterThan(300);
    const r = await checkEntries(sources, { protocols: ['heartbeat', 'quorum', 'node-db', 'pan'] });
    expect(r.rules).to.include('quorum.majority-reached');
    expect(r.skipped, JSON.stringify(r.skipped)).to.deep.equal([]);
    expect(r.violations, JSON.stringify(r.violations.slice(0, 3))).to.deep.equal([]);
  });

  it('catches a monitor that reports a member alive it has not heard from', () => {
    // The busiest monitor, and a member pulse it heard well into its time as monitor.
    const sent = new Map<string, TraceRecord[]>();
    for (const r of records) if (r.dir === 'send' && r.env.kind === 'hb.monitor_pulse') sent.set(r.node, [...(sent.get(r.node) ?? []), r]);
    const [monitor, pulses] = [...sent].sort((a, b) => b[1].length - a[1].length)[0];
    // One whose sender the monitor really kept counting alive for the next 16 periods: hiding its pulses for
    // that long must be caught, whatever slack the trace's slowest delivery gives the rule (a loaded machine
    // has shown 700 ms, 3.5 periods, so the alive pulses judged lie 12 to 16 periods after the last one kept).
    const countedAlive = (from: number) =>
      pulses.filter((p) => p.t > from + 12 * PERIOD && p.t < from + HIDDEN_PERIODS * PERIOD && (p.env.body as { level: number }).level === 0);
    const pick = records.find((r) => {
      if (r.node !== monitor || r.dir !== 'recv' || r.env.kind !== 'hb.member_pulse' || r.t < pulses[0].t + 5 * PERIOD) return false;
      const b = r.env.body as { level: number; slot: number };
      const later = countedAlive(r.t);
      return b.level === 0 && later.length > 0 && later.every((p) => hasBit((p.env.body as { bitmap: Uint8Array }).bitmap, b.slot));
    })!;
    expect(pick, 'a member pulse to hide').to.not.equal(undefined);
    const planted = records.filter(
      (r) => !(r.node === monitor && r.dir === 'recv' && r.env.kind === 'hb.member_pulse' && r.env.from === pick.env.from && r.t >= pick.t && r.t < pick.t + HIDDEN_PERIODS * PERIOD),
    );
    const rules = new Set(checkRecords(planted).violations.map((v) => v.rule));
    expect([...rules]).to.deep.equal(['hb.alive-within-deadlines']);
  });

  it('replays clean: every node, rebuilt from its start record and fed its inputs, sends what it sent', async () => {
    const r = await checkEntries(sources, { protocols: ['replay'] });
    expect(r.violations, JSON.stringify(r.violations.slice(0, 2).map((v) => v.detail))).to.deep.equal([]);
    // Five nodes, node 4 twice (killed and started again).
    expect(r.replay).to.include({ nodes: 5, incarnations: 6 });
    expect(r.replay!.inputs).to.be.greaterThan(1000);
    expect(r.replay!.sends).to.be.greaterThan(300);
  });

  it('replay catches a bitmap bit flipped in a pulse a monitor sent', async () => {
    const i = sources.findIndex((entries) => entries.some((e) => e.dir === 'send' && e.env.kind === 'hb.monitor_pulse'));
    const entries = sources[i];
    const at = entries.findIndex((e, k) => k > entries.length / 2 && e.dir === 'send' && e.env.kind === 'hb.monitor_pulse');
    const rec = entries[at] as TraceRecord;
    const body = structuredClone(rec.env.body) as { bitmap: Uint8Array };
    body.bitmap = Uint8Array.from(body.bitmap, (x, j) => (j === 0 ? x ^ 1 : x));
    const planted = sources.map((list, k) => (k === i ? list.map((e, n) => (n === at ? { ...rec, env: { ...rec.env, body } } : e)) : list));
    const r = await checkEntries(planted, { protocols: ['replay'] });
    // One violation: the node's replay stops at its first divergence.
    expect(r.violations.map((v) => [v.rule, v.node])).to.deep.equal([['replay.sends', rec.node]]);
    expect(r.violations[0].t).to.be.at.most(rec.t);
    expect(r.violations[0].detail).to.match(/hb\.monitor_pulse .*body\.bitmap differs/);
  });

  it('`mangrove trace check` passes the traces and names what it replayed', async () => {
    const run = await mangrove(['trace', 'check', ...[0, 1, 2, 3, 4].map((i) => cluster.tracePath(i))], 60_000);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^0 violations of 0 rules; \d+ rules checked over \d+ records; replayed 5 nodes \(6 incarnations/m);
  });
});
