import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, writeConfig, type NodeConfigInput } from '../../../../runtime/node/config.js';
import { failure, parse } from '../../../helpers/config-parse.js';

const ID = '0a1b2c3d4e5f-018f2c3a4b5c';
const minimal = { listen: 'tcp://127.0.0.1:7400', dataDir: 'data', anchors: ['tcp://127.0.0.1:7400'], anchor: true, insecure: true };

describe('runtime/node/config', () => {
  describe('a valid config', () => {
    it('fills every default', () => {
      const c = parse({ listen: 'tcp://127.0.0.1:7401', dataDir: 'd', anchors: ['tcp://127.0.0.1:7400'], insecure: true });
      expect(c).to.deep.equal({
        listen: 'tcp://127.0.0.1:7401',
        dataDir: '/srv/node/d',
        anchors: ['tcp://127.0.0.1:7400'],
        anchor: false,
        votes: 0,
        group: 0,
        periodMs: 1000,
        quorumTimeoutMs: 8000,
        faultInjection: false,
        monitorPreference: [],
        panPreference: [],
        logLevel: 'info',
        ramMiB: 256,
        diskPages: 1048576,
        copies: 2,
        floodPerSecond: 50_000,
        insecure: true,
      });
    });

    it('gives an anchor one vote and scales the quorum timeout with the period', () => {
      const c = parse({ ...minimal, periodMs: 250 });
      expect(c.votes).to.equal(1);
      expect(c.quorumTimeoutMs).to.equal(2000);
    });

    it('keeps every field it is given', () => {
      const full = {
        ...minimal,
        votes: 3,
        group: 2,
        periodMs: 100,
        quorumTimeoutMs: 301,
        httpPort: 0,
        faultInjection: true,
        monitorPreference: [ID],
        panPreference: [ID],
        logLevel: 'debug',
        trace: '/var/trace/n0.trace',
        dataDir: '/var/lib/mangrove',
        ramMiB: 64,
        diskPages: 4096,
        copies: 3,
        floodPerSecond: 1000,
      };
      expect(parse(full)).to.deep.equal(full);
    });

    it('accepts host names and IPv6 endpoints', () => {
      expect(parse({ ...minimal, listen: 'tcp://node-1.example.org:7400', anchors: ['tcp://[::1]:7400'], anchor: false }).listen).to.equal(
        'tcp://node-1.example.org:7400',
      );
    });
  });

  describe('an invalid config names the field and what it must be', () => {
    it('takes an HTTP host other than loopback with a token, and keeps both', () => {
      const c = parse({ ...minimal, httpPort: 7500, httpHost: '0.0.0.0', httpToken: 'a-token-of-some-length' });
      expect(c).to.deep.include({ httpHost: '0.0.0.0', httpToken: 'a-token-of-some-length' });
    });

    it('periodMs given as a word', () => {
      expect(failure({ ...minimal, periodMs: 'fast' })).to.equal('config.json: "periodMs" must be a number >= 10 (an integer, at most 60000) (got "fast")');
    });

    const cases: [string, Record<string, unknown>, string][] = [
      ['listen without a port', { listen: 'tcp://127.0.0.1' }, '"listen" must be a tcp endpoint'],
      ['listen on every interface', { listen: 'tcp://*:7400' }, '"listen" must be a tcp endpoint'],
      ['listen port out of range', { listen: 'tcp://127.0.0.1:70000' }, '(got "tcp://127.0.0.1:70000")'],
      ['dataDir empty', { dataDir: '' }, '"dataDir" must be a non-empty path'],
      ['an HTTP port open to other machines without a token', { httpHost: '0.0.0.0' }, '"httpHost" 0.0.0.0 lets other machines in: give "httpToken" too'],
      ['an HTTP token too short', { httpHost: '0.0.0.0', httpToken: 'short' }, '"httpToken" must be a string of 16 to 256 characters'],
      ['anchors empty', { anchors: [] }, '"anchors" must be a non-empty list'],
      ['an anchor not an endpoint', { anchors: ['tcp://127.0.0.1:7400', 'udp://x:1'] }, '"anchors[1]" must be a tcp endpoint'],
      ['anchors listed twice', { anchors: ['tcp://127.0.0.1:7400', 'tcp://127.0.0.1:7400'] }, '"anchors" lists tcp://127.0.0.1:7400 twice'],
      ['anchor not a boolean', { anchor: 'yes' }, '"anchor" must be true or false (got "yes")'],
      ['votes negative', { votes: -1 }, '"votes" must be an integer from 0 to 1000 (got -1)'],
      ['votes on a non-anchor', { anchor: false, votes: 1, anchors: ['tcp://127.0.0.1:7401'] }, '"votes" must be 0 or absent when "anchor" is false (got 1)'],
      ['own endpoint as anchor on a non-anchor', { anchor: false }, '"anchors" lists this node\'s own endpoint'],
      ['group fractional', { group: 1.5 }, '"group" must be an integer'],
      ['periodMs too small', { periodMs: 5 }, '"periodMs" must be a number >= 10'],
      ['quorumTimeoutMs not above 3 periods', { periodMs: 100, quorumTimeoutMs: 300 }, '"quorumTimeoutMs" must exceed 3 × periodMs = 300 (got 300)'],
      ['quorumTimeoutMs a word', { quorumTimeoutMs: 'long' }, '"quorumTimeoutMs" must be an integer number of milliseconds'],
      ['httpPort too big', { httpPort: 70000 }, '"httpPort" must be an integer port from 0 to 65535 (0 picks a free port) (got 70000)'],
      ['faultInjection a string', { faultInjection: 'on' }, '"faultInjection" must be true or false'],
      ['monitorPreference not ids', { monitorPreference: ['node-1'] }, '"monitorPreference[0]" must be a permanent node id'],
      ['panPreference not a list', { panPreference: ID }, '"panPreference" must be a list'],
      ['logLevel unknown', { logLevel: 'loud' }, '"logLevel" must be one of fatal, error, warn, info, debug, trace, silent (got "loud")'],
      ['trace empty', { trace: '' }, '"trace" must be a non-empty file path'],
      ['ramMiB zero', { ramMiB: 0 }, '"ramMiB" must be an integer number of MiB from 1 to 1048576 (got 0)'],
      ['diskPages fractional', { diskPages: 10.5 }, '"diskPages" must be an integer number of 4 KiB pages'],
      ['copies too many', { copies: 9 }, '"copies" must be an integer from 1 to 8 (got 9)'],
    ];
    for (const [what, change, expected] of cases) {
      it(what, () => {
        const message = failure({ ...minimal, ...change });
        expect(message).to.include(expected);
        expect(message.startsWith('config.json: ')).to.equal(true);
      });
    }

    it('a missing required field', () => {
      expect(failure({ dataDir: 'd', anchors: ['tcp://127.0.0.1:7400'], insecure: true })).to.match(/^config\.json: "listen" is required: a tcp endpoint/);
    });

    it('an unknown field, with the field it was probably meant to be', () => {
      expect(failure({ ...minimal, perodMs: 100 })).to.match(/^config\.json: unknown field "perodMs" \(did you mean "periodMs"\?\)/);
      expect(failure({ ...minimal, color: 'blue' })).to.match(/^config\.json: unknown field "color"; the fields are listen, dataDir/);
    });

    it('something that is not an object', () => {
      expect(failure([minimal])).to.equal('config.json: must hold a JSON object');
    });
  });

  describe('files', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'mangrove-config-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('resolves relative paths against the config file\'s folder, wherever the process runs', () => {
      mkdirSync(join(dir, 'node-0'));
      const file = join(dir, 'node-0', 'config.json');
      writeFileSync(file, JSON.stringify({ ...minimal, dataDir: '.', trace: '../traces/n0.trace' }));
      const c = loadConfig(file);
      expect(c.dataDir).to.equal(join(dir, 'node-0'));
      expect(c.trace).to.equal(join(dir, 'traces', 'n0.trace'));
    });

    it('names a missing file', () => {
      const file = join(dir, 'missing.json');
      expect(() => loadConfig(file)).to.throw(`cannot read config file ${file}: no such file`);
    });

    it('names a file that is not JSON', () => {
      const file = join(dir, 'bad.json');
      writeFileSync(file, '{"listen": ');
      expect(() => loadConfig(file)).to.throw(`${file} is not valid JSON`);
    });

    it('prefixes field errors with the file', () => {
      const file = join(dir, 'c.json');
      writeFileSync(file, JSON.stringify({ ...minimal, periodMs: 'fast' }));
      expect(() => loadConfig(file)).to.throw(`${file}: "periodMs" must be`);
    });

    it('writes a config as given and reads it back with defaults', () => {
      const file = join(dir, 'sub', 'config.json');
      const input: NodeConfigInput = { ...minimal, httpPort: 7500 };
      writeConfig(file, input);
      expect(JSON.parse(readFileSync(file, 'utf8'))).to.deep.equal(input);
      expect(loadConfig(file)).to.include({ dataDir: join(dir, 'sub', 'data'), httpPort: 7500, votes: 1 });
    });

    it('refuses to write an invalid config, and writes nothing', () => {
      const file = join(dir, 'config.json');
      expect(() => writeConfig(file, { ...minimal, periodMs: 1 })).to.throw('"periodMs" must be');
      expect(existsSync(file)).to.equal(false);
    });
  });
});
