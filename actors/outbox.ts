/**
 * The one place a node builds envelopes: it stamps the format version, this
 * node's id and epoch, and a sequence number, so every sender on the node
 * numbers its messages from one counter.
 */
import { ENVELOPE_VERSION, type Envelope } from '../bus/envelope.js';
import type { Body, Kind } from '../bus/messages/index.js';
import type { ReplyRoute, Transport } from '../bus/transport/transport.js';

export class Outbox {
  private seq = 0;

  constructor(
    readonly transport: Transport,
    readonly self: string,
    readonly epoch: number,
  ) {}

  envelope<K extends Kind>(to: string, kind: K, body: Body<K>, re?: number): Envelope<K, Body<K>> {
    const env: Envelope<K, Body<K>> = { v: ENVELOPE_VERSION, kind, from: this.self, to, epoch: this.epoch, seq: ++this.seq, body };
    if (re !== undefined) env.re = re;
    return env;
  }

  send<K extends Kind>(to: string, kind: K, body: Body<K>): void {
    if (to === this.self || to === '') return;
    this.transport.send(this.envelope(to, kind, body));
  }

  /** To this node itself, through the transport (traced, delivered on a later turn): see Transport.loop. */
  loop<K extends Kind>(kind: K, body: Body<K>): void {
    this.transport.loop(this.envelope(this.self, kind, body));
  }

  reply<K extends Kind>(route: ReplyRoute, request: Envelope, kind: K, body: Body<K>): void {
    this.transport.reply(route, this.envelope(request.from, kind, body, request.seq));
  }

  sendToEndpoint<K extends Kind>(endpoint: string, kind: K, body: Body<K>): void {
    this.transport.sendToEndpoint(endpoint, this.envelope('', kind, body));
  }
}
