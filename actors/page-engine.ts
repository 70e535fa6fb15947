/**
 * The memory engine of one node (SPEC.md M7-M13; docs/engine.md): a
 * program's calls and other nodes' requests become op-codes dispatched by
 * the flow scheduler to applets that compose the elements: the space and its
 * directory (page-space.ts), the homes (page-homes.ts), this node's copies
 * (page-holder.ts), the RAM cache, the disk cache (the page store) and calls
 * to other engines (peer-calls.ts). Requests for one page run one at a time
 * in arrival order; different pages proceed concurrently.
 *
 * Op-codes: `client.<op>` for a program's calls (bus/page-messages.ts
 * `clientPageOp`), `peer.<op>` for other engines' (`peerCall`), and
 * `page.read1`, `page.write1`, `page.flush1` for one page, keyed by it.
 * `scheduler.replace(op, applet)` swaps any of them at run time.
 */
import { type InspectionEvent } from 'xstate';
import type { Clock } from '../bus/clock.js';
import type { Envelope } from '../bus/envelope.js';
import { MangroveError, isMangroveError } from '../bus/errors.js';
import type { Body, NodeDbSnapshot } from '../bus/messages.js';
import type { ClientPageOp, FlushResult, PageAttrs, PageStat, PeerCall, ReadResult, SpaceReport, WriteResult } from '../bus/page-messages.js';
import type { ReplyRoute } from '../bus/transport.js';
import { addressFromKey, addressKey, formatAddress, PAGE_BYTES, pageRange } from '../machines/address.js';
import type { DirectoryEntry } from '../machines/directory.js';
import { FlowScheduler } from './flow-scheduler.js';
import { GroupCommit } from './group-commit.js';
import { chooseHolders, failedHolders, reduplex, type CoreHolderDeps } from './core-holders.js';
import type { Log } from './log.js';
import type { Outbox } from './outbox.js';
import { PageHolder, type PageFacts } from './page-holder.js';
import { PageHomes } from './page-homes.js';
import { arenaOf, PageSpace, plural } from './page-space.js';
import { FS_ATTR_BYTES, type PageStore } from './page-store.js';
import { PeerCalls } from './peer-calls.js';
import { RamCache } from './ram-cache.js';

export interface EngineSettings {
  /** RAM cache budget (M9). */
  ramBytes: number;
  /** Core copies of a page when alloc does not say (M11). */
  copies: number;
  /** Resend interval of coherence messages and calls. */
  retryMs: number;
  /** How long a call to another engine, or one page access, may take. */
  timeoutMs: number;
  /** How long a read waits on a home the membership counts failed before it reads a core holder's durable copy. */
  homeWaitMs: number;
}

export const engineDefaults: EngineSettings = { ramBytes: 256 * 1024 * 1024, copies: 2, retryMs: 200, timeoutMs: 10_000, homeWaitMs: 1000 };

export interface PageEngineDeps {
  self: string;
  epoch: number;
  outbox: Outbox;
  clock: Clock;
  store: PageStore;
  log: Log;
  settings: EngineSettings;
  db(): NodeDbSnapshot;
  isAlive(id: string): boolean;
  quorate(): boolean;
  inspect?: (e: InspectionEvent) => void;
}

type PageKind = 'page.request' | 'page.invalidate' | 'page.invalidated' | 'page.forward' | 'page.data' | 'page.confirmed' | 'page.dropped' | 'page.served' | 'page.refused';

const pageKey = (addr: bigint) => `page:${addr.toString(16)}`;
const ZERO_ATTRS = new Uint8Array(FS_ATTR_BYTES);

export class PageEngine {
  readonly scheduler = new FlowScheduler();
  readonly cache: RamCache;
  readonly holder: PageHolder;
  private readonly homes: PageHomes;
  private readonly addressSpace: PageSpace;
  private readonly calls: PeerCalls;
  private readonly commits: GroupCommit;
  private readonly coreDeps: CoreHolderDeps;
  private closed = false;
  /** Reads answered from a core holder's durable copy because the home was counted failed. */
  readsFromHolders = 0;

  constructor(private readonly deps: PageEngineDeps) {
    const { self, epoch, clock, settings } = deps;
    this.cache = new RamCache(settings.ramBytes);
    this.addressSpace = new PageSpace(deps.store);
    this.commits = new GroupCommit(deps.store);
    this.coreDeps = { self, db: deps.db, isAlive: deps.isAlive, store: deps.store, call: (to, req) => this.calls.call(to, req) };
    this.holder = new PageHolder({ self, epoch, clock, cache: this.cache, store: deps.store, pageOut: (a) => this.pageOut(a), retryMs: settings.retryMs, homeOf: (a) => this.homeOf(a), send: (to, kind, body) => this.send(to, kind, body) });
    this.homes = new PageHomes({
      self,
      clock,
      retryMs: settings.retryMs,
      inspect: deps.inspect,
      factsOf: (a) => this.homeFacts(a),
      takeUp: (a, facts) => this.takeUp(a, facts),
      send: (to, kind, body) => this.send(to, kind, body),
    });
    this.calls = new PeerCalls({
      self,
      epoch,
      clock,
      retryMs: settings.retryMs,
      timeoutMs: settings.timeoutMs,
      send: (to, body) => deps.outbox.send(to, 'page.call', body),
      answer: (to, body) => deps.outbox.send(to, 'page.answer', body),
      run: (from, req) => this.scheduler.dispatch(`peer.${req.op}`, req, from),
    });
    this.registerApplets();
  }

  /** A `page.` message from another node (or this one). */
  handle(env: Envelope): void {
    if (this.closed) return;
    const b = env.body as { addr?: Uint8Array };
    switch (env.kind) {
      case 'page.call':
        return this.calls.onCall(env.from, env.body as Body<'page.call'>);
      case 'page.answer':
        return this.calls.onAnswer(env.body as Body<'page.answer'>);
    }
    const addr = addressFromKey(b.addr!);
    switch (env.kind as PageKind) {
      case 'page.request':
        return this.homes.onRequest(env.body as Body<'page.request'>, addr, env.from);
      case 'page.invalidated':
        return this.homes.onInvalidated(env.body as Body<'page.invalidated'>, addr, env.from);
      case 'page.confirmed':
        return this.homes.onConfirmed(env.body as Body<'page.confirmed'>, addr, env.from);
      case 'page.dropped':
        return this.homes.onDropped(env.body as Body<'page.dropped'>, addr, env.from);
      case 'page.invalidate':
        return this.holder.onInvalidate(env.body as Body<'page.invalidate'>, addr, env.from);
      case 'page.forward':
        return this.holder.onForward(env.body as Body<'page.forward'>, addr);
      case 'page.data':
        return this.holder.onData(env.body as Body<'page.data'>, addr);
      case 'page.served':
        return this.holder.onServed(env.body as Body<'page.served'>, addr);
      case 'page.refused':
        return this.holder.onRefused(env.body as Body<'page.refused'>, addr);
    }
  }

  /** A program's call (`client.page`), answered on its route. */
  onClient(env: Envelope, route: ReplyRoute): void {
    const op = env.body as ClientPageOp;
    this.call(op, env.from).then(
      (result) => this.deps.outbox.reply(route, env, 'reply.ok', { result }),
      (err: unknown) => {
        const e = isMangroveError(err) ? err : new MangroveError('E_INTERNAL', String(err));
        if (e.code === 'E_INTERNAL') this.deps.log.error({ err: String(err), op: op.op }, 'engine call failed');
        this.deps.outbox.reply(route, env, 'reply.err', { code: e.code, message: e.message });
      },
    );
  }

  /** Runs a program's call on this node; `client` names the caller (locks are per client). */
  call(op: ClientPageOp, client = 'local'): Promise<unknown> {
    if (this.closed) return Promise.reject(new MangroveError('E_CLOSED', 'the node is stopping'));
    return this.scheduler.dispatch(`client.${op.op}`, op, client);
  }

  /** Page counts, cache use and free space for `status` (M24). */
  space(): SpaceReport {
    const s = this.cache.stats();
    const pagesMax = this.deps.store.capacity();
    const pages = this.deps.store.count();
    return {
      node: this.deps.self,
      ram: { budgetBytes: this.deps.settings.ramBytes, usedBytes: s.bytes, pages: s.pages, dirtyPages: s.dirty },
      disk: { pages, pagesMax, freePages: Math.max(0, pagesMax - pages) },
      homePages: this.addressSpace.materializedPages(),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.calls.close();
    this.holder.close();
    this.homes.stop();
    this.holder.changes$.complete();
  }

  // ---- routing -------------------------------------------------------------

  /** The responsible node (the home) of `addr`: from its arena and the node database. */
  homeOf(addr: bigint): string {
    const arena = arenaOf(addr);
    const nodes = this.deps.db().nodes;
    if (arena === 0n) {
      const anchors = nodes.filter((n) => n.anchor).sort((a, b) => a.shortId - b.shortId);
      if (anchors.length === 0) throw new MangroveError('E_RECOVERING', 'the node database names no anchor yet; wait for the cluster to form');
      return anchors[0].id;
    }
    const node = nodes.find((n) => BigInt(n.shortId) + 1n === arena);
    if (!node) throw new MangroveError('E_NOT_RESERVED', `${formatAddress(addr)} is in arena ${arena}, which no node of the cluster owns; reserve pages first (page reserve)`);
    return node.id;
  }

  private ownArena(): bigint {
    const me = this.deps.db().nodes.find((n) => n.id === this.deps.self);
    if (!me) throw new MangroveError('E_RECOVERING', 'this node has not joined the cluster yet; try again once it has');
    return BigInt(me.shortId) + 1n;
  }

  private send<K extends PageKind>(to: string, kind: K, body: Body<K>): void {
    if (to !== this.deps.self) return this.deps.outbox.send(to, kind, body);
    const env = this.deps.outbox.envelope(to, kind, body);
    queueMicrotask(() => this.handle(env));
  }

  private needQuorum(what: string): void {
    if (!this.deps.quorate()) throw new MangroveError('E_NO_QUORUM', `${what} needs quorum and this node has none (too few anchors reachable); reads of pages held go on`);
  }

  // ---- the home's view -----------------------------------------------------

  private homeFacts(addr: bigint): PageFacts | MangroveError {
    const e = this.addressSpace.lookup(addr);
    if (!e) return new MangroveError('E_NOT_RESERVED', `${formatAddress(addr)} is in no reservation; reserve pages first (page reserve)`);
    if (e.state !== 'materialized') return new MangroveError('E_NOT_MATERIALIZED', `${formatAddress(addr)} is reserved but has no storage; allocate it first (page alloc)`);
    return { holders: e.holders, volatile: e.volatile };
  }

  /** The home starts as the page's owner: it holds the page, from its disk cache or zero filled. */
  private takeUp(addr: bigint, facts: PageFacts): void {
    if (this.holder.modeOf(addr) !== undefined) return;
    const stored = facts.volatile ? undefined : this.deps.store.get(addr);
    this.holder.installOwn(addr, stored?.data ?? new Uint8Array(PAGE_BYTES), stored?.version ?? 0, facts);
    // Activation (M11): a core holder counted failed is replaced, in the background.
    const entry = this.addressSpace.lookup(addr);
    if (entry && failedHolders(this.coreDeps, entry).length > 0) {
      this.scheduler.dispatch('peer.reduplex', { op: 'reduplex', addr: addressKey(addr) }).catch((err: unknown) => this.deps.log.warn({ addr: formatAddress(addr), err: String(err) }, 'reduplexing failed; retried at the next activation'));
    }
  }

  /** Replaces failed core holders of the range holding `addr`; the directory names the new ones once they hold every flushed page. */
  private async reduplexAtHome(addr: bigint): Promise<string[]> {
    this.needQuorum('replacing core holders');
    const entry = this.entryAt(addr, 'materialized');
    const holders = await reduplex(this.coreDeps, entry);
    if (holders.some((h, i) => h !== entry.holders[i])) {
      this.addressSpace.carve(entry.start, entry.pages, (old) => ({ ...old, holders }));
      this.deps.log.info({ range: formatAddress(entry.start), pages: entry.pages, was: entry.holders, now: holders }, 'core holders replaced');
      if (this.holder.factsOf(addr)) this.holder.setHolders(addr, holders);
    }
    return holders;
  }

  private entryAt(addr: bigint, state?: DirectoryEntry['state']): DirectoryEntry {
    const facts = this.homeFacts(addr);
    if (state === 'materialized' && facts instanceof MangroveError) throw facts;
    const e = this.addressSpace.lookup(addr);
    if (!e) throw new MangroveError('E_NOT_RESERVED', `${formatAddress(addr)} is in no reservation; reserve pages first (page reserve)`);
    return e;
  }

  // ---- applets ---------------------------------------------------------------

  private registerApplets(): void {
    const s = this.scheduler;
    const keyed = (op: { addr: Uint8Array }) => pageKey(addressFromKey(op.addr));
    const client = <O extends ClientPageOp['op']>(op: O, applet: (input: Extract<ClientPageOp, { op: O }>, origin: string) => Promise<unknown>) =>
      s.register(`client.${op}`, { applet: (input, ctx) => applet(input as Extract<ClientPageOp, { op: O }>, ctx.origin) });
    const peer = <O extends PeerCall['op']>(op: O, applet: (input: Extract<PeerCall, { op: O }>, origin: string) => Promise<unknown>, key?: (i: Extract<PeerCall, { op: O }>) => string) =>
      s.register(`peer.${op}`, { applet: (input, ctx) => applet(input as Extract<PeerCall, { op: O }>, ctx.origin), key: key as ((i: unknown) => string) | undefined });

    s.register<bigint, ReadResult>('page.read1', { key: pageKey, applet: (addr) => this.readOne(addr) });
    s.register<{ addr: bigint; data: Uint8Array }, number>('page.write1', { key: (i) => pageKey(i.addr), applet: (i) => this.writeOne(i.addr, i.data) });
    s.register<bigint, string[]>('page.flush1', { key: pageKey, applet: (addr) => this.flushOne(addr) });
    s.register<{ addr: bigint; mode: 'read' | 'write' }, number>('page.access1', {
      key: (i) => pageKey(i.addr),
      applet: async ({ addr, mode }) => {
        await this.within(this.holder.acquire(addr, mode), `${mode} access to ${formatAddress(addr)}`);
        return this.cache.peek(addr)?.version ?? 0;
      },
    });
    s.register<bigint, boolean>('page.release1', { key: pageKey, applet: async (addr) => this.holder.release(addr) });

    client('reserve', async ({ pages }) => {
      this.needQuorum('reserving pages');
      const range = this.addressSpace.reserve(this.ownArena(), pages);
      return { address: formatAddress(range.first), pages };
    });
    client('alloc', async ({ addr, pages, copies, volatile }) => {
      const a = addressFromKey(addr);
      pageRange(a, pages);
      return this.calls.call(this.homeOf(a), { op: 'alloc', addr, pages, copies: copies ?? this.deps.settings.copies, volatile: volatile ?? false });
    });
    const free = (unreserve: boolean) => async ({ addr, pages }: { addr: Uint8Array; pages: number }) => this.calls.call(this.homeOf(addressFromKey(addr)), { op: 'free', addr, pages, unreserve });
    client('unallocate', free(false));
    client('dealloc', free(true));
    client('unreserve', free(true));
    client('read', async ({ addr, pages }) => {
      const first = addressFromKey(addr);
      pageRange(first, pages);
      const parts = await Promise.all(Array.from({ length: pages }, (_, i) => s.dispatch<ReadResult>('page.read1', first + BigInt(i * PAGE_BYTES))));
      const data = new Uint8Array(pages * PAGE_BYTES);
      parts.forEach((p, i) => data.set(p.data, i * PAGE_BYTES));
      return { data, versions: parts.map((p) => p.versions[0]) } satisfies ReadResult;
    });
    client('write', async ({ addr, data }) => {
      this.needQuorum('writing');
      const first = addressFromKey(addr);
      const pages = data.byteLength / PAGE_BYTES;
      pageRange(first, pages);
      const versions = await Promise.all(
        Array.from({ length: pages }, (_, i) => s.dispatch<number>('page.write1', { addr: first + BigInt(i * PAGE_BYTES), data: data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES) })),
      );
      return { versions } satisfies WriteResult;
    });
    client('flush', async ({ addr, pages }) => {
      const first = addressFromKey(addr);
      pageRange(first, pages);
      const holders = await Promise.all(Array.from({ length: pages }, (_, i) => s.dispatch<string[]>('page.flush1', first + BigInt(i * PAGE_BYTES))));
      return { pages, holders } satisfies FlushResult;
    });
    client('lock', async ({ addr, mode }, origin) => {
      this.needQuorum('locking');
      return this.calls.call(this.homeOf(addressFromKey(addr)), { op: 'lock', addr, mode, client: origin });
    });
    client('unlock', async ({ addr }, origin) => this.calls.call(this.homeOf(addressFromKey(addr)), { op: 'unlock', addr, client: origin }));
    const statOf = (addr: Uint8Array) => this.calls.call<PageStat & { attrs: PageAttrs }>(this.homeOf(addressFromKey(addr)), { op: 'stat', addr });
    client('access', async ({ addr, pages, mode }) => {
      if (mode === 'write') this.needQuorum('write access');
      const first = addressFromKey(addr);
      pageRange(first, pages);
      const versions = await Promise.all(Array.from({ length: pages }, (_, i) => s.dispatch<number>('page.access1', { addr: first + BigInt(i * PAGE_BYTES), mode })));
      return { pages, versions };
    });
    client('unreference', async ({ addr, pages }) => {
      const first = addressFromKey(addr);
      pageRange(first, pages);
      let dropped = 0;
      for (let i = 0; i < pages; i++) dropped += (await s.dispatch<boolean>('page.release1', first + BigInt(i * PAGE_BYTES))) ? 1 : 0;
      return { pages, dropped };
    });
    client('stat', async ({ addr }) => {
      const { attrs: _attrs, ...stat } = await statOf(addr);
      return stat;
    });
    client('space', async () => {
      // The whole space (M7): this node's report, plus every live node's that answers.
      const live = this.deps.db().nodes.filter((n) => n.id === this.deps.self || this.deps.isAlive(n.id));
      const reports = await Promise.all(live.map((n) => this.calls.call<SpaceReport>(n.id, { op: 'space' }).catch(() => null)));
      const got = reports.filter((r): r is SpaceReport => r !== null);
      const sum = (f: (r: SpaceReport) => number) => got.reduce((n, r) => n + f(r), 0);
      const cluster = {
        nodes: got.length,
        totalRamBytes: sum((r) => r.ram.budgetBytes),
        freeRamBytes: sum((r) => Math.max(0, r.ram.budgetBytes - r.ram.usedBytes)),
        totalDiskPages: sum((r) => r.disk.pagesMax),
        freeDiskPages: sum((r) => r.disk.freePages),
      };
      return { ...this.space(), cluster } satisfies SpaceReport;
    });
    client('get_attrs', async ({ addr }) => (await statOf(addr)).attrs);
    client('set_attrs', async ({ addr, fs, cacheInRam }) => {
      this.needQuorum('setting attributes');
      return this.calls.call(this.homeOf(addressFromKey(addr)), { op: 'set_attrs', addr, fs, cacheInRam });
    });
    client('super_root', async () => this.calls.call(this.homeOf(0n), { op: 'super_root' }));
    client('set_super_root', async ({ addr }) => {
      this.needQuorum('setting the super-root');
      return this.calls.call(this.homeOf(0n), { op: 'super_root', set: addr });
    });

    // What other engines ask of this one.
    peer('store', async ({ addr, version, data, attrs }) => {
      const a = addressFromKey(addr);
      const kept = attrs ?? this.deps.store.get(a)?.attrs ?? ZERO_ATTRS;
      return { version: await this.commits.put(a, { data, version, attrs: kept }) };
    });
    peer('space', async () => this.space());
    // One reduplexing at a time per home, so two cannot appoint different replacements.
    peer('reduplex', async ({ addr }) => this.reduplexAtHome(addressFromKey(addr)), () => 'reduplex');
    peer('fetch', async ({ addr }) => {
      const page = this.deps.store.get(addressFromKey(addr));
      return page ? { version: page.version, data: page.data } : null;
    });
    peer('drop', async ({ addr, pages }) => {
      const range = pageRange(addressFromKey(addr), pages);
      let dropped = 0;
      for (let from = range.first; ; ) {
        const batch = this.deps.store.scan(from).filter((e) => e.addr <= range.last);
        for (const e of batch) dropped += this.deps.store.delete(e.addr) ? 1 : 0;
        if (batch.length === 0) break;
        from = batch[batch.length - 1].addr + 1n;
      }
      for (const a of this.cache.addresses()) if (a >= range.first && a <= range.last) this.holder.forget(a);
      return { dropped };
    });
    peer('alloc', async (req) => this.allocAtHome(req));
    peer('free', async (req) => this.freeAtHome(req));
    // Not keyed: a node's flush1 holds its page's lane and may call its own engine here.
    peer('flush', async ({ addr }) => this.flushAtHome(addressFromKey(addr)));
    peer('lock', async ({ addr, mode, client: who }) => {
      const a = addressFromKey(addr);
      this.entryAt(a);
      this.homes.lock(a, who, mode);
      return { address: formatAddress(a), pages: 1 };
    });
    peer('unlock', async ({ addr, client: who }) => {
      const a = addressFromKey(addr);
      this.homes.unlock(a, who);
      return { address: formatAddress(a), pages: 1 };
    });
    peer('stat', async ({ addr }) => this.statAtHome(addressFromKey(addr)));
    peer('set_attrs', async (req) => this.setAttrsAtHome(req));
    peer('super_root', async ({ set }) => {
      const dir = this.addressSpace.directory(0n);
      if (set) dir.setMeta({ ...dir.meta(), superRoot: addressFromKey(set) });
      const root = dir.meta().superRoot;
      if (root === null) throw new MangroveError('E_NOT_FOUND', 'no super-root has been set yet (page super-root --set ADDR)');
      return { address: formatAddress(root) };
    });
  }

  private async readOne(addr: bigint): Promise<ReadResult> {
    const held = this.holder.readable(addr);
    if (held) return { data: held.data.slice(), versions: [held.version] };
    const home = this.homeOf(addr);
    const access = this.holder.acquire(addr, 'read');
    if (home !== this.deps.self) {
      // A home that answers is always asked; one silent for homeWaitMs and counted failed is not waited for.
      const answered = await this.within(access.then(() => true), '', this.deps.settings.homeWaitMs).catch(() => false);
      if (!answered && !this.deps.isAlive(home)) return this.readFromHolders(addr, home);
    }
    await this.within(access, `reading ${formatAddress(addr)}`);
    const page = this.holder.readable(addr);
    if (!page) return this.readOne(addr);
    return { data: page.data.slice(), versions: [page.version] };
  }

  /**
   * The home is counted failed: the freshest durable copy any live node
   * holds (M11). Flushed data survives; a write the home's owner acknowledged
   * but never flushed is not seen (recovery, M15, decides its fate).
   */
  private async readFromHolders(addr: bigint, home: string): Promise<ReadResult> {
    this.readsFromHolders++;
    const nodes = this.deps.db().nodes.filter((n) => n.id === this.deps.self || this.deps.isAlive(n.id));
    const copies = await Promise.all(
      nodes.map((n) => this.calls.call<{ version: number; data: Uint8Array } | null>(n.id, { op: 'fetch', addr: addressKey(addr) }).catch(() => null)),
    );
    let best: { version: number; data: Uint8Array } | null = null;
    for (const c of copies) if (c && (!best || c.version > best.version)) best = c;
    if (!best) throw new MangroveError('E_UNREACHABLE', `${formatAddress(addr)}'s home ${home} is down and no live node holds a durable copy`);
    return { data: new Uint8Array(best.data), versions: [best.version] };
  }

  private async writeOne(addr: bigint, data: Uint8Array): Promise<number> {
    await this.within(this.holder.acquire(addr, 'write'), `writing ${formatAddress(addr)}`);
    const page = this.holder.writable(addr);
    if (!page) return this.writeOne(addr, data);
    page.data.set(data);
    return this.holder.wrote(addr);
  }

  /** Memory pressure (M12): a dirty copy goes to its core holders' disks, then out of RAM. */
  private async pageOut(addr: bigint): Promise<void> {
    try {
      await this.scheduler.dispatch('page.flush1', addr);
      await this.scheduler.dispatch('page.release1', addr);
    } catch (err) {
      this.deps.log.warn({ addr: formatAddress(addr), err: String(err) }, 'page-out failed; the page stays in RAM');
    }
  }

  /** Makes this node's copy durable on every core holder, if it is newer than what they hold. */
  private async flushOne(addr: bigint): Promise<string[]> {
    const mode = this.holder.modeOf(addr);
    if (mode === 'write' || mode === 'kept') return this.flushOwn(addr);
    return this.calls.call<string[]>(this.homeOf(addr), { op: 'flush', addr: addressKey(addr) });
  }

  private async flushAtHome(addr: bigint): Promise<string[]> {
    if (this.homeOf(addr) !== this.deps.self) return this.flushOwn(addr);
    const facts = this.homeFacts(addr);
    if (facts instanceof MangroveError) throw facts;
    const owner = this.homes.view(addr)?.owner ?? this.deps.self;
    if (owner === this.deps.self) return this.flushOwn(addr);
    return this.calls.call<string[]>(owner, { op: 'flush', addr: addressKey(addr) });
  }

  private async flushOwn(addr: bigint): Promise<string[]> {
    const page = this.cache.peek(addr);
    const facts = this.holder.factsOf(addr);
    if (!page || !facts || facts.volatile) return facts?.holders ?? [];
    if (!page.dirty) return facts.holders;
    const version = page.version;
    const data = page.data.slice();
    let holders = facts.holders;
    // A core holder counted failed is replaced first (M11): a flush is durable on every live one.
    if (holders.some((h) => h !== this.deps.self && !this.deps.isAlive(h))) {
      holders = await this.calls.call<string[]>(this.homeOf(addr), { op: 'reduplex', addr: addressKey(addr) });
      this.holder.setHolders(addr, holders);
    }
    await Promise.all(holders.map((h) => this.calls.call(h, { op: 'store', addr: addressKey(addr), version, data })));
    this.cache.markClean(addr, version);
    return holders;
  }

  private async allocAtHome(req: Extract<PeerCall, { op: 'alloc' }>): Promise<unknown> {
    this.needQuorum('allocating pages');
    const first = addressFromKey(req.addr);
    const holders = req.volatile ? [this.deps.self] : chooseHolders(this.coreDeps, req.copies);
    this.addressSpace.carve(first, req.pages, (old) => {
      if (old.state === 'materialized') throw new MangroveError('E_EXISTS', `${formatAddress(first)} is already allocated (range ${formatAddress(old.start)}, ${plural(old.pages, 'page')})`);
      return { ...old, state: 'materialized', copies: req.volatile ? 1 : req.copies, volatile: req.volatile, holders };
    });
    return { address: formatAddress(first), pages: req.pages, holders };
  }

  private async freeAtHome(req: Extract<PeerCall, { op: 'free' }>): Promise<unknown> {
    this.needQuorum('freeing pages');
    const first = addressFromKey(req.addr);
    const range = pageRange(first, req.pages);
    // Every other copy is invalidated first: the home takes each live page for writing.
    for (const a of this.homes.within(range.first, range.last)) {
      await this.scheduler.dispatch('page.write1', { addr: a, data: new Uint8Array(PAGE_BYTES) });
      this.holder.forget(a);
    }
    const olds = this.addressSpace.carve(first, req.pages, (e) => (req.unreserve ? null : { ...e, state: 'reserved', copies: 0, volatile: false, holders: [] }));
    this.homes.dropLocks(range.first, range.last);
    const holders = new Set(olds.flatMap((e) => (e.state === 'materialized' ? e.holders : [])));
    await Promise.all([...holders].map((h) => this.calls.call(h, { op: 'drop', addr: req.addr, pages: req.pages })));
    return { address: formatAddress(first), pages: req.pages };
  }

  private async statAtHome(addr: bigint): Promise<PageStat & { attrs: PageAttrs }> {
    const e = this.entryAt(addr);
    const view = this.homes.view(addr);
    const materialized = e.state === 'materialized';
    const stored = materialized && !e.volatile ? this.deps.store.get(addr) : undefined;
    const held = this.cache.peek(addr);
    const stat: PageStat = {
      address: formatAddress(addr),
      reservation: { address: formatAddress(e.start), pages: e.pages },
      state: e.state,
      home: this.deps.self,
      owner: materialized ? (view ? view.owner : this.deps.self) : null,
      readers: view?.readers ?? [],
      coreHolders: e.holders,
      copies: e.copies,
      volatile: e.volatile,
      version: Math.max(held?.version ?? 0, stored?.version ?? 0),
      lock: this.homes.lockOf(addr),
    };
    const attrs: PageAttrs = {
      address: formatAddress(addr),
      coherency: 'invalidate',
      copies: e.copies,
      volatile: e.volatile,
      cacheInRam: e.cacheInRam,
      fs: Buffer.from(stored?.attrs ?? ZERO_ATTRS).toString('hex'),
    };
    return { ...stat, attrs };
  }

  private async setAttrsAtHome(req: Extract<PeerCall, { op: 'set_attrs' }>): Promise<PageAttrs> {
    this.needQuorum('setting attributes');
    const addr = addressFromKey(req.addr);
    const e = this.entryAt(addr, 'materialized');
    if (req.cacheInRam !== undefined && req.cacheInRam !== e.cacheInRam) this.addressSpace.carve(addr, 1, (old) => ({ ...old, cacheInRam: req.cacheInRam! }));
    if (req.fs) {
      if (e.volatile) throw new MangroveError('E_BAD_ARGUMENT', `${formatAddress(addr)} is volatile: it has no file-system attribute on disk`);
      const stored = this.deps.store.get(addr);
      const data = stored?.data ?? new Uint8Array(PAGE_BYTES);
      const version = stored?.version ?? 0;
      await Promise.all(e.holders.map((h) => this.calls.call(h, { op: 'store', addr: req.addr, version, data, attrs: req.fs })));
    }
    return (await this.statAtHome(addr)).attrs;
  }

  /** Waits for `work`, at most `ms` (the access timeout); the work itself goes on. */
  private within<T>(work: Promise<T>, what: string, ms = this.deps.settings.timeoutMs): Promise<T> {
    const { clock } = this.deps;
    return new Promise<T>((resolve, reject) => {
      const timer = clock.setTimeout(() => reject(new MangroveError('E_TIMEOUT', `${what} took more than ${ms} ms; the page's home or owner may be unreachable`)), ms);
      work.then(
        (v) => {
          clock.clearTimeout(timer);
          resolve(v);
        },
        (err) => {
          clock.clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

}
