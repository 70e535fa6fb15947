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
 */
import type { NodeStatus } from '../../actors/status.js';
import type { TxnOutcome, TxnState } from '../../actors/storage/txn-log-store.js';
import { MangroveError } from '../../bus/errors.js';
import type { Body } from '../../bus/messages/index.js';
import {
  COPIES_MAX,
  FS_ATTR_BYTES,
  PAGES_PER_RANGE_MAX,
  PAGES_PER_REQUEST_MAX,
  TXN_RECORD_BYTES_MAX,
  type ClientPageOp,
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
import { PAGE_BYTES, parseAddress } from '../../machines/memory/address.js';
import { isTcpEndpoint } from '../../bus/transport/endpoint.js';
import { checkClientId, checkField, checkKeys, describe, pageBase, wireOp, type ApiOp, type ApiOptions } from './checks.js';

export { COPIES_MAX, FS_ATTR_BYTES, PAGES_PER_RANGE_MAX, PAGES_PER_REQUEST_MAX, TXN_RECORD_BYTES_MAX };
export { describe };
export type { FlushResult, PageAttrs, PageStat, SpaceReport, TxnOutcome, TxnRecord, TxnState };

export const clientDefaults = {
  timeoutMs: 10_000,
} as const;

export const clientLimits = {
  /** setTimeout fires at once for longer delays. */
  timeoutMsMax: 2 ** 31 - 1,
  /** A file-system attribute (M22): the wire's FS_ATTR_BYTES. */
  fsBytes: FS_ATTR_BYTES,
} as const;

export interface ConnectOptions {
  /** How long each call waits for its answer; default 10000. */
  timeoutMs?: number;
  /** Who the node thinks is asking: locks belong to it. Default: 'client-' and 12 random hex digits. */
  clientId?: string;
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
  request<K extends 'client.page' | 'client.status'>(kind: K, body: Body<K>): Promise<unknown>;
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
  checkKeys(opts, ['timeoutMs', 'clientId'], 'connect options');
  const timeoutMs = opts.timeoutMs ?? clientDefaults.timeoutMs;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > clientLimits.timeoutMsMax) {
    throw new MangroveError('E_BAD_ARGUMENT', `timeoutMs must be an integer from 1 to ${clientLimits.timeoutMsMax}, not ${describe(timeoutMs)}`);
  }
  const { clientId } = opts;
  checkClientId(clientId);
  return new MangroveClient(await ZmqClient.connect(endpoint, { timeoutMs, clientId }));
}

export class MangroveClient {
  /** Use `connect()`; this is for other links (specs pass a stand-in). */
  constructor(private readonly link: PageLink) {}

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
  async read(addr: bigint, pages = 1): Promise<Uint8Array> {
    return (await this.readVersions(addr, pages)).data;
  }

  /** Like read, with each page's version. */
  async readVersions(addr: bigint, pages = 1): Promise<{ data: Uint8Array; versions: number[] }> {
    const answer = await this.call<ReadResult>({ op: 'read', addr, pages });
    const data = field(answer, 'data', 'read');
    if (!(data instanceof Uint8Array) || data.byteLength !== pages * PAGE_BYTES) {
      throw badAnswer('read', `${pages * PAGE_BYTES} bytes of data`, data);
    }
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), versions: versionsOf(answer, pages, 'read') };
  }

  /** Writes whole pages (1 to 256 of them) from `addr`; resolves with each page's new version. */
  async write(addr: bigint, data: Uint8Array): Promise<number[]> {
    // Data that is no whole pages is named before the address, as this call always has.
    checkField('write', 'data', data);
    const answer = await this.call<WriteResult>({ op: 'write', addr, data });
    return versionsOf(answer, data.byteLength / PAGE_BYTES, 'write');
  }

  /** Takes a page lock, exclusive unless asked otherwise; E_LOCKED while another client holds a conflicting one. */
  async lock(addr: bigint, mode: LockMode = 'exclusive'): Promise<void> {
    await this.call({ op: 'lock', addr, mode });
  }

  async unlock(addr: bigint): Promise<void> {
    await this.call({ op: 'unlock', addr });
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

  /** Closes the link; calls still waiting reject with E_CLOSED. */
  async close(): Promise<void> {
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
    const body = wireOp(op, options);
    const reply = await this.link.request('client.page', body);
    if (typeof reply !== 'object' || reply === null || !('result' in reply)) throw badAnswer(body.op, 'a result', reply);
    return (reply as { result: T }).result;
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

