/**
 * The streaming trace reader (streamTrace, traceNodes) and what tells a
 * torn trace from a file that is not a trace; formatRecord's offset column.
 */
import { expect } from 'chai';
import { appendFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { encodeValue } from '../../../../bus/codec.js';
import { formatRecord, readTrace, streamTrace, traceLimits, TraceFormatError, traceNodes, type TruncatedTail } from '../../../../bus/trace/trace.js';
import type { TraceRecord } from '../../../../bus/transport/transport.js';
import { envelope } from '../transport/transport-compliance.js';
import { tempTrace } from '../../../helpers/temp-trace.js';

describe('bus/trace/trace streaming reader', () => {
  const trace = tempTrace('mangrove-trace-stream-');

  const rec = (i: number, node = `n${i % 3}`): TraceRecord => ({ t: i * 10, node, dir: i % 2 ? 'recv' : 'send', env: envelope(node, 'n9', i + 1, 'hb.monitor_pulse') });

  function caught(fn: () => unknown): TraceFormatError {
    try {
      fn();
    } catch (err) {
      if (err instanceof TraceFormatError) return err;
      throw err;
    }
    throw new Error('expected a TraceFormatError');
  }

  it('yields every record of a trace larger than one read chunk, in order', () => {
    const recs = Array.from({ length: 12_000 }, (_, i) => rec(i));
    trace.write(recs);
    expect(statSync(trace.path).size).to.be.greaterThan(traceLimits.readChunkBytes);
    expect([...streamTrace(trace.path)]).to.deep.equal(recs);
  });

  it('reads a record that spans several chunks', () => {
    const big: TraceRecord = { t: 5, node: 'n1', dir: 'recv', env: envelope('n2', 'n1', 1, 'reply.ok', { body: { result: new Uint8Array(2.5 * traceLimits.readChunkBytes).fill(7) } }) };
    trace.write([rec(0), big, rec(2)]);
    const back = [...streamTrace(trace.path)];
    expect(back).to.have.length(3);
    expect(back[1]).to.deep.equal(big);
  });

  it('stops at a torn last record and reports where it starts', () => {
    trace.write([rec(0), rec(1), rec(2)]);
    const size = statSync(trace.path).size;
    truncateSync(trace.path, size - 3);
    const tails: TruncatedTail[] = [];
    expect([...streamTrace(trace.path, (t) => tails.push(t))]).to.deep.equal([rec(0), rec(1)]);
    expect(tails).to.have.length(1);
    expect(tails[0].offset + tails[0].bytes).to.equal(size - 3);
  });

  it('refuses a file that is not a trace instead of reading it as empty', () => {
    // '{' reads as the head of a long text string: a cut-short item, but not a record.
    writeFileSync(trace.path, '{"t": 1, "node": "n1"}\n');
    const err = caught(() => [...streamTrace(trace.path, () => expect.fail('not a torn record'))]);
    expect(err.code).to.equal('E_BAD_MESSAGE');
    expect(err.record).to.equal(1);
    expect(err.message).to.contain('not a trace record (it starts with 0x7b22');
  });

  it('refuses junk appended to a trace, naming the record after the last good one', () => {
    trace.write([rec(0), rec(1)]);
    appendFileSync(trace.path, 'garbage');
    const err = caught(() => readTrace(trace.path));
    expect(err.record).to.equal(3);
  });

  it('refuses an item longer than any record rather than buffering it', () => {
    // A one-entry map whose byte string claims 8 MiB, followed by 5 MiB: cut short, but too long to be a torn record.
    writeFileSync(trace.path, Buffer.concat([Buffer.from([0xa1, 0x61, 0x78, 0x5a, 0x00, 0x80, 0x00, 0x00]), Buffer.alloc(5 * 1024 * 1024)]));
    const err = caught(() => [...streamTrace(trace.path)]);
    expect(err.message).to.contain(`longer than ${traceLimits.recordBytesMax} bytes`);
  });

  it('closes the file when the reader stops early', () => {
    trace.write(Array.from({ length: 100 }, (_, i) => rec(i)));
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    const it = streamTrace(trace.path);
    it.next();
    expect(fds()).to.equal(before + 1);
    it.return();
    expect(fds()).to.equal(before);
  });

  it('lists the recording nodes without checking envelopes', () => {
    trace.write([rec(0, 'a'), rec(1, 'b'), rec(2, 'a')]);
    // An envelope of an unknown kind fails streamTrace but not the quick pass.
    appendFileSync(trace.path, encodeValue({ t: 99, node: 'c', dir: 'send', env: { kind: 'future.kind' } }));
    expect([...traceNodes(trace.path)].sort()).to.deep.equal(['a', 'b', 'c']);
    expect(caught(() => [...streamTrace(trace.path)]).record).to.equal(4);
  });

  it('says which record of the quick pass has no node', () => {
    trace.write([rec(0)]);
    appendFileSync(trace.path, encodeValue({ t: 1 }));
    const err = caught(() => traceNodes(trace.path));
    expect(err.record).to.equal(2);
    expect(err.message).to.contain('has no node');
  });
});

describe('bus/trace/trace formatRecord offsets', () => {
  const at = (t: number): TraceRecord => ({ t, node: 'n1', dir: 'send', env: envelope('n1', 'n2', 1, 'hb.claim') });
  const wall = Date.UTC(2025, 0, 2, 3, 4, 5, 0);

  it('adds the offset from the origin to a wall-clock time', () => {
    expect(formatRecord(at(wall + 1250), wall)).to.match(/^03:04:06\.250 +\+1\.250s  n1 /);
    expect(formatRecord(at(wall - 4), wall)).to.match(/^03:04:04\.996 +-0\.004s  n1 /);
  });

  it('leaves simulated times, which already count from the start, as they are', () => {
    expect(formatRecord(at(1250), 0)).to.equal(formatRecord(at(1250)));
    expect(formatRecord(at(1250), 0)).to.match(/^ +1\.250s  n1 /);
  });
});
