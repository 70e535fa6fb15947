/**
 * The far end of bench/bus.ts, in its own process so the bench measures a
 * real loopback hop: a Mangrove node that answers every envelope on the
 * link it came by, the same node with CURVE on (its pair and the one client
 * key it lets in come from the parent, in BENCH_CURVE), and a bare ZeroMQ
 * ROUTER that echoes every frame. Prints one `READY {...}` line with the
 * endpoints; exits when its parent closes stdin or sends SIGTERM.
 */
import * as zmq from 'zeromq';
import type { CurveKeyPair, CurveOptions } from '../bus/transport/curve.js';
import { ZmqTransport, zmqLimits } from '../bus/transport/zmq.js';
import { WallClock } from '../runtime/world/clock.js';

/** An echo node: answers every envelope with its body, on the link it came by. */
async function echoNode(curve?: CurveOptions): Promise<ZmqTransport> {
  const node = await ZmqTransport.open({ self: 'bench-peer', endpoint: 'tcp://127.0.0.1:*', clock: new WallClock(), curve });
  let seq = 0;
  node.inbound.subscribe(({ env, route }) => {
    node.reply(route, { v: env.v, kind: 'reply.ok', from: node.self, to: env.from, epoch: 1, seq: ++seq, re: env.seq, body: env.body });
  });
  return node;
}

const keys = JSON.parse(process.env.BENCH_CURVE ?? 'null') as { server: CurveKeyPair; client: string } | null;
if (!keys) throw new Error('BENCH_CURVE is not set: start this from bench/bus.ts');
const node = await echoNode();
const curveNode = await echoNode({
  keys: keys.server,
  authorize: (k) => (k === keys.client ? 'bench-client' : null),
  // It only answers on the link a request came by, so it never dials.
  serverKeyOf: () => null,
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
  await Promise.all([node.close(), curveNode.close(), echo]);
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.stdin.on('end', () => void stop());
process.stdin.resume();

process.stdout.write(`READY ${JSON.stringify({ mangrove: node.endpoint, curve: curveNode.endpoint, raw: raw.lastEndpoint })}\n`);
