import { expect } from 'chai';
import { checkEnvelope, decode, decodeSequence, encode, encodeValue, nativeDecoder, type DecodeResult } from '../../../bus/codec.js';
import { ENVELOPE_VERSION, limits, REJECT_REASONS, type Envelope, type RejectReason } from '../../../bus/envelope.js';
import { KINDS } from '../../../bus/messages/index.js';
import { SeededRandom } from '../../../runtime/world/random.js';
import { sampleBodies } from '../../fixtures/sample-bodies.js';

const base = { v: ENVELOPE_VERSION, kind: 'hb.claim', from: 'n1', to: 'n2', epoch: 3, seq: 17, body: { level: 0, domain: 4 } };

function rawFrame(fields: Record<string, unknown>): Uint8Array {
  return encodeValue(fields);
}

function expectRejected(r: DecodeResult, reason: RejectReason, detailPart?: string): void {
  if (r.ok) expect.fail(`expected '${reason}', but decoded ${JSON.stringify(r.env)}`);
  expect(r.reason, r.detail).to.equal(reason);
  if (detailPart) expect(r.detail).to.contain(detailPart);
}

describe('bus/codec', () => {
  describe('round trip', () => {
    for (const kind of KINDS) {
      it(`carries ${kind} unchanged`, () => {
        const env: Envelope = { v: ENVELOPE_VERSION, kind, from: 'n1', to: 'n2', epoch: 2, seq: 40, re: 39, body: sampleBodies[kind] };
        const r = decode(encode(env));
        if (!r.ok) expect.fail(`${r.reason}: ${r.detail}`);
        expect(r.env).to.deep.equal(env);
      });
    }

    it('omits an absent re and accepts an empty to', () => {
      const env: Envelope = { ...base, to: '' };
      const r = decode(encode(env));
      if (!r.ok) expect.fail(r.detail);
      expect(r.env).to.deep.equal(env);
      expect('re' in r.env).to.equal(false);
    });

    it('gives equal bytes for equal envelopes, whatever the key order', () => {
      const a = encode({ ...base, re: 1 });
      const b = encode({ body: base.body, re: 1, seq: 17, epoch: 3, to: 'n2', from: 'n1', kind: 'hb.claim', v: ENVELOPE_VERSION });
      expect(Buffer.from(a).equals(Buffer.from(b))).to.equal(true);
    });

    it('writes byte strings as plain CBOR byte strings (major type 2)', () => {
      const frame = encode({ ...base, kind: 'reply.ok', body: { result: new Uint8Array([0xab, 0xcd]) } });
      // 0x42 = byte string of length 2, with no tag 64 (0xd8 0x40) before it.
      expect(Buffer.from(frame).toString('hex')).to.contain('42abcd').and.not.contain('d84042');
    });

    it('drops fields it does not know and keys the body schema strips', () => {
      const r = decode(rawFrame({ ...base, extra: 'x', body: { level: 0, domain: 4, junk: true } }));
      if (!r.ok) expect.fail(r.detail);
      expect(r.env).to.deep.equal(base);
    });
  });

  describe('rejections', () => {
    it('refuses a frame over frameBytesMax as oversize, before decoding it', () => {
      expectRejected(decode(new Uint8Array(limits.frameBytesMax + 1)), 'oversize');
    });

    it('refuses empty, non-CBOR, truncated and trailing input as malformed', () => {
      const good = encode(base);
      expectRejected(decode(new Uint8Array(0)), 'malformed', 'empty');
      expectRejected(decode(new Uint8Array([0xff, 0xff])), 'malformed', 'not CBOR');
      expectRejected(decode(good.subarray(0, good.length - 2)), 'malformed', 'not CBOR');
      expectRejected(decode(Buffer.concat([good, Buffer.from([0x00])])), 'malformed', 'not CBOR');
    });

    it('refuses values that are not a map as malformed', () => {
      expectRejected(decode(encodeValue([1, 2, 3])), 'malformed', 'array');
      expectRejected(decode(encodeValue(42)), 'malformed', 'not a map');
      expectRejected(decode(encodeValue(new Uint8Array([1]))), 'malformed', 'byte string');
      expectRejected(decode(encodeValue(null)), 'malformed', 'null');
      expectRejected(decode(encodeValue(new Map([[1, 2]]))), 'malformed');
    });

    for (const field of ['v', 'kind', 'from', 'to', 'epoch', 'seq', 'body'] as const) {
      it(`refuses a missing ${field} as malformed`, () => {
        const fields: Record<string, unknown> = { ...base };
        delete fields[field];
        expectRejected(decode(rawFrame(fields)), 'malformed', field);
      });
    }

    const wrong: [string, unknown][] = [
      ['v', 'one'],
      ['kind', 7],
      ['from', ''],
      ['from', 'x'.repeat(limits.idCharsMax + 1)],
      ['to', 'x'.repeat(limits.idCharsMax + 1)],
      ['to', null],
      ['kind', 'k'.repeat(limits.kindCharsMax + 1)],
      ['epoch', -1],
      ['epoch', 1.5],
      ['epoch', 2 ** 60],
      ['seq', '17'],
      ['re', 'seventeen'],
      ['re', -3],
    ];
    for (const [field, value] of wrong) {
      it(`refuses ${field} = ${JSON.stringify(value)?.slice(0, 20)} as malformed`, () => {
        expectRejected(decode(rawFrame({ ...base, [field]: value })), 'malformed', field);
      });
    }

    it('refuses another version as bad_version, before looking at other fields', () => {
      expectRejected(decode(rawFrame({ ...base, v: ENVELOPE_VERSION + 1 })), 'bad_version');
      expectRejected(decode(rawFrame({ v: ENVELOPE_VERSION + 1, shape: 'unknown to us' })), 'bad_version');
    });

    it('refuses a kind missing from the registry as unknown_kind', () => {
      expectRejected(decode(rawFrame({ ...base, kind: 'hb.nonsense' })), 'unknown_kind', 'hb.nonsense');
      expectRejected(decode(rawFrame({ ...base, kind: 'toString' })), 'unknown_kind');
    });

    it('refuses a body that fails its schema as bad_body', () => {
      expectRejected(decode(rawFrame({ ...base, body: { level: 9, domain: 4 } })), 'bad_body', 'hb.claim');
      const pulse = { ...sampleBodies['hb.monitor_pulse'], bitmap: new Uint8Array(7) };
      expectRejected(decode(rawFrame({ ...base, kind: 'hb.monitor_pulse', body: pulse })), 'bad_body', 'bitmap');
      expectRejected(decode(rawFrame({ ...base, body: null })), 'bad_body');
    });

    it('names only reasons from REJECT_REASONS', () => {
      const seen = new Set<string>();
      for (const frame of [new Uint8Array(0), encodeValue(1), rawFrame({ ...base, v: 9 }), rawFrame({ ...base, kind: 'x.y' })]) {
        const r = decode(frame);
        if (!r.ok) seen.add(r.reason);
      }
      expect([...seen].every((r) => (REJECT_REASONS as string[]).includes(r))).to.equal(true);
      expect(seen.size).to.equal(3);
    });
  });

  describe('hostile input', () => {
    it('never throws on thousands of random buffers', () => {
      const random = new SeededRandom(20240611);
      let rejected = 0;
      for (let i = 0; i < 4000; i++) {
        const r = decode(random.bytes(random.int(300)));
        expect(r).to.have.property('ok');
        if (!r.ok) {
          expect(REJECT_REASONS).to.include(r.reason);
          rejected++;
        }
      }
      expect(rejected).to.equal(4000);
    });

    it('never throws on mutated and truncated valid frames, and what it accepts is valid', () => {
      const random = new SeededRandom(7);
      const frames = KINDS.map((kind) => encode({ ...base, kind, body: sampleBodies[kind] }));
      let accepted = 0;
      for (let i = 0; i < 4000; i++) {
        const frame = Uint8Array.from(frames[random.int(frames.length)]);
        for (let flips = 1 + random.int(3); flips > 0; flips--) frame[random.int(frame.length)] = random.int(256);
        const cut = random.next() < 0.3 ? frame.subarray(0, random.int(frame.length)) : frame;
        const r = decode(cut);
        if (r.ok) {
          accepted++;
          expect(checkEnvelope(r.env).ok, JSON.stringify(r.env)).to.equal(true);
        } else {
          expect(REJECT_REASONS).to.include(r.reason);
        }
      }
      expect(accepted).to.be.below(4000);
    });

    it('refuses a tiny frame that declares a huge array without allocating it', () => {
      // Array header claiming 2^32 - 1 items, then nothing.
      expectRejected(decode(new Uint8Array([0x9a, 0xff, 0xff, 0xff, 0xff])), 'malformed');
      // Map with a body claiming a huge byte string.
      const huge = Buffer.concat([Buffer.from(encodeValue({ ...base, body: undefined })).subarray(0, -1), Buffer.from([0x5a, 0x7f, 0xff, 0xff, 0xff])]);
      expectRejected(decode(huge), 'malformed');
    });
  });

  it('reports the native cbor-extract decoder as enabled', () => {
    expect(nativeDecoder()).to.equal(true);
  });
});

describe('bus/codec sequences', () => {
  const items: unknown[] = [{ a: 'x'.repeat(300) }, [1, [2, [3]]], new Uint8Array([9, 9]), 'tail string', { n: -5, f: 1.5, big: 2n ** 70n }];
  const joined = (): Buffer => Buffer.concat(items.map((v) => encodeValue(v)));

  it('walks every item with its offset', () => {
    const seen: [unknown, number][] = [];
    const end = decodeSequence(joined(), (v, offset) => seen.push([v, offset]));
    expect(end).to.deep.equal({ complete: true });
    expect(seen.map(([v]) => v)).to.deep.equal(items);
    expect(seen[1][1]).to.equal(encodeValue(items[0]).byteLength);
  });

  it('keeps the whole items before a torn one, wherever it is torn', () => {
    const data = joined();
    const lastStart = data.byteLength - encodeValue(items[4]).byteLength;
    for (let cut = lastStart + 1; cut < data.byteLength; cut++) {
      const seen: unknown[] = [];
      const end = decodeSequence(data.subarray(0, cut), (v) => seen.push(v));
      expect(seen.length, `cut at ${cut}`).to.equal(4);
      expect(end).to.deep.include({ complete: false, offset: lastStart, truncated: true });
    }
  });

  it('reads indefinite-length items and refuses reserved heads', () => {
    // [_ 1, "a"] then {_ "k": 2}
    const indefinite = Buffer.from([0x9f, 0x01, 0x61, 0x61, 0xff, 0xbf, 0x61, 0x6b, 0x02, 0xff]);
    const seen: unknown[] = [];
    expect(decodeSequence(indefinite, (v) => seen.push(v))).to.deep.equal({ complete: true });
    expect(seen).to.deep.equal([[1, 'a'], { k: 2 }]);
    const bad = decodeSequence(Buffer.from([0x01, 0x1c]), () => undefined);
    expect(bad).to.deep.include({ complete: false, offset: 1, truncated: false });
    expect(decodeSequence(Buffer.from([0xff]), () => undefined)).to.deep.include({ truncated: false });
  });
});
