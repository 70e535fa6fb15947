/**
 * The typed client of the memory engine (SPEC.md M24): a program's pages
 * through one node, as `import { connect } from 'mangrove'`. One method per
 * engine call (M7); each sends one `client.page` request (bus/messages/page.ts)
 * and resolves with its answer, addresses as bigint.
 *
 * Every argument is checked before anything is sent, because the node's
 * codec drops a malformed request without a word and the caller would only
 * see a timeout: each op passes the wire's own schema first (runtime/client/checks.ts),
 * and a refused call rejects at once with E_BAD_ADDRESS (an address outside
 * the 128-bit space or not the start of a page) or E_BAD_ARGUMENT (anything
 * else), naming what was given, and sends nothing.
 *
 * A failure costs a pause, not an error (M6): while the cluster rebuilds
 * after a node failure, the node refuses calls with E_RECOVERING, and the
 * client sends a refused call again, with a growing, jittered backoff, for
 * up to `recoveryWaitMs` before it rejects with E_RECOVERING after all.
 */
import type { NodeStatus } from '../../actors/status.js';
import type { TxnOutcome, TxnState } from '../../actors/storage/txn-log-store.js';
import { assert } from '../../bus/assert.js';
import type { Clock } from '../../bus/clock.js';
import { isMangroveError, MangroveError } from '../../bus/errors.js';
import type { Body } from '../../bus/messages/index.js';
import {
  COPIES_MAX,
  FS_ATTR_BYTES,
  LOCK_LEASE_MS_MAX,
  LOCK_LEASE_MS_MIN,
  PAGES_PER_RANGE_MAX,
  PAGES_PER_REQUEST_MAX,
  TXN_RECORD_BYTES_MAX,
  type ClientPageOp,
  type DirectoryPageView,
  type FlushResult,
  type PageAttrs,
  type PageStat,
  type ReadResult,
  type ReserveResult,
  type SpaceReport,
  type TxnRecord,
  type WriteResult,
} from '../../bus/messages/page.js';
import { ZmqClient } from '../../bus/transport/zmq-client.js';
import { clientCurveFor, findClientKey } from './client-key.js';
import { clientFsOp, type ClientFsOp } from '../../bus/messages/fs.js';
import { FsClient } from './files.js';
import { addressKey, PAGE_BYTES, parseAddress } from '../../machines/memory/address.js';
import { isTcpEndpoint } from '../../bus/transport/endpoint.js';
import { withTxn } from './txn.js';
import { checkClientId, checkField, checkKeys, checkMs, describe, hotOp, pageBase, wireOp, type ApiOp, type ApiOptions } from './checks.js';

export { COPIES_MAX, FS_ATTR_BYTES, PAGES_PER_RANGE_MAX, PAGES_PER_REQUEST_MAX, TXN_RECORD_BYTES_MAX };
export { describe };
export type { DirectoryPageView, FlushResult, PageAttrs, PageStat, SpaceReport, TxnOutcome, TxnRecord, TxnState };

export const clientDefaults = {
  timeoutMs: 10_000,
  /** Well above a program's pauses (a collection, a slow disk), short enough that a waiting locker is not held up for long. */
  lockLeaseMs: 10_000,
  /** Longer than a rebuild takes (seconds), short enough that a cluster that does not come back is reported. */
  recoveryWaitMs: 30_000,
} as const;

export const clientLimits = {
  /** setTimeout fires at once for longer delays. */
  timeoutMsMax: 2 ** 31 - 1,
  /** A finite wait, as long as timeoutMs may be (each wait in it is at most recoveryBackoff.maxMs). */
  recoveryWaitMsMax: 2 ** 31 - 1,
  /** A file-system attribute (M22): the wire's FS_ATTR_BYTES. */
  fsBytes: FS_ATTR_BYTES,
} as const;

/**
 * The waits between the tries of a call refused with E_RECOVERING. A rebuild
 * takes seconds: the first retries come soon, for a refusal that was the end
 * of one, and the waits double so that many clients do not hold a rebuilding
 * cluster busy; the cap bounds how late a client notices the rebuild is over.
 */
export const recoveryBackoff = {
  /** The first wait's ceiling; each next one's is double. */
  firstMs: 20,
  /** No wait is longer. */
  maxMs: 500,
} as const;

export interface ConnectOptions {
  /** How long each call (each try of it, see recoveryWaitMs) waits for its answer; default 10000. */
  timeoutMs?: number;
  /** Who the node thinks is asking: locks belong to it. Default: 'client-' and 12 random hex digits. */
  clientId?: string;
  /**
   * How long a call waits out a rebuild after a node failure: a call the node
   * refuses with E_RECOVERING is sent again, after waits growing from about
   * 20 ms to 500 ms, until it is answered or this long has passed since its
   * first refusal; then it rejects with E_RECOVERING after all. 0: not sent
   * again (the node's refusal rejects at once). Default 30000.
   */
  recoveryWaitMs?: number;
  /**
   * How long the node keeps this client's locks once it stops hearing from
   * it: the client renews the lease while it holds locks, so a program that
   * dies or is cut off loses them after this long and a waiting locker gets
   * them (M14). 0: locks outlive the client until unlocked or its node fails
   * (the CLI's). 1000 to 3600000, default 10000.
   */
  lockLeaseMs?: number;
  /**
   * The client's key file, for a node with keys (docs/security.md): its
   * pair and the nodes' public keys. Default: $MANGROVE_KEY, else
   * ./mangrove-local/client.key when there is one, else none (a plain link).
   */
  key?: string;
}

/** What a MangroveClient takes besides its link: `connect` passes recoveryWaitMs; specs pass a clock and a random source too. */
export interface ClientOptions {
  /** As in ConnectOptions; default 30000. */
  recoveryWaitMs?: number;
  /** As in ConnectOptions; default 10000. */
  lockLeaseMs?: number;
  /** Times the waits between tries and measures recoveryWaitMs (bus/clock.ts); default the process's own timers. */
  clock?: Clock;
  /** The backoff's jitter, a float in [0, 1); default Math.random. */
  random?: () => number;
}

/** What a client counts (client.stats()), from its creation. */
export interface ClientStats {
  /** Calls sent again after an E_RECOVERING refusal. */
  recoveryRetries: number;
  /** Calls that rejected with E_RECOVERING after all: still refused when recoveryWaitMs ran out (at once with 0). */
  recoveryGiveUps: number;
  /** The longest one call was held up by a rebuild, in ms: from its first E_RECOVERING to its last answer. */
  recoveryPauseMsMax: number;
  /** Times the node said this client's lock lease had run out (it was not heard from for lockLeaseMs): its locks were released. */
  lockLeasesLost: number;
}

/**
 * The process's timers. Not unref'd: a program awaiting a call that waits
 * out a rebuild must not exit in the middle of the wait.
 */
const processClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * The wait before retry `n` (from 0): a ceiling of firstMs doubled n times,
 * at most maxMs, half of it fixed and half jitter. Clients refused together
 * spread out, and until the cap no wait is shorter than the one before (the
 * next one's fixed half is this one's ceiling).
 */
export function recoveryBackoffMs(n: number, random: () => number): number {
  const r = random();
  assert(Number.isInteger(n) && n >= 0, 'retries are counted from 0');
  assert(typeof r === 'number' && r >= 0 && r < 1, 'the random source gives a float in [0, 1)');
  const ceiling = Math.min(recoveryBackoff.maxMs, recoveryBackoff.firstMs * 2 ** Math.min(n, 30));
  return Math.ceil(ceiling / 2 + (r * ceiling) / 2);
}

/** 'shared' or 'exclusive': the wire's lock modes. */
export type LockMode = Extract<ClientPageOp, { op: 'lock' }>['mode'];

export interface AllocOptions {
  /** Core copies on distinct nodes (M11), 1 to COPIES_MAX; the node's default when absent. */
  copies?: number;
  /** Volatile pages are never written to disk (M11). */
  volatile?: boolean;
}

export interface AttrChanges {
  /** The file-system attribute: FS_ATTR_BYTES (16) bytes. */
  fs?: Uint8Array;
  cacheInRam?: boolean;
}

/** What a MangroveClient sends through: a ZmqClient, or a stand-in in specs. */
export interface PageLink {
  readonly endpoint: string;
  readonly clientId: string;
  request<K extends 'client.page' | 'client.fs' | 'client.status'>(kind: K, body: Body<K>): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * Opens a link to the node at `endpoint` (`tcp://host:port`). ZeroMQ connects
 * in the background, so a node that is down shows up as the first call's
 * timeout (E_UNREACHABLE), not here.
 */
export async function connect(endpoint: string, opts: ConnectOptions = {}): Promise<MangroveClient> {
  if (typeof endpoint !== 'string' || !isTcpEndpoint(endpoint)) {
    throw new MangroveError('E_BAD_ARGUMENT', `the endpoint must be like tcp://127.0.0.1:7400, not ${describe(endpoint)}`);
  }
  checkKeys(opts, ['timeoutMs', 'clientId', 'recoveryWaitMs', 'lockLeaseMs', 'key'], 'connect options');
  const timeoutMs = checkMs('timeoutMs', opts.timeoutMs ?? clientDefaults.timeoutMs, 1, clientLimits.timeoutMsMax);
  const { clientId, recoveryWaitMs, lockLeaseMs, key } = opts;
  checkClientId(clientId);
  checkRecoveryWaitMs(recoveryWaitMs);
  checkLockLeaseMs(lockLeaseMs);
  if (key !== undefined && (typeof key !== 'string' || key.length === 0)) throw new MangroveError('E_BAD_ARGUMENT', `key must be the path of a key file, not ${describe(key)}`);
  const curve = clientCurveFor(endpoint, findClientKey(key));
  return new MangroveClient(await ZmqClient.connect(endpoint, { timeoutMs, clientId, curve }), { recoveryWaitMs, lockLeaseMs });
}

function checkRecoveryWaitMs(ms: unknown): number {
  return checkMs('recoveryWaitMs', ms ?? clientDefaults.recoveryWaitMs, 0, clientLimits.recoveryWaitMsMax);
}

function checkLockLeaseMs(ms: unknown): number {
  const lease = checkMs('lockLeaseMs', ms ?? clientDefaults.lockLeaseMs, 0, LOCK_LEASE_MS_MAX);
  if (lease !== 0 && lease < LOCK_LEASE_MS_MIN) throw new MangroveError('E_BAD_ARGUMENT', `lockLeaseMs must be 0 (no lease) or ${LOCK_LEASE_MS_MIN} to ${LOCK_LEASE_MS_MAX}, not ${lease}`);
  return lease;
}

export class MangroveClient {
  private readonly recoveryWaitMs: number;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly lockLeaseMs: number;
  private readonly counts: ClientStats = { recoveryRetries: 0, recoveryGiveUps: 0, recoveryPauseMsMax: 0, lockLeasesLost: 0 };
  /** Pages this client holds a leased lock on: while there are any, it renews its lease. */
  private readonly leased = new Set<bigint>();
  private renewTimer: unknown = undefined;
  /** Wakes each call waiting between two tries (one per call: bounded by the calls the program has made). */
  private readonly waiting = new Set<() => void>();
  private closed = false;
  /** The file system (M18-M22) through this client's node: `client.fs.open(…)`, `client.fs.readdir(…)`. */
  readonly fs: FsClient = new FsClient((op) => this.fsCall(op));

  /** Use `connect()`; this is for other links (specs pass a stand-in, a clock and a random source). */
  constructor(
    private readonly link: PageLink,
    opts: ClientOptions = {},
  ) {
    checkKeys(opts, ['recoveryWaitMs', 'lockLeaseMs', 'clock', 'random'], 'client options');
    this.recoveryWaitMs = checkRecoveryWaitMs(opts.recoveryWaitMs);
    this.lockLeaseMs = checkLockLeaseMs(opts.lockLeaseMs);
    const { clock = processClock, random = Math.random } = opts;
    if (typeof clock !== 'object' || clock === null || !(['now', 'setTimeout', 'clearTimeout'] as const).every((f) => typeof clock[f] === 'function')) {
      throw new MangroveError('E_BAD_ARGUMENT', `clock must have now, setTimeout and clearTimeout (bus/clock.ts), not ${describe(clock)}`);
    }
    if (typeof random !== 'function') throw new MangroveError('E_BAD_ARGUMENT', `random must be a function giving a float in [0, 1), not ${describe(random)}`);
    this.clock = clock;
    this.random = random;
  }

  /** What this client has counted so far (a copy): how often and how long rebuilds held its calls up. */
  stats(): ClientStats {
    return { ...this.counts };
  }

  get endpoint(): string {
    return this.link.endpoint;
  }

  get clientId(): string {
    return this.link.clientId;
  }

  /** Reserves `pages` pages of address space (no storage yet); resolves with the base address. */
  async reserve(pages: number): Promise<bigint> {
    const r = await this.call<ReserveResult>({ op: 'reserve', pages });
    return answerAddress(field(r, 'address', 'reserve'), 'reserve');
  }

  /** Gives back a reserved range (freeing whatever of it is materialized). */
  async unreserve(addr: bigint, pages: number): Promise<void> {
    await this.call({ op: 'unreserve', addr, pages });
  }

  /** Materializes reserved pages: storage on `copies` core holders, zero filled. */
  async alloc(addr: bigint, pages: number, opts: AllocOptions = {}): Promise<void> {
    const given: Partial<AllocOptions> = typeof opts === 'object' && opts !== null ? opts : {};
    await this.call({ op: 'alloc', addr, pages, copies: given.copies, volatile: given.volatile }, { given: opts, known: ['copies', 'volatile'], what: 'alloc options' });
  }

  /** Drops the pages' storage; the range stays reserved. */
  async unallocate(addr: bigint, pages: number): Promise<void> {
    await this.call({ op: 'unallocate', addr, pages });
  }

  /** Drops the pages' storage and their reservation. */
  async dealloc(addr: bigint, pages: number): Promise<void> {
    await this.call({ op: 'dealloc', addr, pages });
  }

  /** `pages` pages (1 to 256) from `addr`: pages × 4096 bytes. */
  read(addr: bigint, pages = 1): Promise<Uint8Array> {
    return this.readVersions(addr, pages).then((r) => r.data);
  }

  /** Like read, with each page's version. */
  readVersions(addr: bigint, pages = 1): Promise<{ data: Uint8Array; versions: number[] }> {
    // The hot calls skip the schema walk when their arguments plainly pass (checks.ts `hotOp`).
    const hot = hotOp('read', addr, pages);
    const answer = hot ? this.result<ReadResult>(hot) : this.call<ReadResult>({ op: 'read', addr, pages });
    return answer.then((r) => {
      const data = field(r, 'data', 'read');
      if (!(data instanceof Uint8Array) || data.byteLength !== pages * PAGE_BYTES) {
        throw badAnswer('read', `${pages * PAGE_BYTES} bytes of data`, data);
      }
      return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), versions: versionsOf(r, pages, 'read') };
    });
  }

  /** Writes whole pages (1 to 256 of them) from `addr`; resolves with each page's new version. */
  async write(addr: bigint, data: Uint8Array): Promise<number[]> {
    const hot = hotOp('write', addr, data);
    if (!hot) {
      // Data that is no whole pages is named before the address, as this call always has.
      checkField('write', 'data', data);
    }
    const answer = await (hot ? this.result<WriteResult>(hot) : this.call<WriteResult>({ op: 'write', addr, data }));
    return versionsOf(answer, data.byteLength / PAGE_BYTES, 'write');
  }

  /**
   * Takes a page lock, exclusive unless asked otherwise; E_LOCKED while
   * another client holds a conflicting one, or, with `{ wait: true }`, waits
   * its turn (first come, first served) for up to half the node's access
   * timeout, then E_TIMEOUT. A lock held by a client whose node fails or
   * restarts is released when the cluster rebuilds (M14), and a waiting
   * locker gets it; so is one of a client the node has not heard from for
   * lockLeaseMs (it went away; while it holds locks, it renews its lease).
   */
  async lock(addr: bigint, mode: LockMode = 'exclusive', opts: { wait?: boolean } = {}): Promise<void> {
    checkKeys(opts, ['wait'], 'lock options');
    if (opts.wait !== undefined && typeof opts.wait !== 'boolean') throw new MangroveError('E_BAD_ARGUMENT', `wait must be true or false, not ${describe(opts.wait)}`);
    const leaseMs = this.lockLeaseMs === 0 ? undefined : this.lockLeaseMs;
    await this.call(opts.wait ? { op: 'lock', addr, mode, wait: true, leaseMs } : { op: 'lock', addr, mode, leaseMs });
    if (leaseMs === undefined) return;
    this.leased.add(pageBase(addr));
    this.renewing();
  }

  async unlock(addr: bigint): Promise<void> {
    await this.call({ op: 'unlock', addr });
    this.leased.delete(pageBase(addr));
  }

  /** Makes the newest copy of each page durable on every core holder (M11). */
  async flush(addr: bigint, pages = 1): Promise<FlushResult> {
    return this.call<FlushResult>({ op: 'flush', addr, pages });
  }

  /** Brings the pages to the node this client talks to, for reading or writing (M7); resolves with their versions. */
  async access(addr: bigint, pages = 1, mode: 'read' | 'write' = 'read'): Promise<number[]> {
    const r = await this.call<{ versions: unknown }>({ op: 'access', addr, pages, mode });
    if (!Array.isArray(r.versions) || r.versions.length !== pages || !r.versions.every((v) => isIntIn(v, 0, Number.MAX_SAFE_INTEGER))) throw badAnswer('access', `${pages} versions`, r.versions);
    return r.versions as number[];
  }

  /** Says the pages are no longer needed here (M7): read-only copies go, clean owned ones page out; resolves with how many left RAM. */
  async unreference(addr: bigint, pages = 1): Promise<number> {
    const r = await this.call<{ dropped: unknown }>({ op: 'unreference', addr, pages });
    if (!isIntIn(r.dropped, 0, pages)) throw badAnswer('unreference', `a count of 0 to ${pages} pages`, r.dropped);
    return r.dropped as number;
  }

  /** Where the page is and who holds it: home, owner, readers, core holders, version, lock. */
  async stat(addr: bigint): Promise<PageStat> {
    return this.call<PageStat>({ op: 'stat', addr });
  }

  /** RAM and disk of the node, and of the cluster when the node knows it. */
  async space(): Promise<SpaceReport> {
    return this.call<SpaceReport>({ op: 'space' });
  }

  async getAttrs(addr: bigint): Promise<PageAttrs> {
    return this.call<PageAttrs>({ op: 'get_attrs', addr });
  }

  /** Changes the file-system attribute and/or whether the page stays cached in RAM; resolves with all attributes. */
  async setAttrs(addr: bigint, set: AttrChanges): Promise<PageAttrs> {
    // The address is named first when it is wrong too, as every other call does.
    pageBase(addr);
    if (typeof set !== 'object' || set === null) throw new MangroveError('E_BAD_ARGUMENT', `setAttrs takes {fs?, cacheInRam?}, not ${describe(set)}`);
    checkKeys(set, ['fs', 'cacheInRam'], 'setAttrs');
    if (set.fs === undefined && set.cacheInRam === undefined) {
      throw new MangroveError('E_BAD_ARGUMENT', 'setAttrs has nothing to set: give fs, cacheInRam or both (getAttrs reads them)');
    }
    return this.call<PageAttrs>({ op: 'set_attrs', addr, fs: set.fs, cacheInRam: set.cacheInRam });
  }

  /** The address of the file system's super root (M18). */
  async superRoot(): Promise<bigint> {
    const r = await this.call<{ address: string }>({ op: 'super_root' });
    return answerAddress(field(r, 'address', 'super_root'), 'super_root');
  }

  async setSuperRoot(addr: bigint): Promise<void> {
    await this.call({ op: 'set_super_root', addr });
  }

  /**
   * One page of arena `arena`'s directory (the GDD, M8), as the arena's home
   * has it: the root without `page`; an inner page names its children, a
   * leaf its reservations. For browsing: it changes nothing.
   */
  async directoryPage(arena: number, page?: bigint): Promise<DirectoryPageView> {
    return this.call<DirectoryPageView>({ op: 'dir_page', arena, ...(page === undefined ? {} : { page: addressKey(pageBase(page)) }) });
  }

  /**
   * Begins a transaction in the node's transaction log (M7); resolves with its
   * id, unique on that node forever. Its records stay in the node's RAM until
   * txnCommit: a restart of the node forgets an open transaction.
   */
  async txnBegin(): Promise<number> {
    const r = await this.call<{ txn: unknown }>({ op: 'txn_begin' });
    const txn = field(r, 'txn', 'txn_begin');
    if (!isIntIn(txn, 1, Number.MAX_SAFE_INTEGER)) throw badAnswer('txn_begin', 'a transaction id', txn);
    return txn;
  }

  /** Adds `record` (0 to 4096 bytes) to open transaction `txn`; resolves with its place in it, from 1. Nothing is durable before txnCommit. */
  async txnLog(txn: number, record: Uint8Array): Promise<number> {
    const r = await this.call<{ seq: unknown }>({ op: 'txn_log', txn, record });
    const seq = field(r, 'seq', 'txn_log');
    if (!isIntIn(seq, 1, Number.MAX_SAFE_INTEGER)) throw badAnswer('txn_log', 'a record number from 1', seq);
    return seq;
  }

  /** Makes every record of open transaction `txn` durable in one commit; when it resolves they survive a crash of the node. */
  async txnCommit(txn: number): Promise<TxnOutcome> {
    return this.txnOutcome('txn_commit', txn, 'committed');
  }

  /** Discards open transaction `txn` and its records. */
  async txnAbort(txn: number): Promise<TxnOutcome> {
    return this.txnOutcome('txn_abort', txn, 'aborted');
  }

  /** Says committed transaction `txn` is applied: the node deletes its records. */
  async txnEnd(txn: number): Promise<TxnOutcome> {
    return this.txnOutcome('txn_end', txn, 'ended');
  }

  /**
   * The records of committed transactions not yet ended, in (txn, seq) order:
   * transaction `txn`'s alone, or, without it, all of them (what to replay
   * after a crash).
   */
  async txnRead(txn?: number): Promise<TxnRecord[]> {
    const r = await this.call<{ records: unknown; more?: unknown; txns?: unknown }>({ op: 'txn_read', txn });
    const got = txnRecords(field(r, 'records', 'txn_read'), txn);
    if (txn !== undefined || r.more !== true) return got;
    // The whole log did not fit one reply: the rest, transaction by transaction.
    if (!Array.isArray(r.txns) || !r.txns.every((x) => isIntIn(x, 1, Number.MAX_SAFE_INTEGER))) throw badAnswer('txn_read', 'the committed transactions named', r.txns);
    const have = new Set(got.map((x) => x.txn));
    for (const other of r.txns as number[]) if (!have.has(other)) got.push(...(await this.txnRead(other)));
    return got;
  }

  /** The cluster as the node sees it (what `mangrove status` shows). */
  async status(): Promise<NodeStatus> {
    const reply = await this.link.request('client.status', {});
    return (reply as { result: NodeStatus }).result;
  }

  /** Closes the link; calls still waiting, for an answer or out a rebuild, reject with E_CLOSED. */
  async close(): Promise<void> {
    this.closed = true;
    this.fs.stop();
    this.clock.clearTimeout(this.renewTimer);
    for (const wake of [...this.waiting]) wake();
    await this.link.close();
  }

  private async txnOutcome(op: 'txn_commit' | 'txn_abort' | 'txn_end', txn: number, state: TxnState): Promise<TxnOutcome> {
    const r = await this.call<Partial<TxnOutcome>>({ op, txn });
    if (field(r, 'txn', op) !== txn || field(r, 'state', op) !== state || !isIntIn(field(r, 'records', op), 0, Number.MAX_SAFE_INTEGER)) {
      throw badAnswer(op, `{txn: ${txn}, state: '${state}', records}`, r);
    }
    return { txn, state, records: r.records as number };
  }

  /** Sends `op` once it passes the wire's schema (runtime/client/checks.ts); a refusal rejects before anything goes out. */
  private async call<T = unknown>(op: ApiOp, options?: ApiOptions): Promise<T> {
    return this.result<T>(wireOp(op, options));
  }

  /** Sends a checked op; resolves with the answer's result. */
  private result<T>(body: ClientPageOp): Promise<T> {
    return this.send(body).then((reply) => {
      if (typeof reply !== 'object' || reply === null || !('result' in reply)) throw badAnswer(body.op, 'a result', reply);
      return (reply as { result: T }).result;
    });
  }

  /**
   * Sends `body` until the node answers it with anything but E_RECOVERING,
   * or recoveryWaitMs have passed since its first E_RECOVERING.
   *
   * Sending the same request again is safe. The node raises E_RECOVERING
   * before it dispatches a call (it serves none while a failure is noticed
   * or the cluster quiesces, M6/M14), or where a running call meets the
   * rebuild (a page request the quiesce fails, a copy whose home is not
   * rebuilt yet), and the engine retries none of it itself. So the refused
   * call did nothing, or part of what it asked (some of a write's or a
   * flush's pages), and doing all of it again with the same arguments ends
   * where one whole call would have.
   */
  private send(body: ClientPageOp): Promise<unknown> {
    // The first try costs one promise; only a refusal starts the loop.
    return this.link.request('client.page', body).catch((err: unknown) => this.waitOut('client.page', body, err));
  }

  /**
   * A file-system call (M18-M22), waited out through a rebuild as engine
   * calls are. A refused call's update is left with its transaction mark
   * (M22), which the next try's node settles first, so trying again is safe;
   * a create tried again after one that did land answers E_EXISTS, as NFS
   * does without a reply cache.
   */
  /** One raw file-system call (bus/messages/fs.ts), checked first and sent again through a rebuild: what `fs` and the mount (runtime/mount/) send. */
  fsCall(op: ClientFsOp): Promise<unknown> {
    // Updates of names get their id here, once: the tries below send the same one.
    const checked = clientFsOp.safeParse(withTxn(op));
    if (!checked.success) {
      const issue = checked.error.issues[0];
      return Promise.reject(new MangroveError('E_BAD_ARGUMENT', `fs ${op?.op ?? 'call'}: ${issue?.path.join('.') || 'argument'} ${issue?.message ?? 'is not valid'}`));
    }
    return this.link
      .request('client.fs', checked.data)
      .catch((err: unknown) => this.waitOut('client.fs', checked.data, err))
      .then((reply) => {
        if (typeof reply !== 'object' || reply === null || !('result' in reply)) throw badAnswer(`fs ${op.op}`, 'a result', reply);
        return (reply as { result: unknown }).result;
      });
  }

  /** The tries after the first one's refusal `first` (E_RECOVERING; anything else rejects as it is). */
  private async waitOut<K extends 'client.page' | 'client.fs'>(kind: K, body: Body<K>, first: unknown): Promise<unknown> {
    if (!isRecovering(first)) throw first;
    let refusal: MangroveError = first;
    const refusedAt = this.clock.now();
    try {
      for (let retries = 0; ; retries++) {
        const now = this.clock.now();
        const leftMs = refusedAt + this.recoveryWaitMs - now;
        if (leftMs <= 0) throw this.givenUp(refusal, now - refusedAt, retries);
        await this.pause(Math.min(leftMs, recoveryBackoffMs(retries, this.random)));
        if (this.closed) throw new MangroveError('E_CLOSED', `the client was closed while ${body.op} waited out a rebuild of the cluster`);
        this.counts.recoveryRetries++;
        try {
          return await this.link.request(kind, body);
        } catch (err) {
          if (!isRecovering(err)) throw err;
          refusal = err;
        }
      }
    } finally {
      this.counts.recoveryPauseMsMax = Math.max(this.counts.recoveryPauseMsMax, this.clock.now() - refusedAt);
    }
  }

  /**
   * Renews the lock lease a third of it apart while this client holds leased
   * locks. A renewal that fails is tried at the next tick (a lease does not
   * run out while the node rebuilds); one the node answers `held: false`
   * means the locks are gone. The timer does not keep the process alive.
   */
  private renewing(): void {
    if (this.renewTimer !== undefined || this.closed) return;
    const tick = (): void => {
      this.renewTimer = undefined;
      if (this.closed || this.leased.size === 0) return;
      this.renewTimer = this.clock.setTimeout(tick, this.lockLeaseMs / 3);
      (this.renewTimer as { unref?: () => void } | undefined)?.unref?.();
      this.link.request('client.page', { op: 'renew' }).then(
        (reply) => {
          if ((reply as { result?: { held?: unknown } }).result?.held !== false || this.leased.size === 0) return;
          this.counts.lockLeasesLost++;
          this.leased.clear();
        },
        () => undefined,
      );
    };
    this.renewTimer = this.clock.setTimeout(tick, this.lockLeaseMs / 3);
    (this.renewTimer as { unref?: () => void } | undefined)?.unref?.();
  }

  /** The last refusal, saying how long the call waited; with recoveryWaitMs 0, the node's own. */
  private givenUp(err: MangroveError, waitedMs: number, retries: number): MangroveError {
    this.counts.recoveryGiveUps++;
    if (this.recoveryWaitMs === 0) return err;
    return new MangroveError('E_RECOVERING', `${err.message} (still refused after waiting ${Math.round(waitedMs)} ms over ${retries + 1} tries; connect's recoveryWaitMs is ${this.recoveryWaitMs})`);
  }

  /** Resolves after `ms`, or at once when the client closes. */
  private pause(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      let handle: unknown;
      const wake = (): void => {
        this.clock.clearTimeout(handle);
        this.waiting.delete(wake);
        resolve();
      };
      this.waiting.add(wake);
      handle = this.clock.setTimeout(wake, ms);
    });
  }
}

/** The records txn_read answered, checked: of transaction `txn` when one was asked for. */
function txnRecords(records: unknown, txn: number | undefined): TxnRecord[] {
  if (!Array.isArray(records)) throw badAnswer('txn_read', 'an array of records', records);
  return records.map((rec: unknown) => {
    const { txn: rt, seq, data } = (typeof rec === 'object' && rec !== null ? rec : {}) as Partial<TxnRecord>;
    if (!isIntIn(rt, 1, Number.MAX_SAFE_INTEGER) || (txn !== undefined && rt !== txn) || !isIntIn(seq, 1, Number.MAX_SAFE_INTEGER)) {
      throw badAnswer('txn_read', txn === undefined ? 'records with a txn and a seq' : `records of transaction ${txn} with a seq`, rec);
    }
    if (!(data instanceof Uint8Array) || data.byteLength > TXN_RECORD_BYTES_MAX) throw badAnswer('txn_read', `records of at most ${TXN_RECORD_BYTES_MAX} bytes`, data);
    return { txn: rt, seq, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  });
}

function isRecovering(err: unknown): err is MangroveError {
  return isMangroveError(err) && err.code === 'E_RECOVERING';
}

function isIntIn(n: unknown, min: number, max: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
}

function field<T, K extends keyof T>(answer: T, key: K, op: string): T[K] {
  if (typeof answer !== 'object' || answer === null || !(key in answer)) throw badAnswer(op, `a field ${String(key)}`, answer);
  return answer[key];
}

function answerAddress(text: unknown, op: string): bigint {
  try {
    return parseAddress(text as string);
  } catch {
    throw badAnswer(op, 'an address in 0x hex', text);
  }
}

function versionsOf(answer: unknown, pages: number, op: string): number[] {
  const versions = field(answer as { versions: unknown }, 'versions', op);
  if (!Array.isArray(versions) || versions.length !== pages || !versions.every((v) => Number.isSafeInteger(v))) {
    throw badAnswer(op, `${pages} page versions`, versions);
  }
  return versions as number[];
}

/** An answer that does not follow the protocol: a node of another version, or a bug. */
function badAnswer(op: string, expected: string, got: unknown): MangroveError {
  return new MangroveError('E_BAD_MESSAGE', `the node's answer to ${op} should hold ${expected}, but has ${describe(got)}`);
}

