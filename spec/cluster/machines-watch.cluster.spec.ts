/**
 * `mangrove machines watch` against real node processes (M26, M3): a watcher
 * on each survivor of a kill -9 of the heartbeat monitor shows the failover
 * as it happens: both members go `candidate`, one is `promoted` and starts a
 * heartbeat-monitor, the other yields. Every process is stopped by pid.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import type { TransitionRecord } from '../../runtime/inspect/watch.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { CLI } from '../helpers/run-cli.js';

const PERIOD = 200;

/** A `mangrove machines watch --json` process and what it printed, each line with its arrival time. */
class Watcher {
  readonly lines: { at: number; record: TransitionRecord }[] = [];
  stderr = '';
  private readonly child: ChildProcess;
  private partial = '';

  constructor(endpoint: string) {
    this.child = spawn(process.execPath, [CLI, 'machines', 'watch', '--connect', endpoint, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop()!;
      for (const line of parts) if (line.trim() !== '') this.lines.push({ at: Date.now(), record: JSON.parse(line) as TransitionRecord });
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  find(machine: string, from: string | null, to: string | null, after = 0): { at: number; record: TransitionRecord } | undefined {
    return this.lines.find((l) => l.record.machine === machine && l.record.from === from && l.record.to === to && l.record.t >= after);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

describe('machines watch across real processes', function () {
  this.timeout(90_000);
  let cluster: ProcessCluster;
  const watchers: Watcher[] = [];

  before(async () => {
    cluster = await ProcessCluster.start({ nodes: 3, anchors: 3, periodMs: PERIOD, http: true });
    const took = await cluster.waitFor(() => cluster.converged(), 30_000);
    if (took < 0) throw new Error(`cluster did not form; ${cluster.died().join('\n') || `node-0 log:\n${cluster.log(0).slice(-3000)}`}`);
  });

  after(async () => {
    for (const w of watchers.splice(0)) await w.stop();
    await cluster?.stop();
  });

  it('shows a heartbeat monitor failover as it happens', async () => {
    const statuses = await cluster.statuses();
    // The OS picks each port (httpPort 0): a real one, a different one per node.
    for (const s of statuses) expect(s!.http, 'every node names its HTTP port').to.be.within(1, 65_535);
    expect(new Set(statuses.map((s) => s!.http)).size, 'one HTTP port per node').to.equal(statuses.length);
    const monitor = statuses[0]!.monitor!;
    const victim = statuses.findIndex((s) => s!.self === monitor);
    const survivors = [0, 1, 2].filter((i) => i !== victim);

    // The monitor's own view: it runs a heartbeat-monitor, ticking.
    const machines = (await (await fetch(`http://127.0.0.1:${statuses[victim]!.http}/machines`)).json()) as { actors: { machine: string; state: string }[] };
    expect(machines.actors.some((a) => a.machine === 'heartbeat-monitor' && a.state === 'monitoring.ticking'), JSON.stringify(machines.actors)).to.equal(true);

    for (const i of survivors) watchers.push(new Watcher(cluster.endpoints[i]));
    const connected = await cluster.waitFor(async () => watchers.every((w) => w.stderr.includes('watching node')), 10_000);
    expect(connected, `watchers connected: ${watchers.map((w) => w.stderr).join(' | ')}`).to.be.at.least(0);

    const killedAt = Date.now();
    await cluster.kill(victim);
    const sawFailover = () => watchers.some((w) => w.find('heartbeat-monitor', null, 'monitoring.ticking', killedAt)) && watchers.every((w) => w.find('heartbeat-member', 'following', 'candidate', killedAt));
    const took = await cluster.waitFor(async () => sawFailover(), 20 * PERIOD);
    expect(took, `failover seen; watch output:\n${watchers.map((w) => w.lines.map((l) => JSON.stringify(l.record)).join('\n')).join('\n---\n')}`).to.be.at.least(0);

    const output = () => watchers.map((w) => w.lines.map((l) => JSON.stringify(l.record)).join('\n')).join('\n---\n');
    const ids = survivors.map((i) => statuses[i]!.self);
    for (const [k, w] of watchers.entries()) {
      const candidate = w.find('heartbeat-member', 'following', 'candidate', killedAt)!;
      expect(candidate.record.node, 'records name the watched node').to.equal(ids[k]);
      expect(candidate.record.event).to.equal('xstate.after.tick.heartbeat-member.following');
      // As it happens: printed within a second of the node's transition.
      expect(candidate.at - candidate.record.t, 'ms from transition to the watch line').to.be.within(-1000, 1000);
    }

    // The cluster settles on one monitor, and the watchers showed it promoted.
    let settled: string | undefined;
    const named = await cluster.waitFor(async () => {
      const s = await cluster.statuses(survivors);
      settled = s[survivors[0]]?.monitor ?? undefined;
      return settled !== undefined && ids.includes(settled) && survivors.every((i) => s[i]?.monitor === settled);
    }, 20 * PERIOD);
    expect(named, `every survivor names one survivor its monitor; watch output:\n${output()}`).to.be.at.least(0);
    const winner = ids.indexOf(settled!);
    const loser = 1 - winner;
    expect(watchers[winner].find('heartbeat-member', 'candidate', 'promoted', killedAt), `the winner's member is promoted; watch output:\n${output()}`).to.not.equal(undefined);
    expect(watchers[winner].find('heartbeat-monitor', null, 'monitoring.ticking', killedAt)!.record.event).to.equal('xstate.init');

    // The other candidate yields: normally its claim loses and it follows
    // (candidate → following). On a loaded host a claim can arrive after the
    // claim window, so both promote, and arbitration stops the loser's
    // monitor and starts a member that follows (null → following). Either
    // way the watcher shows it, and no monitor is left running on the loser.
    const follows = () => watchers[loser].lines.find((l) => l.record.machine === 'heartbeat-member' && l.record.to === 'following' && (l.record.from === 'candidate' || l.record.from === null) && l.record.t >= killedAt);
    const yielded = await cluster.waitFor(async () => follows() !== undefined, 20 * PERIOD);
    expect(yielded, `the other candidate yields and follows; watch output:\n${output()}`).to.be.at.least(0);
    const loserMonitor = watchers[loser].lines.filter((l) => l.record.machine === 'heartbeat-monitor' && l.record.t >= killedAt);
    // Its monitor yields: it ends `demoted` (its final state) or stopped.
    if (loserMonitor.length > 0) expect(loserMonitor.at(-1)!.record.to, `a second monitor stops; watch output:\n${output()}`).to.be.oneOf([null, 'demoted']);
    expect(watchers.every((w) => w.running), 'the watchers keep streaming').to.equal(true);
  });
});
