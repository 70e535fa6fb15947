/**
 * `npm run bench -- detect`: failure detection time on real processes (M3),
 * in heartbeat periods. A five-node cluster on 127.0.0.1; repeatedly kill -9
 * a member (and, separately, the monitor), poll every survivor's status every
 * 10 ms until all of them count it failed, restart it, wait for the cluster
 * to heal. The patent's rule puts detection between 3 and 4 periods after the
 * last pulse. Last line: {"bench":"detect","figures":{...},"ratios":{...}}.
 * (The build must be current: `npm run build`.)
 */
import { ProcessCluster } from '../spec/helpers/process-cluster.js';

const PERIOD_MS = 200;
const KILLS = 8;
const POLL_MS = 10;

async function detectionPeriods(c: ProcessCluster, victim: number): Promise<number> {
  const id = (await c.status(victim)).self;
  const survivors = [0, 1, 2, 3, 4].filter((i) => i !== victim);
  const killedAt = performance.now();
  await c.kill(victim);
  const took = await c.waitFor(
    async () => {
      const s = await c.statuses(survivors);
      return survivors.every((i) => s[i]?.nodes.find((n) => n.id === id)?.alive === false);
    },
    20 * PERIOD_MS,
    POLL_MS,
  );
  if (took < 0) throw new Error(`node ${victim} was not counted failed within 20 periods`);
  const periods = (performance.now() - killedAt) / PERIOD_MS;
  c.spawn(victim);
  if ((await c.waitFor(() => c.converged([0, 1, 2, 3, 4]), 30_000)) < 0) throw new Error('the cluster did not heal');
  return periods;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const c = await ProcessCluster.start({ nodes: 5, anchors: 3, periodMs: PERIOD_MS });
  try {
    if ((await c.waitFor(() => c.converged(), 30_000)) < 0) throw new Error('the cluster did not form');
    const members: number[] = [];
    const monitors: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const s = await c.statuses();
      const monitor = s.findIndex((x) => x?.self === s[0]?.monitor);
      const candidates = [0, 1, 2, 3, 4].filter((i) => i !== monitor);
      const member = candidates[k % candidates.length];
      members.push(await detectionPeriods(c, member));
      console.error(`kill -9 member ${member}: every survivor counted it failed after ${round2(members.at(-1)!)} periods`);
      if (k % 2 === 0) {
        const now = await c.statuses();
        const m = now.findIndex((x) => x?.self === now[0]?.monitor);
        monitors.push(await detectionPeriods(c, m));
        console.error(`kill -9 monitor ${m}: every survivor counted it failed after ${round2(monitors.at(-1)!)} periods`);
      }
    }
    const figures = {
      periodMs: PERIOD_MS,
      kills: members.length,
      medianPeriods: round2(median(members)),
      maxPeriods: round2(Math.max(...members)),
      minPeriods: round2(Math.min(...members)),
      monitorKills: monitors.length,
      monitorMedianPeriods: round2(median(monitors)),
      monitorMaxPeriods: round2(Math.max(...monitors)),
    };
    // Against the bound the issue sets (4 periods): below 1 means within it.
    const ratios = { maxVsBound: round2(figures.maxPeriods / 4), medianVsBound: round2(figures.medianPeriods / 4) };
    console.log(JSON.stringify({ bench: 'detect', figures, ratios }));
  } finally {
    await c.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench detect failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
