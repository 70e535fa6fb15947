/**
 * The node's protocol machines on its HTTP port (SPEC.md M26), beside
 * /status and /metrics: what `mangrove machines watch` reads, and what the
 * browser dashboard will. The formats below are the contract; change them
 * only compatibly.
 *
 * GET /machines
 *   200 application/json, one object:
 *     {"node": ID, "t": MS, "machines": [NAME, …],
 *      "actors": [{"actor": "x:12", "machine": "heartbeat-member", "state": "following", "since": MS}, …],
 *      "streams": {"open": N, "dropped": N}}
 *   machines: every protocol machine (`mangrove machines list`); actors: the
 *   machines running now, with their state (dotted paths, `monitoring.ticking`)
 *   and when they entered it. Times are the node's clock, ms since the epoch.
 *
 * GET /machines/stream[?machine=NAME][&events=all][&replay=N]
 *   200 text/event-stream (Server-Sent Events; a browser's EventSource reads it).
 *   One message per transition, as it happens:
 *     id: 42
 *     data: {"t": MS, "node": ID, "machine": "heartbeat-member", "actor": "x:12",
 *            "from": "following", "to": "candidate", "event": "xstate.after.tick.heartbeat-member.following"}
 *   from is null for an actor's first state (event `xstate.init`); to is null
 *   when the actor stopped (`xstate.stop`). A final state (a heartbeat-member
 *   `promoted`) ends its actor; its successor starts as a new actor.
 *   - machine=NAME: that machine's records only (unknown NAME: 404 E_NOT_FOUND).
 *   - events=all: also every event that left an actor's state as it was
 *     (from = to, no id: these are not kept; heartbeat ticks make them many).
 *   - replay=N: first the newest N of the records the node keeps (at most 1000);
 *     a reconnecting EventSource's Last-Event-ID header resumes after that id instead.
 *   A comment line `: keep-alive` comes every 15 s. A client more than 256
 *   messages behind is disconnected: the node never waits for a reader.
 *   At most 16 streams at once; more get 503 E_BUSY. Errors are JSON
 *   {"code", "message"}, as elsewhere on this port.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MangroveError } from '../../bus/errors.js';
import { send, type RouteHandler } from './server.js';
import { isMachineName, machineNames, unknownMachine } from '../inspect/catalog.js';
import { machineWatchLimits, type MachineWatch, type TransitionRecord } from '../inspect/watch.js';

export const machineStreamLimits = {
  clientsMax: 16,
  /** Messages queued for a client whose socket is full; one more and it is dropped. */
  backlogMax: 256,
  keepAliveMs: 15_000,
  /** What a browser's EventSource waits before reconnecting. */
  retryMs: 2_000,
} as const;

export type MachineStreamLimits = { -readonly [K in keyof typeof machineStreamLimits]: number };

const JSON_TYPE = 'application/json; charset=utf-8';

export function machineRoutes(watch: MachineWatch, limits: Partial<MachineStreamLimits> = {}): Record<string, RouteHandler> {
  const hub = new StreamHub(watch, { ...machineStreamLimits, ...limits });
  return {
    '/machines': (_req, res) => {
      const body = { node: watch.node, t: watch.now(), machines: machineNames(), actors: watch.actors(), streams: hub.counts() };
      send(res, 200, JSON_TYPE, `${JSON.stringify(body)}\n`);
    },
    '/machines/stream': (req, res, url) => hub.open(req, res, url),
  };
}

interface Client {
  res: ServerResponse;
  machine: string | null;
  allEvents: boolean;
  /** Messages waiting for the socket to drain. */
  queue: string[];
  blocked: boolean;
}

/** The open streams, fed by one subscription to the watch that exists only while a stream is open. */
class StreamHub {
  private readonly clients = new Set<Client>();
  private unsubscribe?: () => void;
  private subscribedAll = false;
  private keepAlive?: NodeJS.Timeout;
  private dropped = 0;
  /** Every client gets the same text for a record: encode it once. */
  private lastRecord?: TransitionRecord;
  private lastText = '';

  constructor(
    private readonly watch: MachineWatch,
    private readonly limits: MachineStreamLimits,
  ) {}

  counts(): { open: number; dropped: number } {
    return { open: this.clients.size, dropped: this.dropped };
  }

  open(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const q = url.searchParams;
    const machine = q.get('machine');
    if (machine !== null && !isMachineName(machine)) return fail(res, 404, unknownMachine(machine));
    const events = q.get('events');
    if (events !== null && events !== 'all' && events !== 'changes') {
      return fail(res, 400, new MangroveError('E_BAD_ARGUMENT', `events must be "all" or "changes" (got ${JSON.stringify(events)})`));
    }
    const replay = q.get('replay') === null ? 0 : Number(q.get('replay'));
    if (!Number.isInteger(replay) || replay < 0) {
      return fail(res, 400, new MangroveError('E_BAD_ARGUMENT', `replay must be a whole number of records (got ${JSON.stringify(q.get('replay'))})`));
    }
    if (this.clients.size >= this.limits.clientsMax) {
      return fail(res, 503, new MangroveError('E_BUSY', `this node already serves ${this.limits.clientsMax} machine streams; close one and retry`));
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      // A proxy in front must pass each message on at once.
      'X-Accel-Buffering': 'no',
    });
    if (req.method === 'HEAD') return void res.end();
    const client: Client = { res, machine, allEvents: events === 'all', queue: [], blocked: false };
    res.on('close', () => this.remove(client));
    this.write(client, `retry: ${this.limits.retryMs}\n: machine transitions of node ${this.watch.node}\n\n`);
    const lastId = Number(req.headers['last-event-id']);
    const backlog = Number.isInteger(lastId) && lastId > 0 ? this.watch.since(lastId) : this.watch.recent(Math.min(replay, machineWatchLimits.recordsMax));
    // The replay is bounded by what the watch keeps, so it may fill the socket past its mark at once.
    let flowing = true;
    for (const k of backlog) if (this.wants(client, k.record, k.seq)) flowing = res.write(this.encode(k.record, k.seq));
    if (!flowing) this.block(client);
    this.clients.add(client);
    this.sync();
  }

  private wants(c: Client, record: TransitionRecord, seq: number | null): boolean {
    return (c.machine === null || c.machine === record.machine) && (seq !== null || c.allEvents);
  }

  private readonly onRecord = (record: TransitionRecord, seq: number | null): void => {
    for (const c of this.clients) if (this.wants(c, record, seq)) this.write(c, this.encode(record, seq));
  };

  private encode(record: TransitionRecord, seq: number | null): string {
    if (record !== this.lastRecord) {
      this.lastRecord = record;
      this.lastText = `${seq === null ? '' : `id: ${seq}\n`}data: ${JSON.stringify(record)}\n\n`;
    }
    return this.lastText;
  }

  /** Writes without ever waiting: a full socket queues, a full queue drops the client. */
  private write(c: Client, text: string): void {
    if (c.blocked) {
      if (c.queue.length >= this.limits.backlogMax) return this.drop(c);
      c.queue.push(text);
      return;
    }
    if (!c.res.write(text)) this.block(c);
  }

  private block(c: Client): void {
    c.blocked = true;
    c.res.once('drain', () => {
      c.blocked = false;
      while (c.queue.length > 0) {
        if (!c.res.write(c.queue.shift()!)) return this.block(c);
      }
    });
  }

  private drop(c: Client): void {
    this.dropped++;
    this.remove(c);
    c.res.destroy();
  }

  private remove(c: Client): void {
    if (this.clients.delete(c)) this.sync();
  }

  /** Subscribes to the watch only while someone reads, and for all events only while someone asks. */
  private sync(): void {
    const all = [...this.clients].some((c) => c.allEvents);
    if (this.clients.size === 0 || all !== this.subscribedAll) {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
    }
    if (this.clients.size > 0 && !this.unsubscribe) {
      this.unsubscribe = this.watch.subscribe(this.onRecord, { allEvents: all });
      this.subscribedAll = all;
    }
    if (this.clients.size === 0) {
      clearInterval(this.keepAlive);
      this.keepAlive = undefined;
    } else if (!this.keepAlive) {
      this.keepAlive = setInterval(() => {
        for (const c of this.clients) this.write(c, ': keep-alive\n\n');
      }, this.limits.keepAliveMs);
      this.keepAlive.unref();
    }
  }
}

function fail(res: ServerResponse, code: number, err: MangroveError): void {
  send(res, code, JSON_TYPE, `${JSON.stringify(err.toJSON())}\n`);
}
