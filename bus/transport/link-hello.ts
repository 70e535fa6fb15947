/**
 * The dialing side of a link's proof (link-auth.ts): the `auth.hello` a
 * CURVE DEALER sends before anything else, as a message of its own (ZeroMQ
 * keeps a link's messages in order, so the receiver has bound the link
 * before it reads what follows; a batch keeps its limits on envelopes).
 *
 * It goes first on a new link, again after every handshake (libzmq redials
 * a peer that restarted, and the new process knows nothing of the link),
 * again after a send that failed, and every helloEveryMs in any case: a
 * receiver that forgot the link for a reason the dialer cannot see (its
 * table of links was full) hears it again soon. A hello the receiver knows
 * already costs it a comparison, no key agreement.
 */
import { randomBytes } from 'node:crypto';
import type * as zmq from 'zeromq';
import { encode } from '../codec.js';
import { ENVELOPE_VERSION } from '../envelope.js';
import type { CurveKeyPair } from './curve.js';
import { linkAuthLimits } from './link-auth.js';
import { proveKey } from './link-proof.js';
import { watch } from './watched-sockets.js';

export class LinkHello {
  private readonly frame: Uint8Array;
  private owed = true;
  private saidMs = 0;

  /** The hello `from` says to the holder of `serverKey`, with the proof of `own`. */
  constructor(own: CurveKeyPair, serverKey: string, from: string) {
    this.frame = encode({ v: ENVELOPE_VERSION, kind: 'auth.hello', from, to: '', epoch: 1, seq: 0, body: { publicKey: own.publicKey, proof: proveKey(own, serverKey) } });
  }

  /** Says it again after every handshake of `dealer`. */
  watch(dealer: zmq.Dealer): void {
    watch(dealer).on('handshake', () => this.again());
  }

  /** The hello, when one is due before the next message; else null. */
  due(): Uint8Array | null {
    const now = performance.now();
    if (!this.owed && now - this.saidMs < linkAuthLimits.helloEveryMs) return null;
    this.owed = false;
    this.saidMs = now;
    return this.frame;
  }

  /** The message that carried it may not have left: say it with the next one. */
  again(): void {
    this.owed = true;
  }
}

/** A routing id for a DEALER of a CURVE link: random, so that no other connection can name it (link-auth.ts). */
export function linkRoutingId(): string {
  return randomBytes(linkAuthLimits.routeBytesMin).toString('hex');
}
