/**
 * Watching machines (M26): real protocol machines run on a SimClock with the
 * watch as their `inspect`, and the transition records it makes; its bounded
 * history; the HTTP endpoints that serve it (JSON and Server-Sent Events), a
 * slow reader dropped rather than waited for; and the client that reads them.
 */
import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { get, type IncomingMessage, type ServerResponse } from 'node:http';
import { Registry } from 'prom-client';
import { createActor, type AnyActorRef } from 'xstate';
import { heartbeatMember } from '../../../../machines/membership/heartbeat-member.js';
import { heartbeatMonitor } from '../../../../machines/membership/heartbeat-monitor.js';
import { nodeStateMachine } from '../../../../machines/recovery/node-state.js';
import { formatTransition } from '../../../../runtime/cli/machines.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { startHttp, type HttpServer } from '../../../../runtime/http/server.js';
import { MachineWatch, stateString, type TransitionRecord } from '../../../../runtime/inspect/watch.js';
import { openMachineStream, SseParser, streamUrl, transitions } from '../../../../runtime/inspect/stream.js';
import { machineRoutes } from '../../../../runtime/http/machines.js';
import { RingBuffer } from '../../../../runtime/inspect/ring-buffer.js';
import { sampleStatus } from '../../../fixtures/status.js';

const place = { self: 'b-node', selfAnchor: true, level: 0, domain: 0, slot: 1, tickMs: 10, ticksPerPeriod: 4, preference: [] as string[] };
const noBits = new Uint8Array(8);

function member(clock: SimClock, watch: MachineWatch) {
  return createActor(heartbeatMember, {
    clock,
    inspect: watch.inspect,
    input: { ...place, monitorSilenceTicksMax: 3, claimWindowTicks: 2, monitor: { id: 'm-node', anchor: true } },
  });
}

function nodeState(watch: MachineWatch) {
  return createActor(nodeStateMachine, { inspect: watch.inspect, input: {} });
}

describe('runtime/inspect/ring-buffer', () => {
  it('keeps the newest items up to its capacity, oldest first', () => {
    const r = new RingBuffer<number>(3);
    expect(r.last()).to.deep.equal([]);
    for (let i = 1; i <= 2; i++) r.push(i);
    expect(r.last()).to.deep.equal([1, 2]);
    for (let i = 3; i <= 7; i++) r.push(i);
    expect(r.size).to.equal(3);
    expect(r.last()).to.deep.equal([5, 6, 7]);
    expect(r.last(2)).to.deep.equal([6, 7]);
    expect(r.last(10)).to.deep.equal([5, 6, 7]);
    expect(r.last(0)).to.deep.equal([]);
    expect(() => new RingBuffer(0)).to.throw(RangeError);
  });
});

describe('runtime/inspect/watch', () => {
  it('writes state values as dotted paths', () => {
    expect(stateString('following')).to.equal('following');
    expect(stateString({ monitoring: 'ticking' })).to.equal('monitoring.ticking');
    expect(stateString({ a: { b: 'c' } })).to.equal('a.b.c');
    expect(stateString({ p: { left: 'x', right: { deep: 'y' } } })).to.equal('p.left.x,p.right.deep.y');
  });

  it('turns a heartbeat member\'s run into its transitions: start, silent monitor, claim, promotion', () => {
    const clock = new SimClock();
    const watch = new MachineWatch({ node: 'n1', now: () => clock.now() });
    const all: [TransitionRecord, number | null][] = [];
    watch.subscribe((r, seq) => all.push([r, seq]), { allEvents: true });
    const a = member(clock, watch);
    a.start();
    const actor = a.sessionId;
    expect(watch.actors()).to.deep.equal([{ actor, machine: 'heartbeat-member', state: 'following', since: 0 }]);
    clock.advance(5);
    a.send({ type: 'MONITOR_PULSE', from: 'm-node', fromAnchor: true, bitmap: noBits });
    // Three silent ticks after that pulse (10, 20, 30 ms) make it a candidate; two ticks of claim window promote it.
    clock.advance(100);
    const rec = (t: number, from: string | null, to: string | null, event: string) => ({ t, node: 'n1', machine: 'heartbeat-member', actor, from, to, event });
    expect(watch.recent(100)).to.deep.equal([
      { seq: 1, record: rec(0, null, 'following', 'xstate.init') },
      { seq: 2, record: rec(30, 'following', 'candidate', 'xstate.after.tick.heartbeat-member.following') },
      { seq: 3, record: rec(50, 'candidate', 'promoted', 'xstate.after.claimWindow.heartbeat-member.candidate') },
    ]);
    // A final state ends the actor.
    expect(watch.actors()).to.deep.equal([]);
    // Asked for all events, a listener also hears the ones that left the state as it was, without a seq.
    expect(all.map(([r, seq]) => [seq, r.t, r.from, r.to, r.event.replace(/\.heartbeat-member\..*/, '')])).to.deep.equal([
      [1, 0, null, 'following', 'xstate.init'],
      [null, 5, 'following', 'following', 'MONITOR_PULSE'],
      [null, 10, 'following', 'following', 'xstate.after.tick'],
      [null, 20, 'following', 'following', 'xstate.after.tick'],
      [2, 30, 'following', 'candidate', 'xstate.after.tick'],
      [3, 50, 'candidate', 'promoted', 'xstate.after.claimWindow'],
    ]);
  });

  it('names nested states by path and records a stop as a transition to null', () => {
    const clock = new SimClock(1000);
    const watch = new MachineWatch({ node: 'n1', now: () => clock.now() });
    const mon = createActor(heartbeatMonitor, {
      clock,
      inspect: watch.inspect,
      input: { ...place, self: 'z-node', memberSilenceTicksMax: 13, members: [], presumedAlive: [] },
    }).start();
    const ns = nodeState(watch).start();
    clock.advance(25);
    mon.send({ type: 'MONITOR_PULSE', from: 'a-node', fromAnchor: true });
    ns.send({ type: 'FAILURE_NOTICED' });
    ns.stop();
    const seen = watch.recent(10).map((k) => [k.record.machine, k.record.from, k.record.to, k.record.event, k.record.t]);
    expect(seen).to.deep.equal([
      ['heartbeat-monitor', null, 'monitoring.ticking', 'xstate.init', 1000],
      ['node-state', null, 'normal', 'xstate.init', 1000],
      ['heartbeat-monitor', 'monitoring.ticking', 'demoted', 'MONITOR_PULSE', 1025],
      ['node-state', 'normal', 'notified', 'FAILURE_NOTICED', 1025],
      ['node-state', 'notified', null, 'xstate.stop', 1025],
    ]);
    expect(watch.actors()).to.deep.equal([]);
  });

  it('keeps a bounded history and resumes after a given record', () => {
    const watch = new MachineWatch({ node: 'n1', now: () => 0, recordsMax: 3 });
    const ns = nodeState(watch).start();
    for (let i = 0; i < 3; i++) {
      for (const type of ['QUIESCE', 'QUIESCED', 'START_REPOPULATING', 'RESUME'] as const) ns.send({ type });
    }
    expect(watch.recent(100).map((k) => k.seq)).to.deep.equal([11, 12, 13]);
    expect(watch.recent(1).map((k) => k.record.to)).to.deep.equal(['normal']);
    expect(watch.since(11).map((k) => k.seq)).to.deep.equal([12, 13]);
    expect(watch.since(2).map((k) => k.seq), 'older than the history: all of it').to.deep.equal([11, 12, 13]);
    expect(watch.actors()).to.have.length(1);
  });

  it('answers a snapshot after a record id (client.machines): the newest few, what it missed, a restart counted from the start', () => {
    const watch = new MachineWatch({ node: 'n1', now: () => 77, recordsMax: 10 });
    const ns = nodeState(watch).start();
    for (let i = 0; i < 3; i++) {
      for (const type of ['QUIESCE', 'QUIESCED', 'START_REPOPULATING', 'RESUME'] as const) ns.send({ type });
    }
    // 13 records made, 10 kept (4..13); at most 3 an answer.
    const all = watch.snapshot(0, 3);
    expect(all).to.deep.include({ node: 'n1', t: 77, last: 13, missed: 10 });
    expect(all.records.map((r) => r.id)).to.deep.equal([11, 12, 13]);
    expect(all.records[2]).to.include({ id: 13, node: 'n1', machine: 'node-state', to: 'normal' });
    expect(all.actors).to.deep.equal(watch.actors());
    const tail = watch.snapshot(11, 3);
    expect(tail.records.map((r) => r.id)).to.deep.equal([12, 13]);
    expect(tail.missed).to.equal(0);
    expect(watch.snapshot(13).records).to.deep.equal([]);
    // An id this process never gave: the asker saw the node's previous process, so all of this one's is new.
    const restarted = watch.snapshot(500, 3);
    expect(restarted.records.map((r) => r.id)).to.deep.equal([11, 12, 13]);
    expect(restarted.last).to.equal(13);
  });

  it('follows at most actorsMax actors and counts the rest', () => {
    const watch = new MachineWatch({ node: 'n1', now: () => 0, actorsMax: 1 });
    nodeState(watch).start();
    const second = nodeState(watch).start();
    second.send({ type: 'QUIESCE' });
    expect(watch.actors()).to.have.length(1);
    expect(watch.untracked).to.equal(2);
  });

  it('drops a listener that throws, and the machine runs on', () => {
    const watch = new MachineWatch({ node: 'n1', now: () => 0 });
    let calls = 0;
    watch.subscribe(() => {
      calls++;
      throw new Error('broken');
    });
    const ns = nodeState(watch).start();
    ns.send({ type: 'QUIESCE' });
    expect(calls).to.equal(1);
    expect(ns.getSnapshot().value).to.equal('notified');
    expect(watch.recent(5)).to.have.length(2);
  });
});

describe('runtime/http/machines', () => {
  let http: HttpServer;
  let watch: MachineWatch;
  let actors: AnyActorRef[] = [];

  beforeEach(async () => {
    watch = new MachineWatch({ node: 'n1', now: () => 1_000_000_000_000 });
    http = await startHttp(0, { status: () => sampleStatus(), registry: new Registry(), routes: machineRoutes(watch, { keepAliveMs: 30, clientsMax: 2 }) });
  });
  afterEach(async () => {
    for (const a of actors.splice(0)) a.stop();
    await http.close();
  });

  function start() {
    const a = nodeState(watch).start();
    actors.push(a);
    return a;
  }

  function getJson(path: string): Promise<{ status: number; body: unknown }> {
    return new Promise((resolve, reject) => {
      get(`http://127.0.0.1:${http.port}${path}`, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      }).on('error', reject);
    });
  }

  /** The next `n` records of an open stream. */
  async function take(res: IncomingMessage, n: number): Promise<TransitionRecord[]> {
    const out: TransitionRecord[] = [];
    for await (const r of transitions(res)) {
      out.push(r);
      if (out.length === n) break;
    }
    return out;
  }

  it('GET /machines lists the machines and the running actors with their state', async () => {
    const a = start();
    a.send({ type: 'QUIESCE' });
    const r = await getJson('/machines');
    expect(r.status).to.equal(200);
    expect(r.body).to.deep.include({ node: 'n1', t: 1_000_000_000_000, streams: { open: 0, dropped: 0 } });
    expect((r.body as { machines: string[] }).machines).to.include.members(['heartbeat-member', 'heartbeat-monitor', 'node-state']);
    expect((r.body as { actors: unknown[] }).actors).to.deep.equal([{ actor: a.sessionId, machine: 'node-state', state: 'notified', since: 1_000_000_000_000 }]);
  });

  it('streams each transition as it happens, one data line per record', async () => {
    const res = await openMachineStream(streamUrl('127.0.0.1', http.port), 2000);
    expect(res.headers['content-type']).to.equal('text/event-stream; charset=utf-8');
    const a = start();
    a.send({ type: 'QUIESCE' });
    const got = await take(res, 2);
    expect(got.map((r) => [r.node, r.machine, r.actor, r.from, r.to, r.event])).to.deep.equal([
      ['n1', 'node-state', a.sessionId, null, 'normal', 'xstate.init'],
      ['n1', 'node-state', a.sessionId, 'normal', 'notified', 'QUIESCE'],
    ]);
    res.destroy();
  });

  it('filters by machine, replays history on request, and resumes after Last-Event-ID', async () => {
    const a = start();
    a.send({ type: 'QUIESCE' });
    a.send({ type: 'QUIESCED' });
    const other = await openMachineStream(streamUrl('127.0.0.1', http.port, { machine: 'quorum', replay: 10 }), 2000);
    const replayed = await openMachineStream(streamUrl('127.0.0.1', http.port, { machine: 'node-state', replay: 2 }), 2000);
    expect((await take(replayed, 2)).map((r) => r.to)).to.deep.equal(['notified', 'quiescent']);
    replayed.destroy();
    const raw = await rawStream('/machines/stream', { 'Last-Event-ID': '1' });
    a.send({ type: 'START_REPOPULATING' });
    const text = await raw.until(/id: 4\n/);
    expect(text).to.match(/^retry: 2000\n: machine transitions of node n1\n\n/);
    expect([...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))).to.deep.equal([2, 3, 4]);
    raw.close();
    // The quorum stream saw none of it: only keep-alives.
    const quiet = await new Promise<string>((resolve) => {
      let seen = '';
      other.setEncoding('utf8');
      other.on('data', (c: string) => {
        seen += c;
        if (seen.includes(': keep-alive')) resolve(seen);
      });
    });
    expect(quiet).not.to.include('data:');
    other.destroy();
  });

  it('refuses an unknown machine (404 E_NOT_FOUND), bad parameters (400), and streams past the limit (503 E_BUSY)', async () => {
    const unknown = await openMachineStream(streamUrl('127.0.0.1', http.port, { machine: 'nope' }), 2000).catch((e: unknown) => e);
    expect(unknown).to.have.property('code', 'E_NOT_FOUND');
    expect((unknown as Error).message).to.match(/no protocol machine is named "nope"; the machines are: heartbeat-member/);
    expect((await getJson('/machines/stream?replay=-1')).body).to.deep.include({ code: 'E_BAD_ARGUMENT' });
    expect((await getJson('/machines/stream?events=some')).status).to.equal(400);
    const open = [await openMachineStream(streamUrl('127.0.0.1', http.port), 2000), await openMachineStream(streamUrl('127.0.0.1', http.port), 2000)];
    const busy = await openMachineStream(streamUrl('127.0.0.1', http.port), 2000).catch((e: unknown) => e);
    expect(busy).to.have.property('code', 'E_BUSY');
    for (const r of open) r.destroy();
  });

  it('with events=all, also streams events that left the state as it was', async () => {
    const a = start();
    const res = await openMachineStream(streamUrl('127.0.0.1', http.port, { allEvents: true }), 2000);
    a.send({ type: 'QUIESCED' }); // not handled in normal: the state stays
    a.send({ type: 'QUIESCE' });
    expect((await take(res, 2)).map((r) => [r.from, r.to, r.event])).to.deep.equal([
      ['normal', 'normal', 'QUIESCED'],
      ['normal', 'notified', 'QUIESCE'],
    ]);
    res.destroy();
  });

  /** A raw reader of the stream text, for what the record parser does not show. */
  function rawStream(path: string, headers: Record<string, string> = {}): Promise<{ until(re: RegExp): Promise<string>; close(): void }> {
    return new Promise((resolve, reject) => {
      const req = get(`http://127.0.0.1:${http.port}${path}`, { headers }, (res) => {
        let text = '';
        const waiters: (() => void)[] = [];
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          for (const w of waiters.splice(0)) w();
        });
        resolve({
          until: (re) =>
            new Promise((done) => {
              const check = () => (re.test(text) ? done(text) : waiters.push(check));
              check();
            }),
          close: () => req.destroy(),
        });
      });
      req.on('error', reject);
    });
  }
});

describe('runtime/http/machines: a reader that cannot keep up', () => {
  /** A response whose socket is full from the first write until 'drain'. */
  class FullSocket extends EventEmitter {
    written: string[] = [];
    destroyed = false;
    accepting = false;
    writeHead() {
      return this;
    }
    write(chunk: string) {
      this.written.push(chunk);
      return this.accepting;
    }
    end() {}
    destroy() {
      this.destroyed = true;
      this.emit('close');
    }
  }

  function open(watch: MachineWatch, backlogMax: number) {
    const routes = machineRoutes(watch, { backlogMax });
    const res = new FullSocket();
    const req = { method: 'GET', headers: {} } as IncomingMessage;
    void routes['/machines/stream'](req, res as unknown as ServerResponse, new URL('http://x/machines/stream'));
    return { res, routes };
  }

  it('queues up to backlogMax messages, writes them in order on drain, then drops a reader still behind', async () => {
    const watch = new MachineWatch({ node: 'n1', now: () => 0 });
    const { res, routes } = open(watch, 3);
    const ns = nodeState(watch).start(); // queued: 1
    ns.send({ type: 'QUIESCE' }); // 2
    ns.send({ type: 'QUIESCED' }); // 3
    expect(res.written).to.have.length(1); // the preamble filled the socket
    res.accepting = true;
    res.emit('drain');
    expect(res.written.slice(1).map((w) => /"to":"(\w+)"/.exec(w)![1])).to.deep.equal(['normal', 'notified', 'quiescent']);
    res.accepting = false;
    ns.send({ type: 'START_REPOPULATING' }); // written, socket full again
    for (const type of ['RESUME', 'QUIESCE', 'QUIESCED'] as const) ns.send({ type }); // queued: 3
    expect(res.destroyed).to.equal(false);
    ns.send({ type: 'START_REPOPULATING' });
    expect(res.destroyed, 'dropped at the first message past the backlog').to.equal(true);
    // The node is not held up: the machine goes on, and the watch still keeps records.
    ns.send({ type: 'RESUME' });
    expect(ns.getSnapshot().value).to.equal('normal');
    expect(watch.recent(100)).to.have.length(9);
    let body = '';
    const counts = { setHeader() {}, end(b: string) { body = b; }, req: { method: 'GET' } } as unknown as ServerResponse;
    await routes['/machines']({} as IncomingMessage, counts, new URL('http://x/machines'));
    expect(JSON.parse(body).streams).to.deep.equal({ open: 0, dropped: 1 });
    ns.stop();
  });
});

describe('runtime/inspect/stream and the watch output', () => {
  it('parses Server-Sent Events cut anywhere, skipping comments and ids', () => {
    const p = new SseParser();
    expect(p.push('retry: 2000\n: hello\n\nid: 1\nda')).to.deep.equal([]);
    expect(p.push('ta: {"a":1}\n')).to.deep.equal([]);
    expect(p.push('\ndata: x\r\ndata: y\r\n\r\n: keep-alive\n\n')).to.deep.equal(['{"a":1}', 'x\ny']);
  });

  it('refuses an event that never ends', () => {
    const p = new SseParser();
    expect(() => p.push(`data: ${'x'.repeat(70_000)}`)).to.throw(/longer than/).with.property('code', 'E_BAD_MESSAGE');
  });

  it('prints a record as one readable line', () => {
    const base = { t: Date.UTC(2025, 0, 2, 12, 4, 5, 250), node: 'n1', machine: 'heartbeat-member', actor: 'x:12' };
    expect(formatTransition({ ...base, from: 'following', to: 'candidate', event: 'xstate.after.tick.heartbeat-member.following' })).to.equal(
      '12:04:05.250  n1  heartbeat-member x:12  following → candidate  (after tick)',
    );
    expect(formatTransition({ ...base, t: 1500, from: null, to: 'monitoring.ticking', event: 'xstate.init' })).to.equal(
      '1.500s  n1  heartbeat-member x:12  (start) → monitoring.ticking  (start)',
    );
    expect(formatTransition({ ...base, from: 'following', to: null, event: 'xstate.stop' })).to.match(/following → \(stopped\)  \(stop\)$/);
  });
});
