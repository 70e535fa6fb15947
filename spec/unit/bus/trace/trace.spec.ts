import { expect } from 'chai';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { decodeSequence, encodeValue } from '../../../../bus/codec.js';
import { formatRecord, readTrace, TraceWriter, type TruncatedTail } from '../../../../bus/trace/trace.js';
import type { TraceRecord } from '../../../../bus/transport/transport.js';
import { envelope } from '../transport/transport-compliance.js';
import { errorOf } from '../../../helpers/error-of.js';
import { tempTrace } from '../../../helpers/temp-trace.js';

describe('bus/trace/trace', () => {
  const trace = tempTrace('mangrove-trace-');

  const records = (n: number): TraceRecord[] =>
    Array.from({ length: n }, (_, i) => ({
      t: i * 5,
      node: i % 2 === 0 ? 'n1' : 'n2',
      dir: i % 2 === 0 ? 'send' : 'recv',
      env: envelope('n1', 'n2', i + 1, i % 3 === 0 ? 'hb.monitor_pulse' : 'ndb.welcome', i % 4 === 0 ? { re: i } : {}),
    }));

  it('reads back exactly what was written, byte strings included', () => {
    const recs = records(50);
    trace.write(recs);
    expect(readTrace(trace.path)).to.deep.equal(recs);
  });

  it('loses nothing on a clean close, however many records', () => {
    const recs = records(20_000);
    trace.write(recs);
    const back = readTrace(trace.path);
    expect(back.length).to.equal(20_000);
    expect(back[19_999]).to.deep.equal(recs[19_999]);
  });

  it('is a plain CBOR sequence any decoder can walk', () => {
    trace.write(records(3));
    const items: unknown[] = [];
    decodeSequence(readFileSync(trace.path), (v) => items.push(v));
    expect(items.length).to.equal(3);
    expect(items[0]).to.include({ t: 0, node: 'n1', dir: 'send' });
  });

  it('writes buffered records on flush, before close', () => {
    const w = new TraceWriter(trace.path);
    w.record(records(1)[0]);
    expect(statSync(trace.path).size).to.equal(0);
    w.flush();
    expect(readTrace(trace.path).length).to.equal(1);
    w.close();
    expect(() => w.record(records(1)[0])).to.throw(/closed/);
  });

  it('appends to an existing trace', () => {
    trace.write(records(2));
    trace.write(records(3));
    expect(readTrace(trace.path).length).to.equal(5);
  });

  it('keeps the whole records of a torn file and reports the tail', () => {
    trace.write(records(3));
    const size = statSync(trace.path).size;
    truncateSync(trace.path, size - 4);
    let tail: TruncatedTail | undefined;
    const back = readTrace(trace.path, (t) => (tail = t));
    expect(back).to.deep.equal(records(2));
    expect(tail).to.not.equal(undefined);
    expect(tail!.offset + tail!.bytes).to.equal(size - 4);
    expect(tail!.bytes).to.be.greaterThan(0);
  });

  it('reports nothing for a whole file and reads an empty one as empty', () => {
    trace.write(records(2));
    let reported = false;
    readTrace(trace.path, () => (reported = true));
    expect(reported).to.equal(false);
    writeFileSync(trace.path, new Uint8Array(0));
    expect(readTrace(trace.path)).to.deep.equal([]);
  });

  it('refuses a file whose records are not trace records, naming the record', () => {
    writeFileSync(trace.path, Buffer.concat([encodeValue(records(1)[0]), encodeValue({ t: 1, node: 'n1', dir: 'sideways', env: {} })]));
    const refused = errorOf(() => readTrace(trace.path));
    expect(refused).to.match(/^E_BAD_MESSAGE: /);
    expect(refused).to.contain('record 2');
  });

  describe('formatRecord', () => {
    it('shows time, node, direction, kind, route, epoch/seq and a compact body on one line', () => {
      const line = formatRecord({ t: 12_345, node: 'n1', dir: 'send', env: envelope('n1', 'n2', 17, 'hb.monitor_pulse', { epoch: 3, re: 16 }) });
      expect(line).not.to.contain('\n');
      expect(line).to.match(/^ *12\.345s  n1 +send  hb\.monitor_pulse +n1→n2  e3\/#17 re 16  \{/);
      expect(line).to.contain('bitmap:0xff7f000000000001');
      expect(line).to.contain('failed:[4]');
    });

    it('shows wall-clock times as UTC time of day and an empty to as *', () => {
      const line = formatRecord({ t: Date.UTC(2025, 0, 2, 3, 4, 5, 678), node: 'n2', dir: 'recv', env: envelope('client-1', '', 1, 'client.status') });
      expect(line).to.match(/^03:04:05\.678  n2 +recv  client\.status +client-1→\*  e1\/#1  \{\}$/);
    });

    it('keeps long bodies short', () => {
      const big = { result: { bytes: new Uint8Array(4096), list: Array.from({ length: 10_000 }, (_, i) => i) } };
      const line = formatRecord({ t: 0, node: 'n1', dir: 'send', env: envelope('n1', 'n2', 1, 'reply.ok', { body: big }) });
      expect(line.length).to.be.below(300);
      expect(line).to.contain('…(4096 B)');
    });
  });
});

describe('bus/trace/trace writer failures', () => {
  it('says which trace it cannot open, with E_STORAGE', () => {
    const refused = errorOf(() => new TraceWriter('/nonexistent-dir/for/sure/run.trace'));
    expect(refused).to.match(/^E_STORAGE: /);
    expect(refused).to.contain('/nonexistent-dir/for/sure/run.trace');
  });

  it('reports a failed write with E_STORAGE on flush and again on close', () => {
    // /dev/full accepts the open and fails every write with ENOSPC.
    const w = new TraceWriter('/dev/full');
    w.record({ t: 0, node: 'n1', dir: 'send', env: envelope('n1', 'n2', 1) });
    expect(() => w.flush()).to.throw(/cannot write trace \/dev\/full/);
    expect(() => w.record({ t: 1, node: 'n1', dir: 'send', env: envelope('n1', 'n2', 2) })).to.throw(/cannot write/);
    expect(() => w.close()).to.throw(/cannot write/);
  });
});
