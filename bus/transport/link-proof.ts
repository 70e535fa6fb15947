/**
 * The proof a link gives of the CURVE key it holds (the `auth.hello` body,
 * bus/messages/auth.ts): HMAC-SHA256, keyed with the X25519 secret the
 * sender's pair shares with the receiver's public key, over a fixed context
 * and both public keys, receiver's last.
 *
 * Only the holder of the sender's secret key (or of the receiver's) can
 * compute it, so a hello that names a key proves the link holds it. No
 * nonce is needed: under CURVE every link is encrypted with keys of its own,
 * so a proof cannot be read off the wire to be replayed, and a proof made
 * for one receiver is worth nothing to another, whose public key differs.
 * The receiver learns nothing it could use elsewhere: the shared secret is
 * the same both ways, but a proof for a link *to* the sender would name the
 * sender as receiver, and ends there.
 */
import { createHmac, createPrivateKey, createPublicKey, diffieHellman, timingSafeEqual, type KeyObject } from 'node:crypto';
import { present } from '../assert.js';
import { PROOF_BYTES } from '../messages/auth.js';
import { checkKey, type CurveKeyPair, z85Decode } from './curve.js';

/** What every proof is made over first: a proof of anything else never passes for one. */
const CONTEXT = 'mangrove link proof v1';

/** The proof that the holder of `own` dials the holder of `receiverPublic`. */
export function proveKey(own: CurveKeyPair, receiverPublic: string): Uint8Array {
  return mac(sharedSecret(own.secretKey, receiverPublic), own.publicKey, receiverPublic);
}

/** Whether `proof` shows that its sender holds the secret half of `senderPublic`, for the receiver holding `own`. */
export function proofHolds(own: CurveKeyPair, senderPublic: string, proof: Uint8Array): boolean {
  if (proof.byteLength !== PROOF_BYTES) return false;
  let expected: Uint8Array;
  try {
    expected = mac(sharedSecret(own.secretKey, senderPublic), senderPublic, own.publicKey);
  } catch {
    // A key that is not a point X25519 takes (or not Z85 at all) proves nothing.
    return false;
  }
  return timingSafeEqual(expected, proof);
}

function mac(secret: Uint8Array, senderPublic: string, receiverPublic: string): Uint8Array {
  return createHmac('sha256', secret).update(`${CONTEXT}\n${senderPublic}\n${receiverPublic}`).digest();
}

/** X25519 of a secret and a public key, each a Z85 CURVE key. Throws on a bad key (callers check or catch). */
function sharedSecret(secretKey: string, publicKey: string): Uint8Array {
  return diffieHellman({ privateKey: privateKeyObject(secretKey), publicKey: publicKeyObject(publicKey) });
}

function privateKeyObject(secretKey: string): KeyObject {
  const d = present(z85Decode(checkKey('secretKey', secretKey)), 'a checked key decodes');
  // The JWK wants x beside d; node:crypto derives the public half from d itself.
  const jwk = { kty: 'OKP', crv: 'X25519', d: Buffer.from(d).toString('base64url'), x: '' };
  return createPrivateKey({ key: jwk, format: 'jwk' });
}

function publicKeyObject(publicKey: string): KeyObject {
  const x = present(z85Decode(checkKey('publicKey', publicKey)), 'a checked key decodes');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(x).toString('base64url') }, format: 'jwk' });
}
