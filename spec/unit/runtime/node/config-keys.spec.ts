/**
 * The security fields of a node's config (runtime/node/config-keys.ts) and
 * the CURVE settings a node makes of them (node-keys.ts): a config without
 * keys runs only when it says "insecure", every key is checked naming its
 * field and never quoted, and the node lets in exactly the keys it lists,
 * each as what it is.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, writeKeyFile } from '../../../../bus/transport/curve.js';
import { parseConfig } from '../../../../runtime/node/config.js';
import { nodeCurve } from '../../../../runtime/node/node-keys.js';
import { failure, parse } from '../../../helpers/config-parse.js';

const A = 'tcp://127.0.0.1:7400';
const B = 'tcp://127.0.0.1:7401';
const base = { listen: A, dataDir: 'data', anchors: [A, B], anchor: true };
const [ka, kb, kc, kd] = [generateKeyPair(), generateKeyPair(), generateKeyPair(), generateKeyPair()];
const peers = { [A]: ka.publicKey, [B]: kb.publicKey };
const secure = { ...base, keyFile: 'node.key', peers, clients: [{ publicKey: kc.publicKey, role: 'read-only', name: 'reader' }] };

describe('runtime/node/config: keys', () => {
  it('refuses a config with neither keys nor "insecure", naming both fields', () => {
    const message = failure(base);
    expect(message).to.match(/^config\.json: "keyFile" is required/);
    expect(message).to.contain('"insecure": true');
  });

  it('runs without keys only when it says so, and then is insecure', () => {
    const c = parse({ ...base, insecure: true });
    expect(c.insecure).to.equal(true);
    expect(c).not.to.have.any.keys('keyFile', 'peers', 'clients');
  });

  it('keeps keyFile (relative to the config\'s folder), peers and clients', () => {
    const c = parse(secure);
    expect(c).to.include({ keyFile: '/srv/node/node.key', insecure: false });
    expect(c.peers).to.deep.equal(peers);
    expect(c.clients).to.deep.equal([{ publicKey: kc.publicKey, role: 'read-only', name: 'reader' }]);
  });

  const cases: [string, Record<string, unknown>, string | RegExp][] = [
    ['keys and "insecure" both', { insecure: true }, '"insecure" must be false or absent when "keyFile" is given'],
    ['peers without a key file', { keyFile: undefined, insecure: true }, '"peers" means nothing without "keyFile"'],
    ['an anchor whose key is missing', { peers: { [A]: ka.publicKey } }, `"peers" has no key for the anchor ${B}`],
    ['a peer that is not an endpoint', { peers: { ...peers, 'udp://x:1': kd.publicKey } }, '"peers" has the key "udp://x:1": each must be a tcp endpoint'],
    ['a peer key that is not a key', { peers: { ...peers, [B]: 'not-a-key' } }, `"peers[${B}]" must be a CURVE key`],
    ['a peer key that is not a string', { peers: { ...peers, [B]: 7 } }, `"peers[${B}]" must be the public key of the node at that endpoint`],
    ['a role nobody has', { clients: [{ publicKey: kc.publicKey, role: 'root' }] }, '"clients[0][role]" must be a client {"publicKey"'],
    ['a client with a field it does not have', { clients: [{ publicKey: kc.publicKey, role: 'admin', roles: [] }] }, '"clients[0]" has an unknown field "roles"'],
    ['a client key that is a node\'s', { clients: [{ publicKey: kb.publicKey, role: 'admin' }] }, '"clients[0]" has the key of a node in "peers"'],
    ['a client listed twice', { clients: [{ publicKey: kc.publicKey, role: 'admin' }, { publicKey: kc.publicKey, role: 'read-only' }] }, '"clients[1]" lists a key an earlier client has'],
  ];
  for (const [what, change, expected] of cases) {
    it(`refuses ${what}, naming the field`, () => {
      const message = failure({ ...secure, ...change });
      expect(message.startsWith('config.json: ')).to.equal(true);
      if (typeof expected === 'string') expect(message).to.contain(expected);
      else expect(message).to.match(expected);
      expect(message, 'a key is never quoted').not.to.contain(kd.secretKey);
    });
  }

  describe('what the node lets in (node-keys.ts)', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'mangrove-node-keys-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('is nothing special without keys: the transport runs plain', () => {
      expect(nodeCurve(parse({ ...base, insecure: true }))).to.equal(undefined);
    });

    it('lets in the nodes of peers and the clients with their roles, dials peers by their keys', () => {
      writeKeyFile(join(dir, 'node.key'), ka);
      const curve = nodeCurve(parseConfig({ ...secure, clients: [...secure.clients, { publicKey: kd.publicKey, role: 'admin' }] }, join(dir, 'config.json')))!;
      expect(curve.keys).to.deep.equal(ka);
      expect(curve.holderOf!(kb.publicKey)).to.deep.equal({ kind: 'node' });
      expect(curve.holderOf!(kc.publicKey)).to.deep.equal({ kind: 'client', role: 'read-only', name: 'reader' });
      expect(curve.holderOf!(kd.publicKey)).to.include({ kind: 'client', role: 'admin' });
      expect(curve.holderOf!(generateKeyPair().publicKey)).to.equal(null);
      expect(curve.authorize(kb.publicKey)).to.equal('node');
      expect(curve.authorize(kc.publicKey)).to.equal('reader');
      expect(curve.authorize(generateKeyPair().publicKey)).to.equal(null);
      expect(curve.serverKeyOf(B)).to.equal(kb.publicKey);
      expect(curve.serverKeyOf('tcp://127.0.0.1:9999')).to.equal(null);
    });

    it('lets in and dials the member keys of the node database as they are now: added, rotated, taken away', () => {
      writeKeyFile(join(dir, 'node.key'), ka);
      const C = 'tcp://127.0.0.1:7402';
      let members: { endpoint: string; key: string }[] = [];
      const curve = nodeCurve(parseConfig(secure, join(dir, 'config.json')), () => members)!;
      expect([curve.authorize(kd.publicKey), curve.serverKeyOf(C)], 'not yet a member').to.deep.equal([null, null]);
      members = [{ endpoint: C, key: kd.publicKey }];
      expect(curve.holderOf!(kd.publicKey)).to.deep.equal({ kind: 'node' });
      expect([curve.authorize(kd.publicKey), curve.serverKeyOf(C)], 'added').to.deep.equal(['node', kd.publicKey]);
      const rotated = generateKeyPair();
      members = [{ endpoint: C, key: rotated.publicKey }, { endpoint: B, key: kd.publicKey }];
      expect([curve.authorize(kd.publicKey), curve.serverKeyOf(C)], 'rotated: the new key dialed; the old one now B\'s').to.deep.equal(['node', rotated.publicKey]);
      expect(curve.serverKeyOf(B), 'the database\'s key for an endpoint comes before the config\'s').to.equal(kd.publicKey);
      members = [];
      expect([curve.holderOf!(rotated.publicKey), curve.serverKeyOf(C)], 'taken away').to.deep.equal([null, null]);
      expect([curve.holderOf!(kb.publicKey), curve.serverKeyOf(B)], 'a key the config lists stays').to.deep.equal([{ kind: 'node' }, kb.publicKey]);
    });

    it('refuses a key file that is missing, or whose key peers gives to another node, naming keyFile', () => {
      expect(() => nodeCurve(parseConfig(secure, join(dir, 'config.json')))).to.throw(/^"keyFile": no key file at .*node\.key$/);
      writeKeyFile(join(dir, 'node.key'), kb);
      expect(() => nodeCurve(parseConfig(secure, join(dir, 'config.json')))).to.throw(`"peers" gives this node's endpoint ${A} a key that is not the public key of "keyFile"`);
    });
  });
});
