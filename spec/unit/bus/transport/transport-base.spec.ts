import { expect } from 'chai';
import { encode } from '../../../../bus/codec.js';
import { limits } from '../../../../bus/envelope.js';
import { isMangroveError } from '../../../../bus/errors.js';
import { BaseTransport, transportLimits, type WriteResult, type WriteTarget } from '../../../../bus/transport/transport-base.js';
import type { Inbound } from '../../../../bus/transport/transport.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { envelope } from './transport-compliance.js';

/** A transport whose wire is the spec itself: frames in through `feed`,
 * frames out into `written`, with a chosen write outcome. */
class Probe extends BaseTransport {
  written: { target: WriteTarget; frame: Uint8Array }[] = [];
  outcome: () => WriteResult = () => null;

  feed(frames: Uint8Array | Uint8Array[], route: unknown = 'route-1'): void {
    this.accept(frames, route);
  }

  protected write(target: WriteTarget, frame: Uint8Array): WriteResult {
    this.written.push({ target, frame });
    return this.outcome();
  }

  async close(): Promise<void> {
    this.markClosed();
  }
}

describe('bus/transport/transport/transport-base: the shared gate', () => {
  let probe: Probe;
  let got: Inbound[];
  let rejects: string[];
  let errors: string[];

  beforeEach(() => {
    rejects = [];
    errors = [];
    got = [];
    probe = new Probe({
      self: 'me',
      clock: new SimClock(),
      onReject: (reason) => rejects.push(reason),
      onError: (source, detail) => errors.push(`${source}: ${detail}`),
    });
    probe.inbound.subscribe((m) => got.push(m));
  });

  const good = (seq = 1) => encode(envelope('peer', 'me', seq));

  it('refuses a message with no payload frame as malformed and several as multipart', () => {
    probe.feed([]);
    probe.feed([good(), good()]);
    expect(probe.stats().rejectedByReason).to.include({ malformed: 1, multipart: 1 });
    expect(rejects).to.deep.equal(['malformed', 'multipart']);
    probe.feed([good()]);
    expect(got.length).to.equal(1);
  });

  it('takes each envelope of a frame (a CBOR sequence) in order; a bad one ends the frame, and too many are refused', () => {
    const seqOf = (frames: Uint8Array[]) => Buffer.concat(frames);
    probe.feed([seqOf([good(1), good(2), good(3)])]);
    expect(got.map((m) => m.env.seq)).to.deep.equal([1, 2, 3]);
    // Garbage after a good envelope: the good one arrives, the rest of the frame is one refusal.
    probe.feed([seqOf([good(4), new Uint8Array([0xff, 1, 2]), good(5)])]);
    expect(got.map((m) => m.env.seq)).to.deep.equal([1, 2, 3, 4]);
    expect(rejects).to.deep.equal(['malformed']);
    probe.feed([seqOf(Array.from({ length: limits.envelopesPerFrameMax + 1 }, (_, i) => good(10 + i)))]);
    expect(got.length, 'a full frame\'s worth, then a refusal').to.equal(4 + limits.envelopesPerFrameMax);
    expect(rejects).to.deep.equal(['malformed', 'oversize']);
  });

  it('passes the route it was given with the envelope', () => {
    const route = { any: 'thing' };
    probe.feed(good(), route);
    expect(got[0].route).to.equal(route);
  });

  it('lets a newer epoch replace the older one', () => {
    probe.feed(encode(envelope('peer', 'me', 1, 'hb.claim', { epoch: 2 })));
    probe.feed(encode(envelope('peer', 'me', 2, 'hb.claim', { epoch: 3 })));
    probe.feed(encode(envelope('peer', 'me', 3, 'hb.claim', { epoch: 2 })));
    probe.feed(encode(envelope('other', 'me', 4, 'hb.claim', { epoch: 1 })));
    expect(got.map((m) => m.env.seq)).to.deep.equal([1, 2, 4]);
    expect(probe.stats().rejectedByReason.stale_epoch).to.equal(1);
  });

  it('forgets the least recently heard sender beyond epochsTrackedMax, not the busy ones', () => {
    probe.feed(encode(envelope('busy', 'me', 1, 'hb.claim', { epoch: 5 })));
    for (let i = 0; i < transportLimits.epochsTrackedMax; i++) {
      probe.feed(encode(envelope(`client-${i}`, 'me', 1, 'client.status')));
      if (i % 1000 === 0) probe.feed(encode(envelope('busy', 'me', 2, 'hb.claim', { epoch: 5 })));
    }
    probe.feed(encode(envelope('busy', 'me', 3, 'hb.claim', { epoch: 4 })));
    expect(probe.stats().rejectedByReason.stale_epoch).to.equal(1);
    // client-0 was evicted, so an older epoch from it is news again.
    probe.feed(encode(envelope('client-0', 'me', 2, 'client.status', { epoch: 0 })));
    expect(probe.stats().rejectedByReason.stale_epoch).to.equal(1);
  });

  it('survives a failing reject hook, error hook and trace sink', () => {
    const noisy = new Probe({
      self: 'me',
      clock: new SimClock(),
      onReject: () => {
        throw new Error('logger down');
      },
      onError: () => {
        throw new Error('logger down');
      },
    });
    const seen: number[] = [];
    noisy.inbound.subscribe((m) => seen.push(m.env.seq));
    noisy.setTrace({
      record: () => {
        throw new Error('disk full');
      },
    });
    expect(() => noisy.feed(new Uint8Array([0xff]))).not.to.throw();
    expect(() => noisy.feed(good(2))).not.to.throw();
    expect(() => noisy.send(envelope('me', 'nobody', 1))).not.to.throw();
    expect(seen).to.deep.equal([2]);
    expect(noisy.stats()).to.include({ rejected: 1, received: 1, unsent: 1 });
  });

  it('counts a send the link refuses at once as unsent, and reports why', () => {
    probe.setPeer('peer', 'x://peer');
    probe.outcome = () => 'queue full';
    probe.send(envelope('me', 'peer', 1));
    probe.outcome = () => {
      throw new Error('socket gone');
    };
    probe.send(envelope('me', 'peer', 2));
    expect(probe.stats()).to.include({ sent: 0, unsent: 2 });
    expect(errors).to.deep.equal(['unsent: hb.claim to "peer": queue full', 'unsent: hb.claim to "peer": socket gone']);
  });

  it('moves a send the link refuses later from sent to unsent', async () => {
    probe.setPeer('peer', 'x://peer');
    probe.outcome = () => Promise.resolve('host unreachable');
    probe.send(envelope('me', 'peer', 1));
    probe.outcome = () => Promise.resolve(null);
    probe.send(envelope('me', 'peer', 2));
    expect(probe.stats()).to.include({ sent: 2, unsent: 0 });
    await Promise.resolve();
    await Promise.resolve();
    expect(probe.stats()).to.include({ sent: 1, unsent: 1 });
    expect(probe.stats().sentByKind).to.deep.equal({ 'hb.claim': 1 });
  });

  it('does not send an envelope over frameBytesMax, or one that cannot be encoded', () => {
    probe.setPeer('peer', 'x://peer');
    probe.send(envelope('me', 'peer', 1, 'reply.ok', { body: { result: new Uint8Array(5 * 1024 * 1024) } }));
    probe.send(envelope('me', 'peer', 2, 'reply.ok', { body: { result: { fn: Symbol('no') } } }));
    expect(probe.written.length).to.equal(0);
    expect(probe.stats().unsent).to.equal(2);
    expect(errors[0]).to.contain('more than');
  });

  it('writes to the address book endpoint, the given endpoint or the route', () => {
    probe.setPeer('peer', 'x://peer');
    probe.send(envelope('me', 'peer', 1));
    probe.sendToEndpoint('x://boot', envelope('me', '', 2));
    probe.reply('route-9', envelope('me', 'peer', 3));
    expect(probe.written.map((w) => w.target)).to.deep.equal([{ endpoint: 'x://peer' }, { endpoint: 'x://boot' }, { route: 'route-9' }]);
    expect(probe.endpointOf('peer')).to.equal('x://peer');
    probe.removePeer('peer');
    expect(probe.endpointOf('peer')).to.equal(undefined);
  });

  it('refuses bad ids and endpoints, and a full address book, with E_ codes', () => {
    const code = (fn: () => void): string => {
      try {
        fn();
      } catch (err) {
        if (isMangroveError(err)) return err.code;
        throw err;
      }
      return 'none';
    };
    expect(code(() => probe.setPeer('', 'x://a'))).to.equal('E_BAD_ARGUMENT');
    expect(code(() => probe.setPeer('a', ''))).to.equal('E_BAD_ARGUMENT');
    expect(code(() => probe.setPeer('a', 'x'.repeat(300)))).to.equal('E_BAD_ARGUMENT');
    expect(code(() => new Probe({ self: '', clock: new SimClock() }))).to.equal('E_BAD_ARGUMENT');
    for (let i = 0; i < transportLimits.peersMax; i++) probe.setPeer(`n${i}`, 'x://n');
    expect(code(() => probe.setPeer('one-more', 'x://n'))).to.equal('E_FULL');
    expect(code(() => probe.setPeer('n0', 'x://moved'))).to.equal('none');
  });

  it('ignores frames after close', async () => {
    await probe.close();
    probe.feed(good());
    expect(got.length).to.equal(0);
    expect(probe.stats().received).to.equal(0);
  });
});
