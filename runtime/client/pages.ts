/**
 * The typed client of the memory engine (SPEC.md M24): a program's pages
 * through one node, as `import { connect } from 'mangrove'`. One method per
 * engine call (M7); each sends one `client.page` request (bus/messages/index/page.ts)
 * and resolves with its answer, addresses as bigint.
 *
 * Every argument is checked here before anything is sent, because the node's
 * codec drops a malformed request without a word and the caller would only
 * see a timeout: a refused call rejects at once with E_BAD_ADDRESS (an address
 * outside the 128-bit space or not the start of a page) or E_BAD_ARGUMENT
 * (anything else), naming what was given, and sends nothing.
 */
import type { NodeStatus } from '../../actors/status.js';
import type { TxnOutcome, TxnState } from '../../actors/storage/txn-log-store.js';
import { limits } from '../../bus/envelope.js';
import { MangroveError } from '../../bus/errors.js';
import type { Body } from '../../bus/messages/index.js';
import {
  COPIES_MAX,
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
import { addressKey, checkPageAddress, PAGE_BYTES, pageRange, parseAddress } from '../../machines/memory/address.js';
import { isTcpEndpoint } from '../../bus/transport/endpoint.js';

export { COPIES_MAX, PAGES_PER_RANGE_MAX, PAGES_PER_REQUEST_MAX, TXN_RECORD_BYTES_MAX };
export type { FlushResult, PageAttrs, PageStat, SpaceReport, TxnOutcome, TxnRecord, TxnState };

export const clientDefaults = {
  timeoutMs: 10_000,
} as const;

export const clientLimits = {
  /** setTimeout fires at once for longer delays. */
  timeoutMsMax: 2 ** 31 - 1,
  /** A file-system attribute (M22): 16 bytes. */
  fsBytes: 16,
} as const;

export interface ConnectOptions {
  /** How long each call waits for its answer; default 10000. */
  timeoutMs?: number;
  /** Who the node thinks is asking: locks belong to it. Default: 'client-' and 12 random hex digits. */
  clientId?: string;
}

export type LockMode = 'shared' | 'exclusive';
const LOCK_MODES: readonly LockMode[] = ['shared', 'exclusive'];

export interface AllocOptions {
  /** Core copies on distinct nodes (M11), 1 to COPIES_MAX; the node's default when absent. */
  copies?: number;
  /** Volatile pages are never written to disk (M11). */
  volatile?: boolean;
}

export interface AttrChanges {
  /** The 16-byte file-system attribute. */
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
  if (clientId !== undefined && (typeof clientId !== 'string' || clientId.length === 0 || clientId.length > limits.idCharsMax)) {
    throw new MangroveError('E_BAD_ARGUMENT', `clientId must be a string of 1 to ${limits.idCharsMax} characters, not ${describe(clientId)}`);
  }
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
    const n = rangePages(pages);
    const r = await this.call<ReserveResult>('reserve', { op: 'reserve', pages: n });
    return answerAddress(field(r, 'address', 'reserve'), 'reserve');
  }

  /** Gives back a reserved range (freeing whatever of it is materialized). */
  async unreserve(addr: bigint, pages: number): Promise<void> {
    await this.call('unreserve', { op: 'unreserve', ...range(addr, pages) });
  }

  /** Materializes reserved pages: storage on `copies` core holders, zero filled. */
  async alloc(addr: bigint, pages: number, opts: AllocOptions = {}): Promise<void> {
    const r = range(addr, pages);
    checkKeys(opts, ['copies', 'volatile'], 'alloc options');
    const { copies, volatile } = opts;
    if (copies !== undefined && !isIntIn(copies, 1, COPIES_MAX)) {
      throw new MangroveError('E_BAD_ARGUMENT', `copies must be an integer from 1 to ${COPIES_MAX}, not ${describe(copies)}`);
    }
    if (volatile !== undefined && typeof volatile !== 'boolean') {
      throw new MangroveError('E_BAD_ARGUMENT', `volatile must be true or false, not ${describe(volatile)}`);
    }
    await this.call('alloc', { op: 'alloc', ...r, ...(copies !== undefined ? { copies } : {}), ...(volatile !== undefined ? { volatile } : {}) });
  }

  /** Drops the pages' storage; the range stays reserved. */
  async unallocate(addr: bigint, pages: number): Promise<void> {
    await this.call('unallocate', { op: 'unallocate', ...range(addr, pages) });
  }

  /** Drops the pages' storage and their reservation. */
  async dealloc(addr: bigint, pages: number): Promise<void> {
    await this.call('dealloc', { op: 'dealloc', ...range(addr, pages) });
  }

  /** `pages` pages (1 to 256) from `addr`: pages × 4096 bytes. */
  async read(addr: bigint, pages = 1): Promise<Uint8Array> {
    return (await this.readVersions(addr, pages)).data;
  }

  /** Like read, with each page's version. */
  async readVersions(addr: bigint, pages = 1): Promise<{ data: Uint8Array; versions: number[] }> {
    const r = ioRange(addr, pages);
    const answer = await this.call<ReadResult>('read', { op: 'read', ...r });
    const data = field(answer, 'data', 'read');
    if (!(data instanceof Uint8Array) || data.byteLength !== r.pages * PAGE_BYTES) {
      throw badAnswer('read', `${r.pages * PAGE_BYTES} bytes of data`, data);
    }
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), versions: versionsOf(answer, r.pages, 'read') };
  }

  /** Writes whole pages (1 to 256 of them) from `addr`; resolves with each page's new version. */
  async write(addr: bigint, data: Uint8Array): Promise<number[]> {
    const pages = dataPages(data);
    const r = range(addr, pages);
    const answer = await this.call<WriteResult>('write', { op: 'write', addr: r.addr, data });
    return versionsOf(answer, pages, 'write');
  }

  /** Takes a page lock, exclusive unless asked otherwise; E_LOCKED while another client holds a conflicting one. */
  async lock(addr: bigint, mode: LockMode = 'exclusive'): Promise<void> {
    const a = pageAddress(addr);
    if (!LOCK_MODES.includes(mode)) {
      throw new MangroveError('E_BAD_ARGUMENT', `a lock is 'shared' or 'exclusive', not ${describe(mode)}`);
    }
    await this.call('lock', { op: 'lock', addr: a, mode });
  }

  async unlock(addr: bigint): Promise<void> {
    await this.call('unlock', { op: 'unlock', addr: pageAddress(addr) });
  }

  /** Makes the newest copy of each page durable on every core holder (M11). */
  async flush(addr: bigint, pages = 1): Promise<FlushResult> {
    return this.call<FlushResult>('flush', { op: 'flush', ...ioRange(addr, pages) });
  }

  /** Brings the pages to the node this client talks to, for reading or writing (M7); resolves with their versions. */
  async access(addr: bigint, pages = 1, mode: 'read' | 'write' = 'read'): Promise<number[]> {
    const range = ioRange(addr, pages);
    if (mode !== 'read' && mode !== 'write') throw new MangroveError('E_BAD_ARGUMENT', `access is for 'read' or 'write', not ${describe(mode)}`);
    const r = await this.call<{ versions: unknown }>('access', { op: 'access', ...range, mode });
    if (!Array.isArray(r.versions) || r.versions.length !== pages || !r.versions.every((v) => isIntIn(v, 0, Number.MAX_SAFE_INTEGER))) throw badAnswer('access', `${pages} versions`, r.versions);
    return r.versions as number[];
  }

  /** Says the pages are no longer needed here (M7): read-only copies go, clean owned ones page out; resolves with how many left RAM. */
  async unreference(addr: bigint, pages = 1): Promise<number> {
    const r = await this.call<{ dropped: unknown }>('unreference', { op: 'unreference', ...ioRange(addr, pages) });
    if (!isIntIn(r.dropped, 0, pages)) throw badAnswer('unreference', `a count of 0 to ${pages} pages`, r.dropped);
    return r.dropped as number;
  }

  /** Where the page is and who holds it: home, owner, readers, core holders, version, lock. */
  async stat(addr: bigint): Promise<PageStat> {
    return this.call<PageStat>('stat', { op: 'stat', addr: pageAddress(addr) });
  }

  /** RAM and disk of the node, and of the cluster when the node knows it. */
  async space(): Promise<SpaceReport> {
    return this.call<SpaceReport>('space', { op: 'space' });
  }

  async getAttrs(addr: bigint): Promise<PageAttrs> {
    return this.call<PageAttrs>('get_attrs', { op: 'get_attrs', addr: pageAddress(addr) });
  }

  /** Changes the file-system attribute and/or whether the page stays cached in RAM; resolves with all attributes. */
  async setAttrs(addr: bigint, set: AttrChanges): Promise<PageAttrs> {
    const a = pageAddress(addr);
    if (typeof set !== 'object' || set === null) throw new MangroveError('E_BAD_ARGUMENT', `setAttrs takes {fs?, cacheInRam?}, not ${describe(set)}`);
    checkKeys(set, ['fs', 'cacheInRam'], 'setAttrs');
    const { fs, cacheInRam } = set;
    if (fs === undefined && cacheInRam === undefined) {
      throw new MangroveError('E_BAD_ARGUMENT', 'setAttrs has nothing to set: give fs, cacheInRam or both (getAttrs reads them)');
    }
    if (fs !== undefined && !(fs instanceof Uint8Array && fs.byteLength === clientLimits.fsBytes)) {
      throw new MangroveError('E_BAD_ARGUMENT', `fs must be a Uint8Array of ${clientLimits.fsBytes} bytes, not ${describe(fs)}`);
    }
    if (cacheInRam !== undefined && typeof cacheInRam !== 'boolean') {
      throw new MangroveError('E_BAD_ARGUMENT', `cacheInRam must be true or false, not ${describe(cacheInRam)}`);
    }
    return this.call<PageAttrs>('set_attrs', {
      op: 'set_attrs',
      addr: a,
      ...(fs !== undefined ? { fs } : {}),
      ...(cacheInRam !== undefined ? { cacheInRam } : {}),
    });
  }

  /** The address of the file system's super root (M18). */
  async superRoot(): Promise<bigint> {
    const r = await this.call<{ address: string }>('super_root', { op: 'super_root' });
    return answerAddress(field(r, 'address', 'super_root'), 'super_root');
  }

  async setSuperRoot(addr: bigint): Promise<void> {
    await this.call('set_super_root', { op: 'set_super_root', addr: pageAddress(addr) });
  }

  /**
   * Begins a transaction in the node's transaction log (M7); resolves with its
   * id, unique on that node forever. Its records stay in the node's RAM until
   * txnCommit: a restart of the node forgets an open transaction.
   */
  async txnBegin(): Promise<number> {
    const r = await this.call<{ txn: unknown }>('txn_begin', { op: 'txn_begin' });
    const txn = field(r, 'txn', 'txn_begin');
    if (!isIntIn(txn, 1, Number.MAX_SAFE_INTEGER)) throw badAnswer('txn_begin', 'a transaction id', txn);
    return txn;
  }

  /** Adds `record` (0 to 4096 bytes) to open transaction `txn`; resolves with its place in it, from 1. Nothing is durable before txnCommit. */
  async txnLog(txn: number, record: Uint8Array): Promise<number> {
    const t = txnId(txn);
    if (!(record instanceof Uint8Array)) throw new MangroveError('E_BAD_ARGUMENT', `a log record must be a Uint8Array, not ${describe(record)}`);
    if (record.byteLength > TXN_RECORD_BYTES_MAX) {
      throw new MangroveError(
        'E_BAD_ARGUMENT',
        `a log record holds at most ${TXN_RECORD_BYTES_MAX} bytes; ${record.byteLength} were given: split it into several records`,
      );
    }
    const r = await this.call<{ seq: unknown }>('txn_log', { op: 'txn_log', txn: t, record });
    const seq = field(r, 'seq', 'txn_log');
    if (!isIntIn(seq, 1, Number.MAX_SAFE_INTEGER)) throw badAnswer('txn_log', 'a record number from 1', seq);
    return seq;
  }

  /** Makes every record of open transaction `txn` durable in one commit; when it resolves they survive a crash of the node. */
  async txnCommit(txn: number): Promise<TxnOutcome> {
    return this.txnOutcome('txn_commit', txnId(txn), 'committed');
  }

  /** Discards open transaction `txn` and its records. */
  async txnAbort(txn: number): Promise<TxnOutcome> {
    return this.txnOutcome('txn_abort', txnId(txn), 'aborted');
  }

  /** Says committed transaction `txn` is applied: the node deletes its records. */
  async txnEnd(txn: number): Promise<TxnOutcome> {
    return this.txnOutcome('txn_end', txnId(txn), 'ended');
  }

  /**
   * The records of committed transactions not yet ended, in (txn, seq) order:
   * transaction `txn`'s alone, or, without it, all of them (what to replay
   * after a crash).
   */
  async txnRead(txn?: number): Promise<TxnRecord[]> {
    const t = txn === undefined ? undefined : txnId(txn);
    const r = await this.call<{ records: unknown; more?: unknown; txns?: unknown }>('txn_read', t === undefined ? { op: 'txn_read' } : { op: 'txn_read', txn: t });
    const records = field(r, 'records', 'txn_read');
    if (!Array.isArray(records)) throw badAnswer('txn_read', 'an array of records', records);
    const got = records.map((rec: unknown) => {
      const { txn: rt, seq, data } = (typeof rec === 'object' && rec !== null ? rec : {}) as Partial<TxnRecord>;
      if (!isIntIn(rt, 1, Number.MAX_SAFE_INTEGER) || (t !== undefined && rt !== t) || !isIntIn(seq, 1, Number.MAX_SAFE_INTEGER)) {
        throw badAnswer('txn_read', t === undefined ? 'records with a txn and a seq' : `records of transaction ${t} with a seq`, rec);
      }
      if (!(data instanceof Uint8Array) || data.byteLength > TXN_RECORD_BYTES_MAX) throw badAnswer('txn_read', `records of at most ${TXN_RECORD_BYTES_MAX} bytes`, data);
      return { txn: rt, seq, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    });
    if (t !== undefined || r.more !== true) return got;
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
    const r = await this.call<Partial<TxnOutcome>>(op, { op, txn });
    if (field(r, 'txn', op) !== txn || field(r, 'state', op) !== state || !isIntIn(field(r, 'records', op), 0, Number.MAX_SAFE_INTEGER)) {
      throw badAnswer(op, `{txn: ${txn}, state: '${state}', records}`, r);
    }
    return { txn, state, records: r.records as number };
  }

  private async call<T = unknown>(op: string, body: ClientPageOp): Promise<T> {
    const reply = await this.link.request('client.page', body);
    if (typeof reply !== 'object' || reply === null || !('result' in reply)) throw badAnswer(op, 'a result', reply);
    return (reply as { result: T }).result;
  }
}

/** `addr` as the wire carries it, after checking it is a page base. */
function pageAddress(addr: unknown): Uint8Array {
  return addressKey(checkPage(addr));
}

function checkPage(addr: unknown): bigint {
  if (typeof addr !== 'bigint') {
    throw new MangroveError('E_BAD_ARGUMENT', `an address is a bigint such as 0x1000n, not ${describe(addr)}`);
  }
  return checkPageAddress(addr);
}

/** A range for reserve-like calls: 1 to 2^32 pages, all inside the space. */
function range(addr: unknown, pages: unknown): { addr: Uint8Array; pages: number } {
  const a = checkPage(addr);
  const n = rangePages(pages);
  pageRange(a, n);
  return { addr: addressKey(a), pages: n };
}

/** A range one read or flush carries: 1 to 256 pages. */
function ioRange(addr: unknown, pages: unknown): { addr: Uint8Array; pages: number } {
  const a = checkPage(addr);
  if (!isIntIn(pages, 1, PAGES_PER_REQUEST_MAX)) {
    throw new MangroveError(
      'E_BAD_ARGUMENT',
      `pages must be an integer from 1 to ${PAGES_PER_REQUEST_MAX} (one request carries at most ${PAGES_PER_REQUEST_MAX} pages), not ${describe(pages)}`,
    );
  }
  pageRange(a, pages);
  return { addr: addressKey(a), pages };
}

/** A transaction id as txnBegin gave it: a whole number, 1 or more. */
function txnId(txn: unknown): number {
  if (!isIntIn(txn, 1, Number.MAX_SAFE_INTEGER)) {
    throw new MangroveError('E_BAD_ARGUMENT', `a transaction id is a whole number from txnBegin (1 or more), not ${describe(txn)}`);
  }
  return txn;
}

function rangePages(pages: unknown): number {
  if (!isIntIn(pages, 1, PAGES_PER_RANGE_MAX)) {
    throw new MangroveError('E_BAD_ARGUMENT', `pages must be an integer from 1 to ${PAGES_PER_RANGE_MAX} (2^32), not ${describe(pages)}`);
  }
  return pages;
}

/** How many pages `data` is: whole 4096-byte pages, 1 to 256 of them. */
function dataPages(data: unknown): number {
  if (!(data instanceof Uint8Array)) throw new MangroveError('E_BAD_ARGUMENT', `data must be a Uint8Array, not ${describe(data)}`);
  const n = data.byteLength;
  if (n === 0 || n % PAGE_BYTES !== 0) {
    const whole = Math.floor(n / PAGE_BYTES);
    throw new MangroveError(
      'E_BAD_ARGUMENT',
      `data must be whole ${PAGE_BYTES}-byte pages; ${n} bytes were given (${whole} ${whole === 1 ? 'page' : 'pages'} and ${n % PAGE_BYTES} bytes): pad the last page`,
    );
  }
  if (n > PAGES_PER_REQUEST_MAX * PAGE_BYTES) {
    throw new MangroveError(
      'E_BAD_ARGUMENT',
      `one write carries at most ${PAGES_PER_REQUEST_MAX} pages (${PAGES_PER_REQUEST_MAX * PAGE_BYTES} bytes); ${n} bytes (${n / PAGE_BYTES} pages) were given: write them in parts`,
    );
  }
  return n / PAGE_BYTES;
}

function isIntIn(n: unknown, min: number, max: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
}

/** Refuses keys a call does not know: a typo (`{copis: 2}`) must not pass as the default. */
function checkKeys(obj: unknown, known: readonly string[], what: string): void {
  if (typeof obj !== 'object' || obj === null) throw new MangroveError('E_BAD_ARGUMENT', `${what} must be an object, not ${describe(obj)}`);
  const unknown = Object.keys(obj).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw new MangroveError('E_BAD_ARGUMENT', `${what} has no ${unknown.map((k) => JSON.stringify(k)).join(', ')}; it takes ${known.join(', ')}`);
  }
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

/** What a value is, for a sentence: `a number (4096)`, `a string ("0x1000")`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  switch (typeof value) {
    case 'string':
      return `a string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
    case 'number':
      return `a number (${value})`;
    case 'bigint':
      return value >= 0n ? `0x${value.toString(16)}n` : `-0x${(-value).toString(16)}n`;
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}
