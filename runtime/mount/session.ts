/**
 * A mount's link to the cluster (SPEC.md M28): one node at a time, and the
 * move to another when that node stops answering. Every call goes through
 * `run`, which hands the current client and its generation to the caller's
 * function. While a call waits longer than `timeoutMs`, the session asks
 * the node's status: a node that answers is busy (a call may wait out a
 * failed home's grace and the rebuild after it), and the call waits on; one
 * that does not (it died, paused or was cut off) is left: the session finds
 * another node that answers — the ones
 * given with --connect first, then every node the last node database named —
 * and runs the function again there. Handles belong to the node that opened
 * them, so a caller holding one compares generations and opens it again
 * (open-files.ts). A call the node refused with E_RECOVERING is already sent
 * again by the client through the rebuild that follows a failure; one
 * refused for want of quorum is sent again for QUORUM_WAIT_MS (quorum can
 * lapse for a moment in a rebuild), then fails (EROFS).
 *
 * While it is up, the session reports to its node every REPORT_MS (the
 * report also keeps the mount's handles leased), and learns the cluster's
 * endpoints from the node's status every LEARN_EVERY reports.
 */
import { hostname } from 'node:os';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { ClientFsOp, MountReport } from '../../bus/messages/fs.js';
import { connect, type MangroveClient } from '../client/pages.js';
import { withTxn } from '../client/txn.js';
import type { Logger } from '../node/logger.js';
import type { MountStats } from './stats.js';

export const sessionDefaults = {
  /**
   * A call unanswered this long makes the session ask its node's status; a
   * node that answers is busy (a call may wait out a failed home's grace and
   * a rebuild), one that does not is taken for gone.
   */
  timeoutMs: 5_000,
  /** How long a call waits out a rebuild (E_RECOVERING) before it fails. */
  recoveryWaitMs: 60_000,
  /** How long a failover looks for a node that answers before the call fails with EIO (the next call looks again). */
  failoverWaitMs: 60_000,
} as const;

/** How often the mount reports to its node (and so renews its handles' lease, a minute). */
export const REPORT_MS = 5_000;
/** Every this many reports the session reads the node's status for the cluster's endpoints. */
const LEARN_EVERY = 6;
/** A node asked for its status answers within this long, or it is taken for gone. */
const PROBE_TIMEOUT_MS = 3_000;
/**
 * One try of one call, at most: long enough for any wait a live node puts a
 * call through (a failed home's grace, a rebuild); a dead node is found by
 * the status probes long before.
 */
const CALL_TIMEOUT_MS = 120_000;
/** How long a call refused for want of quorum (E_NO_QUORUM) is sent again before it fails (EROFS). */
const QUORUM_WAIT_MS = 10_000;
const QUORUM_RETRY_MS = 200;
/** Between two rounds over every known node during a failover. */
const FAILOVER_ROUND_PAUSE_MS = 500;

export interface SessionOptions {
  /** Nodes to use, in order of preference (`--connect`). */
  endpoints: string[];
  /** What the mount reports about itself (with its counts from `stats`). */
  mount: { id: string; dir: string; fileset: string; startedMs: number };
  stats: MountStats;
  log: Logger;
  timeoutMs?: number;
  failoverWaitMs?: number;
}

export class MountSession {
  private client: MangroveClient;
  private current: string;
  /** Bumped on every move to another node: a handle opened under an older generation is gone. */
  generation = 1;
  private readonly learned = new Set<string>();
  private failing: Promise<void> | null = null;
  private checking: Promise<void> | null = null;
  private reportTimer: NodeJS.Timeout | undefined;
  private reports = 0;
  private closed = false;

  private constructor(
    private readonly opts: SessionOptions,
    first: { client: MangroveClient; endpoint: string },
  ) {
    this.client = first.client;
    this.current = first.endpoint;
  }

  /** Connects to the first of `opts.endpoints` that answers; E_UNREACHABLE naming them all when none does. */
  static async open(opts: SessionOptions): Promise<MountSession> {
    const first = await reach(opts.endpoints, opts.log);
    if (first === null) throw new MangroveError('E_UNREACHABLE', `no node answers at ${opts.endpoints.join(', ')}: is the cluster running?`);
    const s = new MountSession(opts, first);
    await s.learn();
    s.reporting();
    return s;
  }

  /** The node the mount uses now. */
  get endpoint(): string {
    return this.current;
  }

  get clientId(): string {
    return this.client.clientId;
  }

  /** Runs `fn` against the current node; when that node stops answering, moves to another and runs it again there. */
  async run<T>(fn: (client: MangroveClient, generation: number) => Promise<T>): Promise<T> {
    let noQuorumSince: number | null = null;
    for (;;) {
      const generation = this.generation;
      // While the call waits, the node is asked now and then whether it is there at all.
      const watch = setInterval(() => void this.check(generation), this.opts.timeoutMs ?? sessionDefaults.timeoutMs);
      try {
        return await fn(this.client, generation);
      } catch (err) {
        if (!isMangroveError(err) || this.closed) throw err;
        if (err.code === 'E_NO_QUORUM') {
          // A node can be without quorum for a moment while the cluster rebuilds; a partition lasts.
          noQuorumSince ??= Date.now();
          if (Date.now() - noQuorumSince > QUORUM_WAIT_MS) throw err;
          await new Promise((r) => setTimeout(r, QUORUM_RETRY_MS));
        } else if (err.code === 'E_UNREACHABLE') await this.failover(generation);
        // A call still waiting on the old node's client when the mount moved is closed with it.
        else if (err.code !== 'E_CLOSED' || generation === this.generation) throw err;
      } finally {
        clearInterval(watch);
      }
    }
  }

  /** Moves off the node of `generation` if it does not answer a status call (once, however many calls wait on it). */
  private check(generation: number): Promise<void> {
    if (generation !== this.generation || this.closed) return Promise.resolve();
    this.checking ??= answers(this.client)
      .then((there) => (there || generation !== this.generation ? undefined : this.failover(generation)))
      .catch((err: unknown) => this.opts.log.warn({ err: String(err) }, 'a failover found no node that answers'))
      .finally(() => {
        this.checking = null;
      });
    return this.checking;
  }

  /** One raw file-system call (bus/messages/fs.ts) on whichever node answers. */
  call<T>(op: ClientFsOp): Promise<T> {
    // One id for every try, on whichever node: an update done before a failover is not done twice.
    const once = withTxn(op);
    return this.run((c) => c.fsCall(once) as Promise<T>);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reportTimer);
    await this.client.close();
  }

  /** Moves off the node of `generation` (once, however many calls found it gone). */
  private failover(generation: number): Promise<void> {
    if (generation !== this.generation) return Promise.resolve();
    this.failing ??= this.moveOn().finally(() => {
      this.failing = null;
    });
    return this.failing;
  }

  private async moveOn(): Promise<void> {
    const from = this.current;
    const others = [...new Set([...this.opts.endpoints, ...this.learned])].filter((e) => e !== from);
    this.opts.log.warn({ node: from, candidates: others.length }, 'the mount\'s node does not answer; looking for another');
    const deadline = Date.now() + (this.opts.failoverWaitMs ?? sessionDefaults.failoverWaitMs);
    for (;;) {
      // The old node last: it may only have paused, and be back.
      const next = await reach([...others, from], this.opts.log);
      if (next !== null) {
        const old = this.client;
        this.client = next.client;
        this.current = next.endpoint;
        this.generation++;
        this.opts.stats.failovers++;
        old.close().catch(() => undefined);
        this.opts.log.warn({ from, to: next.endpoint, generation: this.generation }, 'the mount moved to another node and goes on; open files are opened again there');
        await this.learn();
        return;
      }
      if (Date.now() > deadline || this.closed) throw new MangroveError('E_UNREACHABLE', `no node of the cluster answers (asked ${[from, ...others].join(', ')})`);
      await new Promise((r) => setTimeout(r, FAILOVER_ROUND_PAUSE_MS));
    }
  }

  /** Adds every node the current node's database names to the failover candidates. */
  private async learn(): Promise<void> {
    try {
      const status = await this.client.status();
      for (const n of status.nodes) if (n.endpoint) this.learned.add(n.endpoint);
    } catch (err) {
      this.opts.log.debug({ err: String(err) }, 'could not read the node database for failover candidates');
    }
  }

  private reporting(): void {
    const tick = () => {
      if (this.closed) return;
      this.reports++;
      const report: MountReport = { ...this.opts.mount, host: hostname(), pid: process.pid, ...this.opts.stats.report() };
      this.call({ op: 'mount_report', mount: report })
        .then(() => (this.reports % LEARN_EVERY === 0 ? this.learn() : undefined))
        .catch((err: unknown) => this.opts.log.debug({ err: String(err) }, 'a mount report failed'))
        .finally(() => {
          if (!this.closed) this.reportTimer = setTimeout(tick, REPORT_MS).unref();
        });
    };
    tick();
  }
}

/** Whether the node of `client` answers a status call within PROBE_TIMEOUT_MS. */
async function answers(client: MangroveClient): Promise<boolean> {
  try {
    await Promise.race([client.status(), new Promise((_, reject) => setTimeout(() => reject(new Error('no answer')), PROBE_TIMEOUT_MS).unref())]);
    return true;
  } catch {
    return false;
  }
}

/** The first of `endpoints` whose node answers a status call, with its client; null when none does. */
async function reach(endpoints: string[], log: Logger): Promise<{ client: MangroveClient; endpoint: string } | null> {
  for (const endpoint of endpoints) {
    const client = await connect(endpoint, { timeoutMs: CALL_TIMEOUT_MS, recoveryWaitMs: sessionDefaults.recoveryWaitMs, lockLeaseMs: 0 });
    if (await answers(client)) return { client, endpoint };
    log.debug({ endpoint }, 'a node did not answer');
    await client.close().catch(() => undefined);
  }
  return null;
}
