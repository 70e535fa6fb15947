/**
 * What every Transport must do, whatever moves its bytes (js-libp2p's
 * interface-compliance-tests idea): zmq.spec.ts and sim-network.spec.ts
 * run this same suite against the real and the simulated transport.
 *
 * Absence is shown without sleeping: after the envelope that must not
 * arrive, a sentinel follows on the same link, and both transports keep a
 * link in order, so once the sentinel is in the other one would be too.
 */
import { expect } from 'chai';
import type { Clock } from '../../../../bus/clock.js';
import { ENVELOPE_VERSION, REJECT_REASONS, type Envelope } from '../../../../bus/envelope.js';
import type { Kind } from '../../../../bus/messages/index.js';
import type { BaseTransportOptions } from '../../../../bus/transport/transport-base.js';
import type { Inbound, TraceRecord, Transport } from '../../../../bus/transport/transport.js';
import { sampleBodies } from '../../../fixtures/sample-bodies.js';

export interface TransportHarness {
  a: Transport;
  b: Transport;
  aEndpoint: string;
  bEndpoint: string;
  /** An endpoint of the transport's kind where nothing listens. */
  deadEndpoint: string;
  /** The clock both transports were made with. */
  clock: Clock;
  /** Runs the world until `done()` holds; fails naming `what` after a bound. */
  until(done: () => boolean, what: string): Promise<void>;
  /** Closes whatever the pair still holds open. */
  close(): Promise<void>;
}

export type Hooks = Required<Pick<BaseTransportOptions, 'onReject' | 'onError'>>;

export type MakePair = (hooks: Hooks) => Promise<TransportHarness>;

export function envelope(from: string, to: string, seq: number, kind: Kind = 'hb.claim', extra: Partial<Envelope> = {}): Envelope {
  return { v: ENVELOPE_VERSION, kind, from, to, epoch: 1, seq, body: sampleBodies[kind], ...extra };
}

export function transportCompliance(name: string, makePair: MakePair): void {
  describe(`${name}: transport compliance`, function () {
    let h: TransportHarness;
    let a: Transport;
    let b: Transport;
    let atA: Inbound[];
    let atB: Inbound[];
    let errors: string[];
    let rejects: string[];

    beforeEach(async () => {
      errors = [];
      rejects = [];
      h = await makePair({
        onReject: (reason, detail) => rejects.push(`${reason}: ${detail}`),
        onError: (source, detail) => errors.push(`${source}: ${detail}`),
      });
      ({ a, b } = h);
      a.setPeer(b.self, h.bEndpoint);
      b.setPeer(a.self, h.aEndpoint);
      atA = [];
      atB = [];
      a.inbound.subscribe((m) => atA.push(m));
      b.inbound.subscribe((m) => atB.push(m));
    });

    afterEach(async () => {
      await h.close();
    });

    const seqsAtB = (): number[] => atB.map((m) => m.env.seq);

    it('delivers by node id, unchanged, and counts it on both sides', async () => {
      const env = envelope(a.self, b.self, 1, 'hb.monitor_pulse', { epoch: 4, re: 9 });
      a.send(env);
      await h.until(() => atB.length === 1, 'the envelope to arrive at b');
      expect(atB[0].env).to.deep.equal(env);
      expect(a.stats()).to.include({ sent: 1, unsent: 0 });
      expect(a.stats().sentByKind).to.deep.equal({ 'hb.monitor_pulse': 1 });
      expect(b.stats()).to.include({ received: 1, rejected: 0, filtered: 0 });
      expect(b.stats().receivedByKind).to.deep.equal({ 'hb.monitor_pulse': 1 });
    });

    it('answers on the link a request came by', async () => {
      a.send(envelope(a.self, b.self, 7, 'client.status'));
      await h.until(() => atB.length === 1, 'the request to arrive at b');
      // The route, not the address book, must carry the answer.
      b.removePeer(a.self);
      b.reply(atB[0].route, envelope(b.self, a.self, 1, 'reply.ok', { re: 7 }));
      await h.until(() => atA.length === 1, 'the reply to arrive at a');
      expect(atA[0].env).to.deep.include({ kind: 'reply.ok', re: 7, from: b.self });
      expect(b.stats().sent).to.equal(1);
    });

    it('sends to an endpoint whose node id is not known, addressed or to anyone', async () => {
      a.removePeer(b.self);
      a.sendToEndpoint(h.bEndpoint, envelope(a.self, b.self, 1));
      a.sendToEndpoint(h.bEndpoint, envelope(a.self, '', 2, 'ndb.hello'));
      await h.until(() => atB.length === 2, 'both bootstrap envelopes to arrive');
      expect(seqsAtB()).to.deep.equal([1, 2]);
      expect(atB[1].env.to).to.equal('');
    });

    it('counts an envelope for an unknown peer as unsent, without throwing', () => {
      expect(() => a.send(envelope(a.self, 'nobody', 1))).not.to.throw();
      expect(a.stats()).to.include({ sent: 0, unsent: 1 });
      expect(errors.some((e) => e.startsWith('unsent:') && e.includes('nobody'))).to.equal(true);
    });

    it('does not block or throw when the peer is dead', () => {
      a.setPeer('ghost', h.deadEndpoint);
      for (let i = 1; i <= 50; i++) a.send(envelope(a.self, 'ghost', i));
      const s = a.stats();
      expect(s.sent + s.unsent).to.equal(50);
    });

    it('drops traffic to a filtered peer, counted as unsent', async () => {
      a.setDropped([b.self]);
      expect(a.dropped()).to.deep.equal([b.self]);
      a.send(envelope(a.self, b.self, 1));
      expect(a.stats()).to.include({ sent: 0, unsent: 1 });
      a.setDropped([]);
      a.send(envelope(a.self, b.self, 2));
      await h.until(() => atB.length === 1, 'the sentinel to arrive');
      expect(seqsAtB()).to.deep.equal([2]);
    });

    it('drops traffic from a filtered peer, counted as filtered', async () => {
      b.setDropped([a.self]);
      a.send(envelope(a.self, b.self, 1));
      await h.until(() => b.stats().filtered === 1, 'b to filter the envelope');
      b.setDropped([]);
      a.send(envelope(a.self, b.self, 2));
      await h.until(() => atB.length === 1, 'the sentinel to arrive');
      expect(seqsAtB()).to.deep.equal([2]);
      expect(b.stats()).to.include({ received: 1, filtered: 1, rejected: 0 });
    });

    it('drops envelopes from an earlier epoch of a sender', async () => {
      const epochs = [5, 4, 6, 5, 6];
      epochs.forEach((epoch, i) => a.send(envelope(a.self, b.self, i + 1, 'hb.claim', { epoch })));
      await h.until(() => atB.length + b.stats().rejected === epochs.length, 'all five to be handled');
      expect(seqsAtB()).to.deep.equal([1, 3, 5]);
      expect(b.stats().rejectedByReason.stale_epoch).to.equal(2);
      expect(rejects.filter((r) => r.startsWith('stale_epoch')).length).to.equal(2);
    });

    it('drops envelopes addressed to another node', async () => {
      a.sendToEndpoint(h.bEndpoint, envelope(a.self, 'carol', 1));
      a.setPeer('ghost', h.bEndpoint);
      a.send(envelope(a.self, 'ghost', 2));
      a.send(envelope(a.self, b.self, 3));
      await h.until(() => atB.length === 1, 'the sentinel to arrive');
      expect(seqsAtB()).to.deep.equal([3]);
      expect(b.stats().rejectedByReason.misaddressed).to.equal(2);
      expect(b.stats().rejected).to.equal(2);
    });

    it('traces every envelope sent and accepted, with the node clock', async () => {
      const records: TraceRecord[] = [];
      const sink = { record: (r: TraceRecord) => records.push(r) };
      a.setTrace(sink);
      b.setTrace(sink);
      const t0 = h.clock.now();
      a.send(envelope(a.self, b.self, 1));
      a.send(envelope(a.self, 'nobody', 2));
      await h.until(() => atB.length === 1, 'the envelope to arrive');
      b.reply(atB[0].route, envelope(b.self, a.self, 1, 'reply.ok', { re: 1 }));
      await h.until(() => atA.length === 1, 'the reply to arrive');
      const t1 = h.clock.now();
      a.setTrace(null);
      a.send(envelope(a.self, b.self, 3));
      await h.until(() => atB.length === 2, 'the untraced envelope to arrive');
      b.setTrace(null);
      expect(records.map((r) => `${r.node} ${r.dir} ${r.env.kind} ${r.env.seq}`)).to.deep.equal([
        `${a.self} send hb.claim 1`,
        `${b.self} recv hb.claim 1`,
        `${b.self} send reply.ok 1`,
        `${a.self} recv reply.ok 1`,
        `${b.self} recv hb.claim 3`,
      ]);
      for (const r of records.slice(0, 4)) expect(r.t).to.be.within(t0, t1);
      expect(records[1].env).to.deep.equal(envelope(a.self, b.self, 1));
    });

    it('keeps delivering when one subscriber throws, and reports the error', async () => {
      let later = 0;
      b.inbound.subscribe(() => {
        throw new Error('subscriber bug');
      });
      b.inbound.subscribe(() => later++);
      a.send(envelope(a.self, b.self, 1));
      a.send(envelope(a.self, b.self, 2));
      await h.until(() => later === 2, 'both envelopes to reach the healthy subscribers');
      expect(seqsAtB()).to.deep.equal([1, 2]);
      expect(errors.filter((e) => e === 'subscriber: subscriber bug').length).to.equal(2);
    });

    it('reports stats as a copy with every reject reason present', () => {
      const s = b.stats();
      expect(Object.keys(s.rejectedByReason).sort()).to.deep.equal([...REJECT_REASONS].sort());
      expect(Object.values(s.rejectedByReason).every((n) => n === 0)).to.equal(true);
      s.rejectedByReason.malformed = 99;
      s.sent = 99;
      expect(b.stats().rejectedByReason.malformed).to.equal(0);
      expect(b.stats().sent).to.equal(0);
    });

    it('closes cleanly: inbound completes, later sends are unsent, close is idempotent', async () => {
      let completed = false;
      b.inbound.subscribe({ complete: () => (completed = true) });
      await b.close();
      expect(completed).to.equal(true);
      expect(() => b.send(envelope(b.self, a.self, 1))).not.to.throw();
      expect(b.stats()).to.include({ sent: 0, unsent: 1 });
      await b.close();
      // The peer of a closed node carries on.
      expect(() => a.send(envelope(a.self, b.self, 2))).not.to.throw();
    });
  });
}
