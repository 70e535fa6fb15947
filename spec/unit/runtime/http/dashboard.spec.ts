/**
 * The dashboard's routes on the HTTP port (runtime/http/dashboard/): its
 * files, the charts, the page and files views, the live feed. The node
 * behind them is stood in for by its status and two calls (engine, file
 * system): what the routes do with them is the subject here; a real
 * cluster in a real browser is spec/e2e's.
 */
import { expect } from 'chai';
import { request } from 'node:http';
import { MangroveError } from '../../../../bus/errors.js';
import type { ClientFsOp } from '../../../../bus/messages/fs.js';
import type { ClientPageOp } from '../../../../bus/messages/page.js';
import { addressFromKey, formatAddress } from '../../../../machines/memory/address.js';
import { dashboardRoutes } from '../../../../runtime/http/dashboard/routes.js';
import { LATENCY_BOUNDS_MS, type LatencySnapshot } from '../../../../actors/engine/op-latency.js';
import { startHttp, type HttpServer } from '../../../../runtime/http/server.js';
import { machineNames } from '../../../../runtime/inspect/catalog.js';
import { IDS, sampleStatus } from '../../../fixtures/status.js';
import { freePort } from '../../../helpers/ports.js';
import { tempTrace } from '../../../helpers/temp-trace.js';
import { tracedSim } from '../../../helpers/traced-sim.js';
import { traceViewLimits } from '../../../../runtime/http/dashboard/trace-view.js';
import type { TraceRecord } from '../../../../bus/transport/transport.js';
import { readFileSync } from 'node:fs';
import type { MachinesSnapshot } from '../../../../actors/status.js';
import { ENVELOPE_VERSION } from '../../../../bus/envelope.js';
import { ZmqTransport } from '../../../../bus/transport/zmq.js';
import { WallClock } from '../../../../runtime/world/clock.js';

function get(port: number, path: string, method = 'GET', upload?: Uint8Array): Promise<{ status: number; type: string; body: string; allow?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body, allow: res.headers.allow }));
    });
    req.on('error', reject);
    req.end(upload);
  });
}

/** The first `count` messages of an event stream, then the connection closed. */
function events(port: number, path: string, count: number): Promise<{ status: number; messages: { event: string; data: string }[] }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      if (res.statusCode !== 200) return resolve({ status: res.statusCode!, messages: [] });
      let text = '';
      const messages: { event: string; data: string }[] = [];
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) messages.push({ event, data });
          if (messages.length === count) {
            req.destroy();
            resolve({ status: 200, messages });
          }
        }
      });
    });
    req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
    req.end();
  });
}

const ADDR = (1n << 64n) + 0x3000n;

/** A node's machines as its watch would answer them. */
function snapshotOf(node: string, after: number | undefined): MachinesSnapshot {
  const record = { id: 8, t: 1000, node, machine: 'quorum', actor: 'x:3', from: 'forming', to: 'quorate', event: 'QUORUM_GAINED' };
  return { node, t: 1234, actors: [{ actor: 'x:3', machine: 'quorum', state: 'quorate', since: 1000 }], records: (after ?? 0) < 8 ? [record] : [], last: 8, missed: 0 };
}
/** A latency snapshot the engine stand-in reports for its requests. */
const WRITES: LatencySnapshot = { n: 3, failed: 1, sumMs: 42.5, buckets: [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0] };

describe('runtime/http/dashboard', function () {
  this.timeout(20_000);
  let http: HttpServer;
  let close: () => Promise<void>;
  const engineCalls: ClientPageOp[] = [];
  const fsCalls: ClientFsOp[] = [];
  let readRefused = false;
  /** The second node: a transport that answers `client.machines` only (so its status goes unanswered). */
  let peer: ZmqTransport;
  const peerAsked: unknown[] = [];

  before(async () => {
    // Peers on ports where nothing answers a status: the feed must show them unanswered, not wait on them.
    const [p1, p2] = [await freePort(), await freePort()];
    peer = await ZmqTransport.open({ self: IDS[1], endpoint: `tcp://127.0.0.1:${p1}`, clock: new WallClock() });
    peer.inbound.subscribe(({ env, route }) => {
      if (env.kind !== 'client.machines') return;
      const body = env.body as { after?: number };
      peerAsked.push(body);
      peer.reply(route, { v: ENVELOPE_VERSION, kind: 'reply.ok', from: IDS[1], to: env.from, epoch: 1, seq: peerAsked.length, re: env.seq, body: { result: snapshotOf(IDS[1], body.after) } });
    });
    const base = sampleStatus();
    const status = sampleStatus({ nodes: base.nodes.map((n, i) => (i === 0 ? n : { ...n, endpoint: `tcp://127.0.0.1:${i === 1 ? p1 : p2}` })) });
    const d = dashboardRoutes({
      status: () => status,
      transport: () => ({ sent: 3, received: 2, unsent: 0, filtered: 0, rejected: 0, rejectedByReason: {} as never, sentByKind: { 'hb.member_pulse': 3 }, receivedByKind: { 'hb.monitor_pulse': 2 } }),
      requests: () => ({ 'client.write': WRITES, 'fs.stat': WRITES, 'peer.fetch': WRITES, 'page.write1': WRITES }),
      engine: async (op) => {
        engineCalls.push(op);
        if (op.op === 'stat') return { address: formatAddress(ADDR), version: 7, home: status.self };
        if (op.op === 'read' && readRefused) throw new MangroveError('E_RECOVERING', 'the cluster is rebuilding');
        if (op.op === 'read') return { data: new Uint8Array(4096).fill(0xab) };
        if (op.op === 'dir_page' && op.arena === 9) throw new MangroveError('E_NOT_RESERVED', 'no node serves arena 9');
        if (op.op === 'dir_page') return { arena: op.arena, home: status.self, asked: op.page === undefined ? null : formatAddress(addressFromKey(op.page)) };
        throw new Error(`unexpected ${op.op}`);
      },
      fs: async (op) => {
        fsCalls.push(op);
        if (op.op === 'fileset_list') return [{ name: 'default' }];
        if (op.op === 'readdir' && op.path === '/gone') throw new MangroveError('E_NOT_FOUND', 'no entry "gone"');
        if (op.op === 'readdir') return { entries: [{ name: 'a', type: 'file' }], next: null };
        throw new Error(`unexpected ${op.op}`);
      },
      heartbeatMs: 250,
      machines: (after) => snapshotOf(status.self, after),
    });
    close = d.close;
    http = await startHttp(0, { status: () => status, registry: { metrics: async () => '', contentType: 'text/plain' } as never, routes: d.routes, postRoutes: d.postRoutes });
  });
  after(async () => {
    await close();
    await http.close();
    await peer.close();
  });

  it('serves its page at / and its files under /dashboard/, and the chart library from the package', async () => {
    const page = await get(http.port, '/');
    expect(page.status).to.equal(200);
    expect(page.type).to.match(/^text\/html/);
    expect(page.body).to.match(/<!doctype html>/i);
    const lib = await get(http.port, '/dashboard/lib/cytoscape.min.js');
    expect(lib.status).to.equal(200);
    expect(lib.type).to.match(/^text\/javascript/);
    expect(lib.body.length).to.be.above(100_000);
    expect((await get(http.port, '/dashboard/nothing.js')).status).to.equal(404);
  });

  it('gives every protocol machine\'s chart, from its definition', async () => {
    const r = await get(http.port, '/dashboard/charts');
    const charts = (JSON.parse(r.body) as { machines: { machine: string; states: unknown[]; spec: string }[] }).machines;
    expect(charts.map((c) => c.machine)).to.deep.equal(machineNames());
    for (const c of charts) expect(c.states.length, c.machine).to.be.above(0);
  });

  it("shows a page: where it lives and its first bytes; a refused read still says where it lives", async () => {
    const r = JSON.parse((await get(http.port, `/dashboard/page?addr=${formatAddress(ADDR)}`)).body) as { stat: { version: number }; head: string; read: unknown };
    expect(r.stat.version).to.equal(7);
    expect(r.head).to.equal('ab'.repeat(64));
    expect(r.read).to.equal(null);
    readRefused = true;
    const refused = JSON.parse((await get(http.port, `/dashboard/page?addr=${formatAddress(ADDR)}`)).body) as { head: null; read: { code: string } };
    expect(refused.head).to.equal(null);
    expect(refused.read.code).to.equal('E_RECOVERING');
  });

  it('refuses a page address that is missing or malformed (400, with the code)', async () => {
    const missing = await get(http.port, '/dashboard/page');
    expect(missing.status).to.equal(400);
    expect(JSON.parse(missing.body).code).to.equal('E_BAD_ARGUMENT');
    const bad = await get(http.port, '/dashboard/page?addr=zz');
    expect(bad.status).to.equal(400);
    expect(JSON.parse(bad.body).code).to.match(/^E_BAD_/);
  });

  it("reads an arena's directory page through the engine: the root, or the page named; bad arguments 400, an arena no node serves 404", async () => {
    expect(JSON.parse((await get(http.port, '/dashboard/directory?arena=2')).body)).to.deep.equal({ arena: 2, home: sampleStatus().self, asked: null });
    const child = formatAddress((2n << 64n) + 0x3000n);
    expect(JSON.parse((await get(http.port, `/dashboard/directory?arena=2&page=${child}`)).body).asked).to.equal(child);
    for (const bad of ['', '?arena=', '?arena=-1', '?arena=1.5', '?arena=x', '?arena=1&page=zz']) {
      const r = await get(http.port, `/dashboard/directory${bad}`);
      expect(r.status, bad).to.equal(400);
      expect(JSON.parse(r.body).code, bad).to.match(/^E_BAD_/);
    }
    const none = await get(http.port, '/dashboard/directory?arena=9');
    expect([none.status, JSON.parse(none.body).code]).to.deep.equal([404, 'E_NOT_RESERVED']);
  });

  it('lists filesets and a directory; a directory that is not there is 404', async () => {
    expect(JSON.parse((await get(http.port, '/dashboard/filesets')).body)).to.deep.equal([{ name: 'default' }]);
    const dir = JSON.parse((await get(http.port, '/dashboard/files?fs=default&path=/d')).body) as { entries: { name: string }[] };
    expect(dir.entries.map((e) => e.name)).to.deep.equal(['a']);
    expect(fsCalls.at(-1)).to.deep.include({ op: 'readdir', fs: 'default', path: '/d' });
    const gone = await get(http.port, '/dashboard/files?fs=default&path=/gone');
    expect(gone.status).to.equal(404);
    expect(JSON.parse(gone.body).code).to.equal('E_NOT_FOUND');
  });

  it('feeds the cluster at once and every period: this node\'s status, the others as unanswered, the traffic by kind, its programs\' requests', async () => {
    const started = Date.now();
    const { messages } = await events(http.port, '/dashboard/stream', 2);
    const [first, second] = messages.map((m) => JSON.parse(m.data) as { self: string; periodMs: number; nodes: { id: string; status: unknown; error: string | null }[]; traffic: { sentByKind: Record<string, number> }; requests: Record<string, LatencySnapshot>; requestBoundsMs: number[] });
    expect(messages.map((m) => m.event)).to.deep.equal(['cluster', 'cluster']);
    expect(first!.periodMs).to.equal(1000);
    expect(first!.nodes).to.have.length(3);
    expect(first!.nodes[0]!.id).to.equal(first!.self);
    expect(first!.nodes[0]!.status).to.not.equal(null);
    for (const peer of first!.nodes.slice(1)) {
      expect(peer.status).to.equal(null);
      expect(peer.error).to.be.a('string').and.match(/no answer|did not answer|timed out/i);
    }
    expect(first!.traffic.sentByKind).to.deep.equal({ 'hb.member_pulse': 3 });
    // A program's page and file-system calls, with their latencies; the engine's own steps and other nodes' calls are not sent.
    expect(first!.requests).to.deep.equal({ 'client.write': WRITES, 'fs.stat': WRITES });
    expect(first!.requestBoundsMs).to.deep.equal([...LATENCY_BOUNDS_MS]);
    expect(second!.nodes).to.have.length(3);
    // Two messages: the first at once, the next a period (1 s at least) later.
    expect(Date.now() - started).to.be.at.least(900);
  });

  it("answers any node's machines: this node's from its watch, another's over the bus, resuming after an id", async () => {
    const own = await get(http.port, `/dashboard/machines?node=${IDS[0]}`);
    expect(own.status, own.body).to.equal(200);
    expect(JSON.parse(own.body)).to.deep.equal(snapshotOf(IDS[0], undefined));
    const other = await get(http.port, `/dashboard/machines?node=${IDS[1]}&after=4`);
    expect(other.status, other.body).to.equal(200);
    const snap = JSON.parse(other.body) as MachinesSnapshot;
    expect(snap.node).to.equal(IDS[1]);
    expect(snap.actors.map((a) => a.state)).to.deep.equal(['quorate']);
    expect(snap.records.map((r) => r.id)).to.deep.equal([8]);
    expect(snap.last).to.equal(8);
    expect(peerAsked.at(-1), 'the peer was asked after the id given').to.deep.equal({ after: 4 });
    const caughtUp = JSON.parse((await get(http.port, `/dashboard/machines?node=${IDS[1]}&after=8`)).body) as MachinesSnapshot;
    expect(caughtUp.records).to.deep.equal([]);
    expect(peerAsked.at(-1)).to.deep.equal({ after: 8 });
  });

  it('refuses a node it does not know (404), a bad node or after (400), and a node that does not answer (503)', async () => {
    const unknown = await get(http.port, '/dashboard/machines?node=ffffffffffff-000000000000');
    expect(unknown.status).to.equal(404);
    expect(JSON.parse(unknown.body).code).to.equal('E_NOT_FOUND');
    for (const q of ['', '?node=', `?node=${IDS[1]}&after=-1`, `?node=${IDS[1]}&after=x`, `?node=${IDS[1]}&after=`, `?node=${IDS[1]}&after=1.5`]) {
      const bad = await get(http.port, `/dashboard/machines${q}`);
      expect(bad.status, q).to.equal(400);
      expect(JSON.parse(bad.body).code, q).to.equal('E_BAD_ARGUMENT');
    }
    const silent = await get(http.port, `/dashboard/machines?node=${IDS[2]}`);
    expect(silent.status).to.equal(503);
    expect(JSON.parse(silent.body).code).to.equal('E_UNREACHABLE');
  });

  describe('the trace viewer (POST /dashboard/trace)', () => {
    const trace = tempTrace('mangrove-dashboard-trace-');
    let clean: TraceRecord[] = [];
    let startAt = 0;
    before(async () => {
      const run = await tracedSim({ seed: 3, nodes: 3, periodMs: 100 }, (c) => void c.run(3000));
      clean = run.records;
      startAt = run.startAt;
    });
    const upload = async (records: TraceRecord[]) => {
      trace.write(records);
      return get(http.port, '/dashboard/trace', 'POST', readFileSync(trace.path));
    };

    it('answers a clean trace with its nodes and messages in time order, and no violation', async () => {
      const r = await upload(clean);
      expect(r.status, r.body).to.equal(200);
      const v = JSON.parse(r.body) as { nodes: string[]; total: number; messages: { t: number; kind: string; dir: string }[]; rules: string[]; violations: unknown[] };
      expect(v.nodes).to.have.length(3);
      expect(v.total).to.equal(clean.length);
      expect(v.messages).to.have.length(Math.min(clean.length, traceViewLimits.messagesMax));
      expect(v.messages[0]).to.include.keys('t', 'node', 'dir', 'kind', 'from', 'to');
      expect(v.rules).to.include('hb.alive-within-deadlines');
      expect(v.violations).to.deep.equal([]);
    });

    it('marks what trace check finds: a monitor counting alive a member it stopped hearing', async () => {
      // The monitor's receipts of member pulses cut from 1.5 s on: its bitmaps still say alive.
      const planted = clean.filter((r) => !(r.env.kind === 'hb.member_pulse' && r.dir === 'recv' && r.t > startAt + 1500));
      const v = JSON.parse((await upload(planted)).body) as { violations: { rule: string; node: string; t: number; detail: string }[] };
      expect([...new Set(v.violations.map((x) => x.rule))]).to.deep.equal(['hb.alive-within-deadlines']);
      expect(v.violations[0]!.t).to.be.above(startAt + 1500);
      expect(v.violations[0]!.detail).to.be.a('string').and.not.equal('');
    });

    it('refuses what is not a trace (400) and answers GET with the methods it takes', async () => {
      const bad = await get(http.port, '/dashboard/trace', 'POST', new TextEncoder().encode('not a trace at all'));
      expect(bad.status).to.equal(400);
      expect(JSON.parse(bad.body).code).to.equal('E_BAD_ARGUMENT');
      const wrong = await get(http.port, '/dashboard/trace');
      expect(wrong.status).to.equal(405);
      expect(wrong.allow).to.equal('POST');
    });
  });
});
