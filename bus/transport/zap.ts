/**
 * Who may connect to a CURVE transport: ZeroMQ's authentication protocol
 * (ZAP, RFC 27, https://rfc.zeromq.org/spec/27/). During every CURVE
 * handshake, libzmq asks the ZAP handler of the socket's context, over
 * `inproc://zeromq.zap.01`, whether the client's public key may in; the
 * handler here answers with the transport's `authorize` (curve.ts).
 *
 * Only one handler can bind per context, and every transport uses ZeroMQ's
 * default context, so there is one handler per process. Each CURVE ROUTER
 * sets its own ZAP domain and registers its `authorize` under it; the
 * handler is bound with the first registration and closed with the last.
 * A ROUTER sets `zapEnforceDomain` too, so that while no handler is bound
 * a handshake fails rather than let any client in (libzmq's legacy default
 * is to skip authentication when nobody answers).
 *
 * The handler's 200 carries the name `authorize` gave as the ZAP User-Id,
 * which libzmq attaches to every message of that connection. zeromq.js v6
 * cannot read it (it does not bind zmq_msg_gets), and the request's
 * identity frame is the server socket's own routing id, not the client's,
 * so the transport cannot tie a message's `from` to the key that sent it:
 * a CURVE peer is known to hold an authorized key, not to be the node it
 * says it is.
 */
import * as zmq from 'zeromq';
import { MangroveError } from '../errors.js';
import { curveLimits, z85Encode } from './curve.js';
import { closeSocket, watch } from './watched-sockets.js';

/** Why a handshake was refused: no CURVE at all (a plain or PLAIN client), a
 * key `authorize` does not know, or a CURVE handshake that failed before
 * authentication (the client has the wrong server key, or sent garbage). */
export const CURVE_REFUSALS = ['no_key', 'unknown_key', 'bad_handshake'] as const;
export type CurveRefusal = (typeof CURVE_REFUSALS)[number];

export const zapLimits = {
  /** CURVE transports one process may run; a node has one, a test a few. */
  domainsMax: 1024,
} as const;

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const ZAP_VERSION = '1.0';

export interface ZapRegistration {
  /** The ZAP domain to set on the ROUTER this registration authenticates for. */
  readonly domain: string;
  /** Counts a refusal libzmq made without asking the handler (see watchHandshakes). */
  count(reason: CurveRefusal): void;
  refusals(): Record<CurveRefusal, number>;
  /** Unregisters (after the ROUTER is closed); the last one closes the handler. Idempotent. */
  close(): Promise<void>;
}

type Authorize = (publicKey: string) => string | null;

interface Domain {
  authorize: Authorize;
  counts: Record<CurveRefusal, number>;
}

/** The process's handler, while any domain is registered. */
let handler: ZapHandler | undefined;
/** Registrations and unregistrations run one at a time, so the handler is never opened twice or closed under a newcomer. */
let queue: Promise<unknown> = Promise.resolve();
let domainsMade = 0;

function serially<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn);
  queue = next.catch(() => undefined);
  return next;
}

/** Registers `authorize` under a new ZAP domain, binding the handler if it is the first. */
export function registerZap(authorize: Authorize): Promise<ZapRegistration> {
  return serially(async () => {
    handler ??= await ZapHandler.open();
    if (handler.domains.size >= zapLimits.domainsMax) {
      throw new MangroveError('E_FULL', `${zapLimits.domainsMax} CURVE transports are open in this process already`);
    }
    const name = `mangrove.${process.pid}.${++domainsMade}`;
    const domain: Domain = { authorize, counts: Object.fromEntries(CURVE_REFUSALS.map((r) => [r, 0])) as Record<CurveRefusal, number> };
    handler.domains.set(name, domain);
    let closed = false;
    return {
      domain: name,
      count: (reason) => void domain.counts[reason]++,
      refusals: () => ({ ...domain.counts }),
      close: () => {
        if (closed) return Promise.resolve();
        closed = true;
        return serially(() => unregister(name));
      },
    };
  });
}

/** Whether this process's ZAP handler is bound (for specs: it must close with the last transport). */
export function zapHandlerOpen(): boolean {
  return handler !== undefined;
}

async function unregister(name: string): Promise<void> {
  if (!handler) return;
  handler.domains.delete(name);
  if (handler.domains.size > 0) return;
  const last = handler;
  handler = undefined;
  await last.close();
}

/**
 * Counts the refusals libzmq makes on `router` before any ZAP request: a
 * client without CURVE fails on the mechanism (ZMTP greets with it), and a
 * client with the wrong server key fails to decrypt. Refusals by the
 * handler are counted by the handler; libzmq reports them here as
 * 'handshake:error:auth', not counted twice.
 *
 * Both ends of a link read the other's greeting at once, so a client
 * without CURVE in another process finds the mismatch first about as often
 * as we do, and hangs up: we see the handshake broken off ('other', EPIPE).
 * A CURVE client never breaks off first (a wrong server key fails here, at
 * its HELLO), so a handshake broken off is a process without a key too:
 * one that spoke plain ZMTP, or only connected and left.
 */
export function watchHandshakes(router: zmq.Router, registration: ZapRegistration): void {
  watch(router).on('handshake:error:protocol', (e) => {
    registration.count(e.error.code === 'ERR_ZMTP_MECHANISM_MISMATCH' ? 'no_key' : 'bad_handshake');
  });
  watch(router).on('handshake:error:other', () => registration.count('no_key'));
}

class ZapHandler {
  readonly domains = new Map<string, Domain>();
  private readonly loop: Promise<void>;

  private constructor(private readonly socket: zmq.Reply) {
    this.loop = this.serve();
  }

  static async open(): Promise<ZapHandler> {
    const socket = new zmq.Reply({ linger: 0 });
    try {
      await socket.bind(ZAP_ENDPOINT);
    } catch (err) {
      closeSocket(socket);
      const reason = err instanceof Error ? err.message : String(err);
      throw new MangroveError('E_BAD_CONFIG', `cannot authenticate CURVE connections: ${ZAP_ENDPOINT} is taken (another ZAP handler in this process?): ${reason}`);
    }
    return new ZapHandler(socket);
  }

  async close(): Promise<void> {
    // libzmq frees a closed socket's inproc address later, on its reaper
    // thread; unbinding frees it now, so a transport opened next can bind.
    try {
      await this.socket.unbind(ZAP_ENDPOINT);
    } catch {
      // Closing frees it in the end anyway.
    }
    closeSocket(this.socket);
    await this.loop;
  }

  /** Answers requests in order (a REP socket alternates) until closed; nothing a request holds can end it. */
  private async serve(): Promise<void> {
    while (!this.socket.closed) {
      let frames: Buffer[];
      try {
        frames = await this.socket.receive();
      } catch {
        if (this.socket.closed) return;
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      try {
        await this.socket.send(this.answer(frames));
      } catch {
        // The handshake that asked is gone; libzmq drops its connection itself.
        if (this.socket.closed) return;
      }
    }
  }

  /** RFC 27's reply to one request: version, request id, status code, status text, user id, metadata. */
  private answer(frames: Buffer[]): (string | Buffer)[] {
    const reply = (code: '200' | '400' | '500', text: string, userId = ''): (string | Buffer)[] => [ZAP_VERSION, frames[1] ?? '', code, text, userId, Buffer.alloc(0)];
    if (frames.length < 6 || frames[0].toString() !== ZAP_VERSION) return reply('500', 'malformed ZAP request');
    const [, , domainFrame, , , mechanismFrame, ...credentials] = frames;
    const domain = this.domains.get(domainFrame.toString());
    // A socket of this process that set a ZAP domain of its own: not ours to let in.
    if (!domain) return reply('400', 'no Mangrove transport authenticates this domain');
    const refuse = (reason: CurveRefusal, text: string): (string | Buffer)[] => {
      domain.counts[reason]++;
      return reply('400', text);
    };
    // libzmq refuses a client of another mechanism before it asks (watchHandshakes counts those); this is a belt to those braces.
    if (mechanismFrame.toString() !== 'CURVE') return refuse('no_key', 'CURVE required');
    const key = credentials[0];
    if (credentials.length !== 1 || key.byteLength !== curveLimits.keyBytes) return refuse('bad_handshake', 'malformed CURVE credentials');
    let name: string | null;
    try {
      name = domain.authorize(z85Encode(key));
    } catch {
      // authorize must not throw; if it does, the door stays shut.
      name = null;
    }
    if (name === null) return refuse('unknown_key', 'unknown key');
    return reply('200', 'OK', name);
  }
}
