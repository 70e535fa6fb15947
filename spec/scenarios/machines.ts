/**
 * The machines scenario folders run (spec/scenarios/README.md): for each
 * folder, the kinds a `start` may name, how their input is built from the
 * step's arguments (defaults here, so a scenario states only what matters to
 * it), what shorthands events take, and what survives a crash.
 */
import type { EventObject } from 'xstate';
import type { NdbOp, NodeDbSnapshot } from '../../bus/messages/index.js';
import { BITMAP_BYTES, bitmapOf, slotsOf } from '../../machines/membership/bitmap.js';
import { heartbeatMember } from '../../machines/membership/heartbeat-member.js';
import { heartbeatMonitor } from '../../machines/membership/heartbeat-monitor.js';
import { timingFor } from '../../machines/membership/heartbeat-timing.js';
import { ndbCoordinatorMachine } from '../../machines/membership/node-db-coordinator.js';
import { ndbSubordinateMachine } from '../../machines/membership/node-db-subordinate.js';
import { genesis } from '../../machines/membership/node-db.js';
import { panElectionMachine } from '../../machines/membership/pan-election.js';
import { hasMajority, quorumMachine } from '../../machines/membership/quorum.js';
import { pageHomeMachine } from '../../machines/memory/page-home.js';
import { pageLockMachine } from '../../machines/memory/page-lock.js';
import { byteRangeLockMachine } from '../../machines/fs/byte-range-lock.js';
import { nodeAt } from '../fixtures/node-entries.js';
import type { Args, EventScope, MachineKind, ScenarioTable } from '../helpers/scenario.js';

/** Events that say when they happened carry the clock's time unless the step gives one. */
const stamped =
  (types: readonly string[]) =>
  (type: string, args: Args, scope: EventScope) =>
    types.includes(type) ? { type, at: scope.now, ...args } : { type, ...args };

// Heartbeat: a 100 ms period, level 0 (ticks of 25 ms; 13 ticks of silence is three missed deadlines).
const PERIOD_MS = 100;
const timing = timingFor(PERIOD_MS, 0);
const place = (name: string) => ({
  self: name,
  selfAnchor: false,
  level: 0,
  domain: 0,
  slot: 0,
  tickMs: timing.tickMs,
  ticksPerPeriod: timing.ticksPerPeriod,
  preference: [],
});

/** `bitmap=[0,2]`: the slots set. */
const withBitmap = (type: string, args: Args) =>
  Array.isArray(args.bitmap) ? { type, ...args, bitmap: bitmapOf(slotsAlive(args.bitmap as number[])) } : { type, ...args };
const slotsAlive = (slots: readonly number[]): boolean[] => Array.from({ length: BITMAP_BYTES * 8 }, (_, i) => slots.includes(i));

/** `members=[a,b,-,d]`: slot i is held by the i-th id (`-`: nobody). */
const slotMembers = (members: unknown): unknown =>
  Array.isArray(members) && members.every((m) => typeof m === 'string')
    ? members.flatMap((id, slot) => (id === '-' ? [] : [{ slot, id }]))
    : members;

const member: MachineKind = {
  machine: heartbeatMember,
  input: (args, name) => ({
    ...place(name),
    monitorSilenceTicksMax: timing.monitorSilenceTicksMax,
    claimWindowTicks: timing.claimWindowTicks,
    ...args,
  }),
  event: withBitmap,
};

const monitor: MachineKind = {
  machine: heartbeatMonitor,
  input: (args, name) => ({
    ...place(name),
    memberSilenceTicksMax: timing.memberSilenceTicksMax,
    presumedAlive: [],
    ...args,
    members: slotMembers(args.members ?? []),
  }),
  views: {
    /** The slots the next pulse counts alive. */
    aliveSlots: (c) => (c.alive as boolean[]).flatMap((a, i) => (a || i === c.slot ? [i] : [])),
    /** Who holds each slot. */
    members: (c) => Object.fromEntries((c.ids as (string | null)[]).flatMap((id, i) => (id === null ? [] : [[i, id]]))),
  },
};

// PAN election: five anchors a..e of one vote each unless a VIEW says otherwise.
const ELECTORATE = ['a', 'b', 'c', 'd', 'e'];

/** `send VIEW alive=[a,b,c]`: quorate and the vote totals follow from the votes (default: a..e, one each). */
function panEvent(type: string, args: Args): EventObject & Args {
  if (type !== 'VIEW' || !Array.isArray(args.alive)) return { type, ...args };
  const { alive, ...rest } = args;
  const votes = (rest.votes as Record<string, number> | undefined) ?? Object.fromEntries(ELECTORATE.map((id) => [id, 1]));
  const totalVotes = Object.values(votes).reduce((s, v) => s + v, 0);
  const reachable = (alive as string[]).reduce((s, id) => s + (votes[id] ?? 0), 0);
  return { type, quorate: hasMajority(reachable, totalVotes), aliveAnchors: alive, votes, totalVotes, ...rest };
}

// Node database: genesis of anchors a, b, c (one vote each) at version 1.
const NDB_ANCHORS = ['a', 'b', 'c'];
const db1 = genesis(NDB_ANCHORS.map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 })));

/** `add:x@10`, `change:x@11`, `delete:x`: a change of a non-anchor node at a slot of group 0. */
function changeOf(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const m = /^(add|change):([^@]+)@(\d+)$/.exec(v);
  if (m) return { op: m[1], node: nodeAt(m[2], Number(m[3])) };
  const d = /^delete:(.+)$/.exec(v);
  return d ? { op: 'delete', id: d[1] } : v;
}

/** Expands every `change` field, at any depth, from its shorthand. */
function withChanges(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withChanges);
  if (typeof v !== 'object' || v === null) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, k === 'change' ? changeOf(withChanges(x)) : withChanges(x)]));
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** A change printed in the shorthand it was written in, when it is one. */
function describeChange(v: unknown): unknown {
  const op = v as NdbOp;
  if (op.op === 'delete') return `delete:${op.id}`;
  if (op.op === 'arena' || op.op === 'arena_replicas' || op.op === 'arena_new' || op.op === 'key') return undefined;
  const slot = op.node.shortId;
  return sameJson(op.node, nodeAt(op.node.id, slot)) ? `${op.op}:${op.node.id}@${slot}` : undefined;
}

const isChange = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && ['add', 'change', 'delete'].includes((v as { op?: unknown }).op as string) && Object.keys(v).length === 2;
const isDb = (v: unknown): v is NodeDbSnapshot =>
  typeof v === 'object' && v !== null && Array.isArray((v as NodeDbSnapshot).nodes) && typeof (v as NodeDbSnapshot).version === 'number';

const subordinate: MachineKind = {
  machine: ndbSubordinateMachine,
  input: (args, name) => ({ self: name, db: db1, ...(withChanges(args) as Args) }),
  event: (type, args) => ({ type, ...(withChanges(args) as Args) }),
  // What the node-db actor writes to the store: the acceptor before each answer, the db on commit.
  persist: (store, e) => {
    if (e.type === 'persist') store.acceptor = (e as unknown as { acceptor: unknown }).acceptor;
    if (e.type === 'committed' || e.type === 'adopted') store.db = (e as unknown as { db: unknown }).db;
  },
  restart: (input, store) => ({
    ...(input as Args),
    ...(store.db ? { db: store.db } : {}),
    ...(store.acceptor ? { acceptor: store.acceptor } : {}),
  }),
};

const coordinator: MachineKind = {
  machine: ndbCoordinatorMachine,
  input: (args, name) => {
    const self = typeof args.self === 'string' ? args.self : name;
    return {
      self,
      version: 2,
      ballot: { round: 1, by: `${self}/1` },
      anchors: NDB_ANCHORS,
      votes: Object.fromEntries(NDB_ANCHORS.map((id) => [id, 1])),
      totalVotes: NDB_ANCHORS.length,
      quorate: true,
      timeoutMs: 200,
      ...(withChanges(args) as Args),
    };
  },
  // `send PROMISE from=b`: an ok answer for this coordinator's version and ballot, from an anchor at the version before.
  event: (type, args, { context }) => {
    const version = context.version as number;
    return { type, version, ballot: context.ballot, ok: true, have: version - 1, ...(withChanges(args) as Args) } as { type: string };
  },
};

export const scenarioTable: ScenarioTable = {
  quorum: {
    kinds: {
      quorum: {
        machine: quorumMachine,
        input: (args) => ({ anchor: false, role: 'member', quorumTimeoutMs: 3000, ...args }),
        event: stamped(['CONNECTIVITY', 'QUORUM_HEARD']),
      },
    },
  },
  heartbeat: {
    kinds: { member, monitor },
    describe: (v) => (v instanceof Uint8Array && v.length === BITMAP_BYTES ? slotsOf(v) : undefined),
  },
  'pan-election': {
    kinds: {
      anchor: {
        machine: panElectionMachine,
        input: (args, name) => ({ self: name, preference: [], electionTimeoutMs: 100, retryMs: 50, ...args }),
        event: panEvent,
      },
    },
  },
  'node-db': {
    kinds: { subordinate, coordinator },
    describe: (v) => {
      if (isChange(v)) return describeChange(v);
      if (isDb(v)) return { version: v.version, nodes: v.nodes.map((n) => n.id) };
      return undefined;
    },
  },
  'page-home': {
    kinds: {
      home: {
        machine: pageHomeMachine,
        input: (args) => ({ owner: 'h', readers: [], version: 0, retryMs: 100, ...args }),
      },
    },
  },
  'page-lock': {
    kinds: {
      lock: {
        machine: pageLockMachine,
        input: (args) => ({ ...args }),
        // A LOCK does not wait unless the step says `wait=true`.
        event: (type, args) => (type === 'LOCK' ? { type, wait: false, ...args } : { type, ...args }),
      },
    },
  },
  'byte-range-lock': {
    kinds: {
      request: {
        machine: byteRangeLockMachine,
        // The lock asked for: handle h1 of node n1 (incarnation 1), bytes [start, end).
        input: ({ start = 0, end = 10, mode = 'exclusive', owner = 'h1', op = 'lock', wait = false }) => ({
          request: { start, end, mode, owner, node: 'n1', epoch: 1, key: 0 },
          op,
          wait,
        }),
      },
    },
  },
};
