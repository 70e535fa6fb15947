/**
 * `mangrove trace show` and `trace stats` as a user runs them: small traces
 * written with TraceWriter, the built command (dist/; `npm run build`
 * first), its output, exit codes and error lines.
 */
import { expect } from 'chai';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeValue } from '../../../../bus/codec.js';
import type { Kind } from '../../../../bus/messages/index.js';
import { TraceWriter } from '../../../../bus/trace/trace.js';
import type { TraceRecord } from '../../../../bus/transport/transport.js';
import { CLI, mangrove } from '../../../helpers/run-cli.js';
import { envelope } from '../../bus/transport/transport-compliance.js';

const A = '3945134a0b1c-018f2c3a4b5c';
const B = '39ff00aa0b1c-018f2c3a4b5d';

/** A record whose envelope seq is `seq`, so output lines can be told apart. */
function rec(t: number, node: string, dir: 'send' | 'recv', kind: Kind, seq: number): TraceRecord {
  return { t, node, dir, env: envelope(node, node === A ? B : A, seq, kind) };
}

/** The seqs of the records in `trace show` output, in the order shown. */
function seqs(stdout: string): number[] {
  return [...stdout.matchAll(/ e1\/#(\d+)/g)].map((m) => Number(m[1]));
}

describe('runtime/cli/trace (built)', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);
  function write(name: string, recs: TraceRecord[]): string {
    const w = new TraceWriter(file(name));
    for (const r of recs) w.record(r);
    w.close();
    return file(name);
  }

  let a: string;
  let b: string;
  before(function () {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    dir = mkdtempSync(join(tmpdir(), 'mangrove-cli-trace-'));
    a = write('a.trace', [rec(1000, A, 'send', 'hb.claim', 1), rec(2000, A, 'recv', 'ndb.commit', 2), rec(3000, A, 'send', 'hb.member_pulse', 3)]);
    b = write('b.trace', [rec(1000, B, 'send', 'pan.claim', 10), rec(2500, B, 'recv', 'hb.claim', 11)]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('trace show', () => {
    it('merges files in time order; at equal times the file named first comes first', async () => {
      const ab = await mangrove(['trace', 'show', a, b]);
      expect(ab.code, ab.stderr).to.equal(0);
      expect(seqs(ab.stdout)).to.deep.equal([1, 10, 2, 11, 3]);
      expect((await mangrove(['trace', 'show', b, a])).stdout.split('\n')[0]).to.match(new RegExp(`^ +1\\.000s  ${B}  send  pan\\.claim `));
      expect(seqs((await mangrove(['trace', 'show', b, a])).stdout)).to.deep.equal([10, 1, 2, 11, 3]);
    });

    it('filters by exact kinds and by namespace', async () => {
      expect(seqs((await mangrove(['trace', 'show', a, b, '--kind', 'hb.'])).stdout)).to.deep.equal([1, 11, 3]);
      expect(seqs((await mangrove(['trace', 'show', a, b, '--kind', 'pan.claim,ndb.commit'])).stdout)).to.deep.equal([10, 2]);
      expect(seqs((await mangrove(['trace', 'show', a, b, '--kind', 'pan.claim', '--kind', 'hb.member_pulse'])).stdout)).to.deep.equal([10, 3]);
    });

    it('filters by the recording node, by a unique prefix of its id', async () => {
      expect(seqs((await mangrove(['trace', 'show', a, b, '--node', '3945'])).stdout)).to.deep.equal([1, 2, 3]);
      expect(seqs((await mangrove(['trace', 'show', a, b, '--node', `${B},3945`])).stdout)).to.deep.equal([1, 10, 2, 11, 3]);
    });

    it('refuses an ambiguous node prefix, naming the candidates', async () => {
      const r = await mangrove(['trace', 'show', a, b, '--node', '39']);
      expect(r.code).to.equal(2);
      expect(r.stdout).to.equal('');
      expect(r.stderr).to.equal(`error E_BAD_ARGUMENT: --node 39 is ambiguous: it could be ${A}, ${B}; give more of the id\n`);
    });

    it('filters by direction and by an inclusive time window, absolute or from the first record', async () => {
      expect(seqs((await mangrove(['trace', 'show', a, b, '--dir', 'recv'])).stdout)).to.deep.equal([2, 11]);
      expect(seqs((await mangrove(['trace', 'show', a, b, '--since', '2000', '--until', '2500'])).stdout)).to.deep.equal([2, 11]);
      expect(seqs((await mangrove(['trace', 'show', a, b, '--since', '+1000'])).stdout)).to.deep.equal([2, 11, 3]);
    });

    it('stops after --limit records', async () => {
      const r = await mangrove(['trace', 'show', a, b, '--limit', '2']);
      expect(r.code).to.equal(0);
      expect(seqs(r.stdout)).to.deep.equal([1, 10]);
    });

    it('prints one JSON object per record, bytes as 0x-hex', async () => {
      const m = write('m.trace', [rec(5, A, 'send', 'hb.monitor_pulse', 1), rec(6, A, 'send', 'hb.claim', 2)]);
      const r = await mangrove(['trace', 'show', m, '--json', '--kind', 'hb.monitor_pulse']);
      const lines = r.stdout.trim().split('\n');
      expect(lines).to.have.length(1);
      const obj = JSON.parse(lines[0]);
      expect(obj).to.deep.include({ t: 5, node: A, dir: 'send' });
      expect(obj.env.kind).to.equal('hb.monitor_pulse');
      expect(obj.env.body.bitmap).to.equal('0xff7f000000000001');
    });

    it('shows wall-clock records with their offset from the first record, whatever the filters', async () => {
      const t0 = Date.UTC(2025, 0, 2, 3, 4, 5, 0);
      const w = write('wall.trace', [rec(t0, A, 'send', 'hb.claim', 1), rec(t0 + 250, A, 'recv', 'hb.claim', 2), rec(t0 + 1500, A, 'send', 'hb.claim', 3)]);
      const all = (await mangrove(['trace', 'show', w])).stdout.split('\n');
      expect(all[0]).to.match(/^03:04:05\.000 +\+0\.000s  3945134a/);
      expect(all[2]).to.match(/^03:04:06\.500 +\+1\.500s  3945134a/);
      const later = await mangrove(['trace', 'show', w, '--since', '+250']);
      expect(later.stdout.split('\n')[0]).to.match(/^03:04:05\.250 +\+0\.250s  /);
      expect(seqs(later.stdout)).to.deep.equal([2, 3]);
    });

    it('shows the whole records of a torn trace and says what it ignored', async () => {
      const torn = file('torn.trace');
      copyFileSync(a, torn);
      truncateSync(torn, statSync(torn).size - 3);
      const r = await mangrove(['trace', 'show', torn, b]);
      expect(r.code).to.equal(0);
      expect(seqs(r.stdout)).to.deep.equal([1, 10, 2, 11]);
      expect(r.stderr).to.match(/torn\.trace: ignored a torn last record \(\d+ bytes at byte \d+\)\n$/);
    });

    it('says when a file goes back in time', async () => {
      const back = write('back.trace', [rec(10, A, 'send', 'hb.claim', 1), rec(30, A, 'send', 'hb.claim', 2), rec(20, A, 'send', 'hb.claim', 3)]);
      const r = await mangrove(['trace', 'show', back]);
      expect(seqs(r.stdout)).to.deep.equal([1, 2, 3]);
      expect(r.stderr).to.equal(`${back}: 1 record is earlier than the one before (the node's clock went back), shown in file order\n`);
    });

    it('explains its times and filters in --help', async () => {
      const r = await mangrove(['trace', 'show', '--help']);
      expect(r.code).to.equal(0);
      for (const option of ['--kind', '--node', '--dir', '--since', '--until', '--limit', '--json']) expect(r.stdout).to.include(option);
      expect(r.stdout).to.include('Times: records of a simulated run show seconds since the run began');
      expect(r.stdout).to.include('Both bounds are inclusive.');
    });
  });

  describe('trace stats', () => {
    it('counts by kind and by node in aligned tables', async () => {
      const r = await mangrove(['trace', 'stats', a, b]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/^records  5 of 5 in 2 files\nspan     2\.000 s, from 1\.000s to 3\.000s\nrate     2\.5 records\/s\n/);
      expect(r.stdout).to.match(/^KIND +SEND  RECV  TOTAL$/m);
      expect(r.stdout).to.match(/^hb\.claim +1     1      2$/m);
      expect(r.stdout).to.match(/^pan\.claim +1     0      1$/m);
      expect(r.stdout).to.match(/^total +3     2      5$/m);
      expect(r.stdout).to.match(new RegExp(`^${A} +2     1      3$`, 'm'));
      expect(r.stdout).to.match(new RegExp(`^${B} +1     1      2$`, 'm'));
      expect(r.stdout).to.match(/a\.trace +3\n/);
    });

    it('prints one JSON object with --json', async () => {
      const r = await mangrove(['trace', 'stats', a, b, '--json']);
      expect(JSON.parse(r.stdout)).to.deep.equal({
        records: 5,
        spanMs: 2000,
        firstT: 1000,
        lastT: 3000,
        recordsPerSecond: 2.5,
        byKind: { 'hb.claim': { send: 1, recv: 1 }, 'hb.member_pulse': { send: 1, recv: 0 }, 'ndb.commit': { send: 0, recv: 1 }, 'pan.claim': { send: 1, recv: 0 } },
        byNode: { [A]: { send: 2, recv: 1 }, [B]: { send: 1, recv: 1 } },
        files: [
          { file: a, records: 3, truncated: false, tornBytes: 0, outOfOrder: 0 },
          { file: b, records: 2, truncated: false, tornBytes: 0, outOfOrder: 0 },
        ],
      });
    });

    it('counts only the kinds and nodes asked for', async () => {
      const r = await mangrove(['trace', 'stats', a, b, '--kind', 'hb.', '--node', '39f', '--json']);
      const s = JSON.parse(r.stdout);
      expect(s).to.deep.include({ records: 1, spanMs: 0, recordsPerSecond: null });
      expect(s.byKind).to.deep.equal({ 'hb.claim': { send: 0, recv: 1 } });
      expect(s.byNode).to.deep.equal({ [B]: { send: 0, recv: 1 } });
      expect(s.files.map((f: { records: number }) => f.records)).to.deep.equal([3, 2]);
    });

    it('reports a torn tail in its table of files', async () => {
      const torn = file('torn-stats.trace');
      copyFileSync(a, torn);
      const size = statSync(torn).size;
      truncateSync(torn, size - 3);
      const json = JSON.parse((await mangrove(['trace', 'stats', torn, '--json'])).stdout);
      expect(json.files[0]).to.include({ records: 2, truncated: true });
      expect(json.files[0].tornBytes).to.be.greaterThan(0).and.below(size);
      const human = await mangrove(['trace', 'stats', torn]);
      expect(human.stdout).to.match(new RegExp(`torn-stats\\.trace +2  torn last record, ${json.files[0].tornBytes} bytes ignored$`, 'm'));
    });

    it('refuses an ambiguous node prefix', async () => {
      const r = await mangrove(['trace', 'stats', a, b, '--node', '39']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(/^error E_BAD_ARGUMENT: --node 39 is ambiguous/);
    });
  });

  describe('errors', () => {
    it('names a missing file, for show and stats', async () => {
      for (const command of ['show', 'stats']) {
        const r = await mangrove(['trace', command, a, file('none.trace')]);
        expect(r.code).to.equal(1);
        expect(r.stdout).to.equal('');
        expect(r.stderr).to.equal(`error E_NOT_FOUND: no trace file ${file('none.trace')}\n`);
      }
    });

    it('says a file that is not a trace is not one, before printing anything', async () => {
      const json = file('config.json');
      writeFileSync(json, '{"listen": "tcp://127.0.0.1:7400"}\n');
      for (const command of ['show', 'stats']) {
        const r = await mangrove(['trace', command, a, json]);
        expect(r.code).to.equal(2);
        expect(r.stdout).to.equal('');
        expect(r.stderr).to.match(new RegExp(`^error E_BAD_ARGUMENT: ${json.replace(/[.]/g, '\\.')} is not a Mangrove trace: its first record at byte 0 is not a trace record`));
      }
    });

    it('says a directory is not a trace file', async () => {
      const sub = file('sub');
      mkdirSync(sub, { recursive: true });
      const r = await mangrove(['trace', 'show', sub]);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.equal(`error E_BAD_ARGUMENT: ${sub} is a directory, not a trace file\n`);
    });

    it('names the damaged record of a trace that breaks part way', async () => {
      const damaged = file('damaged.trace');
      writeFileSync(damaged, Buffer.concat([encodeValue(rec(1, A, 'send', 'hb.claim', 1)), encodeValue({ t: 2, node: A, dir: 'sideways', env: {} })]));
      const r = await mangrove(['trace', 'show', damaged]);
      expect(r.code).to.equal(1);
      expect(seqs(r.stdout)).to.deep.equal([1]);
      expect(r.stderr).to.equal(`error E_BAD_MESSAGE: ${damaged}: record 2 is neither send, recv, start nor timer\n`);
    });

    const badOptions: [string, string[], string][] = [
      ['an unknown kind', ['--kind', 'hb.pulse'], '--kind hb.pulse is not a message kind (hb. kinds: '],
      ['a direction', ['--dir', 'out'], '--dir must be send or recv (got "out")'],
      ['a time', ['--since', '2s'], '--since must be a time in ms like 1500'],
      ['a window', ['--since', '3000', '--until', '1000'], '--since 3000 is after --until 1000'],
      ['an unknown node', ['--node', 'ffff'], '--node ffff matches no node that recorded these traces'],
      ['a limit', ['--limit', '0'], "option '--limit <n>' argument '0' is invalid"],
    ];
    for (const [what, args, message] of badOptions) {
      it(`refuses ${what} with E_BAD_ARGUMENT naming the option`, async () => {
        const r = await mangrove(['trace', 'show', a, ...args]);
        expect(r.code).to.equal(2);
        expect(r.stdout).to.equal('');
        expect(r.stderr.startsWith(`error E_BAD_ARGUMENT: ${message}`), r.stderr).to.equal(true);
      });
    }
  });
});
