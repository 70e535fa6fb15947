/**
 * The gate that ties each link of a CURVE transport to the key it proved
 * (bus/transport/link-auth.ts), without sockets: a link that has not proven
 * a key gets nothing through; a node's key speaks only for the node at its
 * endpoint; a client's key carries its role and only client requests.
 */
import { expect } from 'chai';
import { ENVELOPE_VERSION, type Envelope } from '../../../../bus/envelope.js';
import type { Kind } from '../../../../bus/messages/index.js';
import { generateKeyPair, type CurveKeyPair } from '../../../../bus/transport/curve.js';
import type { KeyHolder } from '../../../../bus/transport/key-holder.js';
import { LinkAuth, type Vouch } from '../../../../bus/transport/link-auth.js';
import { proveKey } from '../../../../bus/transport/link-proof.js';
import { sampleBodies } from '../../../fixtures/sample-bodies.js';

const self = generateKeyPair();
const nodeB = generateKeyPair();
const nodeC = generateKeyPair();
const reader = generateKeyPair();
const stranger = generateKeyPair();
const [E_SELF, E_B, E_C] = ['tcp://127.0.0.1:7400', 'tcp://127.0.0.1:7401', 'tcp://127.0.0.1:7402'];
const keyAt = new Map([
  [E_SELF, self.publicKey],
  [E_B, nodeB.publicKey],
  [E_C, nodeC.publicKey],
]);
const endpointOf = new Map([
  ['self', E_SELF],
  ['b', E_B],
  ['c', E_C],
]);
const holders = new Map<string, KeyHolder>([
  [nodeB.publicKey, { kind: 'node' }],
  [nodeC.publicKey, { kind: 'node' }],
  [reader.publicKey, { kind: 'client', name: 'reader', role: 'read-only' }],
]);

function gate(): LinkAuth {
  return new LinkAuth({ keys: self, holderOf: (k) => holders.get(k) ?? null, keyAt: (e) => keyAt.get(e) ?? null, endpointOf: (id) => endpointOf.get(id) });
}

function env(from: string, kind: Kind = 'hb.claim', epoch = 1): Envelope {
  return { v: ENVELOPE_VERSION, kind, from, to: 'self', epoch, seq: 1, body: sampleBodies[kind] };
}

function hello(from: string, keys: CurveKeyPair, proof = proveKey(keys, self.publicKey)): Envelope {
  return { v: ENVELOPE_VERSION, kind: 'auth.hello', from, to: '', epoch: 1, seq: 0, body: { publicKey: keys.publicKey, proof } };
}

/** A routing id as an honest dialer picks one (link-hello.ts): random, 16 bytes or more. */
let routes = 0;
function route(): Uint8Array {
  return Buffer.from(`route-${String(++routes).padStart(10, '0')}`);
}

const verdict = (v: Vouch): string => (v.verdict === 'reject' ? `${v.verdict} ${v.reason}` : v.verdict);

describe('bus/transport/link-auth', () => {
  it('drops everything from a link that has not proven its key', () => {
    expect(verdict(gate().vouch(env('b'), route()))).to.equal('reject unauthenticated');
  });

  it('binds a link to the node key it proves, and lets that node speak', () => {
    const g = gate();
    const r = route();
    expect(verdict(g.vouch(hello('b', nodeB), r))).to.equal('kept');
    expect(g.vouch(env('b'), r)).to.deep.equal({ verdict: 'pass' });
    expect(g.vouch(env('b', 'client.status'), r), 'a node may ask what a client may, with no role').to.deep.equal({ verdict: 'pass' });
    expect(g.size).to.equal(1);
  });

  it('drops what a node key sends in the name of another node: forged_from, whatever its epoch', () => {
    const g = gate();
    const r = route();
    g.vouch(hello('b', nodeB), r);
    expect(verdict(g.vouch(env('c', 'hb.claim', 1_000_000), r))).to.equal('reject forged_from');
    expect(verdict(g.vouch(env('self'), r)), 'nor in the receiver\'s own name').to.equal('reject forged_from');
  });

  it('lets a node key speak for an id the address book does not know yet (a node joining)', () => {
    const g = gate();
    const r = route();
    g.vouch(hello('newcomer', nodeC), r);
    expect(verdict(g.vouch(env('newcomer'), r))).to.equal('pass');
  });

  it('gives a client link its role, lets through client requests only, and never a node\'s name', () => {
    const g = gate();
    const r = route();
    g.vouch(hello('client-1', reader), r);
    expect(g.vouch(env('client-1', 'client.page'), r)).to.deep.equal({ verdict: 'pass', role: 'read-only' });
    expect(verdict(g.vouch(env('client-1', 'page.call'), r))).to.equal('reject not_a_node');
    expect(verdict(g.vouch(env('b', 'client.status'), r))).to.equal('reject forged_from');
  });

  it('refuses a hello that does not prove its key, names a key nobody let in, or comes by a routing id not its own', () => {
    const g = gate();
    expect(verdict(g.vouch(hello('b', nodeB, proveKey(nodeC, self.publicKey)), route())), 'proof of another key').to.equal('reject bad_proof');
    expect(verdict(g.vouch(hello('b', nodeB, proveKey(nodeB, nodeC.publicKey)), route())), 'proof made for another receiver').to.equal('reject bad_proof');
    expect(verdict(g.vouch(hello('x', stranger), route())), 'a stranger\'s own proof').to.equal('reject bad_proof');
    // libzmq's own routing ids are a 5-byte counter another connection could name.
    expect(verdict(g.vouch(hello('b', nodeB), new Uint8Array([0, 0, 0, 0, 7])))).to.equal('reject bad_proof');
    expect(g.size).to.equal(0);
  });

  it('keeps each link apart: one link\'s proof does not open another', () => {
    const g = gate();
    g.vouch(hello('b', nodeB), route());
    expect(verdict(g.vouch(env('b'), route()))).to.equal('reject unauthenticated');
  });

  it('takes the same hello again without a new key agreement, and binds a link that proves another key to that one', () => {
    const g = gate();
    const r = route();
    g.vouch(hello('b', nodeB), r);
    expect(verdict(g.vouch(hello('b', nodeB), r))).to.equal('kept');
    g.vouch(hello('client-1', reader), r);
    expect(g.vouch(env('client-1', 'client.status'), r)).to.deep.equal({ verdict: 'pass', role: 'read-only' });
  });

  it('drops what a bound link sends once its key is no longer let in (taken away from the node database), and keeps it dropped', () => {
    let revoked = false;
    const g = new LinkAuth({ keys: self, holderOf: (k) => (revoked && k === nodeB.publicKey ? null : (holders.get(k) ?? null)), keyAt: (e) => keyAt.get(e) ?? null, endpointOf: (id) => endpointOf.get(id) });
    const r = route();
    g.vouch(hello('b', nodeB), r);
    expect(verdict(g.vouch(env('b'), r))).to.equal('pass');
    revoked = true;
    const v = g.vouch(env('b'), r);
    expect(verdict(v)).to.equal('reject unauthenticated');
    expect(v.verdict === 'reject' && v.detail).to.match(/no longer lets in/);
    expect(g.size, 'the binding is forgotten').to.equal(0);
    expect(verdict(g.vouch(hello('b', nodeB), r)), 'its hello proves a key not let in').to.equal('reject bad_proof');
  });

  it('checks answers on its own DEALERs against the key of the endpoint dialed', () => {
    const g = gate();
    expect(verdict(g.vouch(env('b'), { endpoint: E_B }))).to.equal('pass');
    expect(verdict(g.vouch(env('c'), { endpoint: E_B }))).to.equal('reject forged_from');
    expect(verdict(g.vouch(env('b'), { endpoint: 'tcp://127.0.0.1:9' }))).to.equal('reject unauthenticated');
  });
});
