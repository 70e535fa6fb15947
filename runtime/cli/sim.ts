/**
 * `mangrove sim`: a whole cluster of the real node code in the deterministic
 * simulator (M29). Large runs need more memory than Node gives a process by
 * default, so the command runs the simulation in a child with a larger heap.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { MangroveError } from '../../bus/errors.js';
import { MEMBERS_PER_GROUP_MAX } from '../../machines/membership/identity.js';
import { examples, integer, jsonLine, positive, print } from './util.js';
import type { SimPlan, SimProgress, SimReport } from '../sim/run.js';

export const simLimits = {
  nodesMax: 20_000,
  /** Heap for the simulation process; 10,000 nodes need about 3 GB. */
  heapMb: 12_000,
} as const;

/** What commander hands over: the plan, before defaults for the group count and the seed. */
type SimCliOptions = Omit<SimPlan, 'groups' | 'seed'> & { groups?: number; seed?: number; json?: boolean };

function probability(value: string): number {
  const p = Number(value);
  if (!Number.isFinite(p) || p < 0 || p >= 1) throw new InvalidArgumentError('It must be a probability in [0, 1).');
  return p;
}

/** `3,2` (node counts) or `60%,40%` (shares of the nodes). */
function sides(value: string): number[] {
  const parts = value.split(/[,|]/).map((s) => s.trim());
  if (parts.length < 2) throw new InvalidArgumentError('Give at least two sides, e.g. 3,2 or 60%,40%.');
  const percent = parts.every((p) => p.endsWith('%'));
  const nums = parts.map((p) => Number(percent ? p.slice(0, -1) : p));
  if (nums.some((n) => !Number.isFinite(n) || n <= 0) || (!percent && nums.some((n) => !Number.isInteger(n)))) {
    throw new InvalidArgumentError('Sides are positive node counts (3,2) or percentages (60%,40%).');
  }
  if (percent && Math.abs(nums.reduce((a, b) => a + b, 0) - 100) > 1e-9) throw new InvalidArgumentError('Percentages must add up to 100.');
  return percent ? nums.map((n) => n / 100) : nums;
}

export function addSimCommand(program: Command): void {
  program
    .command('sim')
    .description('simulate a whole cluster of the real node code on virtual time, with faults, and report')
    .option('-n, --nodes <n>', `number of nodes (1 to ${simLimits.nodesMax})`, positive, 100)
    .option('-g, --groups <g>', `heartbeat groups of at most ${MEMBERS_PER_GROUP_MAX} nodes (default: as few as fit)`, positive)
    .option('-a, --anchors <k>', 'the first K nodes are anchors', positive, 3)
    .option('-s, --seed <s>', 'the seed that drives every choice (default: random, printed)', integer)
    .option('-d, --duration <seconds>', 'simulated seconds measured after the cluster has formed', positive, 30)
    .option('--crash <k>', 'crash K random non-anchor nodes during the first half', integer, 0)
    .option('--partition <sides>', 'cut the cluster into sides for the middle half: 3,2 or 60%,40%', sides)
    .option('--loss <p>', 'probability that any message is lost', probability, 0)
    .option('--period <ms>', 'heartbeat period', positive, 1000)
    .option('--trace <file>', 'record every message of every node to FILE')
    .option('--json', 'print the report as one JSON object')
    .addHelpText(
      'after',
      examples(
        'mangrove sim --nodes 50 --crash 3 --seed 7',
        'mangrove sim --nodes 10000 --groups 160 --crash 5 --json',
        'mangrove sim --nodes 12 --partition 7,5 --loss 0.05 --trace run.trace   # then: mangrove trace show run.trace',
        '',
        'The same seed gives the same run and the same trace, byte for byte. Progress goes to stderr.',
      ),
    )
    .action(async (opts: SimCliOptions) => {
      const plan = checked(opts);
      const report = await runInChild(plan);
      print(opts.json ? jsonLine(report) : render(report));
      if (report.undetected > 0) process.exitCode = 1;
    });
}

function checked(o: SimCliOptions): SimPlan {
  if (o.nodes > simLimits.nodesMax) throw new MangroveError('E_BAD_ARGUMENT', `--nodes is at most ${simLimits.nodesMax} (got ${o.nodes})`);
  const groups = o.groups ?? Math.ceil(o.nodes / MEMBERS_PER_GROUP_MAX);
  if (Math.ceil(o.nodes / groups) > MEMBERS_PER_GROUP_MAX) {
    throw new MangroveError('E_BAD_ARGUMENT', `--groups ${groups} puts more than ${MEMBERS_PER_GROUP_MAX} nodes in a group; use at least ${Math.ceil(o.nodes / MEMBERS_PER_GROUP_MAX)}`);
  }
  if (groups > o.nodes) throw new MangroveError('E_BAD_ARGUMENT', `--groups ${groups} is more than --nodes ${o.nodes}`);
  if (o.anchors > o.nodes) throw new MangroveError('E_BAD_ARGUMENT', `--anchors ${o.anchors} is more than --nodes ${o.nodes}`);
  if (o.crash < 0 || o.crash > o.nodes - o.anchors) {
    throw new MangroveError('E_BAD_ARGUMENT', `--crash takes 0 to ${o.nodes - o.anchors} (the non-anchor nodes)`);
  }
  if (o.partition && o.partition.every((s) => s >= 1) && o.partition.reduce((a, b) => a + b, 0) !== o.nodes) {
    throw new MangroveError('E_BAD_ARGUMENT', `--partition sides must add up to --nodes ${o.nodes}`);
  }
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  return { nodes: o.nodes, groups, anchors: o.anchors, seed, duration: o.duration, crash: o.crash, loss: o.loss, period: o.period, partition: o.partition, trace: o.trace };
}

/** Runs the simulation in a child process with a large heap; progress lines come back on stderr. */
function runInChild(plan: SimPlan): Promise<SimReport> {
  const worker = fileURLToPath(new URL('../sim/worker.js', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`--max-old-space-size=${simLimits.heapMb}`, worker, JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    const stop = () => child.kill('SIGTERM');
    process.once('SIGINT', stop);
    child.on('error', reject);
    child.on('exit', (code) => {
      process.off('SIGINT', stop);
      const last = out.trim().split('\n').pop() ?? '';
      try {
        const msg = JSON.parse(last) as { report?: SimReport; error?: { code: string; message: string } };
        if (msg.report) return resolve(msg.report);
        if (msg.error) return reject(new MangroveError(msg.error.code as never, msg.error.message));
      } catch {
        // fall through
      }
      reject(new MangroveError('E_TIMEOUT', `the simulation stopped without a report (exit ${code})`));
    });
  });
}

export function renderProgress(p: SimProgress): string {
  const speed = `${p.simulatedSecondsPerSecond.toFixed(2)} simulated s per s`;
  if (p.phase === 'forming') return `sim: ${p.simulatedS.toFixed(1)} simulated s, forming the heartbeat hierarchy, ${speed}\n`;
  return `sim: ${p.simulatedS.toFixed(1)} of ${p.totalS.toFixed(0)} simulated s, crashes detected ${p.detected}/${p.crashes}, ${speed}\n`;
}

function render(r: SimReport): string {
  const lines = [
    `${r.nodes} nodes in ${r.groups} group(s), ${r.anchors} anchors, seed ${r.seed} (replay with --seed ${r.seed})`,
    `formed after ${r.formedAfterMs < 0 ? 'never' : `${r.formedAfterMs} ms`}; measured ${r.durationS} simulated s`,
    `messages per node per simulated second: ${r.messagesPerNodePerSecond}`,
    `quorum changes: ${r.quorumChanges}`,
    `speed: ${r.simulatedSecondsPerSecond} simulated s per s`,
  ];
  if (r.crashes.length) {
    lines.push(`crashes: ${r.crashes.length}, undetected: ${r.undetected}`);
    for (const c of r.crashes) lines.push(`  ${c.id}  ${c.detectedAfterMs === null ? 'NOT DETECTED by every node' : `counted failed by every node after ${c.detectedAfterMs} ms`}`);
  }
  return lines.join('\n');
}
