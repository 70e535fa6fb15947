/**
 * A TCP port nothing listens on right now, for specs that bind real sockets
 * on 127.0.0.1. It is drawn below the kernel's ephemeral range (Linux:
 * 32768-60999): a port handed out by `listen(0)` is one the kernel also hands
 * to outgoing connections, so in a cluster whose nodes are already dialling
 * each other it could be taken as a connection's local port before the node
 * meant to listen on it binds. Ports below the range are never used that way.
 * Each is checked free by binding it, and never handed out twice by one process.
 */
import { createServer } from 'node:net';

const RANGE_LOW = 20_000;
const RANGE_SIZE = 12_000;
const TRIES_MAX = 50;
const handedOut = new Set<number>();
let next = RANGE_LOW + ((process.pid * 7919) % RANGE_SIZE);

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  for (let i = 0; i < TRIES_MAX; i++) {
    next = RANGE_LOW + ((next - RANGE_LOW + 1) % RANGE_SIZE);
    const port = next;
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await canBind(port)) return port;
  }
  throw new Error(`no free TCP port found in ${RANGE_LOW}-${RANGE_LOW + RANGE_SIZE - 1} after ${TRIES_MAX} tries`);
}
