/**
 * How a pure machine says "send this message" (DESIGN.md, etcd raft's
 * `Ready`): it emits a `send` event and the actor that runs it puts the
 * message on the bus. Machines never hold a transport, so the same machine
 * runs in production, in the simulator and under `transition()` in specs.
 */
import type { Body, Kind } from '../bus/messages/index.js';

/** One outgoing message, addressed by the peer's permanent id (M1). */
export type SendOut = { type: 'send'; to: string; kind: Kind; body: unknown };

/** Builds a `send` whose body is checked against its kind at compile time. */
export function sendTo<K extends Kind>(to: string, kind: K, body: Body<K>): SendOut {
  return { type: 'send', to, kind, body };
}
