/**
 * The cluster as every node sees it, for the dashboard (M25): this node's
 * status, and each other node's own, asked over the bus (`client.status`)
 * once a period. A node that does not answer in time is shown as such,
 * with what this node last heard from it; it never holds the others up.
 */
import type { NodeStatus } from '../../../actors/status.js';
import type { ClientCurve } from '../../../bus/transport/curve.js';
import { ZmqClient } from '../../../bus/transport/zmq-client.js';

/** One node in the dashboard's view: its own status, or why there is none. */
export interface PeerView {
  id: string;
  endpoint: string;
  status: NodeStatus | null;
  /** Why `status` is null: it did not answer, or could not be reached. */
  error: string | null;
  /** When it last answered (this node's clock, ms), or null. */
  heardMs: number | null;
}

export class PeerStatuses {
  private readonly clients = new Map<string, Promise<ZmqClient>>();
  private readonly heard = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly self: () => NodeStatus,
    private readonly now: () => number,
    /** The CURVE settings to dial a node with, in a secure cluster. */
    private readonly curveFor: (endpoint: string) => ClientCurve | undefined = () => undefined,
  ) {}

  /** Every node of this node's node database, each with its own status (this one's at once), asked at most `timeoutMs`. */
  async gather(timeoutMs: number): Promise<PeerView[]> {
    const mine = this.self();
    const others = mine.nodes.filter((n) => n.id !== mine.self);
    this.forgetAllBut(new Set(others.map((n) => n.endpoint)));
    const views = await Promise.all(
      others.map(async (n): Promise<PeerView> => {
        try {
          const status = await this.ask(n.endpoint, timeoutMs);
          this.heard.set(n.id, this.now());
          return { id: n.id, endpoint: n.endpoint, status, error: null, heardMs: this.now() };
        } catch (err) {
          // A fresh link next time: the old one's queue to a dead node only fills.
          this.drop(n.endpoint);
          return { id: n.id, endpoint: n.endpoint, status: null, error: err instanceof Error ? err.message : String(err), heardMs: this.heard.get(n.id) ?? null };
        }
      }),
    );
    return [{ id: mine.self, endpoint: mine.endpoint, status: mine, error: null, heardMs: this.now() }, ...views];
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.allSettled(all.map(async (c) => (await c).close()));
  }

  private async ask(endpoint: string, timeoutMs: number): Promise<NodeStatus> {
    if (this.closed) throw new Error('the dashboard is closed');
    let client = this.clients.get(endpoint);
    if (!client) {
      const curve = this.curveFor(endpoint);
      client = ZmqClient.connect(endpoint, { timeoutMs, clientId: `dashboard-${Math.random().toString(16).slice(2, 14)}`, ...(curve ? { curve } : {}) });
      this.clients.set(endpoint, client);
      // A link that could not be made is made again at the next ask.
      client.catch(() => this.clients.delete(endpoint));
    }
    const reply = (await (await client).request('client.status', {})) as { result: NodeStatus };
    return reply.result;
  }

  private forgetAllBut(endpoints: Set<string>): void {
    for (const endpoint of [...this.clients.keys()]) if (!endpoints.has(endpoint)) this.drop(endpoint);
  }

  private drop(endpoint: string): void {
    const client = this.clients.get(endpoint);
    this.clients.delete(endpoint);
    void client?.then((c) => c.close(), () => undefined);
  }
}
