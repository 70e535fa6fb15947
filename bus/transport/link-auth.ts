/**
 * Who is at the other end of each link of a CURVE transport, and what it
 * may say. CurveZMQ lets in only the keys the node knows (zap.ts), but
 * zeromq.js does not tell which of them sent a given message, so each link
 * proves its key once, in its first message (`auth.hello`, link-proof.ts),
 * and this binds the link to the key's holder:
 *
 * - a node's key (one `peers` lists): the link speaks for the node at that
 *   endpoint, so an envelope whose `from` is a node the address book puts
 *   at an endpoint of another key is dropped (`forged_from`), before its
 *   epoch is looked at, so a member cannot push another's epoch up either;
 * - a client's key: the link carries the client's role to the node
 *   (actors/access.ts) and may send client requests only (`not_a_node`);
 * - no proven key, or a key no longer let in (taken away from the node
 *   database): everything it sends is dropped (`unauthenticated`).
 *
 * Inbound links are ROUTER connections, named by their routing id. An
 * honest dialer picks a random one of ROUTE_BYTES_MIN bytes or more, which
 * only it knows (the handshake that carries it is encrypted), so a binding
 * cannot be taken over by a later connection that names the same id;
 * libzmq's own ids are a counter (5 bytes), and a link using one is never
 * bound. Replies on our own DEALERs come from the node we dialed, which
 * CURVE proved to hold the key `peers` gives for the endpoint.
 */
import type { Envelope, RejectReason } from '../envelope.js';
import type { Body } from '../messages/index.js';
import type { CurveKeyPair } from './curve.js';
import type { ClientRole, KeyHolder } from './key-holder.js';
import { proofHolds } from './link-proof.js';

export const linkAuthLimits = {
  /** Routing ids of honest dialers are this long at least (zmq.ts makes 16 random bytes, hex). */
  routeBytesMin: 16,
  /** Links bound at once; the least recently heard is forgotten beyond (it proves its key again, see helloEveryMs). */
  bindingsMax: 65_536,
  /** A dialer says its hello again this often, so a link the receiver forgot (a restart, an eviction) is not dead for long. */
  helloEveryMs: 5000,
} as const;

export interface LinkAuthOptions {
  /** This transport's own pair: proofs are made to its public key. */
  keys: CurveKeyPair;
  /** The holder of a public key, or null for a key nobody authorized. */
  holderOf(publicKey: string): KeyHolder | null;
  /** The public key of the node at `endpoint` (`peers`), or null. */
  keyAt(endpoint: string): string | null;
  /** Where the address book puts node `id`, if it knows. */
  endpointOf(id: string): string | undefined;
}

/** What becomes of one inbound envelope: passed on (with the role of a client link), dropped and counted, or kept by the transport (a hello). */
export type Vouch = { verdict: 'pass'; role?: ClientRole } | { verdict: 'reject'; reason: RejectReason; detail: string } | { verdict: 'kept' };

const PASS: Vouch = Object.freeze({ verdict: 'pass' });
const KEPT: Vouch = Object.freeze({ verdict: 'kept' });

interface Binding {
  publicKey: string;
  holder: KeyHolder;
  /** The proof this link last gave: the same hello again needs no new key agreement. */
  proof: Uint8Array;
}

export class LinkAuth {
  /** ROUTER links by routing id (latin1), in least-recently-heard order. */
  private readonly bindings = new Map<string, Binding>();

  constructor(private readonly opts: LinkAuthOptions) {}

  /** Judges an envelope that came by a ROUTER link (`route`: its routing id) or back on our DEALER to `endpoint`. */
  vouch(env: Envelope, route: Uint8Array | { endpoint: string }): Vouch {
    if (!(route instanceof Uint8Array)) return this.fromDialed(env, route.endpoint);
    const name = Buffer.from(route.buffer, route.byteOffset, route.byteLength).toString('latin1');
    if (env.kind === 'auth.hello') return this.hello(name, route.byteLength, env);
    const binding = this.bindings.get(name);
    if (!binding) return reject('unauthenticated', `${env.kind} from ${env.from} came by a link that has not proven its key`);
    // A key taken away since (the node database's keys change with quorum) speaks no more, on links already open too.
    if (this.opts.holderOf(binding.publicKey) === null) {
      this.bindings.delete(name);
      return reject('unauthenticated', `${env.kind} from ${env.from} came by a key this node no longer lets in`);
    }
    // Re-inserting keeps the Map in least-recently-heard order for eviction.
    this.bindings.delete(name);
    this.bindings.set(name, binding);
    const forged = this.forged(env, binding.publicKey, binding.holder);
    if (forged) return forged;
    if (binding.holder.kind === 'client') {
      if (!env.kind.startsWith('client.')) return reject('not_a_node', `${env.kind} from ${env.from} came by the key of client ${binding.holder.name}: only nodes send it`);
      return { verdict: 'pass', role: binding.holder.role };
    }
    return PASS;
  }

  /** Links bound now (for specs and status). */
  get size(): number {
    return this.bindings.size;
  }

  private hello(name: string, routeBytes: number, env: Envelope): Vouch {
    const { publicKey, proof } = env.body as Body<'auth.hello'>;
    const known = this.bindings.get(name);
    if (known && known.publicKey === publicKey && Buffer.from(known.proof).equals(proof)) {
      this.bindings.delete(name);
      this.bindings.set(name, known);
      return KEPT;
    }
    if (routeBytes < linkAuthLimits.routeBytesMin) {
      return reject('bad_proof', `a hello from ${env.from} came by a link with a routing id of ${routeBytes} bytes, not one of its own (${linkAuthLimits.routeBytesMin} bytes or more)`);
    }
    const holder = this.opts.holderOf(publicKey);
    if (!holder) return reject('bad_proof', `a hello from ${env.from} names a key this node does not let in`);
    if (!proofHolds(this.opts.keys, publicKey, proof)) return reject('bad_proof', `a hello from ${env.from} does not prove the key it names`);
    this.bindings.delete(name);
    this.bindings.set(name, { publicKey, holder, proof: Uint8Array.from(proof) });
    if (this.bindings.size > linkAuthLimits.bindingsMax) {
      const oldest = this.bindings.keys().next().value;
      if (oldest !== undefined) this.bindings.delete(oldest);
    }
    return KEPT;
  }

  /** An answer on our DEALER: CURVE proved the server holds the key `peers` gives for the endpoint we dialed. */
  private fromDialed(env: Envelope, endpoint: string): Vouch {
    // Nobody asks a server for a hello: one is noise, not a reason to count.
    if (env.kind === 'auth.hello') return KEPT;
    const key = this.opts.keyAt(endpoint);
    if (key === null) return reject('unauthenticated', `${env.kind} from ${env.from} came back from ${endpoint}, whose key this node does not know`);
    return this.forged(env, key, { kind: 'node' }) ?? PASS;
  }

  /**
   * A `from` that names a node the address book places at an endpoint whose
   * key is another member's. An id it does not know (a node that is
   * joining) passes: a key of `peers` speaks for a node, and the node
   * database ties the id to its endpoint once it joins; so does an id placed
   * where `peers` names no key (a node that moved: only another member's
   * key there shows a forgery). A client may never name a node.
   */
  private forged(env: Envelope, publicKey: string, holder: KeyHolder): Vouch | null {
    const at = this.opts.endpointOf(env.from);
    if (at === undefined) return null;
    if (holder.kind === 'node') {
      const owner = this.opts.keyAt(at);
      if (owner === null || owner === publicKey) return null;
    }
    const by = holder.kind === 'node' ? 'the key of another node' : `the key of client ${holder.name}`;
    return reject('forged_from', `${env.kind} names node ${env.from} (at ${at}) as its sender but came by ${by}`);
  }
}

function reject(reason: RejectReason, detail: string): Vouch {
  return { verdict: 'reject', reason, detail };
}
