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
import { startHttp, type HttpServer } from '../../../../runtime/http/server.js';
import { machineNames } from '../../../../runtime/inspect/catalog.js';
import { sampleStatus } from '../../../fixtures/status.js';
import { freePort } from '../../../helpers/ports.js';
import { tempTrace } from '../../../helpers/temp-trace.js';
import { tracedSim } from '../../../helpers/traced-sim.js';
import { traceViewLimits } from '../../../../runtime/http/dashboard/trace-view.js';
import type { TraceRecord } from '../../../../bus/transport/transport.js';
import { readFileSync } from 'node:fs';

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

describe('runtime/http/dashboard', function () {
  this.timeout(20_000);
  let http: HttpServer;
  let close: () => Promise<void>;
  const engineCalls: ClientPageOp[] = [];
  const fsCalls: ClientFsOp[] = [];
  let readRefused = false;

  before(async () => {
    // Peers on ports where nothing listens: the feed must show them unanswered, not wait on them.
    const [p1, p2] = [await freePort(), await freePort()];
    const base = sampleStatus();
    const status = sampleStatus({ nodes: base.nodes.map((n, i) => (i === 0 ? n : { ...n, endpoint: `tcp://127.0.0.1:${i === 1 ? p1 : p2}` })) });
    const d = dashboardRoutes({
      status: () => status,
      transport: () => ({ sent: 3, received: 2, unsent: 0, filtered: 0, rejected: 0, rejectedByReason: {} as never, sentByKind: { 'hb.member_pulse': 3 }, receivedByKind: { 'hb.monitor_pulse': 2 } }),
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
    });
    close = d.close;
    http = await startHttp(0, { status: () => status, registry: { metrics: async () => '', contentType: 'text/plain' } as never, routes: d.routes, postRoutes: d.postRoutes });
  });
  after(async () => {
    await close();
    await http.close();
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

  it('feeds the cluster at once and every period: this node\'s status, the others as unanswered, the traffic by kind', async () => {
    const started = Date.now();
    const { messages } = await events(http.port, '/dashboard/stream', 2);
    const [first, second] = messages.map((m) => JSON.parse(m.data) as { self: string; periodMs: number; nodes: { id: string; status: unknown; error: string | null }[]; traffic: { sentByKind: Record<string, number> } });
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
    expect(second!.nodes).to.have.length(3);
    // Two messages: the first at once, the next a period (1 s at least) later.
    expect(Date.now() - started).to.be.at.least(900);
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
