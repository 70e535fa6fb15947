/**
 * The proof a link gives of its key (bus/transport/link-proof.ts): it holds
 * for the receiver it was made for and no other, for the key it names and
 * no other, and a bit flipped anywhere breaks it.
 */
import { expect } from 'chai';
import { generateKeyPair } from '../../../../bus/transport/curve.js';
import { proofHolds, proveKey } from '../../../../bus/transport/link-proof.js';

describe('bus/transport/link-proof', () => {
  const sender = generateKeyPair();
  const receiver = generateKeyPair();
  const other = generateKeyPair();

  it('is 32 bytes the receiver can check, and the same each time (no nonce: the link is encrypted)', () => {
    const proof = proveKey(sender, receiver.publicKey);
    expect(proof.byteLength).to.equal(32);
    expect(proofHolds(receiver, sender.publicKey, proof)).to.equal(true);
    expect(Buffer.from(proveKey(sender, receiver.publicKey)).equals(proof)).to.equal(true);
  });

  it('fails for a key the proof was not made with', () => {
    const proof = proveKey(sender, receiver.publicKey);
    expect(proofHolds(receiver, other.publicKey, proof), 'another sender key named').to.equal(false);
    expect(proofHolds(receiver, sender.publicKey, proveKey(other, receiver.publicKey)), "another sender's proof").to.equal(false);
  });

  it('is worth nothing to another receiver: it cannot be replayed elsewhere', () => {
    const proof = proveKey(sender, receiver.publicKey);
    expect(proofHolds(other, sender.publicKey, proof)).to.equal(false);
  });

  it('cannot be turned around: the receiver\'s proof to the sender is another one', () => {
    const there = proveKey(sender, receiver.publicKey);
    const back = proveKey(receiver, sender.publicKey);
    expect(Buffer.from(there).equals(back)).to.equal(false);
    expect(proofHolds(sender, receiver.publicKey, there)).to.equal(false);
  });

  it('breaks with any bit flipped, and refuses a proof of another length or a key that is not one, without throwing', () => {
    const proof = proveKey(sender, receiver.publicKey);
    for (let bit = 0; bit < 256; bit += 37) {
      const bad = Uint8Array.from(proof);
      bad[bit >> 3] ^= 1 << (bit & 7);
      expect(proofHolds(receiver, sender.publicKey, bad), `bit ${bit}`).to.equal(false);
    }
    expect(proofHolds(receiver, sender.publicKey, proof.subarray(0, 31))).to.equal(false);
    expect(proofHolds(receiver, 'not a key', proof)).to.equal(false);
    expect(proofHolds(receiver, '0'.repeat(40), proof)).to.equal(false);
  });
});
