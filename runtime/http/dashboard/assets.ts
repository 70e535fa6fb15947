/**
 * The dashboard's files (SPEC.md M25, M26), served from the package itself:
 * `/` is its page, `/dashboard/NAME` each file of
 * runtime/http/dashboard/static/, and `/dashboard/lib/NAME` the browser
 * libraries it uses, from node_modules. Nothing comes from a CDN and nothing
 * is built at install: which files there are is listed when the node starts,
 * and each is read once, when it is first asked for.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import { MangroveError } from '../../../bus/errors.js';
import { packageRoot } from '../../node/version.js';
import type { RouteHandler } from '../server.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Browser libraries: the URL name, and the file in its npm package. */
const LIBRARIES: Record<string, string> = {
  'cytoscape.min.js': 'cytoscape/dist/cytoscape.min.js',
};

/** The folder of the dashboard's own files. */
export function staticDir(): string {
  const root = packageRoot();
  if (root === null) throw new MangroveError('E_INTERNAL', 'the package folder (with package.json) was not found: the dashboard has no files to serve');
  return join(root, 'runtime', 'http', 'dashboard', 'static');
}

/** Routes for every file of the dashboard (listed now, read when first asked for). */
export function assetRoutes(dir = staticDir()): Record<string, RouteHandler> {
  const routes: Record<string, RouteHandler> = {};
  const serve = (path: string, file: string) => {
    // Read on first use and kept: a node that nobody watches reads none of it.
    let cached: Buffer | undefined;
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    routes[path] = (_req, res) => {
      const body = (cached ??= readFileSync(file));
      res.statusCode = 200;
      res.setHeader('Content-Type', type);
      res.setHeader('Cache-Control', 'no-cache');
      res.setHeader('Content-Length', body.length);
      res.end(res.req.method === 'HEAD' ? undefined : body);
    };
  };
  for (const name of readdirSync(dir)) if (TYPES[extname(name)]) serve(`/dashboard/${name}`, join(dir, name));
  serve('/', join(dir, 'index.html'));
  const require = createRequire(import.meta.url);
  for (const [name, module] of Object.entries(LIBRARIES)) serve(`/dashboard/lib/${name}`, require.resolve(module));
  return routes;
}
