/**
 * What Mangrove's bus costs over bare ZeroMQ, between two processes on
 * loopback: envelopes through ZmqTransport and the codec (encode, decode,
 * validate, count) against the same payload bytes through a DEALER/ROUTER
 * echo. Throughput is pipelined with a bounded window; round trips are one
 * at a time. The same is measured with CURVE on (bus/transport/curve.ts:
 * every frame encrypted and authenticated), and `curveVsPlain` is what
 * encryption keeps of the plain transport's speed, in the same run.
 * Prints its figures as the last stdout line, one JSON object.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as zmq from 'zeromq';
import { ENVELOPE_VERSION, type Envelope } from '../bus/envelope.js';
import { generateKeyPair, type CurveKeyPair, type CurveOptions } from '../bus/transport/curve.js';
import { ZmqTransport, zmqLimits } from '../bus/transport/zmq.js';
import { WallClock } from '../runtime/world/clock.js';

const sizes = { '100': 100, '4k': 4096 } as const;
type Size = keyof typeof sizes;

const plan = {
  /** Messages per throughput run, by payload size. */
  throughputMessages: { '100': 60_000, '4k': 30_000 } as Record<Size, number>,
  /** Messages in flight; below the queue bounds, so nothing is dropped. */
  window: 500,
  rttWarmup: 300,
  rttSamples: 3_000,
  /** Longest any one run may take before the bench gives up. */
  runTimeoutMs: 30_000,
  peerStartMs: 20_000,
};

/** One way of sending a payload to the echo peer and hearing it back. */
interface Echo {
  /** Sends one payload; false when the link refused it. */
  send(payload: Uint8Array): boolean;
  /** Called once per echoed message. */
  onEcho(fn: () => void): void;
  close(): Promise<void>;
}

/** The pairs of this run: the peer's CURVE node is the server, this process the one client it lets in. */
const keys = { server: generateKeyPair(), client: generateKeyPair() };

async function curveEcho(peerEndpoint: string): Promise<Echo> {
  return mangroveEcho(peerEndpoint, {
    keys: keys.client,
    // The peer answers on our link; nobody dials this side.
    authorize: () => null,
    serverKeyOf: (e) => (e === peerEndpoint ? keys.server.publicKey : null),
  });
}

async function mangroveEcho(peerEndpoint: string, curve?: CurveOptions): Promise<Echo> {
  // A refusal shows as an 'unsent' error at once (a copy of stats() per send would cost more than the send).
  let refused = false;
  const t = await ZmqTransport.open({
    self: 'bench-client',
    endpoint: 'tcp://127.0.0.1:*',
    clock: new WallClock(),
    curve,
    onError: (source) => {
      if (source === 'unsent') refused = true;
    },
  });
  t.setPeer('bench-peer', peerEndpoint);
  let listener = (): void => undefined;
  t.inbound.subscribe(() => listener());
  let seq = 0;
  return {
    send(payload) {
      const env: Envelope = { v: ENVELOPE_VERSION, kind: 'reply.ok', from: t.self, to: 'bench-peer', epoch: 1, seq: ++seq, body: { result: payload } };
      t.send(env);
      return !refused;
    },
    onEcho(fn) {
      listener = fn;
    },
    close: () => t.close(),
  };
}

async function rawEcho(peerEndpoint: string): Promise<Echo> {
  const dealer = new zmq.Dealer({
    linger: 0,
    sendTimeout: 0,
    sendHighWaterMark: zmqLimits.sendQueueMax,
    receiveHighWaterMark: zmqLimits.receiveQueueMax,
  });
  dealer.connect(peerEndpoint);
  let listener = (): void => undefined;
  const loop = (async () => {
    for await (const _ of dealer) listener();
  })();
  return {
    send(payload) {
      if (!dealer.writable) return false;
      dealer.send(payload).catch(() => undefined);
      return true;
    },
    onEcho(fn) {
      listener = fn;
    },
    close: async () => {
      dealer.close();
      await loop;
    },
  };
}

/** Messages per second, `total` messages with at most `window` in flight. */
function throughput(echo: Echo, payload: Uint8Array, total: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let done = 0;
    const start = process.hrtime.bigint();
    const timer = setTimeout(() => reject(new Error(`throughput run stalled at ${done}/${total}`)), plan.runTimeoutMs);
    const sendOne = (): void => {
      if (!echo.send(payload)) {
        clearTimeout(timer);
        reject(new Error('the link refused a message inside the window'));
        return;
      }
      sent++;
    };
    echo.onEcho(() => {
      done++;
      if (sent < total) sendOne();
      if (done === total) {
        clearTimeout(timer);
        resolve(Math.round(total / (Number(process.hrtime.bigint() - start) / 1e9)));
      }
    });
    while (sent < Math.min(plan.window, total)) sendOne();
  });
}

/** p50 and p99 round trip in µs, one message at a time. */
async function roundTrips(echo: Echo, payload: Uint8Array): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 0; i < plan.rttWarmup + plan.rttSamples; i++) {
    const start = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('a round trip got no answer')), 5_000);
      echo.onEcho(() => {
        clearTimeout(timer);
        resolve();
      });
      if (!echo.send(payload)) reject(new Error('the link refused a round trip'));
    });
    if (i >= plan.rttWarmup) samples.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]);
  return { p50: at(0.5), p99: at(0.99) };
}

function startPeer(): ChildProcess {
  const curve: { server: CurveKeyPair; client: string } = { server: keys.server, client: keys.client.publicKey };
  return spawn(process.execPath, ['--import', 'tsx', 'bench/bus-peer.ts'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_CURVE: JSON.stringify(curve) },
  });
}

function peerReady(child: ChildProcess): Promise<{ mangrove: string; curve: string; raw: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the echo peer did not start')), plan.peerStartMs);
    child.once('exit', (code) => reject(new Error(`the echo peer exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('READY ')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice(6)));
    });
  });
}

function stopPeer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 3_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    process.kill(child.pid!, 'SIGTERM');
  });
}

async function main(): Promise<void> {
  const child = startPeer();
  const figures: Record<string, number> = {};
  try {
    const endpoints = await peerReady(child);
    for (const [name, makeEcho, endpoint] of [
      ['mangrove', mangroveEcho, endpoints.mangrove],
      ['curve', curveEcho, endpoints.curve],
      ['raw', rawEcho, endpoints.raw],
    ] as const) {
      const echo = await makeEcho(endpoint);
      try {
        for (const size of Object.keys(sizes) as Size[]) {
          const payload = new Uint8Array(sizes[size]).fill(0x5a);
          const perSecond = await throughput(echo, payload, plan.throughputMessages[size]);
          const rtt = await roundTrips(echo, payload);
          figures[`${name}Throughput${size}`] = perSecond;
          figures[`${name}Rtt${size}P50Us`] = rtt.p50;
          figures[`${name}Rtt${size}P99Us`] = rtt.p99;
          console.log(`${name.padEnd(8)} ${size.padStart(4)} B  ${String(perSecond).padStart(7)} msg/s  rtt p50 ${rtt.p50} µs  p99 ${rtt.p99} µs`);
        }
      } finally {
        await echo.close();
      }
    }
  } finally {
    await stopPeer(child);
  }
  const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
  const ratios = {
    throughput100: ratio(figures.mangroveThroughput100, figures.rawThroughput100),
    throughput4k: ratio(figures.mangroveThroughput4k, figures.rawThroughput4k),
    rtt100: ratio(figures.rawRtt100P50Us, figures.mangroveRtt100P50Us),
    rtt4k: ratio(figures.rawRtt4kP50Us, figures.mangroveRtt4kP50Us),
  };
  // Above 1 would mean CURVE is faster; round trips as plain p50 over CURVE p50, so the same holds.
  const curveVsPlain = {
    throughput100: ratio(figures.curveThroughput100, figures.mangroveThroughput100),
    throughput4k: ratio(figures.curveThroughput4k, figures.mangroveThroughput4k),
    rtt100: ratio(figures.mangroveRtt100P50Us, figures.curveRtt100P50Us),
    rtt4k: ratio(figures.mangroveRtt4kP50Us, figures.curveRtt4kP50Us),
  };
  console.log(JSON.stringify({ bench: 'bus', figures, ratios, curveVsPlain }));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench bus failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
