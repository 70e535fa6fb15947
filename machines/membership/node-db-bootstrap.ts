/**
 * Node database, bootstrap (SPEC.md M2): how a node gets its entry into the
 * database and keeps it current.
 *
 * Safety claim: a new cluster's version 1 comes only from a configured
 * anchor that has heard every configured anchor endpoint answer as an
 * anchor, and is built from exactly those anchors (`founders`, then
 * `genesis`), so every anchor started from the same configuration builds
 * the same version 1 and forming needs no coordinator; every later entry
 * enters by a coordinated update (node-db-coordinator.ts), asked for with
 * `ndb.join`. A node asks at most once a period, each anchor in turn, so an
 * anchor that is down costs a period, not the join.
 *
 * Each period (the `period` delay) the node takes one turn, by phase:
 *  - greeting: there is no database yet. The node greets every configured
 *    anchor endpoint but its own (`ndb.hello`), whose ids it cannot know
 *    yet; the answers (`WELCOME`) name them, and bring a newer database when
 *    the anchor has one.
 *  - forming: an anchor every configured anchor has answered: the actor
 *    builds version 1 from them. It greets on while that is pending. A lone
 *    configured anchor is here at its first turn, with no answer to wait
 *    for: it holds every vote and forms the cluster by itself.
 *  - joining: the database exists, but this node's entry is missing or out
 *    of date (a restart brings a new pid, or an endpoint moved). The node asks
 *    the next anchor in turn to add or change it (`ndb.join`); an anchor
 *    already listed coordinates its own change instead (`change_own_entry`).
 *    While the database names no other anchor, it greets as well.
 *  - member: the entry is current; nothing to ask.
 *  - removed: a newer database than one that held this incarnation's
 *    current entry no longer holds this node at all. It was deleted (the
 *    operator's `mangrove node remove`), not left behind by a restart:
 *    asking to join again would undo the operator's decision, so the node
 *    asks nothing more, emits `removed` once and leaves the host to stop
 *    it. A node that was never a member in this incarnation (a new node, or
 *    one restarted after it was removed) still asks to join: starting a
 *    node is how it is added.
 * Every turn ends with `period`, the actor's own periodic work (fetching a
 * newer version seen in a pulse, running the next queued update). A turn's
 * messages leave after the next period is timed, so turns are exactly
 * `periodMs` apart whatever a turn does.
 *
 * The machine follows the database through `DB` events and decides nothing
 * on them: messages leave on turns only.
 *
 * Emits: `greet {endpoint, body}` (an `ndb.hello` for an endpoint whose id is
 * unknown), `send` (`ndb.join`), `change_own_entry`, `misconfigured
 * {endpoint}` (a configured anchor endpoint answers as a non-anchor: the
 * cluster cannot form), `period`, `removed {version}` (the version that
 * dropped this node).
 */
import { assertEvent, assign, emit, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { Body, Identity, NodeDbSnapshot } from '../../bus/messages/index.js';
import { sendTo, type SendOut } from '../outbox.js';
import { anchorsOf, findNode } from './node-db.js';
import { entryIsCurrent, joinTarget } from './node-db-turns.js';

export const machineName = 'node-db-bootstrap';

export interface NdbBootstrapInput {
  /** This node, as its settings describe it. */
  self: Identity;
  /** The configured anchor endpoints: a new cluster's anchors, this node's own among them if it is one. */
  seeds: readonly string[];
  /** The database this node holds when it starts. */
  db: NodeDbSnapshot;
  periodMs: number;
}

export interface NdbBootstrapContext extends NdbBootstrapInput {
  /** Identities learned from `ndb.welcome`, by configured endpoint (so at most one per seed). */
  greeted: Readonly<Record<string, Identity>>;
  /** Join requests sent so far: the next goes to the next anchor. */
  joinTurn: number;
  /** The newest version that held this incarnation's current entry; 0 while it never has. */
  memberAt: number;
}

export type NdbBootstrapEvent =
  /** The database this node holds changed (committed, adopted or built). */
  | { type: 'DB'; db: NodeDbSnapshot }
  /** An anchor endpoint answered a greeting. */
  | { type: 'WELCOME'; identity: Identity };

export type NdbBootstrapEmitted =
  | { type: 'greet'; endpoint: string; body: Body<'ndb.hello'> }
  | SendOut
  | { type: 'change_own_entry' }
  | { type: 'misconfigured'; endpoint: string }
  | { type: 'period' }
  | { type: 'removed'; version: number };

/** What a new cluster's anchor can do with the answers it has. */
export type GenesisPlan =
  /** A configured anchor has not answered yet. */
  | { kind: 'wait' }
  /** A configured anchor endpoint answered as a non-anchor: no version 1 can hold it. */
  | { kind: 'misconfigured'; endpoint: string }
  /** This node is not among the configured anchors: it waits to be sent the database. */
  | { kind: 'not_founder' }
  /** Every configured anchor has answered: version 1 is theirs. */
  | { kind: 'form'; anchors: Identity[] };

/** Reads the configured endpoints in order, as every anchor does, so each stops at the same one. */
export function genesisPlan(seeds: readonly string[], self: Identity, greeted: Readonly<Record<string, Identity>>): GenesisPlan {
  const anchors: Identity[] = [];
  for (const endpoint of seeds) {
    const who = endpoint === self.endpoint ? self : greeted[endpoint];
    if (!who) return { kind: 'wait' };
    if (!who.anchor) return { kind: 'misconfigured', endpoint };
    anchors.push(who);
  }
  if (!anchors.some((a) => a.id === self.id)) return { kind: 'not_founder' };
  return { kind: 'form', anchors };
}

const isFormed = (c: NdbBootstrapContext): boolean => c.db.version > 0;
const isMember = (c: NdbBootstrapContext): boolean => entryIsCurrent(findNode(c.db, c.self.id), c.self);
/** The version `db` makes the newest to hold this incarnation's current entry. */
const memberAtWith = (c: NdbBootstrapContext, db: NodeDbSnapshot): number =>
  entryIsCurrent(findNode(db, c.self.id), c.self) ? Math.max(c.memberAt, db.version) : c.memberAt;
/** A database newer than one that held this incarnation, without this node: it was deleted. */
const dropsThisNode = (c: NdbBootstrapContext, db: NodeDbSnapshot): boolean =>
  c.memberAt > 0 && db.version > c.memberAt && findNode(db, c.self.id) === undefined;
const otherAnchors = (c: NdbBootstrapContext) => anchorsOf(c.db).filter((a) => a.id !== c.self.id);
/** Only an anchor of a cluster not formed yet builds version 1. */
const planOf = (c: NdbBootstrapContext): GenesisPlan | undefined =>
  c.self.anchor && !isFormed(c) ? genesisPlan(c.seeds, c.self, c.greeted) : undefined;
const greetings = (c: NdbBootstrapContext): NdbBootstrapEmitted[] =>
  c.seeds.filter((endpoint) => endpoint !== c.self.endpoint).map((endpoint) => ({
    type: 'greet' as const,
    endpoint,
    body: { identity: c.self, dbVersion: c.db.version },
  }));

export const ndbBootstrapMachine = setup({
  types: {
    context: {} as NdbBootstrapContext,
    input: {} as NdbBootstrapInput,
    events: {} as NdbBootstrapEvent,
    emitted: {} as NdbBootstrapEmitted,
  },
  actions: {
    takeDb: assign(({ context, event }) => {
      assertEvent(event, 'DB');
      return { db: event.db, memberAt: memberAtWith(context, event.db) };
    }),
    reportRemoved: emit(({ event }) => {
      assertEvent(event, 'DB');
      return { type: 'removed' as const, version: event.db.version };
    }),
    /** Only configured endpoints are kept: they are all genesis reads, and it bounds the map. */
    learn: assign(({ context, event }) => {
      assertEvent(event, 'WELCOME');
      const { endpoint } = event.identity;
      if (!context.seeds.includes(endpoint)) return {};
      return { greeted: { ...context.greeted, [endpoint]: event.identity } };
    }),
    /** Said at every answer that finds it, as the operator must fix the configuration. */
    warnIfMisconfigured: enqueueActions(({ context, enqueue }) => {
      const plan = planOf(context);
      if (plan?.kind === 'misconfigured') enqueue.emit({ type: 'misconfigured', endpoint: plan.endpoint });
    }),
    greet: enqueueActions(({ context, enqueue }) => {
      for (const g of greetings(context)) enqueue.emit(g);
    }),
    /** A database that names no other anchor gives no one to ask: greet the configured ones. */
    greetIfAlone: enqueueActions(({ context, enqueue }) => {
      if (otherAnchors(context).length > 0) return;
      for (const g of greetings(context)) enqueue.emit(g);
    }),
    askNextAnchor: enqueueActions(({ context, enqueue }) => {
      const target = joinTarget(otherAnchors(context), context.joinTurn);
      enqueue.assign({ joinTurn: context.joinTurn + 1 });
      if (target) enqueue.emit(sendTo(target.id, 'ndb.join', { identity: context.self }));
    }),
    changeOwnEntry: emit({ type: 'change_own_entry' as const }),
    endTurn: emit({ type: 'period' as const }),
  },
  guards: {
    wasRemoved: ({ context, event }) => event.type === 'DB' && dropsThisNode(context, event.db),
    isMember: ({ context }) => isMember(context),
    isOut: ({ context }) => !isMember(context),
    isFormed: ({ context }) => isFormed(context),
    isUnformed: ({ context }) => !isFormed(context),
    /** An anchor already in the database: no other anchor needs to be asked to change its entry. */
    isListedAnchor: ({ context }) => context.self.anchor && findNode(context.db, context.self.id) !== undefined,
    knowsEveryAnchor: ({ context }) => planOf(context)?.kind === 'form',
    awaitsAnAnchor: ({ context }) => planOf(context)?.kind !== 'form',
  },
  delays: {
    period: ({ context }) => context.periodMs,
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({
    ...input,
    greeted: {},
    joinTurn: 0,
    memberAt: entryIsCurrent(findNode(input.db, input.self.id), input.self) ? input.db.version : 0,
  }),
  initial: 'running',
  states: {
    // The period's timer belongs to `running`, entered before its children,
    // so each period is timed before its turn's messages leave.
    running: {
      after: { period: { target: 'running', reenter: true } },
      on: {
        DB: [{ guard: 'wasRemoved', target: 'removed', actions: ['takeDb', 'reportRemoved'] }, { actions: 'takeDb' }],
        WELCOME: { actions: ['learn', 'warnIfMisconfigured'] },
      },
      initial: 'turn',
      states: {
        /** This period's turn, by phase, then on to the phase. */
        turn: {
          always: [
            { guard: 'isMember', target: 'member', actions: 'endTurn' },
            { guard: 'isUnformed', target: 'greeting', actions: ['greet', 'endTurn'] },
            { guard: 'isListedAnchor', target: 'joining', actions: ['greetIfAlone', 'changeOwnEntry', 'endTurn'] },
            { target: 'joining', actions: ['greetIfAlone', 'askNextAnchor', 'endTurn'] },
          ],
        },
        greeting: {
          always: [
            { guard: 'isFormed', target: 'joining' },
            { guard: 'knowsEveryAnchor', target: 'forming' },
          ],
        },
        /** The actor builds version 1 from `founders`. */
        forming: {
          always: [
            { guard: 'isFormed', target: 'joining' },
            { guard: 'awaitsAnAnchor', target: 'greeting' },
          ],
        },
        joining: {
          always: { guard: 'isMember', target: 'member' },
        },
        member: {
          always: { guard: 'isOut', target: 'joining' },
        },
      },
    },
    /** Deleted from the database: no more turns, so nothing more is asked; the host stops the node. */
    removed: { type: 'final' },
  },
});

export type NdbBootstrapSnapshot = SnapshotFrom<typeof ndbBootstrapMachine>;

/**
 * The anchors a new cluster's version 1 is built from, once this anchor has
 * heard every configured one (the actor builds it with `genesis`, and a
 * configuration no database can hold throws there, where it is reported).
 */
export function founders(snapshot: NdbBootstrapSnapshot): readonly Identity[] | undefined {
  if (!snapshot.matches({ running: 'forming' })) return undefined;
  const plan = planOf(snapshot.context);
  return plan?.kind === 'form' ? plan.anchors : undefined;
}
