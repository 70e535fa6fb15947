/**
 * The dashboard's live feed (M25): `GET /dashboard/stream`, Server-Sent
 * Events. Once a period (the heartbeat's, at least a second) while a browser
 * listens, one `cluster` message: every node's own status as it answered
 * (peers.ts), this node's message counts by kind and its programs'
 * requests (`client.*` page calls, `fs.*` file-system calls) with their
 * latency histograms (actors/engine/op-latency.ts; fast-path reads and
 * writes are not timed) for the traffic charts; every count is a total
 * since the node started, so a chart subtracts two messages. Nothing is
 * asked while no one listens. A browser whose socket is
 * still full at the next message misses that message; one that misses
 * `behindMax` in a row is closed (the node never waits for a reader).
 *
 *   event: cluster
 *   data: {"t": MS, "self": ID, "periodMs": N, "nodes": [PeerView…],
 *          "traffic": {"sentByKind": {KIND: N}, "receivedByKind": {KIND: N}},
 *          "requests": {OP: {"n": N, "failed": N, "sumMs": MS, "buckets": [N…]}},
 *          "requestBoundsMs": [MS…]}
 *   (`buckets` counts per bucket, not cumulative: one per bound of
 *   `requestBoundsMs`, each up to and including it, and a last one past it)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MangroveError } from '../../../bus/errors.js';
import type { TransportStats } from '../../../bus/transport/transport.js';
import { clientLatencies, LATENCY_BOUNDS_MS, type LatencySnapshot } from '../../../actors/engine/op-latency.js';
import { send } from '../server.js';
import type { PeerStatuses, PeerView } from './peers.js';

export const feedLimits = {
  clientsMax: 16,
  /** Messages a browser may miss in a row (its socket full) before it is closed. */
  behindMax: 5,
  /** The shortest period between two messages, whatever the heartbeat's. */
  periodMsMin: 1000,
  retryMs: 2000,
} as const;

export interface ClusterMessage {
  t: number;
  self: string;
  periodMs: number;
  nodes: PeerView[];
  traffic: { sentByKind: Record<string, number>; receivedByKind: Record<string, number> };
  requests: Record<string, LatencySnapshot>;
  requestBoundsMs: readonly number[];
}

interface Listener {
  res: ServerResponse;
  behind: number;
}

export class ClusterFeed {
  private readonly listeners = new Set<Listener>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  readonly periodMs: number;

  constructor(
    private readonly peers: PeerStatuses,
    private readonly transport: () => TransportStats,
    private readonly now: () => number,
    heartbeatMs: number,
    /** Per op-code, how long this node's requests took (FlowScheduler.latencies); the client ops are sent. */
    private readonly requests: () => Record<string, LatencySnapshot> = () => ({}),
  ) {
    this.periodMs = Math.max(feedLimits.periodMsMin, heartbeatMs);
  }

  open(req: IncomingMessage, res: ServerResponse): void {
    if (this.listeners.size >= feedLimits.clientsMax) {
      const err = new MangroveError('E_BUSY', `this node already feeds ${feedLimits.clientsMax} dashboards; close one and retry`);
      return send(res, 503, 'application/json; charset=utf-8', `${JSON.stringify(err.toJSON())}\n`);
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    if (req.method === 'HEAD') return void res.end();
    const l: Listener = { res, behind: 0 };
    res.on('close', () => {
      this.listeners.delete(l);
      if (this.listeners.size === 0) this.stopTimer();
    });
    res.write(`retry: ${feedLimits.retryMs}\n\n`);
    this.listeners.add(l);
    // The first message at once, so a page shows the cluster as soon as it opens.
    void this.tick();
    this.timer ??= setInterval(() => void this.tick(), this.periodMs);
  }

  /** One message for every listener; a tick still gathering when the next is due is skipped. */
  async tick(): Promise<void> {
    if (this.busy || this.listeners.size === 0) return;
    this.busy = true;
    try {
      const nodes = await this.peers.gather(Math.min(this.periodMs, 2000));
      const stats = this.transport();
      const msg: ClusterMessage = { t: this.now(), self: nodes[0]!.id, periodMs: this.periodMs, nodes, traffic: { sentByKind: stats.sentByKind, receivedByKind: stats.receivedByKind }, requests: clientLatencies(this.requests()), requestBoundsMs: LATENCY_BOUNDS_MS };
      const text = `event: cluster\ndata: ${JSON.stringify(msg)}\n\n`;
      for (const l of this.listeners) this.write(l, text);
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    this.stopTimer();
    for (const l of this.listeners) l.res.end();
    this.listeners.clear();
  }

  private write(l: Listener, text: string): void {
    if (l.res.writableNeedDrain) {
      if (++l.behind > feedLimits.behindMax) l.res.destroy();
      return;
    }
    l.behind = 0;
    l.res.write(text);
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
