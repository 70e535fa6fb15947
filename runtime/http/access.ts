/**
 * Who may use a node's HTTP port (dashboard, /status, /metrics): by default
 * it listens on 127.0.0.1 only, and anyone on the host may. Listening
 * anywhere else needs a token, and then every request must carry it: an
 * `Authorization: Bearer TOKEN` header (a scraper, curl), or the cookie a
 * browser gets by opening any page once with `?token=TOKEN` (it is then
 * sent on by the browser itself, also on the dashboard's event streams).
 * Requests refused are counted by reason.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { MangroveError } from '../../bus/errors.js';

export const HTTP_TOKEN_CHARS_MIN = 16;
const COOKIE = 'mangrove_token';

export type HttpRefusal = 'no_token' | 'bad_token';

export interface HttpAccessOptions {
  /** Where to listen; default 127.0.0.1. */
  host?: string;
  /** Required unless `host` is a loopback address. */
  token?: string;
}

/** Whether `host` only ever lets the same machine in. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** The access rule for `opts`, checked: E_BAD_CONFIG naming the field when a token is missing or short. */
export class HttpAccess {
  readonly host: string;
  private readonly token: Buffer | null;
  readonly refused: Record<HttpRefusal, number> = { no_token: 0, bad_token: 0 };

  constructor(opts: HttpAccessOptions = {}) {
    this.host = opts.host ?? '127.0.0.1';
    if (opts.token !== undefined && opts.token.length < HTTP_TOKEN_CHARS_MIN) {
      throw new MangroveError('E_BAD_CONFIG', `"httpToken" must have at least ${HTTP_TOKEN_CHARS_MIN} characters (mangrove keys can make one: openssl rand -hex 16 does too)`);
    }
    if (!isLoopback(this.host) && opts.token === undefined) {
      throw new MangroveError('E_BAD_CONFIG', `"httpHost" ${this.host} lets other machines in: give "httpToken" too, or keep the default 127.0.0.1`);
    }
    this.token = opts.token === undefined ? null : Buffer.from(opts.token);
  }

  /**
   * True if the request may go on. Otherwise it has been answered: 401 for
   * a missing or wrong token, or a redirect that trades `?token=` for the
   * cookie (so the token does not stay in the address bar or the history).
   */
  admit(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    if (this.token === null) return true;
    const offered = url.searchParams.get('token');
    if (offered !== null && this.matches(offered)) {
      url.searchParams.delete('token');
      res.statusCode = 303;
      res.setHeader('Set-Cookie', `${COOKIE}=${encodeURIComponent(offered)}; HttpOnly; SameSite=Strict; Path=/`);
      res.setHeader('Location', `${url.pathname}${url.search}`);
      res.end();
      return false;
    }
    const presented = bearer(req) ?? cookie(req) ?? offered;
    if (presented !== null && this.matches(presented)) return true;
    const reason: HttpRefusal = presented === null ? 'no_token' : 'bad_token';
    this.refused[reason]++;
    res.statusCode = 401;
    res.setHeader('WWW-Authenticate', 'Bearer realm="mangrove"');
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    const err = new MangroveError('E_FORBIDDEN', reason === 'no_token' ? 'this node\'s HTTP port wants its token: Authorization: Bearer TOKEN, or open /?token=TOKEN once in a browser' : 'the token is not this node\'s');
    res.end(`${JSON.stringify(err.toJSON())}\n`);
    return false;
  }

  private matches(candidate: string): boolean {
    const c = Buffer.from(candidate);
    return this.token !== null && c.length === this.token.length && timingSafeEqual(c, this.token);
  }
}

function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  return h !== undefined && h.startsWith('Bearer ') ? h.slice('Bearer '.length).trim() : null;
}

function cookie(req: IncomingMessage): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return decodeURIComponent(v.join('='));
  }
  return null;
}
