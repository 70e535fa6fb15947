import { expect } from 'chai';
import { request } from 'node:http';
import { Subject } from 'rxjs';
import { REJECT_REASONS, type RejectReason } from '../../../../bus/envelope.js';
import type { TransportStats } from '../../../../bus/transport/transport.js';
import { startHttp, type HttpServer } from '../../../../runtime/http/server.js';
import { createMetrics, metricsLimits, type NewsLike, type NodeMetrics } from '../../../../runtime/http/metrics.js';
import { IDS, sampleStatus } from '../../../fixtures/status.js';
import { FlowScheduler } from '../../../../actors/engine/flow-scheduler.js';
import { MangroveError } from '../../../../bus/errors.js';

function stats(): TransportStats {
  const rejectedByReason = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
  return {
    sent: 12,
    received: 7,
    unsent: 3,
    filtered: 1,
    rejected: 2,
    rejectedByReason: { ...rejectedByReason, bad_body: 2 },
    sentByKind: { 'hb.member_pulse': 10, 'hb.claim': 1, 'ndb.hello': 1 },
    receivedByKind: { 'hb.monitor_pulse': 7 },
  };
}

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample line of the exposition text. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no sample ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

describe('runtime/http/metrics and runtime/http/server', () => {
  const news = new Subject<NewsLike>();
  let status = sampleStatus();
  const node = { status: () => status, news$: news };
  const transport = { self: IDS[0], stats };
  let metrics: NodeMetrics;
  let http: HttpServer;
  const L = `node="${IDS[0]}"`;

  before(async () => {
    metrics = createMetrics(node, transport, { processMetrics: false });
    http = await startHttp(0, { status: () => status, registry: metrics.registry });
  });
  after(async () => {
    await http.close();
    metrics.stop();
  });

  it('reads transport counts and node status when scraped', async () => {
    const text = await metrics.registry.metrics();
    expect(sample(text, `mangrove_heartbeat_pulses_sent_total{kind="hb.member_pulse",${L}}`)).to.equal(10);
    expect(text).not.to.include('mangrove_heartbeat_pulses_sent_total{kind="hb.claim"');
    expect(sample(text, `mangrove_heartbeat_pulses_received_total{kind="hb.monitor_pulse",${L}}`)).to.equal(7);
    expect(sample(text, `mangrove_messages_sent_total{kind="ndb.hello",${L}}`)).to.equal(1);
    expect(sample(text, `mangrove_messages_rejected_total{reason="bad_body",${L}}`)).to.equal(2);
    expect(sample(text, `mangrove_messages_unsent_total{${L}}`)).to.equal(3);
    expect(sample(text, `mangrove_messages_filtered_total{${L}}`)).to.equal(1);
    expect(sample(text, `mangrove_quorum{${L}}`)).to.equal(1);
    expect(sample(text, `mangrove_nodedb_version{${L}}`)).to.equal(3);
    expect(sample(text, `mangrove_nodes_alive{${L}}`)).to.equal(2);
    expect(sample(text, `mangrove_monitor{${L}}`)).to.equal(1);
  });

  it('reads the rebuild and re-replication from the status (M14, M15)', async () => {
    const before = status;
    status = sampleStatus({
      recovery: { ...before.recovery, state: 'rebuilding', completed: 262144, dropped: { ...before.recovery.dropped, stale_epoch: 3 } },
      replication: { pagesUnderReplicated: 12, rangesUnderReplicated: 2, arenasUnderReplicated: 1, reReplicatedPages: 40, partial: false, collectedCopies: 5 },
    });
    // One status read serves the scrapes of statusReuseMs: let the last one's go stale.
    await new Promise((resolve) => setTimeout(resolve, metricsLimits.statusReuseMs + 20));
    try {
      const text = await metrics.registry.metrics();
      expect(sample(text, `mangrove_pages_under_replicated{${L}}`)).to.equal(12);
      expect(sample(text, `mangrove_arenas_under_replicated{${L}}`)).to.equal(1);
      expect(sample(text, `mangrove_pages_rereplicated_total{${L}}`)).to.equal(40);
      expect(sample(text, `mangrove_rereplicated_bytes_total{${L}}`)).to.equal(40 * 4096);
      expect(sample(text, `mangrove_copies_collected_total{${L}}`)).to.equal(5);
      expect(sample(text, `mangrove_rebuild_round{${L}}`)).to.equal(262144);
      expect(sample(text, `mangrove_node_state{state="rebuilding",${L}}`)).to.equal(1);
      expect(sample(text, `mangrove_node_state{state="normal",${L}}`)).to.equal(0);
      expect(sample(text, `mangrove_recovery_messages_dropped_total{reason="stale_epoch",${L}}`)).to.equal(3);
    } finally {
      status = before;
    }
  });

  it('counts failures from the news as they arrive', async () => {
    news.next({ type: 'member_failed' });
    news.next({ type: 'member_failed' });
    news.next({ type: 'quorum' });
    const text = await metrics.registry.metrics();
    expect(sample(text, `mangrove_failures_detected_total{${L}}`)).to.equal(2);
    expect(sample(text, `mangrove_news_total{type="quorum",${L}}`)).to.equal(1);
  });

  it("reads a program's request latencies from the scheduler when scraped, as a histogram by op (client.*, fs.* only)", async () => {
    let clockMs = 0;
    const scheduler = new FlowScheduler(() => clockMs);
    const g = { open: () => {} };
    const held = new Promise<void>((resolve) => (g.open = resolve));
    scheduler.register('client.read', { applet: async () => held });
    scheduler.register('fs.stat', { applet: async () => Promise.reject(new MangroveError('E_NOT_FOUND', 'no such file')) });
    scheduler.register('peer.fetch', { applet: async () => 1 });
    const read = scheduler.dispatch('client.read', {});
    await scheduler.dispatch('fs.stat', {}).catch(() => undefined);
    await scheduler.dispatch('peer.fetch', {});
    clockMs = 30;
    g.open();
    await read;
    const m = createMetrics(node, transport, { processMetrics: false, requests: () => scheduler.latencies() });
    try {
      const text = await m.registry.metrics();
      expect(text).to.include('# TYPE mangrove_request_duration_seconds histogram');
      const bucket = (op: string, le: string) => sample(text, `mangrove_request_duration_seconds_bucket{le="${le}",${L},op="${op}"}`);
      // 30 ms: not yet in the 25 ms bucket, in the 50 ms one and every wider one (the buckets are cumulative).
      expect(bucket('client.read', '0.025')).to.equal(0);
      expect(bucket('client.read', '0.05')).to.equal(1);
      expect(bucket('client.read', '+Inf')).to.equal(1);
      expect(sample(text, `mangrove_request_duration_seconds_sum{${L},op="client.read"}`)).to.be.closeTo(0.03, 1e-9);
      expect(sample(text, `mangrove_request_duration_seconds_count{${L},op="client.read"}`)).to.equal(1);
      expect(bucket('fs.stat', '0.0001')).to.equal(1);
      expect(sample(text, `mangrove_requests_failed_total{op="fs.stat",${L}}`)).to.equal(1);
      expect(sample(text, `mangrove_requests_failed_total{op="client.read",${L}}`)).to.equal(0);
      expect(text).not.to.include('op="peer.fetch"');
      // Read again at the next scrape, not kept from the first.
      await scheduler.dispatch('client.read', {});
      expect(sample(await m.registry.metrics(), `mangrove_request_duration_seconds_count{${L},op="client.read"}`)).to.equal(2);
    } finally {
      m.stop();
    }
  });

  it('serves /metrics as Prometheus text', async () => {
    const r = await get(http.port, '/metrics');
    expect(r.status).to.equal(200);
    expect(r.type).to.match(/^text\/plain; version=0\.0\.4/);
    expect(r.body).to.include('# TYPE mangrove_quorum gauge');
  });

  it('serves /status as the status JSON, fresh on every request', async () => {
    status = sampleStatus({ quorum: false });
    const r = await get(http.port, '/status');
    expect(r.status).to.equal(200);
    expect(r.type).to.equal('application/json; charset=utf-8');
    expect(JSON.parse(r.body)).to.deep.equal(status);
  });

  it('answers 404 elsewhere and 405 to other methods', async () => {
    expect((await get(http.port, '/nope')).status).to.equal(404);
    expect((await get(http.port, '/status', 'POST')).status).to.equal(405);
  });

  it('names the port it cannot bind', async () => {
    try {
      await startHttp(http.port, { status: () => status, registry: metrics.registry });
      expect.fail('bound a port twice');
    } catch (err) {
      expect((err as Error).message).to.include(`cannot serve HTTP on 127.0.0.1:${http.port}: the port is in use`);
    }
  });
});
