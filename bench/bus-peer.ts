/**
 * The far end of bench/bus.ts, in its own process so the bench measures a
 * real loopback hop: a Mangrove node that answers every envelope on the
 * link it came by, and a bare ZeroMQ ROUTER that echoes every frame. Prints
 * one `READY {...}` line with both endpoints; exits when its parent closes
 * stdin or sends SIGTERM.
 */
import * as zmq from 'zeromq';
import { ZmqTransport, zmqLimits } from '../bus/transport/zmq.js';
import { WallClock } from '../runtime/world/clock.js';

const node = await ZmqTransport.open({ self: 'bench-peer', endpoint: 'tcp://127.0.0.1:*', clock: new WallClock() });
let seq = 0;
node.inbound.subscribe(({ env, route }) => {
  node.reply(route, { v: env.v, kind: 'reply.ok', from: node.self, to: env.from, epoch: 1, seq: ++seq, re: env.seq, body: env.body });
});

// Same queue bounds as the Mangrove ROUTER, so only the bus's own work differs.
const raw = new zmq.Router({
  linger: 0,
  sendTimeout: 0,
  sendHighWaterMark: zmqLimits.sendQueueMax,
  receiveHighWaterMark: zmqLimits.receiveQueueMax,
});
await raw.bind('tcp://127.0.0.1:*');
const echo = (async () => {
  for await (const [id, payload] of raw) {
    raw.send([id, payload]).catch(() => undefined);
  }
})();

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  raw.close();
  await Promise.all([node.close(), echo]);
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.stdin.on('end', () => void stop());
process.stdin.resume();

process.stdout.write(`READY ${JSON.stringify({ mangrove: node.endpoint, raw: raw.lastEndpoint })}\n`);
