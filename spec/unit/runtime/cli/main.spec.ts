/**
 * The built `mangrove` command as a user runs it: argument errors, exit codes
 * and the one-line `error E_CODE: sentence`. Runs dist/ (npm test builds it).
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENVELOPE_VERSION } from '../../../../bus/envelope.js';
import { TraceWriter } from '../../../../bus/trace/trace.js';
import { CLI, mangrove } from '../../../helpers/run-cli.js';

describe('runtime/cli/main (built)', () => {
  let dir: string;
  before(function () {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    dir = mkdtempSync(join(tmpdir(), 'mangrove-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints its version', async () => {
    const r = await mangrove(['--version']);
    expect(r.code).to.equal(0);
    expect(r.stdout.trim()).to.equal(JSON.parse(readFileSync('package.json', 'utf8')).version);
  });

  for (const command of [[], ['start'], ['local'], ['status'], ['fault'], ['trace'], ['trace', 'show']]) {
    it(`explains \`mangrove ${command.join(' ')} --help\` and exits 0`, async () => {
      const r = await mangrove([...command, '--help']);
      expect(r.code).to.equal(0);
      expect(r.stdout).to.include(`Usage: mangrove ${command.join(' ')}`.trimEnd());
      if (command[0] !== 'trace' || command.length > 1) expect(r.stdout).to.include('Examples:');
    });
  }

  it('shows help and exits 2 without a command', async () => {
    const r = await mangrove([]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('Usage: mangrove');
  });

  it('refuses an unknown command or option with exit 2', async () => {
    const a = await mangrove(['frobnicate']);
    expect(a.code).to.equal(2);
    expect(a.stderr).to.match(/^error E_BAD_ARGUMENT: unknown command 'frobnicate'/);
    const b = await mangrove(['status', '--bogus']);
    expect(b.code).to.equal(2);
    expect(b.stderr).to.equal("error E_BAD_ARGUMENT: unknown option '--bogus' (see mangrove status --help)\n");
  });

  it('says E_UNREACHABLE and exits 1 when no node answers', async () => {
    const r = await mangrove(['status', '--connect', 'tcp://127.0.0.1:1', '--timeout', '300']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error E_UNREACHABLE: no answer from tcp:\/\/127\.0\.0\.1:1 within 300 ms/);
    expect(r.stdout).to.equal('');
  });

  it('refuses an endpoint that is not one', async () => {
    const r = await mangrove(['status', '--connect', 'localhost:7400']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/^error E_BAD_ARGUMENT: --connect must be a tcp endpoint/);
  });

  it('names a missing config file', async () => {
    const file = join(dir, 'missing.json');
    const r = await mangrove(['start', '--config', file]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(`error E_BAD_CONFIG: cannot read config file ${file}: no such file\n`);
  });

  it('names the bad field of a config', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ listen: 'tcp://127.0.0.1:7400', dataDir: 'd', anchors: ['tcp://127.0.0.1:7400'], anchor: true, periodMs: 'fast' }));
    const r = await mangrove(['start', '--config', file]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error E_BAD_CONFIG: .*bad\.json: "periodMs" must be a number >= 10/);
  });

  const usage: [string, string[], RegExp][] = [
    ['start without --config', ['start'], /required option '-c, --config <file>'/],
    ['local with no nodes', ['local', '--nodes', '0'], /--nodes <n>' argument '0' is invalid/],
    ['local with too many nodes', ['local', '--nodes', '101'], /--nodes must be an integer from 1 to 100 \(got 101\)/],
    ['local with more anchors than nodes', ['local', '--nodes', '2', '--anchors', '3'], /--anchors must be an integer from 1 to 2/],
    ['local with too few groups', ['local', '--nodes', '100', '--groups', '1'], /a group holds at most 64 nodes: 100 nodes need --groups 2/],
    ['local with a port out of range', ['local', '--nodes', '3', '--base-port', '65500'], /--base-port must be an integer from 1024 to 65433/],
    ['local with a period too short', ['local', '--nodes', '3', '--period', '1'], /--period must be an integer from 10/],
    ['fault saying neither drop nor heal', ['fault', '--connect', 'tcp://127.0.0.1:1'], /--drop ID\[,ID...\] or --heal/],
    ['fault with both', ['fault', '--connect', 'tcp://127.0.0.1:1', '--drop', 'x', '--heal'], /cannot be used with/],
    ['fault with a bad id', ['fault', '--connect', 'tcp://127.0.0.1:1', '--drop', 'node-1'], /--drop takes permanent node ids/],
    ['trace show without files', ['trace', 'show'], /missing required argument 'files'/],
  ];
  for (const [what, args, message] of usage) {
    it(`exits 2 for ${what}`, async () => {
      const r = await mangrove(args);
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(/^error E_BAD_ARGUMENT: /);
      expect(r.stderr).to.match(message);
    });
  }

  describe('trace show', () => {
    let a: string;
    let b: string;
    before(() => {
      const record = (path: string, node: string, t: number, seq: number) => {
        const w = new TraceWriter(path);
        w.record({ t, node, dir: 'send', env: { v: ENVELOPE_VERSION, kind: 'client.status', from: node, to: '', epoch: 1, seq, body: {} } });
        w.close();
      };
      a = join(dir, 'a.trace');
      b = join(dir, 'b.trace');
      record(a, 'node-a', 2000, 1);
      record(b, 'node-b', 1000, 7);
    });

    it('prints the records of several files in time order', async () => {
      const r = await mangrove(['trace', 'show', a, b]);
      expect(r.code).to.equal(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).to.have.length(2);
      expect(lines[0]).to.match(/^\s*1\.000s\s+node-b\s+send\s+client\.status/);
      expect(lines[1]).to.match(/^\s*2\.000s\s+node-a\s+send\s+client\.status/);
    });

    it('prints one JSON object a record with --json', async () => {
      const r = await mangrove(['trace', 'show', a, '--json']);
      expect(JSON.parse(r.stdout)).to.deep.include({ t: 2000, node: 'node-a', dir: 'send' });
    });

    it('names a missing file', async () => {
      const r = await mangrove(['trace', 'show', join(dir, 'none.trace')]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/^error E_NOT_FOUND: no trace file .*none\.trace/);
    });
  });
});
