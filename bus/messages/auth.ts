/**
 * What a link says before anything else on a CURVE transport (`auth.`):
 * which key it holds, and the proof that it holds it (bus/transport/
 * link-proof.ts). CurveZMQ has already checked, in its handshake, that the
 * key is one the node lets in, but ZeroMQ does not say which key a message
 * came by: the hello names it, so the node can tie the link to a node id or
 * a client role (bus/transport/link-auth.ts). The transport answers it
 * itself; no element sees it.
 */
import { z } from 'zod';
import { bytes } from './schema.js';

/** Z85 characters of a CURVE public key (bus/transport/curve.ts curveLimits.keyChars). */
const KEY_CHARS = 40;
/** Bytes of a proof: one HMAC-SHA256. */
export const PROOF_BYTES = 32;

export const authBodies = {
  'auth.hello': z.object({
    publicKey: z.string().length(KEY_CHARS),
    proof: bytes('proof', (n) => n === PROOF_BYTES, `${PROOF_BYTES} bytes`),
  }),
} as const;
