/**
 * CURVE keys (bus/transport/curve.ts): Z85, checks that name the field,
 * and key files on a real temporary directory. The transport with CURVE
 * on is zmq-curve.spec.ts.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkKey,
  checkKeyPair,
  generateKeyPair,
  publicKeyOf,
  readKeyFile,
  readKeyPair,
  writeKeyFile,
  z85Decode,
  z85Encode,
} from '../../../../bus/transport/curve.js';
import { errorOf } from '../../../helpers/error-of.js';

describe('bus/transport/curve: keys and key files', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'mangrove-curve-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("encodes Z85 as RFC 32's test vector says, and decodes it back", () => {
    const bytes = new Uint8Array([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]);
    expect(z85Encode(bytes)).to.equal('HelloWorld');
    expect(Buffer.from(z85Decode('HelloWorld')!).equals(Buffer.from(bytes))).to.equal(true);
    expect(z85Decode('Hello~orld'), 'a character outside the alphabet').to.equal(null);
    expect(z85Decode('%%%%%'), 'a word over 32 bits').to.equal(null);
  });

  it('generates pairs whose public key is the one derived from the secret', () => {
    const pair = generateKeyPair();
    expect(pair.publicKey).to.have.length(40);
    expect(checkKey('k', pair.secretKey)).to.equal(pair.secretKey);
    expect(publicKeyOf(pair.secretKey)).to.equal(pair.publicKey);
    expect(checkKeyPair('curve.keys.', pair)).to.deep.equal(pair);
  });

  it('refuses a malformed key naming the field, never quoting the value', () => {
    const secret = generateKeyPair().secretKey;
    const short = errorOf(() => checkKey('curve.keys.secretKey', secret.slice(1)));
    expect(short).to.match(/^E_BAD_CONFIG: curve\.keys\.secretKey must be a CURVE key: 40 characters of ZeroMQ's Z85 alphabet.*got 39 characters/);
    expect(short).not.to.contain(secret.slice(1));
    expect(errorOf(() => checkKey('peer key', `${secret.slice(1)}~`))).to.match(/^E_BAD_CONFIG: peer key must be a CURVE key.*got 40 characters, not all Z85/);
    expect(errorOf(() => checkKey('peer key', '%'.repeat(40)))).to.match(/^E_BAD_CONFIG: peer key must be a CURVE key/);
    expect(errorOf(() => checkKey('curve.serverKey', 42))).to.equal('E_BAD_CONFIG: curve.serverKey must be a CURVE key (a string of 40 Z85 characters), not number');
    const [a, b] = [generateKeyPair(), generateKeyPair()];
    expect(errorOf(() => checkKeyPair('curve.keys.', { publicKey: a.publicKey, secretKey: b.secretKey }))).to.equal(
      'E_BAD_CONFIG: curve.keys.publicKey is not the public key of curve.keys.secretKey: the two come from different pairs',
    );
  });

  it('writes a key file readable by its owner only, and reads it back', () => {
    const pair = generateKeyPair();
    const file = join(dir, 'node.key');
    writeKeyFile(file, pair);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).to.deep.equal(pair);
    expect(readKeyPair(file)).to.deep.equal(pair);
    const pub = join(dir, 'peer.pub');
    writeKeyFile(pub, { publicKey: pair.publicKey });
    expect(readKeyFile(pub)).to.deep.equal({ publicKey: pair.publicKey });
    expect(errorOf(() => readKeyPair(pub))).to.match(new RegExp(`^E_BAD_CONFIG: ${pub}: secretKey is missing`));
  });

  it('refuses to overwrite a key file unless asked, and keeps 0600 when it does', () => {
    const file = join(dir, 'twice.key');
    const first = generateKeyPair();
    writeKeyFile(file, first);
    expect(errorOf(() => writeKeyFile(file, generateKeyPair()))).to.match(/^E_EXISTS: .*twice\.key exists already/);
    expect(readKeyPair(file)).to.deep.equal(first);
    const second = generateKeyPair();
    writeKeyFile(file, second, { overwrite: true });
    expect(readKeyPair(file)).to.deep.equal(second);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
  });

  it('refuses a missing or malformed key file naming the file and the field', () => {
    const pair = generateKeyPair();
    const at = (name: string, text: string): string => {
      const file = join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    expect(errorOf(() => readKeyFile(join(dir, 'absent.key')))).to.equal(`E_NOT_FOUND: no key file at ${join(dir, 'absent.key')}`);
    const notJson = at('a.key', 'publicKey=x');
    expect(errorOf(() => readKeyFile(notJson))).to.equal(`E_BAD_CONFIG: ${notJson} is not a key file: not JSON (expected {"publicKey": "...", "secretKey": "..."})`);
    const list = at('b.key', '[]');
    expect(errorOf(() => readKeyFile(list))).to.match(new RegExp(`^E_BAD_CONFIG: ${list} is not a key file: expected a JSON object`));
    const noPublic = at('c.key', JSON.stringify({ secretKey: pair.secretKey }));
    expect(errorOf(() => readKeyFile(noPublic))).to.match(new RegExp(`^E_BAD_CONFIG: ${noPublic}: publicKey must be a CURVE key`));
    const badSecret = at('d.key', JSON.stringify({ publicKey: pair.publicKey, secretKey: 'short' }));
    const err = errorOf(() => readKeyFile(badSecret));
    expect(err).to.match(new RegExp(`^E_BAD_CONFIG: ${badSecret}: secretKey must be a CURVE key.*got 5 characters`));
    const mixed = at('e.key', JSON.stringify({ publicKey: generateKeyPair().publicKey, secretKey: pair.secretKey }));
    expect(errorOf(() => readKeyFile(mixed))).to.match(/publicKey is not the public key of .*secretKey/);
    const extra = at('f.key', JSON.stringify({ ...pair, comment: 'x' }));
    expect(errorOf(() => readKeyFile(extra))).to.equal(`E_BAD_CONFIG: ${extra}: unknown field "comment" (a key file has publicKey, secretKey and, a client's, nodes)`);
  });
});
