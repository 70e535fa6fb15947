/**
 * The node-database element (M2). Every node keeps a copy; anchors hold it
 * whole, persisted, and change it only by a coordinated update: one anchor
 * coordinates, every anchor of the quorum set is subordinate, one update at
 * a time, the new version fixed before it starts, no update without quorum.
 *
 * Bootstrap: a node greets the configured anchor endpoints (`ndb.hello`) to
 * learn their ids. Anchors of a new cluster that have all greeted each other
 * build version 1 from the configured anchors alone (`genesis`), which every
 * anchor computes identically, so forming needs no coordinator. Any other
 * node, and a node whose entry is out of date (a new pid or endpoint after a
 * restart), asks an anchor to add or change it (`ndb.join`). Nodes that see a
 * newer version in a pulse fetch it from an anchor.
 */
import { BehaviorSubject } from 'rxjs';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Clock, Random } from '../../bus/clock.js';
import type { Envelope } from '../../bus/envelope.js';
import type { Body, Identity, NdbOp, NodeDbSnapshot, NodeEntry } from '../../bus/messages/index.js';
import type { ReplyRoute } from '../../bus/transport/transport.js';
import { ndbCoordinatorMachine, type NdbUpdateOutput } from '../../machines/membership/node-db-coordinator.js';
import { ndbSubordinateMachine } from '../../machines/membership/node-db-subordinate.js';
import { anchorsOf, emptyDb, findNode, genesis, nextShortId, totalVotes } from '../../machines/membership/node-db.js';
import type { SendOut } from '../../machines/outbox.js';
import type { Log } from '../log.js';
import type { Outbox } from '../outbox.js';
import type { NodeSettings } from '../settings.js';
import type { NodeStore } from '../storage/node-store.js';

/** Updates waiting for their turn on this coordinator. */
const QUEUE_MAX = 256;
/** Tries of one update before it is given up (busy or lagging subordinates, lost messages). */
const ATTEMPTS_MAX = 12;
/** Outcomes that pass: a higher ballot, a version decided elsewhere, lost messages. */
const RETRIED: readonly string[] = ['E_BUSY', 'E_STALE', 'E_TIMEOUT'];

export interface QuorumView {
  quorate: boolean;
  aliveAnchors: string[];
}

export interface NodeDbDeps {
  settings: NodeSettings;
  outbox: Outbox;
  clock: Clock;
  random: Random;
  store: NodeStore;
  log: Log;
  quorumView: () => QuorumView;
  inspect?: (e: InspectionEvent) => void;
}

type UpdateCode = Extract<NdbUpdateOutput, { ok: false }>['code'];

/** What an update is for: a node that asked to join (its entry is computed when its turn comes) or an explicit change. */
type Intent = { join: Identity } | { change: NdbOp };

interface Pending {
  intent: Intent;
  attempts: number;
  notBefore: number;
  done: (r: NdbUpdateOutput) => void;
}

type Subordinate = Actor<typeof ndbSubordinateMachine>;
type Coordinator = Actor<typeof ndbCoordinatorMachine>;

export class NodeDbActor {
  readonly db$: BehaviorSubject<NodeDbSnapshot>;
  private sub?: Subordinate;
  private coordinating?: { actor: Coordinator; pending: Pending };
  private queue: Pending[] = [];
  /** Identities learned from `ndb.welcome`, by the endpoint greeted. */
  private greeted = new Map<string, Identity>();
  private newest = 0;
  private lastFetchAt = -Infinity;
  private joinTurn = 0;
  /** The highest ballot round this anchor has used or been outbid by. */
  private round = 0;
  private timer?: unknown;
  private stopped = false;

  constructor(private readonly deps: NodeDbDeps) {
    this.db$ = new BehaviorSubject(deps.store.loadNodeDb() ?? emptyDb());
  }

  get db(): NodeDbSnapshot {
    return this.db$.value;
  }

  identity(): Identity {
    const s = this.deps.settings;
    return { id: s.id, endpoint: s.endpoint, anchor: s.anchor, votes: s.votes, group: s.group, pid: s.pid };
  }

  start(): void {
    this.deps.outbox.transport.setDirectory((id) => findNode(this.db, id)?.endpoint);
    if (this.deps.settings.anchor) this.startSubordinate();
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    this.coordinating?.actor.stop();
    this.sub?.stop();
    for (const p of this.queue) p.done({ ok: false, code: 'E_TIMEOUT', reason: 'the node is stopping' });
    this.queue = [];
    this.db$.complete();
  }

  /** True once this node's own entry is current in its copy of the database. */
  joined(): boolean {
    return entryIsCurrent(findNode(this.db, this.deps.settings.id), this.identity());
  }

  /** Runs a coordinated update from this anchor (client `ndb_update`). */
  update(change: NdbOp): Promise<NdbUpdateOutput> {
    return new Promise((done) => this.enqueue({ change }, done));
  }

  /** A pulse named a newer version: fetch it from an anchor soon. */
  noteVersion(version: number, from: string): void {
    if (version <= this.newest) return;
    this.newest = version;
    this.fetch(findNode(this.db, from)?.anchor ? from : undefined);
  }

  handle(env: Envelope, route: ReplyRoute): void {
    const { outbox } = this.deps;
    switch (env.kind) {
      case 'ndb.hello': {
        const b = env.body as Body<'ndb.hello'>;
        outbox.transport.setPeer(env.from, b.identity.endpoint);
        const welcome: Body<'ndb.welcome'> = { identity: this.identity(), dbVersion: this.db.version };
        if (this.db.version > b.dbVersion) welcome.db = this.db;
        return outbox.reply(route, env, 'ndb.welcome', welcome);
      }
      case 'ndb.welcome': {
        const b = env.body as Body<'ndb.welcome'>;
        outbox.transport.setPeer(env.from, b.identity.endpoint);
        this.greeted.set(b.identity.endpoint, b.identity);
        if (b.db) this.adopt(b.db);
        return this.maybeGenesis();
      }
      case 'ndb.join': {
        const b = env.body as Body<'ndb.join'>;
        if (!this.sub) return outbox.reply(route, env, 'reply.err', { code: 'E_NOT_ANCHOR', message: 'only anchors add nodes' });
        outbox.transport.setPeer(b.identity.id, b.identity.endpoint);
        if (this.queue.some((p) => 'join' in p.intent && p.intent.join.id === b.identity.id)) return;
        return this.enqueue({ join: b.identity }, (r) => {
          if (r.ok) outbox.send(b.identity.id, 'ndb.joined', { db: this.db });
          else this.deps.log.warn({ node: b.identity.id, code: r.code, reason: r.reason }, 'join refused');
        });
      }
      case 'ndb.joined':
      case 'ndb.snapshot':
        return this.adopt((env.body as Body<'ndb.snapshot'>).db);
      case 'ndb.fetch':
        return outbox.reply(route, env, 'ndb.snapshot', { db: this.db });
      case 'ndb.prepare':
      case 'ndb.accept':
      case 'ndb.commit':
      case 'ndb.promise':
      case 'ndb.accepted':
        return this.deliver(env.from, env.kind, env.body);
    }
  }

  /** The paxos messages, from a peer or from this node to itself (an anchor is its own subordinate). */
  private deliver(from: string, kind: string, body: unknown): void {
    switch (kind) {
      case 'ndb.prepare': {
        const b = body as Body<'ndb.prepare'>;
        return this.sub?.send({ type: 'PREPARE', from, version: b.version, ballot: b.ballot });
      }
      case 'ndb.accept': {
        const b = body as Body<'ndb.accept'>;
        return this.sub?.send({ type: 'ACCEPT', from, version: b.version, ballot: b.ballot, change: b.change });
      }
      case 'ndb.commit': {
        const b = body as Body<'ndb.commit'>;
        return this.sub?.send({ type: 'COMMIT', version: b.version, change: b.change });
      }
      case 'ndb.promise':
        return this.coordinating?.actor.send({ type: 'PROMISE', from, ...(body as Body<'ndb.promise'>) });
      case 'ndb.accepted':
        return this.coordinating?.actor.send({ type: 'ACCEPTED', from, ...(body as Body<'ndb.accepted'>) });
    }
  }

  private startSubordinate(): void {
    const actor = createActor(ndbSubordinateMachine, {
      clock: this.deps.clock,
      inspect: this.deps.inspect,
      input: { self: this.deps.settings.id, db: this.db, acceptor: this.deps.store.loadAcceptor() },
    });
    // Persisted before the answer that follows it goes out: a promise survives a crash.
    actor.on('persist', (e) => this.deps.store.saveAcceptor(e.acceptor));
    actor.on('send', (e) => this.send(e));
    actor.on('committed', (e) => this.publish(e.db));
    actor.on('adopted', (e) => this.publish(e.db));
    actor.on('behind', (e) => this.noteVersion(e.version - 1, ''));
    this.sub = actor;
    actor.start();
  }

  private send(e: SendOut): void {
    if (e.to === this.deps.settings.id) this.deliver(e.to, e.kind, e.body);
    else this.deps.outbox.send(e.to, e.kind, e.body as never);
  }

  /** Persists first: a committed version must survive a crash of this node. */
  private publish(db: NodeDbSnapshot): void {
    if (db.version <= this.db.version && this.db.version > 0) return;
    this.deps.store.saveNodeDb(db);
    this.newest = Math.max(this.newest, db.version);
    this.deps.log.info({ version: db.version, nodes: db.nodes.length }, 'node database');
    this.db$.next(db);
  }

  private adopt(db: NodeDbSnapshot): void {
    if (db.version <= this.db.version) return;
    if (this.sub) this.sub.send({ type: 'ADOPT', db });
    else this.publish(db);
  }

  /** A new cluster's anchors each build version 1 once they know every configured anchor. */
  private maybeGenesis(): void {
    const s = this.deps.settings;
    if (!s.anchor || this.db.version > 0) return;
    const anchors: Identity[] = [];
    for (const endpoint of s.seeds) {
      const who = endpoint === s.endpoint ? this.identity() : this.greeted.get(endpoint);
      if (!who) return;
      if (!who.anchor) {
        this.deps.log.warn({ endpoint }, 'a configured anchor endpoint answers as a non-anchor; the cluster cannot form');
        return;
      }
      anchors.push(who);
    }
    if (!anchors.some((a) => a.id === s.id)) return;
    this.adopt(genesis(anchors));
  }

  private tick(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => this.tick(), this.deps.settings.periodMs);
    if (!this.joined()) this.bootstrap();
    if (this.newest > this.db.version) this.fetch();
    this.runNext();
  }

  private bootstrap(): void {
    const s = this.deps.settings;
    const anchors = anchorsOf(this.db).filter((a) => a.id !== s.id);
    const formed = this.db.version > 0;
    if (!formed || anchors.length === 0) {
      for (const endpoint of s.seeds) {
        if (endpoint !== s.endpoint) this.deps.outbox.sendToEndpoint(endpoint, 'ndb.hello', { identity: this.identity(), dbVersion: this.db.version });
      }
    }
    if (!formed) return;
    if (s.anchor && findNode(this.db, s.id)) {
      // An anchor whose own entry is stale coordinates its own change.
      if (!this.queue.some((p) => 'join' in p.intent)) this.enqueue({ join: this.identity() }, () => {});
      return;
    }
    const target = anchors[this.joinTurn++ % Math.max(1, anchors.length)];
    if (target) this.deps.outbox.send(target.id, 'ndb.join', { identity: this.identity() });
  }

  private fetch(from?: string): void {
    const now = this.deps.clock.now();
    if (now - this.lastFetchAt < this.deps.settings.periodMs) return;
    const alive = new Set(this.deps.quorumView().aliveAnchors);
    const anchors = anchorsOf(this.db).filter((a) => a.id !== this.deps.settings.id);
    const target = from ?? (anchors.find((a) => alive.has(a.id)) ?? anchors[this.deps.random.int(anchors.length)])?.id;
    if (!target) return;
    this.lastFetchAt = now;
    this.deps.outbox.send(target, 'ndb.fetch', {});
  }

  private enqueue(intent: Intent, done: (r: NdbUpdateOutput) => void): void {
    if (this.queue.length >= QUEUE_MAX) {
      done({ ok: false, code: 'E_BUSY', reason: `${QUEUE_MAX} node database updates are already waiting` });
      return;
    }
    this.queue.push({ intent, attempts: 0, notBefore: 0, done });
    this.runNext();
  }

  /** What the head of the queue should change now, or a result when there is nothing to do. */
  private changeFor(intent: Intent): NdbOp | NdbUpdateOutput {
    if ('change' in intent) return intent.change;
    const who = intent.join;
    const have = findNode(this.db, who.id);
    if (entryIsCurrent(have, who)) return { ok: true, version: this.db.version, change: { op: 'change', node: have! }, own: true };
    if (have && have.group === who.group) return { op: 'change', node: { ...who, shortId: have.shortId } };
    const slot = nextShortId(have ? { ...this.db, nodes: this.db.nodes.filter((n) => n.id !== who.id) } : this.db, who.group);
    if (!slot.ok) return { ok: false, code: slot.code, reason: slot.reason };
    return have ? { op: 'change', node: { ...who, shortId: slot.shortId } } : { op: 'add', node: { ...who, shortId: slot.shortId } };
  }

  private runNext(): void {
    const head = this.queue[0];
    if (!this.sub || !head || this.coordinating || this.stopped) return;
    if (this.deps.clock.now() < head.notBefore) return;
    const change = this.changeFor(head.intent);
    if (!('op' in change)) return this.finish(head, change);
    const s = this.deps.settings;
    const anchors = anchorsOf(this.db);
    const actor = createActor(ndbCoordinatorMachine, {
      clock: this.deps.clock,
      inspect: this.deps.inspect,
      input: {
        self: s.id,
        version: this.db.version + 1,
        ballot: { round: ++this.round, by: `${s.id}/${s.epoch}` },
        change,
        anchors: anchors.map((a) => a.id),
        votes: Object.fromEntries(anchors.map((a) => [a.id, a.votes])),
        totalVotes: totalVotes(this.db),
        quorate: this.deps.quorumView().quorate,
        timeoutMs: s.periodMs * 4,
      },
    });
    actor.on('send', (e) => this.send(e));
    actor.subscribe((snap) => {
      if (snap.status === 'done' && this.coordinating?.actor === actor) this.concluded(head, snap.output!);
    });
    this.coordinating = { actor, pending: head };
    actor.start();
  }

  private concluded(p: Pending, out: NdbUpdateOutput): void {
    this.coordinating = undefined;
    if (out.ok && !out.own) return this.retry(p, 'E_BUSY', 0);
    if (out.ok || !RETRIED.includes(out.code)) return this.finish(p, out);
    if (out.round !== undefined) this.round = Math.max(this.round, out.round);
    if (out.code === 'E_STALE') this.fetch();
    this.retry(p, out.code);
  }

  private retry(p: Pending, code: UpdateCode, pausePeriods = 1 + this.deps.random.next() * 2): void {
    p.attempts++;
    if (p.attempts >= ATTEMPTS_MAX) {
      return this.finish(p, { ok: false, code, reason: `gave up after ${p.attempts} tries (${code})` });
    }
    // A random pause breaks ties between anchors coordinating at once.
    p.notBefore = this.deps.clock.now() + this.deps.settings.periodMs * pausePeriods;
    if (pausePeriods === 0) this.deps.clock.setTimeout(() => this.runNext(), 0);
  }

  private finish(p: Pending, out: NdbUpdateOutput): void {
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    p.done(out);
    if (!this.stopped) this.deps.clock.setTimeout(() => this.runNext(), 0);
  }
}

function entryIsCurrent(have: NodeEntry | undefined, who: Identity): boolean {
  return (
    have !== undefined &&
    have.endpoint === who.endpoint &&
    have.anchor === who.anchor &&
    have.votes === who.votes &&
    have.group === who.group &&
    have.pid === who.pid
  );
}
