/**
 * The cluster as every node sees it, for the dashboard (M25): this node's
 * status, and each other node's own, asked over the bus (`client.status`)
 * once a period. A node that does not answer in time is shown as such,
 * with what this node last heard from it; it never holds the others up.
 * One node's protocol machines (M26) are asked the same way
 * (`client.machines`), on the same link, when a browser shows them.
 */
import type { MachinesSnapshot, NodeStatus } from '../../../actors/status.js';
import { MangroveError } from '../../../bus/errors.js';
import type { Body } from '../../../bus/messages/index.js';
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
          const status = await this.ask<'client.status', NodeStatus>(n.endpoint, timeoutMs, 'client.status', {});
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

  /** Node `id`'s machines, asked over the bus; E_NOT_FOUND when this node's database has no such node. */
  async machinesOf(id: string, after: number | undefined, timeoutMs: number): Promise<MachinesSnapshot> {
    const node = this.self().nodes.find((n) => n.id === id);
    if (!node) throw new MangroveError('E_NOT_FOUND', `this node's node database has no node ${JSON.stringify(id)}`);
    const body: Body<'client.machines'> = after === undefined ? {} : { after };
    try {
      return await this.ask<'client.machines', MachinesSnapshot>(node.endpoint, timeoutMs, 'client.machines', body);
    } catch (err) {
      // The node answered (reply.err): the link is sound. Else a fresh one next time, as for a status.
      if (!(err instanceof MangroveError) || err.code === 'E_UNREACHABLE' || err.code === 'E_CLOSED') this.drop(node.endpoint);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.allSettled(all.map(async (c) => (await c).close()));
  }

  private async ask<K extends 'client.status' | 'client.machines', T>(endpoint: string, timeoutMs: number, kind: K, body: Body<K>): Promise<T> {
    if (this.closed) throw new MangroveError('E_CLOSED', 'the dashboard is closed');
    let client = this.clients.get(endpoint);
    if (!client) {
      const curve = this.curveFor(endpoint);
      client = ZmqClient.connect(endpoint, { timeoutMs, clientId: `dashboard-${Math.random().toString(16).slice(2, 14)}`, ...(curve ? { curve } : {}) });
      this.clients.set(endpoint, client);
      // A link that could not be made is made again at the next ask.
      client.catch(() => this.clients.delete(endpoint));
    }
    const reply = (await (await client).request(kind, body)) as { result: T };
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
