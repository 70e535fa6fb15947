import { expect } from 'chai';
import { isMangroveError } from '../../../../bus/errors.js';
import { SimNetwork, simEndpoint, type LinkFaults, type SimTransport } from '../../../../bus/transport/sim-network.js';
import type { Inbound, TraceRecord } from '../../../../bus/transport/transport.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { envelope, transportCompliance } from './transport-compliance.js';

/** Advances simulated time 1 ms at a time until `done`, for at most `limitMs`. */
function simUntil(clock: SimClock, limitMs = 10_000) {
  return async (done: () => boolean, what: string): Promise<void> => {
    for (let waited = 0; !done(); waited++) {
      if (waited >= limitMs) throw new Error(`no ${what} within ${limitMs} simulated ms`);
      clock.advance(1);
    }
  };
}

transportCompliance('SimTransport', async (hooks) => {
  const clock = new SimClock(1_000);
  const network = new SimNetwork({ clock, random: new SeededRandom(1) });
  const a = network.attach('node-a', hooks);
  const b = network.attach('node-b', hooks);
  return {
    a,
    b,
    aEndpoint: a.endpoint,
    bEndpoint: b.endpoint,
    deadEndpoint: simEndpoint('nobody'),
    clock,
    until: simUntil(clock),
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
});

describe('SimNetwork', () => {
  let clock: SimClock;
  let network: SimNetwork;
  let nodes: Record<string, SimTransport>;
  let got: Record<string, Inbound[]>;

  function attach(id: string): SimTransport {
    const t = network.attach(id);
    for (const other of Object.values(nodes)) {
      t.setPeer(other.self, other.endpoint);
      other.setPeer(id, t.endpoint);
    }
    t.setPeer(id, t.endpoint);
    nodes[id] = t;
    got[id] = [];
    t.inbound.subscribe((m) => got[id].push(m));
    return t;
  }

  function setUp(seed: number, ids: string[], faults: Partial<LinkFaults> = {}): void {
    clock = new SimClock();
    network = new SimNetwork({ clock, random: new SeededRandom(seed) });
    network.configure(faults);
    nodes = {};
    got = {};
    ids.forEach(attach);
  }

  const seqs = (id: string): number[] => got[id].map((m) => m.env.seq);

  function expectBadArgument(fn: () => unknown, part: string): void {
    try {
      fn();
    } catch (err) {
      if (!isMangroveError(err)) throw err;
      expect(err.code).to.equal('E_BAD_ARGUMENT');
      expect(err.message).to.contain(part);
      return;
    }
    expect.fail('expected E_BAD_ARGUMENT');
  }

  describe('determinism', () => {
    /** A faulty run of five nodes; returns every delivery, timed, with its bytes. */
    function run(seed: number): string[] {
      setUp(seed, ['n1', 'n2', 'n3', 'n4', 'n5'], { drop: 0.2, duplicate: 0.2, delayMs: [1, 30], reorder: true });
      const log: string[] = [];
      network.onDeliver((from, to, frame) => log.push(`${clock.now()} ${from}>${to} ${Buffer.from(frame).toString('hex')}`));
      const ids = Object.keys(nodes);
      const pick = new SeededRandom(seed).derive('traffic');
      for (let i = 1; i <= 300; i++) {
        const from = ids[pick.int(ids.length)];
        nodes[from].send(envelope(from, ids[pick.int(ids.length)], i, 'hb.member_pulse'));
        if (i % 10 === 0) clock.advance(pick.int(7));
      }
      clock.advance(100);
      return log;
    }

    it('delivers the same frames in the same order at the same times for the same seed', () => {
      const first = run(42);
      expect(first.length).to.be.greaterThan(200);
      expect(run(42)).to.deep.equal(first);
    });

    it('delivers differently for another seed', () => {
      expect(run(43)).not.to.deep.equal(run(42));
    });
  });

  describe('link order and faults', () => {
    it('keeps each link FIFO without reorder, whatever delays are drawn', () => {
      setUp(5, ['a', 'b'], { delayMs: [1, 50] });
      const times: number[] = [];
      network.onDeliver(() => times.push(clock.now()));
      for (let i = 1; i <= 200; i++) nodes.a.send(envelope('a', 'b', i));
      clock.advance(60);
      expect(seqs('b')).to.deep.equal(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(new Set(times).size).to.be.greaterThan(1);
    });

    it('lets messages on a link overtake each other with reorder', () => {
      setUp(5, ['a', 'b'], { delayMs: [1, 50], reorder: true });
      for (let i = 1; i <= 200; i++) nodes.a.send(envelope('a', 'b', i));
      clock.advance(60);
      const order = seqs('b');
      expect([...order].sort((x, y) => x - y)).to.deep.equal(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(order.some((s, i) => i > 0 && s < order[i - 1])).to.equal(true);
    });

    it('loses about the configured share of messages with drop', () => {
      setUp(11, ['a', 'b'], { drop: 0.5 });
      for (let i = 1; i <= 1000; i++) nodes.a.send(envelope('a', 'b', i));
      clock.advance(10);
      const received = got.b.length;
      expect(received).to.be.within(400, 600);
      expect(network.stats()).to.include({ sent: 1000, dropped: 1000 - received, delivered: received });
      expect(nodes.a.stats()).to.include({ sent: 1000, unsent: 0 });
    });

    it('delivers every message twice with duplicate 1', () => {
      setUp(3, ['a', 'b'], { duplicate: 1 });
      for (let i = 1; i <= 100; i++) nodes.a.send(envelope('a', 'b', i));
      clock.advance(10);
      expect(seqs('b')).to.deep.equal(Array.from({ length: 100 }, (_, i) => [i + 1, i + 1]).flat());
      expect(network.stats()).to.include({ duplicated: 100, delivered: 200 });
    });

    it('delivers within the configured delay, not before', () => {
      setUp(8, ['a', 'b'], { delayMs: [10, 20], reorder: true });
      const delays: number[] = [];
      network.onDeliver(() => delays.push(clock.now() - 100));
      clock.advance(100);
      for (let i = 1; i <= 100; i++) nodes.a.send(envelope('a', 'b', i));
      clock.advance(9);
      expect(got.b.length).to.equal(0);
      clock.advance(11);
      expect(got.b.length).to.equal(100);
      expect(Math.min(...delays)).to.equal(10);
      expect(Math.max(...delays)).to.equal(20);
    });

    it('applies per-link settings over the default, most specific first', () => {
      setUp(2, ['a', 'b', 'c']);
      network.configure({ drop: 1 }, 'a', 'b');
      network.configure({ delayMs: [5, 5] }, 'a');
      network.configure({ drop: 1 }, undefined, 'c');
      network.configure({ drop: 0 }, 'b', 'c');
      nodes.a.send(envelope('a', 'b', 1));
      nodes.a.send(envelope('a', 'c', 2));
      nodes.b.send(envelope('b', 'a', 3));
      nodes.b.send(envelope('b', 'c', 4));
      clock.advance(4);
      expect(seqs('a')).to.deep.equal([3]);
      clock.advance(1);
      expect(seqs('b')).to.deep.equal([]);
      expect(seqs('c')).to.deep.equal([4]);
      network.resetFaults();
      nodes.a.send(envelope('a', 'b', 5));
      clock.advance(1);
      expect(seqs('b')).to.deep.equal([5]);
    });

    it('refuses fault settings that make no sense', () => {
      setUp(1, ['a']);
      expectBadArgument(() => network.configure({ drop: 1.5 }), 'drop');
      expectBadArgument(() => network.configure({ duplicate: -0.1 }), 'duplicate');
      expectBadArgument(() => network.configure({ delayMs: [5, 2] }), 'delayMs');
      expectBadArgument(() => network.configure({ delayMs: [0.5, 2] }), 'delayMs');
    });
  });

  describe('partitions', () => {
    it('cuts groups apart, unlisted nodes forming one more group, until healed', () => {
      setUp(4, ['a', 'b', 'c', 'd', 'e']);
      network.partition([['a', 'b'], ['c']]);
      const pairs: [string, string][] = [['a', 'b'], ['a', 'c'], ['c', 'd'], ['d', 'e'], ['b', 'd']];
      pairs.forEach(([from, to], i) => nodes[from].send(envelope(from, to, i + 1)));
      clock.advance(5);
      expect(seqs('b')).to.deep.equal([1]);
      expect(seqs('c')).to.deep.equal([]);
      expect(seqs('d')).to.deep.equal([]);
      expect(seqs('e')).to.deep.equal([4]);
      expect(network.stats().cut).to.equal(3);
      network.heal();
      nodes.a.send(envelope('a', 'c', 10));
      clock.advance(5);
      expect(seqs('c')).to.deep.equal([10]);
    });

    it('isolates a single listed node from everyone', () => {
      setUp(4, ['a', 'b', 'c']);
      network.partition([['a']]);
      nodes.b.send(envelope('b', 'a', 1));
      nodes.b.send(envelope('b', 'c', 2));
      clock.advance(5);
      expect(seqs('a')).to.deep.equal([]);
      expect(seqs('c')).to.deep.equal([2]);
    });

    it('loses messages in flight across a new cut', () => {
      setUp(4, ['a', 'b'], { delayMs: [10, 10] });
      nodes.a.send(envelope('a', 'b', 1));
      clock.advance(5);
      network.partition([['a'], ['b']]);
      clock.advance(10);
      expect(got.b.length).to.equal(0);
      expect(network.stats().cut).to.equal(1);
    });

    it('refuses a node listed in two groups', () => {
      setUp(1, ['a', 'b']);
      expectBadArgument(() => network.partition([['a', 'b'], ['b']]), 'b is in two');
    });
  });

  describe('crash and restart', () => {
    it('closes a crashed node: messages to it vanish and it sends nothing', () => {
      setUp(6, ['a', 'b'], { delayMs: [5, 5] });
      let completed = false;
      nodes.b.inbound.subscribe({ complete: () => (completed = true) });
      nodes.a.send(envelope('a', 'b', 1));
      network.crash('b');
      expect(completed).to.equal(true);
      expect(network.isAttached('b')).to.equal(false);
      nodes.a.send(envelope('a', 'b', 2));
      nodes.b.send(envelope('b', 'a', 3));
      clock.advance(10);
      expect(got.b.length).to.equal(0);
      expect(got.a.length).to.equal(0);
      expect(network.stats()).to.include({ lost: 2, delivered: 0 });
      expect(nodes.b.stats().unsent).to.equal(1);
    });

    it('gives a restarted node a new transport that misses what was sent to the old one', () => {
      setUp(6, ['a', 'b'], { delayMs: [5, 5] });
      nodes.a.send(envelope('a', 'b', 1));
      const old = nodes.b;
      const fresh = network.restart('b');
      expect(fresh).not.to.equal(old);
      const atFresh: number[] = [];
      fresh.inbound.subscribe((m) => atFresh.push(m.env.seq));
      nodes.a.send(envelope('a', 'b', 2));
      clock.advance(10);
      expect(atFresh).to.deep.equal([2]);
      expect(() => network.attach('b')).to.throw(/already attached/);
    });

    it('loses a reply routed to an incarnation that has since restarted', () => {
      setUp(6, ['a', 'b']);
      nodes.a.send(envelope('a', 'b', 1));
      clock.advance(2);
      const route = got.b[0].route;
      const fresh = network.restart('a');
      const atFresh: Inbound[] = [];
      fresh.inbound.subscribe((m) => atFresh.push(m));
      nodes.b.reply(route, envelope('b', 'a', 1, 'reply.ok', { re: 1 }));
      clock.advance(2);
      expect(atFresh.length).to.equal(0);
      expect(network.stats().lost).to.equal(1);
    });
  });

  describe('observation and scale', () => {
    it('shows every delivery to observers, before the receiver, until removed', () => {
      setUp(9, ['a', 'b']);
      const seen: string[] = [];
      const stop = network.onDeliver((from, to, frame) => seen.push(`${from}>${to} ${frame.byteLength > 0} at b: ${got.b.length}`));
      nodes.a.send(envelope('a', 'b', 1));
      clock.advance(1);
      stop();
      nodes.a.send(envelope('a', 'b', 2));
      clock.advance(1);
      expect(seen).to.deep.equal(['a>b true at b: 0']);
      expect(got.b.length).to.equal(2);
    });

    it('traces identically to ZeroMQ: sends and accepts on the node clock', () => {
      setUp(9, ['a', 'b'], { delayMs: [3, 3] });
      const records: TraceRecord[] = [];
      nodes.b.setTrace({ record: (r) => records.push(r) });
      clock.advance(10);
      nodes.a.send(envelope('a', 'b', 1));
      clock.advance(5);
      expect(records.map((r) => [r.t, r.node, r.dir, r.env.seq])).to.deep.equal([[13, 'b', 'recv', 1]]);
    });

    it('carries 20,000 messages among 10,000 nodes', function () {
      this.timeout(60_000);
      clock = new SimClock();
      network = new SimNetwork({ clock, random: new SeededRandom(10_000) });
      network.configure({ delayMs: [1, 20], drop: 0.01 });
      const ids = Array.from({ length: 10_000 }, (_, i) => `n${i}`);
      const ts = ids.map((id) => network.attach(id));
      let received = 0;
      for (const t of ts) t.inbound.subscribe(() => received++);
      const pick = new SeededRandom(1);
      for (let i = 0; i < 20_000; i++) {
        const from = pick.int(ids.length);
        ts[from].sendToEndpoint(simEndpoint(ids[pick.int(ids.length)]), envelope(ids[from], '', i, 'hb.member_pulse'));
        if (i % 20 === 19) clock.advance(1);
      }
      clock.advance(50);
      const s = network.stats();
      expect(s.sent).to.equal(20_000);
      expect(received).to.equal(s.delivered);
      expect(s.delivered + s.dropped).to.equal(20_000);
    });
  });
});
