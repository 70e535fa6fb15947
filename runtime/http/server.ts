/**
 * The node's HTTP port, on 127.0.0.1 unless configured otherwise, and then
 * only with a token (access.ts): `/metrics` for Prometheus and `/status`
 * (the same JSON as `mangrove status --json`). Routes are a table of
 * path → handler so the dashboard can add its pages beside these two.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { NodeStatus } from '../../actors/status.js';
import { MangroveError } from '../../bus/errors.js';
import { HttpAccess } from './access.js';

export const httpLimits = {
  connectionsMax: 64,
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 5_000,
} as const;

export const HTTP_HOST = '127.0.0.1';

/** Answers one GET (or HEAD) of its path. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export interface HttpSources {
  status: () => NodeStatus;
  registry: Registry;
  /** More routes by exact path; they win over the built-in ones. */
  routes?: Record<string, RouteHandler>;
  /** Routes that take a POST (an upload to read, never a change to the cluster), by exact path. */
  postRoutes?: Record<string, RouteHandler>;
}

export interface HttpServer {
  /** The bound port (the real one when 0 was asked). */
  port: number;
  close(): Promise<void>;
}

export function baseRoutes(sources: HttpSources): Record<string, RouteHandler> {
  return {
    '/metrics': async (_req, res) => {
      const text = await sources.registry.metrics();
      send(res, 200, sources.registry.contentType, text);
    },
    '/status': (_req, res) => {
      send(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(sources.status())}\n`);
    },
  };
}

/** Serves `sources` on `port`, where `access` says (access.ts: 127.0.0.1 by default; elsewhere only with a token). */
export async function startHttp(port: number, sources: HttpSources, access = new HttpAccess()): Promise<HttpServer> {
  const routes: Record<string, RouteHandler> = { ...baseRoutes(sources), ...sources.routes };
  const posts = sources.postRoutes ?? {};
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${HTTP_HOST}`);
    if (access.admit(req, res, url)) void handle(routes, posts, req, res, url);
  });
  server.maxConnections = httpLimits.connectionsMax;
  server.requestTimeout = httpLimits.requestTimeoutMs;
  server.headersTimeout = httpLimits.headersTimeoutMs;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'the port is in use (is another node using it? change "httpPort")' : err.message;
      reject(new MangroveError('E_BAD_CONFIG', `cannot serve HTTP on ${access.host}:${port}: ${why}`));
    });
    server.listen(port, access.host, () => resolve());
  });

  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections (a browser, a scraper) would hold close() open.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function handle(routes: Record<string, RouteHandler>, posts: Record<string, RouteHandler>, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const post = Object.hasOwn(posts, url.pathname) ? posts[url.pathname] : undefined;
  const get = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
  if (!get && !post) return send(res, 404, 'text/plain; charset=utf-8', `not found: ${url.pathname}\n`);
  const route = req.method === 'POST' ? post : req.method === 'GET' || req.method === 'HEAD' ? get : undefined;
  if (!route) {
    const allowed = [...(get ? ['GET', 'HEAD'] : []), ...(post ? ['POST'] : [])].join(', ');
    res.setHeader('Allow', allowed);
    return send(res, 405, 'text/plain; charset=utf-8', `${req.method} is not allowed on ${url.pathname} (${allowed})\n`);
  }
  try {
    await route(req, res, url);
  } catch (err) {
    const body = err instanceof MangroveError ? err.toJSON() : { code: 'E_INTERNAL', message: err instanceof Error ? err.message : String(err) };
    if (!res.headersSent) send(res, 500, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
    else res.destroy();
  }
}

export function send(res: ServerResponse, code: number, contentType: string, body: string): void {
  res.statusCode = code;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  // HEAD gets the headers of the GET, not its body.
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
