/**
 * `npm run soak [-- --seeds N --from S --jobs J --json]`: the crash
 * workload of spec/sim/recovery.sim.spec.ts (nodes crash and restart one at
 * a time, in every role, under a lossy network, while clients read, write
 * and flush shared pages) over many more seeds than `npm test` runs, judged
 * by the same rule (crashRunProblems). Seeds are split among J child
 * processes; a child that stops advancing (a livelock: its watchdog kills
 * it) costs only its seed, which is reported, and the rest of its share
 * runs in a new child. Prints a line per seed, then the failing seeds and
 * how to replay each; exits 1 if any failed.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { crashRunProblems, crashWorkload } from './helpers/crash-workload.js';
import { StallWatchdog } from './helpers/stall-watchdog.js';

const HELP = `usage: npm run soak -- [--seeds N] [--from S] [--jobs J] [--json]

Runs the recovery simulation's crash workload over seeds S .. S+N-1
(default: 200 seeds from 1001; npm test runs the first 50) in J child
processes (default 2), and reports each seed's outcome.

  --seeds N   how many seeds (1 to 100000)
  --from S    the first seed (a non-negative integer)
  --jobs J    child processes (1 to 16)
  --json      one JSON object per seed, and a last one with the totals
  --help      this text

A failing seed replays alone with
  MANGROVE_SEED=S npx mocha --no-config -n import=tsx --extension ts spec/sim/recovery.sim.spec.ts -g histories
Exit status: 0 if every seed ran clean, 1 if any failed, 2 on bad arguments.`;

/** Wall time without a simulated period before a child counts as stalled. */
const STALL_MS = 30_000;

interface SeedReport {
  seed: number;
  ok: boolean;
  problems: string[];
  wallMs: number;
  crashes?: number;
  rounds?: number;
  ops?: number;
}

interface Options {
  seeds: number;
  from: number;
  jobs: number;
  json: boolean;
}

function parse(argv: readonly string[]): Options {
  const opts: Options = { seeds: 200, from: 1001, jobs: 2, json: false };
  const bounds: Record<'seeds' | 'from' | 'jobs', [number, number]> = { seeds: [1, 100_000], from: [0, Number.MAX_SAFE_INTEGER], jobs: [1, 16] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(HELP);
      process.exit(0);
    }
    if (arg === '--json') {
      opts.json = true;
      continue;
    }
    const name = arg.replace(/^--/, '') as keyof typeof bounds;
    if (!arg.startsWith('--') || !(name in bounds)) fail(`unknown argument ${arg}`);
    const value = Number(argv[++i]);
    const [min, max] = bounds[name];
    if (!Number.isInteger(value) || value < min || value > max) fail(`--${name} must be an integer from ${min} to ${max}, not ${argv[i] ?? 'nothing'}`);
    opts[name] = value;
  }
  return opts;
}

function fail(message: string): never {
  console.error(`E_BAD_ARGUMENT: ${message}\n\n${HELP}`);
  process.exit(2);
}

/** In a child: runs its seeds one by one, sending a report of each to the parent. */
async function child(seeds: number[]): Promise<void> {
  const watchdog = new StallWatchdog(STALL_MS);
  for (const seed of seeds) {
    process.send!({ starting: seed });
    const t0 = Date.now();
    let report: SeedReport;
    try {
      watchdog.arm(seed);
      const run = await crashWorkload(seed, { clients: 8, faultMs: 8000, progress: () => watchdog.beat() });
      watchdog.disarm();
      const problems = crashRunProblems(run);
      report = { seed, ok: problems.length === 0, problems, wallMs: Date.now() - t0, crashes: run.crashes.length, rounds: run.rounds, ops: run.rec.history.length };
      await run.c.stopAll();
    } catch (err) {
      watchdog.disarm();
      report = { seed, ok: false, problems: [`threw: ${(err as Error).message}`], wallMs: Date.now() - t0 };
    }
    process.send!({ report });
  }
  await watchdog.stop();
}

/** Runs `seeds` in a child, and in a new child past any seed a child died on. */
async function share(seeds: number[], done: (r: SeedReport) => void): Promise<void> {
  let left = seeds;
  while (left.length > 0) {
    let current: number | undefined;
    const finished = new Set<number>();
    const t0 = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      const c = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify(left)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      c.on('message', (m: { starting?: number; report?: SeedReport }) => {
        if (m.starting !== undefined) current = m.starting;
        if (m.report) {
          finished.add(m.report.seed);
          done(m.report);
        }
      });
      c.on('exit', (exitCode) => resolve(exitCode));
    });
    left = left.filter((s) => !finished.has(s));
    if (left.length === 0) return;
    // The child died mid-seed: that seed stalled (or crashed the process); the rest go on.
    const dead = current ?? left[0];
    done({ seed: dead, ok: false, problems: [`the child process died (exit ${code}): the simulation stopped advancing or crashed`], wallMs: Date.now() - t0 });
    left = left.filter((s) => s !== dead);
  }
}

async function main(): Promise<void> {
  const opts = parse(process.argv.slice(2));
  const seeds = Array.from({ length: opts.seeds }, (_, k) => opts.from + k);
  const shares = Array.from({ length: Math.min(opts.jobs, seeds.length) }, (_, j) => seeds.filter((_, k) => k % opts.jobs === j));
  const reports: SeedReport[] = [];
  const t0 = Date.now();
  const done = (r: SeedReport) => {
    reports.push(r);
    if (opts.json) console.log(JSON.stringify(r));
    else console.log(`[${reports.length}/${seeds.length}] seed ${r.seed}: ${r.ok ? 'clean' : 'FAILED'} (${r.wallMs} ms${r.crashes !== undefined ? `, ${r.crashes} crashes, ${r.rounds} rounds, ${r.ops} ops` : ''})${r.ok ? '' : `\n    ${r.problems.map((p) => p.split('\n')[0]).join('\n    ')}`}`);
  };
  await Promise.all(shares.map((s) => share(s, done)));
  const failed = reports.filter((r) => !r.ok).sort((a, b) => a.seed - b.seed);
  const totals = { seeds: seeds.length, clean: seeds.length - failed.length, failed: failed.map((r) => r.seed), wallS: Math.round((Date.now() - t0) / 1000) };
  if (opts.json) console.log(JSON.stringify({ totals }));
  else {
    console.log(`\n${totals.clean} of ${totals.seeds} seeds clean in ${totals.wallS} s`);
    for (const r of failed) console.log(`  seed ${r.seed}: ${r.problems[0].split('\n')[0]}\n    replay: MANGROVE_SEED=${r.seed} npx mocha --no-config -n import=tsx --extension ts spec/sim/recovery.sim.spec.ts -g histories`);
  }
  process.exitCode = failed.length > 0 ? 1 : 0;
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]) as number[]);
else await main();
