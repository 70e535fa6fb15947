/**
 * The dashboard on the node's HTTP port (SPEC.md M25, M26): its files
 * (assets.ts), its live feed (feed.ts), and what its views read on demand.
 * Every route here only reads; none changes the cluster (a page is read
 * through this node's engine as any reader would).
 *
 * GET /dashboard/charts            {"machines": [Chart…]}: every protocol machine's chart, from its
 *                                  definition (runtime/inspect/chart.ts, as `machines export --format json`)
 * GET /dashboard/page?addr=0x…     {"stat": PageStat, "head": HEX, "read": ERROR|null}: where a page
 *                                  lives (home, owner, readers, core holders, version) and its first bytes
 * GET /dashboard/machines?node=ID[&after=N]
 *                                  node ID's protocol machines (MachinesSnapshot, actors/status.ts): its running
 *                                  actors and the transitions it keeps numbered after N; another node's asked over
 *                                  the bus (`client.machines`), so a page on this port shows any node's (M26)
 * GET /dashboard/directory?arena=N[&page=0x…]
 *                                  one page of arena N's directory (the GDD; DirectoryPageView, as
 *                                  `page dir --json`): the root without `page`, asked of the arena's home
 * GET /dashboard/filesets          the file system's filesets (`fs fileset list`)
 * GET /dashboard/files?fs=F&path=P {"entries": [FsDirEntry…]}: a directory of a fileset, at most 1000
 * POST /dashboard/trace            a trace file in, its messages and `trace check` violations out (trace-view.ts)
 *
 * Errors are JSON {"code", "message"}: 400 for a bad argument, 404 for what is not there, 503 for a
 * node that cannot answer (E_UNREACHABLE, E_UNSUPPORTED: a node that does not watch its machines).
 */
import type { ServerResponse } from 'node:http';
import type { MachinesSource, NodeStatus } from '../../../actors/status.js';
import { isMangroveError, MangroveError } from '../../../bus/errors.js';
import type { ClientFsOp } from '../../../bus/messages/fs.js';
import type { ClientPageOp } from '../../../bus/messages/page.js';
import type { TransportStats } from '../../../bus/transport/transport.js';
import type { LatencySnapshot } from '../../../actors/engine/op-latency.js';
import type { ClientCurve } from '../../../bus/transport/curve.js';
import { addressKey, parseAddress } from '../../../machines/memory/address.js';
import { chartOf } from '../../inspect/chart.js';
import { machineCatalog } from '../../inspect/catalog.js';
import { send, type RouteHandler } from '../server.js';
import { assetRoutes } from './assets.js';
import { ClusterFeed } from './feed.js';
import { PeerStatuses } from './peers.js';
import { traceView } from './trace-view.js';

export interface DashboardSources {
  status: () => NodeStatus;
  transport: () => TransportStats;
  /** Per op-code, how long this node's requests took (its engine's FlowScheduler.latencies); none: the feed sends none. */
  requests?: () => Record<string, LatencySnapshot>;
  /** The node's engine and file system, as a client of this node calls them. */
  engine: (op: ClientPageOp, client: string) => Promise<unknown>;
  fs: (op: ClientFsOp, client: string) => Promise<unknown>;
  heartbeatMs: number;
  /** This node's own machines (its watch); absent, /dashboard/machines answers this node's E_UNSUPPORTED. */
  machines?: MachinesSource;
  /** How to dial another node for its status: its CURVE settings in a secure cluster, else undefined (plain). */
  curveFor?: (endpoint: string) => ClientCurve | undefined;
  now?: () => number;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const CLIENT = 'dashboard';
/** Bytes of a page the page view shows. */
const HEAD_BYTES = 64;

export function dashboardRoutes(sources: DashboardSources): { routes: Record<string, RouteHandler>; postRoutes: Record<string, RouteHandler>; close: () => Promise<void> } {
  const now = sources.now ?? Date.now;
  const peers = new PeerStatuses(sources.status, now, sources.curveFor);
  const feed = new ClusterFeed(peers, sources.transport, now, sources.heartbeatMs, sources.requests);
  // Drawn from the machine definitions when first asked for, then kept: they do not change while the node runs.
  let charts: string | undefined;
  const chartsJson = () => (charts ??= JSON.stringify({ machines: machineCatalog.map((e) => ({ ...chartOf(e.machine), spec: e.spec, summary: e.summary })) }));
  const routes: Record<string, RouteHandler> = {
    ...assetRoutes(),
    '/dashboard/stream': (req, res) => feed.open(req, res),
    '/dashboard/charts': (_req, res) => send(res, 200, JSON_TYPE, `${chartsJson()}\n`),
    '/dashboard/page': (_req, res, url) => answer(res, () => page(sources, url.searchParams.get('addr'))),
    '/dashboard/machines': (_req, res, url) => answer(res, () => machines(sources, peers, feed.periodMs, url.searchParams)),
    '/dashboard/directory': (_req, res, url) => answer(res, () => directoryPage(sources, url.searchParams)),
    '/dashboard/filesets': (_req, res) => answer(res, () => sources.fs({ op: 'fileset_list' }, CLIENT)),
    '/dashboard/files': (_req, res, url) =>
      answer(res, () => sources.fs({ op: 'readdir', fs: url.searchParams.get('fs') ?? 'default', path: url.searchParams.get('path') ?? '/', max: 1000 }, CLIENT)),
  };
  return {
    routes,
    postRoutes: { '/dashboard/trace': traceView },
    close: async () => {
      feed.close();
      await peers.close();
    },
  };
}

/** One node's machines: this node's from its own watch, another's over the bus, within a feed period (2 s at most). */
async function machines(sources: DashboardSources, peers: PeerStatuses, periodMs: number, q: URLSearchParams): Promise<unknown> {
  const node = q.get('node');
  if (node === null || node === '') throw new MangroveError('E_BAD_ARGUMENT', 'node is missing: /dashboard/machines?node=ID[&after=N]');
  const raw = q.get('after');
  const after = raw === null ? undefined : Number(raw);
  if (after !== undefined && (raw === '' || !Number.isSafeInteger(after) || after < 0)) {
    throw new MangroveError('E_BAD_ARGUMENT', `after must be a whole number, the last transition id seen (got ${JSON.stringify(raw)})`);
  }
  if (node !== sources.status().self) return peers.machinesOf(node, after, Math.min(periodMs, 2000));
  if (!sources.machines) throw new MangroveError('E_UNSUPPORTED', 'this node does not watch its protocol machines');
  return sources.machines(after);
}

/** One page of an arena's directory, as its home has it (the engine's `dir_page`). */
function directoryPage(sources: DashboardSources, q: URLSearchParams): Promise<unknown> {
  const raw = q.get('arena');
  const arena = raw === null || raw === '' ? NaN : Number(raw);
  if (!Number.isSafeInteger(arena) || arena < 0) throw new MangroveError('E_BAD_ARGUMENT', `arena is a whole number (0 is the system's), not ${JSON.stringify(raw)}: /dashboard/directory?arena=N[&page=0x…]`);
  const page = q.get('page');
  return sources.engine({ op: 'dir_page', arena, ...(page === null ? {} : { page: addressKey(parseAddress(page)) }) }, CLIENT);
}

async function page(sources: DashboardSources, raw: string | null): Promise<unknown> {
  if (raw === null) throw new MangroveError('E_BAD_ARGUMENT', 'addr is missing: /dashboard/page?addr=0x…');
  const wire = addressKey(parseAddress(raw));
  const stat = await sources.engine({ op: 'stat', addr: wire }, CLIENT);
  // A reserved page has no data yet; a read refused (a rebuild) still shows where the page lives.
  try {
    const r = (await sources.engine({ op: 'read', addr: wire, pages: 1 }, CLIENT)) as { data: Uint8Array };
    return { stat, head: Buffer.from(r.data.subarray(0, HEAD_BYTES)).toString('hex'), read: null };
  } catch (err) {
    return { stat, head: null, read: isMangroveError(err) ? err.toJSON() : { code: 'E_INTERNAL', message: String(err) } };
  }
}

async function answer(res: ServerResponse, work: () => Promise<unknown>): Promise<void> {
  try {
    send(res, 200, JSON_TYPE, `${JSON.stringify(await work())}\n`);
  } catch (err) {
    if (!isMangroveError(err)) throw err;
    const code = err.code === 'E_NOT_FOUND' || err.code === 'E_NOT_RESERVED' ? 404 : err.code === 'E_BAD_ARGUMENT' || err.code === 'E_BAD_ADDRESS' ? 400 : 503;
    send(res, code, JSON_TYPE, `${JSON.stringify(err.toJSON())}\n`);
  }
}
