import { expect } from 'chai';
import { ENVELOPE_VERSION } from '../../../../bus/envelope.js';
import { isMangroveError } from '../../../../bus/errors.js';
import type { TraceRecord } from '../../../../bus/transport/transport.js';
import {
  checkWindow,
  compileFilter,
  kindMatcher,
  listValues,
  mergeByTime,
  parseDir,
  parseTimePoint,
  resolveNodes,
  summarize,
  Tally,
  trackFile,
  type FileCounts,
} from '../../../../runtime/trace/query.js';

/** A record; `tag` goes in seq so a spec can tell records apart. */
function rec(t: number, node: string, tag: number, kind = 'hb.claim', dir: 'send' | 'recv' = 'send'): TraceRecord {
  return { t, node, dir, env: { v: ENVELOPE_VERSION, kind, from: node, to: 'x', epoch: 1, seq: tag, body: {} } };
}

const tags = (recs: Iterable<TraceRecord>): number[] => [...recs].map((r) => r.env.seq);

/** The E_BAD_ARGUMENT message `fn` throws. */
function badArgument(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (!isMangroveError(err)) throw err;
    expect(err.code).to.equal('E_BAD_ARGUMENT');
    return err.message;
  }
  throw new Error('expected an E_BAD_ARGUMENT error');
}

describe('runtime/trace/query', () => {
  describe('mergeByTime', () => {
    it('interleaves traces by time', () => {
      const a = [rec(0, 'a', 1), rec(20, 'a', 3), rec(40, 'a', 5)];
      const b = [rec(10, 'b', 2), rec(30, 'b', 4), rec(50, 'b', 6)];
      expect(tags(mergeByTime([a, b]))).to.deep.equal([1, 2, 3, 4, 5, 6]);
    });

    it('keeps a file’s order at equal times, and puts earlier files first', () => {
      const a = [rec(5, 'a', 1), rec(5, 'a', 2), rec(5, 'a', 3)];
      const b = [rec(5, 'b', 10), rec(5, 'b', 11)];
      expect(tags(mergeByTime([a, b]))).to.deep.equal([1, 2, 3, 10, 11]);
      expect(tags(mergeByTime([b, a]))).to.deep.equal([10, 11, 1, 2, 3]);
    });

    it('equals a stable sort of the files one after the other, for many files', () => {
      // A seeded LCG, so a failure is the same every run.
      let seed = 91723;
      const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
      let tag = 0;
      const files = Array.from({ length: 7 }, (_, f) => {
        let t = 0;
        return Array.from({ length: 1 + (next() % 60) }, () => rec((t += next() % 4), `n${f}`, tag++));
      });
      const expected = files.flat().sort((x, y) => x.t - y.t);
      expect(tags(mergeByTime(files))).to.deep.equal(tags(expected));
    });

    it('handles no files and empty files', () => {
      expect([...mergeByTime([])]).to.deep.equal([]);
      expect(tags(mergeByTime([[], [rec(1, 'a', 1)], []]))).to.deep.equal([1]);
    });

    it('reads each file only as far as it needs, and closes every file when stopped', () => {
      const pulled = [0, 0];
      const closed = [false, false];
      function* file(i: number): Generator<TraceRecord> {
        try {
          for (let k = 0; k < 1000; k++) {
            pulled[i]++;
            yield rec(k * 2 + i, `n${i}`, k);
          }
        } finally {
          closed[i] = true;
        }
      }
      const merged = mergeByTime([file(0), file(1)]);
      for (let k = 0; k < 4; k++) merged.next();
      expect(pulled[0] + pulled[1]).to.be.at.most(6);
      merged.return();
      expect(closed).to.deep.equal([true, true]);
    });

    it('merges a file that goes back in time as it stands, and trackFile counts those records', () => {
      const counts: FileCounts = { records: 0, outOfOrder: 0 };
      const stepped = trackFile([rec(10, 'a', 1), rec(30, 'a', 2), rec(15, 'a', 3), rec(40, 'a', 4)], counts);
      expect(tags(mergeByTime([stepped, [rec(20, 'b', 9)]]))).to.deep.equal([1, 9, 2, 3, 4]);
      expect(counts).to.deep.equal({ records: 4, outOfOrder: 1 });
    });
  });

  describe('listValues', () => {
    it('splits commas and adds up repeated options', () => {
      expect(listValues('--kind', ['hb.,ndb.commit', ' pan.claim '])).to.deep.equal(['hb.', 'ndb.commit', 'pan.claim']);
    });

    it('refuses empty items, naming the option', () => {
      expect(badArgument(() => listValues('--node', ['a,,b']))).to.match(/^--node takes a comma-separated list/);
    });
  });

  describe('kindMatcher', () => {
    const known = ['hb.member_pulse', 'hb.monitor_pulse', 'ndb.commit', 'ndb.prepare', 'pan.claim'];

    it('matches exact kinds', () => {
      const m = kindMatcher(['ndb.commit'], known);
      expect(m('ndb.commit')).to.equal(true);
      expect(m('ndb.prepare')).to.equal(false);
    });

    it('matches a namespace given with its dot, and only that namespace', () => {
      const m = kindMatcher(['hb.', 'pan.claim'], known);
      expect(known.filter(m)).to.deep.equal(['hb.member_pulse', 'hb.monitor_pulse', 'pan.claim']);
      expect(m('hbx.thing')).to.equal(false);
    });

    it('refuses an unknown kind, offering the kinds of its namespace', () => {
      expect(badArgument(() => kindMatcher(['ndb.comit'], known))).to.equal('--kind ndb.comit is not a message kind (ndb. kinds: ndb.commit, ndb.prepare)');
    });

    it('refuses a namespace without its dot, or one no kind is in', () => {
      expect(badArgument(() => kindMatcher(['hb'], known))).to.equal('--kind hb is not a message kind (for every hb. kind, write hb.)');
      expect(badArgument(() => kindMatcher(['rec.quiesce'], known))).to.equal('--kind rec.quiesce is not a message kind (namespaces: hb., ndb., pan.)');
      expect(badArgument(() => kindMatcher(['rec.'], known))).to.match(/^--kind rec\. is not the prefix of any message kind/);
    });

    it('knows the kinds of this build by default', () => {
      expect(kindMatcher(['hb.'])('hb.claim')).to.equal(true);
    });
  });

  describe('resolveNodes', () => {
    const ids = ['3945134a0b1c-018f2c3a4b5c', '39ff00aa0b1c-018f2c3a4b5d', 'a1b2c3d4e5f6-018f2c3a4b5e', 'n1', 'n10'];

    it('takes whole ids and unique prefixes', () => {
      expect([...resolveNodes(['3945', 'a1b2c3d4e5f6-018f2c3a4b5e'], ids)]).to.deep.equal(['3945134a0b1c-018f2c3a4b5c', 'a1b2c3d4e5f6-018f2c3a4b5e']);
    });

    it('prefers an exact id to the longer ids it starts', () => {
      expect([...resolveNodes(['n1'], ids)]).to.deep.equal(['n1']);
    });

    it('refuses an ambiguous prefix, naming the candidates', () => {
      expect(badArgument(() => resolveNodes(['39'], ids))).to.equal(
        '--node 39 is ambiguous: it could be 3945134a0b1c-018f2c3a4b5c, 39ff00aa0b1c-018f2c3a4b5d; give more of the id',
      );
    });

    it('refuses a value no node matches, naming the nodes there are', () => {
      expect(badArgument(() => resolveNodes(['zz'], ids))).to.match(/^--node zz matches no node .*\(they hold 3945134a0b1c-018f2c3a4b5c, /);
      expect(badArgument(() => resolveNodes(['zz'], []))).to.match(/they hold no records/);
    });
  });

  describe('parseDir and parseTimePoint', () => {
    it('take send or recv', () => {
      expect(parseDir('recv')).to.equal('recv');
      expect(badArgument(() => parseDir('in'))).to.equal('--dir must be send or recv (got "in")');
    });

    it('take a record time or +MS after the first record', () => {
      expect(parseTimePoint('--since', '1500')).to.deep.equal({ ms: 1500, relative: false });
      expect(parseTimePoint('--until', '+250.5')).to.deep.equal({ ms: 250.5, relative: true });
      expect(badArgument(() => parseTimePoint('--until', '1.5s'))).to.match(/^--until must be a time in ms like 1500/);
      expect(badArgument(() => parseTimePoint('--since', '-3'))).to.match(/^--since must be/);
    });

    it('refuse a window that ends before it starts', () => {
      const p = (v: string) => parseTimePoint('--since', v);
      expect(badArgument(() => checkWindow(p('500'), p('400')))).to.equal('--since 500 is after --until 400');
      expect(() => checkWindow(p('500'), p('500'))).not.to.throw();
      // A relative bound against an absolute one needs the first record's time.
      expect(() => checkWindow(p('+500'), p('1000'))).not.to.throw();
      expect(badArgument(() => checkWindow(p('+500'), p('1000'), 600))).to.equal('--since +500 is after --until 1000');
    });
  });

  describe('compileFilter', () => {
    const recs = [
      rec(1000, 'a', 1, 'hb.claim', 'send'),
      rec(1500, 'b', 2, 'ndb.commit', 'recv'),
      rec(2000, 'a', 3, 'ndb.commit', 'send'),
      rec(2500, 'b', 4, 'hb.claim', 'recv'),
    ];
    const run = (spec: Parameters<typeof compileFilter>[0], origin = 1000) => tags(recs.filter(compileFilter(spec, origin)));

    it('keeps everything without filters', () => {
      expect(run({})).to.deep.equal([1, 2, 3, 4]);
    });

    it('bounds time inclusively at both ends', () => {
      expect(run({ since: { ms: 1500, relative: false }, until: { ms: 2000, relative: false } })).to.deep.equal([2, 3]);
    });

    it('counts +MS bounds from the first record', () => {
      expect(run({ since: { ms: 500, relative: true } }, 1000)).to.deep.equal([2, 3, 4]);
      expect(run({ until: { ms: 500, relative: true } }, 1000)).to.deep.equal([1, 2]);
    });

    it('filters by direction, recording node and kind, all at once', () => {
      expect(run({ dir: 'recv' })).to.deep.equal([2, 4]);
      expect(run({ nodes: new Set(['a']) })).to.deep.equal([1, 3]);
      expect(run({ kinds: kindMatcher(['ndb.']) })).to.deep.equal([2, 3]);
      expect(run({ kinds: kindMatcher(['ndb.']), nodes: new Set(['a']), dir: 'send' })).to.deep.equal([3]);
    });

    it('refuses a relative window that ends before it starts once the origin is known', () => {
      expect(badArgument(() => compileFilter({ since: { ms: 700, relative: true }, until: { ms: 1500, relative: false } }, 1000))).to.match(/is after --until/);
    });
  });

  describe('Tally and summarize', () => {
    const files = [{ file: 'f', records: 6, truncated: false, tornBytes: 0, outOfOrder: 0 }];
    const tally = new Tally();
    for (const r of [
      rec(1000, 'a', 1, 'hb.claim', 'send'),
      rec(1200, 'a', 2, 'hb.claim', 'send'),
      rec(1400, 'b', 3, 'hb.claim', 'recv'),
      rec(3000, 'b', 4, 'ndb.commit', 'send'),
      // Out of time order in its file: span still runs from the least to the greatest time.
      rec(900, 'c', 5, 'pan.claim', 'recv'),
      rec(5000, 'c', 6, 'ndb.commit', 'recv'),
    ]) {
      tally.add(r);
    }

    it('counts by kind and by node, sent and received apart', () => {
      const s = summarize(tally, {}, files);
      expect(s.records).to.equal(6);
      expect(s.byKind).to.deep.equal({ 'hb.claim': { send: 2, recv: 1 }, 'ndb.commit': { send: 1, recv: 1 }, 'pan.claim': { send: 0, recv: 1 } });
      expect(s.byNode).to.deep.equal({ a: { send: 2, recv: 0 }, b: { send: 1, recv: 1 }, c: { send: 0, recv: 2 } });
      expect(Object.keys(s.byKind)).to.deep.equal(['hb.claim', 'ndb.commit', 'pan.claim']);
      expect(s.files).to.equal(files);
    });

    it('gives the span and the rate of the records counted', () => {
      const s = summarize(tally, {}, files);
      expect([s.firstT, s.lastT, s.spanMs]).to.deep.equal([900, 5000, 4100]);
      expect(s.recordsPerSecond).to.be.closeTo(6 / 4.1, 1e-9);
    });

    it('counts only what the filters keep, span included', () => {
      const s = summarize(tally, { kinds: kindMatcher(['hb.']), nodes: new Set(['a', 'b']) }, files);
      expect(s.records).to.equal(3);
      expect(s.byKind).to.deep.equal({ 'hb.claim': { send: 2, recv: 1 } });
      expect(s.byNode).to.deep.equal({ a: { send: 2, recv: 0 }, b: { send: 0, recv: 1 } });
      expect([s.firstT, s.lastT, s.spanMs]).to.deep.equal([1000, 1400, 400]);
      expect(s.recordsPerSecond).to.be.closeTo(7.5, 1e-9);
    });

    it('has no span or rate for fewer than two instants', () => {
      const one = summarize(tally, { nodes: new Set(['a']), kinds: (k) => k === 'none' }, files);
      expect(one).to.include({ records: 0, spanMs: 0, firstT: null, lastT: null, recordsPerSecond: null });
      const single = new Tally();
      single.add(rec(7, 'a', 1));
      expect(summarize(single, {}, [])).to.include({ records: 1, spanMs: 0, firstT: 7, recordsPerSecond: null });
    });

    it('lists the recording nodes for --node prefixes', () => {
      expect(tally.nodes().sort()).to.deep.equal(['a', 'b', 'c']);
    });
  });
});
