/**
 * The node-database element (M2). Every node keeps a copy; anchors hold it
 * whole, persisted, and change it only by a coordinated update: one anchor
 * coordinates, every anchor of the quorum set is subordinate, one update at
 * a time, the new version fixed before it starts, no update without quorum.
 *
 * The decisions are the machines': how a node gets into the database
 * (greeting the configured anchors, forming version 1, asking to join:
 * machines/membership/node-db-bootstrap.ts), the rules of turn for queued
 * updates and fetches (node-db-turns.ts), and the update itself
 * (node-db-coordinator.ts, node-db-subordinate.ts). This element wires them
 * to the bus and the store, and holds what only it can: the queue of updates
 * with their callers' promises, and the version newest seen in a pulse.
 */
import { BehaviorSubject, Subject } from 'rxjs';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { present } from '../../bus/assert.js';
import type { Clock, Random } from '../../bus/clock.js';
import type { Envelope } from '../../bus/envelope.js';
import type { Body, Identity, NdbOp, NodeDbSnapshot } from '../../bus/messages/index.js';
import type { ReplyRoute } from '../../bus/transport/transport.js';
import { founders, ndbBootstrapMachine } from '../../machines/membership/node-db-bootstrap.js';
import { ndbCoordinatorMachine, type NdbUpdateOutput } from '../../machines/membership/node-db-coordinator.js';
import { ndbSubordinateMachine } from '../../machines/membership/node-db-subordinate.js';
import { QUEUE_MAX, backoffPeriods, changeFor, conclusionOf, entryIsCurrent, fetchIsDue, fetchTarget, nextTry, type Intent, type RetriedCode } from '../../machines/membership/node-db-turns.js';
import { anchorsOf, emptyDb, findNode, genesis, totalVotes } from '../../machines/membership/node-db.js';
import type { SendOut } from '../../machines/outbox.js';
import type { Log } from '../log.js';
import type { Outbox } from '../outbox.js';
import type { NodeSettings } from '../settings.js';
import type { NodeStore } from '../storage/node-store.js';

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

interface Pending {
  intent: Intent;
  attempts: number;
  notBefore: number;
  done: (r: NdbUpdateOutput) => void;
}

type Subordinate = Actor<typeof ndbSubordinateMachine>;
type Coordinator = Actor<typeof ndbCoordinatorMachine>;
type Bootstrap = Actor<typeof ndbBootstrapMachine>;

export class NodeDbActor {
  readonly db$: BehaviorSubject<NodeDbSnapshot>;
  /** The version that deleted this node from the database, once the bootstrap finds it was (the host stops the node). */
  readonly removed$ = new Subject<number>();
  private sub?: Subordinate;
  private boot?: Bootstrap;
  private coordinating?: { actor: Coordinator; pending: Pending };
  private queue: Pending[] = [];
  private newest = 0;
  private lastFetchAt = -Infinity;
  /** The highest ballot round this anchor has used or been outbid by. */
  private round = 0;
  private stopped = false;

  constructor(private readonly deps: NodeDbDeps) {
    this.db$ = new BehaviorSubject(deps.store.loadNodeDb() ?? emptyDb());
  }

  get db(): NodeDbSnapshot {
    return this.db$.value;
  }

  identity(): Identity {
    const s = this.deps.settings;
    return { id: s.id, endpoint: s.endpoint, anchor: s.anchor, votes: s.votes, group: s.group, pid: s.pid, epoch: s.epoch };
  }

  start(): void {
    this.deps.outbox.transport.setDirectory((id) => findNode(this.db, id)?.endpoint);
    if (this.deps.settings.anchor) this.startSubordinate();
    this.startBootstrap();
  }

  stop(): void {
    this.stopped = true;
    this.boot?.stop();
    this.coordinating?.actor.stop();
    this.sub?.stop();
    for (const p of this.queue) p.done({ ok: false, code: 'E_TIMEOUT', reason: 'the node is stopping' });
    this.queue = [];
    this.db$.complete();
    this.removed$.complete();
  }

  /** True once this node's own entry is current in its copy of the database. */
  joined(): boolean {
    return entryIsCurrent(findNode(this.db, this.deps.settings.id), this.identity());
  }

  /** Runs a coordinated update from this anchor (client `ndb_update`). */
  update(change: NdbOp): Promise<NdbUpdateOutput> {
    return new Promise((done) => this.enqueue({ change }, done));
  }

  /**
   * The same, answered by a callback called while the node handles the input
   * that ends the update, not on a later microtask: a protocol element that
   * acts on the outcome (the PAN's failover) then acts within that input, as
   * a replay of the node will (M27).
   */
  updateThen(change: NdbOp, done: (out: NdbUpdateOutput) => void): void {
    this.enqueue({ change }, done);
  }

  /**
   * A pulse or a rebuild message named a newer version than this node has:
   * fetch it, from the node that named it (it has it, or learned of it),
   * else an anchor; again at the next such news (at most once a period)
   * until it is here, as a fetch or its answer may be lost.
   */
  noteVersion(version: number, from?: string): void {
    if (version <= this.db.version) return;
    this.newest = Math.max(this.newest, version);
    this.fetch(from !== undefined && from !== this.deps.settings.id && findNode(this.db, from) ? from : undefined);
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
        if (b.db) this.adopt(b.db);
        return this.welcomed(b.identity);
      }
      case 'ndb.join':
        return this.joinAsked(env, route);
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

  /** An anchor's answer to our greeting; a new cluster's anchor builds version 1 once every configured one has answered. */
  private welcomed(identity: Identity): void {
    const boot = this.boot;
    if (!boot) return;
    boot.send({ type: 'WELCOME', identity });
    this.formIfFounder(boot);
  }

  /**
   * Builds version 1 once the bootstrap is forming. An answer is how it gets
   * there, except for the lone configured anchor: it has heard every
   * configured anchor (itself) at its first turn, and no answer will come.
   */
  private formIfFounder(boot: Bootstrap): void {
    const anchors = founders(boot.getSnapshot());
    if (anchors) this.adopt(genesis(anchors));
  }

  /** A node asks this anchor to add or change its entry: queued once, answered with the database when done. */
  private joinAsked(env: Envelope, route: ReplyRoute): void {
    const { outbox } = this.deps;
    const b = env.body as Body<'ndb.join'>;
    if (!this.sub) return outbox.reply(route, env, 'reply.err', { code: 'E_NOT_ANCHOR', message: 'only anchors add nodes' });
    outbox.transport.setPeer(b.identity.id, b.identity.endpoint);
    if (this.queue.some((p) => 'join' in p.intent && p.intent.join.id === b.identity.id)) return;
    this.enqueue({ join: b.identity }, (r) => {
      if (r.ok) outbox.send(b.identity.id, 'ndb.joined', { db: this.db });
      else this.deps.log.warn({ node: b.identity.id, code: r.code, reason: r.reason }, 'join refused');
    });
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
    actor.on('behind', (e) => this.noteVersion(e.version - 1));
    this.sub = actor;
    actor.start();
  }

  /** Its first turn is taken at start: greeting, or asking to join, at once. */
  private startBootstrap(): void {
    const s = this.deps.settings;
    const actor = createActor(ndbBootstrapMachine, {
      clock: this.deps.clock,
      inspect: this.deps.inspect,
      input: { self: this.identity(), seeds: s.seeds, db: this.db, periodMs: s.periodMs },
    });
    actor.on('greet', (e) => this.deps.outbox.sendToEndpoint(e.endpoint, 'ndb.hello', e.body));
    actor.on('send', (e) => this.send(e));
    // An anchor whose own entry is stale coordinates its own change.
    actor.on('change_own_entry', () => {
      if (!this.queue.some((p) => 'join' in p.intent)) this.enqueue({ join: this.identity() }, () => {});
    });
    actor.on('misconfigured', (e) => {
      this.deps.log.warn({ endpoint: e.endpoint }, 'a configured anchor endpoint answers as a non-anchor; the cluster cannot form');
    });
    actor.on('removed', (e) => this.removed$.next(e.version));
    actor.on('period', () => {
      if (this.newest > this.db.version) this.fetch();
      this.runNext();
    });
    this.boot = actor;
    actor.start();
    this.formIfFounder(actor);
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
    this.boot?.send({ type: 'DB', db });
    this.db$.next(db);
  }

  private adopt(db: NodeDbSnapshot): void {
    if (db.version <= this.db.version) return;
    if (this.sub) this.sub.send({ type: 'ADOPT', db });
    else this.publish(db);
  }

  private fetch(from?: string): void {
    const now = this.deps.clock.now();
    if (!fetchIsDue(now, this.lastFetchAt, this.deps.settings.periodMs)) return;
    const alive = new Set(this.deps.quorumView().aliveAnchors);
    const anchors = anchorsOf(this.db).filter((a) => a.id !== this.deps.settings.id);
    const target = fetchTarget(from, anchors, alive, this.deps.random);
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

  private runNext(): void {
    const head = this.queue[0];
    if (!this.sub || !head || this.coordinating || this.stopped) return;
    if (this.deps.clock.now() < head.notBefore) return;
    const change = changeFor(this.db, head.intent);
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
      if (snap.status !== 'done' || this.coordinating?.actor !== actor) return;
      this.concluded(head, present(snap.output, 'a coordinator that is done has its output'));
    });
    this.coordinating = { actor, pending: head };
    actor.start();
  }

  private concluded(p: Pending, out: NdbUpdateOutput): void {
    this.coordinating = undefined;
    const next = conclusionOf(out);
    if (next.then === 'finish') return this.finish(p, out);
    if (next.then === 'again') return this.retry(p, next.code, 0);
    if (next.round !== undefined) this.round = Math.max(this.round, next.round);
    if (next.fetch) this.fetch();
    // A random pause breaks ties between anchors coordinating at once.
    this.retry(p, next.code, backoffPeriods(this.deps.random.next()));
  }

  private retry(p: Pending, code: RetriedCode, pausePeriods: number): void {
    const next = nextTry(p.attempts, code, this.deps.clock.now(), this.deps.settings.periodMs * pausePeriods);
    p.attempts = next.attempts;
    if ('out' in next) return this.finish(p, next.out);
    p.notBefore = next.notBefore;
    if (pausePeriods === 0) this.deps.clock.setTimeout(() => this.runNext(), 0);
  }

  private finish(p: Pending, out: NdbUpdateOutput): void {
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    p.done(out);
    if (!this.stopped) this.deps.clock.setTimeout(() => this.runNext(), 0);
  }
}
