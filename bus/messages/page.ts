/**
 * The memory engine's message bodies (SPEC.md M7-M13, docs/engine.md):
 * `page.` kinds between nodes and the `client.page` request a program sends
 * its node. Addresses travel as 16 bytes big-endian, page data as byte
 * strings of whole 4096-byte pages; every size is bounded here, so a hostile
 * frame is refused by the codec before the engine sees it.
 */
import { z } from 'zod';
import { limits } from '../envelope.js';
import { COPIES_MAX, FS_ATTR_BYTES, LOCK_LEASE_MS_MAX, LOCK_LEASE_MS_MIN, PAGE_SIZE, PAGES_PER_RANGE_MAX, PAGES_PER_REQUEST_MAX, TXN_RECORD_BYTES_MAX } from './page-limits.js';
import { bytes, count, errorCode, errorMessage, id } from './schema.js';

// Defined once in page-limits.ts (no zod there, for the CLI's start-up); exported here beside the schemas they bound.
export { COPIES_MAX, FS_ATTR_BYTES, LOCK_LEASE_MS_MAX, LOCK_LEASE_MS_MIN, PAGE_SIZE, PAGES_PER_RANGE_MAX, PAGES_PER_REQUEST_MAX, TXN_RECORD_BYTES_MAX };

/** A 128-bit address, 16 bytes big-endian. */
export const wireAddress = bytes('an address', (n) => n === 16, '16 bytes');
export const pageData = bytes('page data', (n) => n === PAGE_SIZE, `${PAGE_SIZE} bytes`);
const pagesData = bytes('data', (n) => n > 0 && n % PAGE_SIZE === 0 && n <= PAGE_SIZE * PAGES_PER_REQUEST_MAX, `whole ${PAGE_SIZE}-byte pages, 1 to ${PAGES_PER_REQUEST_MAX} of them`);
export const fsAttr = bytes('a file-system attribute', (n) => n === FS_ATTR_BYTES, `${FS_ATTR_BYTES} bytes`);
const rangePages = z.number().int().min(1).max(PAGES_PER_RANGE_MAX);
const ioPages = z.number().int().min(1).max(PAGES_PER_REQUEST_MAX);
const mode = z.enum(['read', 'write']);
export const lockMode = z.enum(['shared', 'exclusive']);
const holders = z.array(id).max(COPIES_MAX);
const txnRecord = bytes('a log record', (n) => n <= TXN_RECORD_BYTES_MAX, `at most ${TXN_RECORD_BYTES_MAX} bytes`);

/** What a program asks of its node: one op-code per engine call (M7, M13). */
export const clientPageOp = z.discriminatedUnion('op', [
  z.object({ op: z.literal('reserve'), pages: rangePages }),
  z.object({ op: z.literal('unreserve'), addr: wireAddress, pages: rangePages }),
  z.object({ op: z.literal('alloc'), addr: wireAddress, pages: rangePages, copies: z.number().int().min(1).max(COPIES_MAX).optional(), volatile: z.boolean().optional() }),
  z.object({ op: z.literal('unallocate'), addr: wireAddress, pages: rangePages }),
  z.object({ op: z.literal('dealloc'), addr: wireAddress, pages: rangePages }),
  z.object({ op: z.literal('read'), addr: wireAddress, pages: ioPages }),
  z.object({ op: z.literal('write'), addr: wireAddress, data: pagesData }),
  /**
   * `wait`: a conflicting lock makes the call wait its turn (at most the
   * call's timeout) instead of failing E_LOCKED. `leaseMs`: the lock goes
   * once the node has not heard from this client for that long (it went
   * away); without it the lock stays until unlocked or the node fails.
   */
  z.object({ op: z.literal('lock'), addr: wireAddress, mode: lockMode, wait: z.boolean().optional(), leaseMs: z.number().int().min(LOCK_LEASE_MS_MIN).max(LOCK_LEASE_MS_MAX).optional() }),
  z.object({ op: z.literal('unlock'), addr: wireAddress }),
  /** The client is still there: its leased locks stay (any call says as much); answers whether it still holds a lease here. */
  z.object({ op: z.literal('renew') }),
  z.object({ op: z.literal('flush'), addr: wireAddress, pages: ioPages }),
  z.object({ op: z.literal('stat'), addr: wireAddress }),
  z.object({ op: z.literal('space') }),
  z.object({ op: z.literal('get_attrs'), addr: wireAddress }),
  z.object({ op: z.literal('set_attrs'), addr: wireAddress, fs: fsAttr.optional(), cacheInRam: z.boolean().optional() }),
  z.object({ op: z.literal('super_root') }),
  /** `ifNone`: set only while no super-root is set (a compare-and-set: of nodes racing to set the first, one wins); the answer names the super-root now set. */
  z.object({ op: z.literal('set_super_root'), addr: wireAddress, ifNone: z.boolean().optional() }),
  z.object({ op: z.literal('access'), addr: wireAddress, pages: ioPages, mode }),
  z.object({ op: z.literal('unreference'), addr: wireAddress, pages: ioPages }),
  /** One page of an arena's directory (the GDD, M8), as its home has it: the root without `page`. Reads only. */
  z.object({ op: z.literal('dir_page'), arena: count, page: wireAddress.optional() }),
  // The transaction log (M7): records of one transaction become durable together at commit.
  z.object({ op: z.literal('txn_begin') }),
  z.object({ op: z.literal('txn_log'), txn: count, record: txnRecord }),
  z.object({ op: z.literal('txn_commit'), txn: count }),
  z.object({ op: z.literal('txn_abort'), txn: count }),
  z.object({ op: z.literal('txn_end'), txn: count }),
  z.object({ op: z.literal('txn_read'), txn: count.optional() }),
]);
export type ClientPageOp = z.infer<typeof clientPageOp>;

/** Most copies one registration names (M14). */
export const REGISTER_PAGES_MAX = 256;

/** A copy a node holds, as it registers it with the page's home in repopulation (M14). */
const registeredCopy = z.object({
  addr: wireAddress,
  version: count,
  /** The node held the page as its owner (its copy the newest). */
  owner: z.boolean(),
  /** Changed since it was last flushed. */
  dirty: z.boolean(),
});

/** Most directory pages one `dir_store` carries (1 MiB of page data). */
export const DIR_PAGES_PER_CALL_MAX = 256;

const directoryPage = z.object({ addr: wireAddress, version: count, data: pageData });

/** A request to another node's engine, answered by `page.answer` with the same `call`. */
export const peerCall = z.discriminatedUnion('op', [
  /**
   * To a core holder: commit this copy durably (flush, materialize). `gen`:
   * the generation of the page's arena the sender's knowledge of its core
   * holders comes from; an older one than the holder knows is refused
   * (E_STALE_GEN): an owner cut off from a failover must not overwrite what
   * the arena's new home has had written since (M16).
   */
  z.object({ op: z.literal('store'), addr: wireAddress, version: count, data: pageData, attrs: fsAttr.optional(), gen: count }),
  /** To a core holder: your durable copy, for a read whose home is down. */
  z.object({ op: z.literal('fetch'), addr: wireAddress }),
  /** To a home: materialize pages it is responsible for. */
  z.object({ op: z.literal('alloc'), addr: wireAddress, pages: rangePages, copies: z.number().int().min(1).max(COPIES_MAX), volatile: z.boolean() }),
  z.object({ op: z.literal('free'), addr: wireAddress, pages: rangePages, unreserve: z.boolean() }),
  /** To a home: make the newest copy durable on every core holder. */
  z.object({ op: z.literal('flush'), addr: wireAddress }),
  /** From a home to the owner it knows: make your copy durable (E_NOT_OWNER if it was handed on meanwhile). */
  z.object({ op: z.literal('flush_owner'), addr: wireAddress }),
  z.object({ op: z.literal('lock'), addr: wireAddress, mode: lockMode, client: z.string().min(1).max(limits.idCharsMax * 2 + 1), wait: z.boolean().optional() }),
  z.object({ op: z.literal('unlock'), addr: wireAddress, client: z.string().min(1).max(limits.idCharsMax * 2 + 1) }),
  /** To a home, from the node a client called through: the client went away (its lease ran out); its locks and waits go. */
  z.object({ op: z.literal('release_client'), client: z.string().min(1).max(limits.idCharsMax * 2 + 1) }),
  z.object({ op: z.literal('stat'), addr: wireAddress }),
  z.object({ op: z.literal('set_attrs'), addr: wireAddress, fs: fsAttr.optional(), cacheInRam: z.boolean().optional() }),
  /** To the system arena's home: the super-root address (M7), or set it. */
  z.object({ op: z.literal('super_root'), set: wireAddress.optional(), ifNone: z.boolean().optional() }),
  /** To a home: replace core holders counted failed (M11, demand-driven reduplexing); answers the holders. */
  z.object({ op: z.literal('reduplex'), addr: wireAddress }),
  /** To a home, from an owner short of RAM that keeps no disk copy: take the page back (M12). */
  z.object({ op: z.literal('reclaim'), addr: wireAddress }),
  /** To any node: its own space report, for the cluster's totals (M7, M12). */
  z.object({ op: z.literal('space') }),
  /** From a home to a surviving core holder (M15): copy every page of the range you hold on disk to `to`, durably. */
  z.object({ op: z.literal('copy_range'), addr: wireAddress, pages: rangePages, to: id }),
  /** To a home (M15): the directory entry holding `addr`, so a node can tell whether it is still one of its core holders. */
  z.object({ op: z.literal('holders_of'), addr: wireAddress }),
  /** To a core holder: forget these pages (unallocate, dealloc). */
  z.object({ op: z.literal('drop'), addr: wireAddress, pages: rangePages }),
  /** To a home, in a rebuild's repopulation (M14): the copies this node holds of its pages. */
  z.object({ op: z.literal('register'), round: count, pages: z.array(registeredCopy).min(1).max(REGISTER_PAGES_MAX) }),
  /** From a home, in repopulation: a newer copy turned up elsewhere; keep yours read-only (`reader`) or drop it. */
  z.object({ op: z.literal('demote'), round: count, addr: wireAddress, as: z.enum(['reader', 'drop']) }),
  /**
   * From an arena's home (at generation `gen`) to a directory replica (M8,
   * M15): commit these directory pages durably, all or none. `replace`: a
   * full copy begins, drop what you hold of the arena's directory first.
   */
  z.object({ op: z.literal('dir_store'), arena: count, gen: count, replace: z.boolean(), pages: z.array(directoryPage).min(1).max(DIR_PAGES_PER_CALL_MAX) }),
  /** To a directory replica: read the arena's whole directory from your disk and say what it holds. */
  z.object({ op: z.literal('dir_check'), arena: count }),
  /** From an arena's home to the PAN (M16): name these nodes its directory replicas, by a node-database update. */
  z.object({ op: z.literal('dir_replicas'), arena: count, gen: count, replicas: z.array(id).max(16) }),
  /** To an arena's home: one page of its directory, decoded (the root without `page`), for browsing it. */
  z.object({ op: z.literal('dir_page'), arena: count, page: wireAddress.optional() }),
]);
export type PeerCall = z.infer<typeof peerCall>;

/**
 * The rebuild round (M14) in which the sender's RAM directory was built: a
 * coherence message from before a rebuild is never acted on after it.
 */
const rr = count;

export const pageBodies = {
  // Coherence (M10), driven by the home's page-home machine; `rr` is the sender's rebuild round.
  'page.request': z.object({ addr: wireAddress, rr, mode, req: count }),
  'page.invalidate': z.object({ addr: wireAddress, rr, round: count, version: count }),
  'page.invalidated': z.object({ addr: wireAddress, rr, round: count }),
  'page.forward': z.object({ addr: wireAddress, rr, requester: id, req: count, round: count, mode, version: count }),
  'page.data': z.object({ addr: wireAddress, rr, req: count, round: count, mode, data: pageData, version: count, dirty: z.boolean() }),
  'page.confirmed': z.object({ addr: wireAddress, rr, req: count }),
  /** A reader dropped the copy it got in `round` (M12). */
  'page.dropped': z.object({ addr: wireAddress, rr, round: count }),
  'page.served': z.object({ addr: wireAddress, rr, req: count, round: count, version: count, holders, volatile: z.boolean(), gen: count }),
  'page.refused': z.object({ addr: wireAddress, rr, req: count, code: errorCode, message: errorMessage }),
  // Calls between engines (M11 flush and fetch, M7 locks and allocation at the home).
  'page.call': z.object({ call: count, req: peerCall }),
  'page.answer': z.object({ call: count, ok: z.boolean(), result: z.unknown().optional(), code: errorCode.optional(), message: errorMessage.optional() }),
  // A program's engine call (M24), answered with `reply.ok` or `reply.err`.
  'client.page': clientPageOp,
} as const;

/** The coherence kinds: those that carry the sender's rebuild round. */
export type CoherenceKind = 'page.request' | 'page.invalidate' | 'page.invalidated' | 'page.forward' | 'page.data' | 'page.confirmed' | 'page.dropped' | 'page.served' | 'page.refused';
/** A coherence body as the holder and the homes write it: the engine adds the round (`rr`) as it sends. */
export type CoherenceBody<K extends CoherenceKind> = Omit<z.infer<(typeof pageBodies)[K]>, 'rr'>;

/*
 * What `client.page` answers (`reply.ok {result}`), per op. Addresses in
 * results are `0x` hex text, so a script can print them as they are.
 * reserve → ReserveResult; read → ReadResult; write → WriteResult;
 * flush → FlushResult; stat → PageStat; space → SpaceReport;
 * get_attrs and set_attrs → PageAttrs; super_root → {address};
 * access → {pages, versions}; unreference → {pages, dropped};
 * dir_page → DirectoryPageView; txn_begin → {txn}; txn_log → {txn, seq}; txn_commit, txn_abort, txn_end →
 * {txn, state: 'committed' | 'aborted' | 'ended', records}; txn_read →
 * {records: TxnRecord[], more, txns?} (without a txn: whole transactions up
 * to 2 MiB, `more` if there are others, `txns` naming every committed one);
 * unreserve, alloc, unallocate, dealloc, lock, unlock, set_super_root →
 * {address, pages} of what changed.
 */
export interface ReserveResult {
  address: string;
  pages: number;
}
export interface ReadResult {
  /** pages × 4096 bytes. */
  data: Uint8Array;
  /** Each page's version, in order. */
  versions: number[];
}
export interface WriteResult {
  versions: number[];
}
export interface FlushResult {
  pages: number;
  /** Per page flushed, the core holders that committed it. */
  holders: string[][];
}
export interface PageAttrs {
  address: string;
  /** The coherency protocol (M10): invalidation, single writer. */
  coherency: 'invalidate';
  copies: number;
  volatile: boolean;
  cacheInRam: boolean;
  /** The file-system attribute (FS_ATTR_BYTES bytes), hex. */
  fs: string;
}
export interface PageStat {
  address: string;
  /** The reservation the page belongs to. */
  reservation: { address: string; pages: number };
  state: 'reserved' | 'materialized';
  /** The responsible node: the page's home (M8). */
  home: string;
  /** The node whose copy is newest (M10); null while no node holds the page in RAM. */
  owner: string | null;
  /** RAM copyset: nodes holding read-only copies. */
  readers: string[];
  /** Disk copyset: the core holders (M11), on distinct nodes. */
  coreHolders: string[];
  copies: number;
  volatile: boolean;
  version: number;
  lock: { mode: 'shared' | 'exclusive'; holders: string[] } | null;
}
export interface SpaceReport {
  node: string;
  ram: { budgetBytes: number; usedBytes: number; pages: number; dirtyPages: number };
  disk: { pages: number; pagesMax: number; freePages: number };
  /** Pages this node is home to, materialized. */
  homePages: number;
  /** The whole cluster, summed over the nodes that answered. */
  cluster?: { nodes: number; totalRamBytes: number; freeRamBytes: number; totalDiskPages: number; freeDiskPages: number };
}

/**
 * One page of an arena's directory (the GDD, M8; patent FIG. 1, 11, 12), as
 * the arena's home has it on disk: an inner page names its children, a leaf
 * its entries (one reservation range each). Addresses are `0x` hex.
 */
export interface DirectoryPageView {
  arena: number;
  /** The arena's home, which answered. */
  home: string;
  address: string;
  /** The page's version on the home's disk (it grows with every rewrite). */
  version: number;
  kind: 'leaf' | 'inner';
  /** 0 for a leaf; the height above the leaves for an inner page. */
  level: number;
  /** The root page only: the reservation high-water mark, the super-root (arena 0), and the whole tree's size. */
  root: { highWater: string; superRoot: string | null; entries: number; pages: number; depth: number } | null;
  /** An inner page's children, in key order: child i holds the ranges starting from `from` (the first child: from the page's own lower bound, null). */
  children: { address: string; from: string | null }[];
  /** A leaf's entries, in address order. */
  entries: { start: string; pages: number; state: 'reserved' | 'materialized'; copies: number; volatile: boolean; holders: string[]; cacheInRam: boolean }[];
}

/** One durable transaction-log record, as `txn_read` returns it: only committed, not yet ended, transactions have any. */
export interface TxnRecord {
  txn: number;
  /** The record's place in its transaction, from 1. */
  seq: number;
  data: Uint8Array;
}
