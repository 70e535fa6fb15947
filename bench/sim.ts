/**
 * `npm run bench -- sim`: the simulator's speed and the heartbeat's message
 * load per node (M4, M29). Hierarchical clusters of 100, 1,000 and 10,000
 * nodes (groups of at most 63) beside flat ones (one group: every node pulses
 * one monitor, which answers every node), all in the same run. The average
 * load per node is about two messages per period either way; what differs is
 * the busiest node: a flat monitor sends one pulse per member per period, so
 * its load grows with the cluster (and a group holds at most 64 nodes, M1),
 * while a hierarchical monitor answers only its own group and its peers.
 * Each run is `runtime/sim/worker.js` in a child with a large heap (needs
 * `npm run build`). Last line: {"bench":"sim","figures":{...},"ratios":{...}}.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SimReport } from '../runtime/sim/run.js';

const worker = fileURLToPath(new URL('../dist/runtime/sim/worker.js', import.meta.url));
const DURATION_S = 20;

function run(nodes: number, groups: number): SimReport {
  const plan = { nodes, groups, anchors: 3, seed: 1, duration: DURATION_S, crash: 0, loss: 0, period: 1000 };
  const r = spawnSync(process.execPath, ['--max-old-space-size=12000', worker, JSON.stringify(plan)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  const msg = JSON.parse(last || '{}') as { report?: SimReport; error?: { message: string } };
  if (!msg.report) throw new Error(`sim of ${nodes} nodes failed: ${msg.error?.message ?? r.stderr.slice(-500)}`);
  return msg.report;
}

const figures: Record<string, number> = {};
const errors: string[] = [];
const record = (label: string, r: SimReport) => {
  figures[`${label}SimSecondsPerSecond`] = r.simulatedSecondsPerSecond;
  figures[`${label}MessagesPerNodePerSecond`] = r.messagesPerNodePerSecond;
  figures[`${label}BusiestNodeMessagesPerSecond`] = r.busiestNodeMessagesPerSecond;
  console.error(
    `${label.padEnd(14)} ${String(r.nodes).padStart(6)} nodes ${String(r.groups).padStart(4)} groups: ` +
      `${r.messagesPerNodePerSecond} msg/node/s, busiest ${r.busiestNodeMessagesPerSecond} msg/s, ${r.simulatedSecondsPerSecond} simulated s/s, formed after ${r.formedAfterMs} ms`,
  );
};

for (const [label, nodes, groups] of [
  ['flat16', 16, 1],
  ['flat32', 32, 1],
  ['flat64', 64, 1],
  ['hier100', 100, 2],
  ['hier1k', 1000, 16],
  ['hier10k', 10_000, 160],
] as const) {
  // A size that fails (10,000 nodes can exhaust the heap: every node keeps what it saw of every other) is reported; the others still run.
  try {
    record(label, run(nodes, groups));
  } catch (err) {
    errors.push(`${label}: ${err instanceof Error ? err.message : String(err)}`.replace(/\s+/g, ' ').slice(0, 500));
    console.error(`${label.padEnd(14)} failed: ${errors[errors.length - 1]}`);
  }
}
const ratio = (a: number, b: number): number | undefined => (a > 0 && b > 0 ? Math.round((a / b) * 100) / 100 : undefined);
const ratios = {
  // Hierarchical: what a node sends stays flat from 1,000 to 10,000 nodes.
  hierLoad10kVs1k: ratio(figures.hier10kMessagesPerNodePerSecond, figures.hier1kMessagesPerNodePerSecond),
  hierBusiest10kVs1k: ratio(figures.hier10kBusiestNodeMessagesPerSecond, figures.hier1kBusiestNodeMessagesPerSecond),
  // Flat: the monitor's load grows with the cluster (4x the nodes, about 4x its sends).
  flatBusiest64Vs16: ratio(figures.flat64BusiestNodeMessagesPerSecond, figures.flat16BusiestNodeMessagesPerSecond),
};
console.log(JSON.stringify({ bench: 'sim', figures, ratios, ...(errors.length > 0 ? { errors } : {}) }));
process.exitCode = errors.length > 0 ? 1 : 0;
