/**
 * `mangrove keys generate` and `keys show` as a user runs them: the built
 * command (dist/; `npm run build` first), the key file it leaves, what it
 * prints, and never a secret on stdout.
 */
import { expect } from 'chai';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkKeyPair } from '../../../../bus/transport/curve.js';
import { CLI, mangrove } from '../../../helpers/run-cli.js';

describe('runtime/cli/keys (built)', () => {
  let dir: string;
  const file = (name: string): string => join(dir, name);
  before(function () {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    dir = mkdtempSync(join(tmpdir(), 'mangrove-keys-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const command of [['keys'], ['keys', 'generate'], ['keys', 'show']]) {
    it(`explains \`mangrove ${command.join(' ')} --help\` and exits 0`, async () => {
      const r = await mangrove([...command, '--help']);
      expect(r.code).to.equal(0);
      expect(r.stdout).to.include(`Usage: mangrove ${command.join(' ')}`);
      expect(r.stdout).to.include('Examples:');
    });
  }

  it('generates a key file readable by its owner only and prints its public key', async () => {
    const r = await mangrove(['keys', 'generate', '--out', file('node.key')]);
    expect(r.stderr).to.equal('');
    expect(r.code).to.equal(0);
    const pair = checkKeyPair('', JSON.parse(readFileSync(file('node.key'), 'utf8')));
    expect(statSync(file('node.key')).mode & 0o777).to.equal(0o600);
    expect(r.stdout).to.equal(`wrote ${file('node.key')} (mode 0600: readable by its owner only)\npublic key: ${pair.publicKey}\n`);
    expect(r.stdout).not.to.include(pair.secretKey);
  });

  it('prints one JSON line with --json', async () => {
    const r = await mangrove(['keys', 'generate', '-o', file('j.key'), '--json']);
    expect(r.code).to.equal(0);
    const pair = JSON.parse(readFileSync(file('j.key'), 'utf8'));
    expect(JSON.parse(r.stdout)).to.deep.equal({ file: file('j.key'), publicKey: pair.publicKey });
  });

  it('refuses to overwrite a key file unless --force, leaving it as it was', async () => {
    await mangrove(['keys', 'generate', '--out', file('once.key')]);
    const before = readFileSync(file('once.key'), 'utf8');
    const r = await mangrove(['keys', 'generate', '--out', file('once.key')]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(`error E_EXISTS: ${file('once.key')} exists already: a key file is not overwritten unless asked (--force)\n`);
    expect(r.stdout).to.equal('');
    expect(readFileSync(file('once.key'), 'utf8')).to.equal(before);
    const forced = await mangrove(['keys', 'generate', '--out', file('once.key'), '--force']);
    expect(forced.code).to.equal(0);
    expect(readFileSync(file('once.key'), 'utf8')).not.to.equal(before);
    expect(statSync(file('once.key')).mode & 0o777).to.equal(0o600);
  });

  it('refuses generate without --out (exit 2), and a directory that does not exist (exit 1)', async () => {
    const noOut = await mangrove(['keys', 'generate']);
    expect(noOut.code).to.equal(2);
    expect(noOut.stderr).to.match(/^error E_BAD_ARGUMENT: required option '-o, --out <file>' not specified \(see mangrove keys generate --help\)/);
    const nowhere = await mangrove(['keys', 'generate', '--out', join(dir, 'absent', 'k.key')]);
    expect(nowhere.code).to.equal(1);
    expect(nowhere.stderr).to.equal(`error E_NOT_FOUND: cannot write ${join(dir, 'absent', 'k.key')}: its directory does not exist\n`);
  });

  it('shows the public key of a key file, never the secret', async () => {
    await mangrove(['keys', 'generate', '--out', file('show.key')]);
    const pair = JSON.parse(readFileSync(file('show.key'), 'utf8'));
    const r = await mangrove(['keys', 'show', file('show.key')]);
    expect(r.code).to.equal(0);
    expect(r.stderr).to.equal('');
    expect(r.stdout).to.equal(`public key: ${pair.publicKey}\nsecret key: in the file (not shown)\n`);
    const j = await mangrove(['keys', 'show', file('show.key'), '--json']);
    expect(JSON.parse(j.stdout)).to.deep.equal({ file: file('show.key'), publicKey: pair.publicKey, hasSecretKey: true });
    expect(j.stdout).not.to.include(pair.secretKey);
    writeFileSync(file('peer.pub'), JSON.stringify({ publicKey: pair.publicKey }));
    const pub = await mangrove(['keys', 'show', file('peer.pub')]);
    expect(pub.stdout).to.equal(`public key: ${pair.publicKey}\nno secret key: a public key alone\n`);
  });

  it('warns on stderr when a secret key file is readable by others', async () => {
    await mangrove(['keys', 'generate', '--out', file('open.key')]);
    chmodSync(file('open.key'), 0o644);
    const r = await mangrove(['keys', 'show', file('open.key')]);
    expect(r.code).to.equal(0);
    expect(r.stderr).to.equal(`warning: ${file('open.key')} holds a secret key but its mode is 0644: run \`chmod 600 ${file('open.key')}\`\n`);
  });

  it('refuses a missing or malformed key file, naming the file and the field', async () => {
    const missing = await mangrove(['keys', 'show', file('none.key')]);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.equal(`error E_NOT_FOUND: no key file at ${file('none.key')}\n`);
    writeFileSync(file('bad.key'), JSON.stringify({ publicKey: 'too short' }));
    const bad = await mangrove(['keys', 'show', file('bad.key')]);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(new RegExp(`^error E_BAD_CONFIG: ${file('bad.key')}: publicKey must be a CURVE key`));
    expect(bad.stdout).to.equal('');
    const noFile = await mangrove(['keys', 'show']);
    expect(noFile.code).to.equal(2);
  });
});
