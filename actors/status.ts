/**
 * The cluster as one node sees it: the object behind `mangrove status --json`
 * and the node's `/status` page. One shape, built in one place (node.ts).
 */
import type { RejectReason } from '../bus/envelope.js';
import type { SpaceReport } from '../bus/messages/page.js';
import type { RebuildStatus } from './recovery/rebuild.js';
import type { ReplicationReport } from './recovery/rereplication.js';
import type { FsStats } from './fs/file-system.js';

export type NodeStateName = 'normal' | 'notified' | 'quiescent' | 'rebuilding';

export interface NodeView {
  id: string;
  /** Short id as a number (group * 64 + slot), see machines/membership/identity.ts. */
  shortId: number;
  endpoint: string;
  pid: number | null;
  anchor: boolean;
  votes: number;
  group: number;
  /** 'monitor' when this node knows it to be a heartbeat monitor (of any level), else 'member'. */
  role: 'monitor' | 'member';
  /** Recovery state (M6) where this node knows it (its own; every participant's while it coordinates a rebuild), else null. */
  state: NodeStateName | null;
  alive: boolean;
}

export interface NodeStatus {
  self: string;
  epoch: number;
  /** Node database version. */
  version: number;
  quorum: boolean;
  /** This node's level-0 heartbeat monitor. */
  monitor: string | null;
  pan: string | null;
  /** The term in which this node is PAN, when it is (M16). */
  panTerm: number | null;
  state: NodeStateName;
  /** 'forming' until the node is in a node database, then 'member'. */
  phase: 'forming' | 'joined';
  endpoint: string;
  pid: number;
  anchor: boolean;
  group: number;
  monitors: string[];
  nodes: NodeView[];
  rejected: number;
  rejectedByReason: Record<RejectReason, number>;
  codec: { native: boolean };
  faults: { enabled: boolean; dropped: string[] };
  /** Envelopes; `wireMessages`: the transport messages that carried the ones sent, where it batches them (ZeroMQ). */
  messages: { sent: number; received: number; unsent: number; filtered: number; wireMessages?: number };
  software: string;
  /** The node's HTTP port on 127.0.0.1 (/status, /metrics, /machines), or null when it serves none. */
  http: number | null;
  /** The memory engine here (M24): RAM cache use, disk pages and free space, pages this node is home to, and its copies by coherence mode. */
  pages: SpaceReport & { copies: Record<'read' | 'write' | 'kept' | 'incoming', number> };
  /** The RAM directory rebuild (M14) as this node sees it: the network's state, the round, what it coordinates, bad input dropped. */
  recovery: RebuildStatus;
  /** Re-replication (M15): what this node, as a home, has left to restore, and has restored. */
  replication: ReplicationReport;
  /** The arenas of the 128-bit space (M8) as this node's node database has them: each one's home and generation. */
  arenas?: { arena: number; home: string; gen: number }[];
  /** The file system on this node (M18-M22): calls served and failed, handles open, half-done updates recovered. */
  fs?: FsStats;
  /**
   * Whether only known keys get in (docs/security.md), the client requests
   * refused for their role, and the member keys of this node's node database
   * (endpoint → public key; the config's `peers` are let in besides).
   */
  security?: { secure: boolean; forbidden: number; memberKeys?: { endpoint: string; key: string }[] };
}

/** One protocol machine's actor running on a node: its state (dotted paths, `monitoring.ticking`) and since when. */
export interface MachineActorView {
  actor: string;
  machine: string;
  state: string;
  since: number;
}

/** A state change of one actor, as the node's machine watch keeps it (runtime/inspect/watch.ts), numbered from 1 in the node's process (`id`). */
export interface MachineTransitionView {
  id: number;
  /** The node's clock (ms since the epoch on a real node). */
  t: number;
  /** The node's permanent id. */
  node: string;
  /** The machine's id, which is its catalog name (`heartbeat-member`). */
  machine: string;
  /** The actor running it, unique in its node process (`x:12`). */
  actor: string;
  /** The state before, as dotted paths (`monitoring.ticking`); null for the actor's first state. */
  from: string | null;
  /** The state after; null when the actor stopped or failed. */
  to: string | null;
  /** The event type that caused it (`xstate.init` on start, `xstate.stop` on stop). */
  event: string;
}

/**
 * A node's protocol machines as its machine watch has them (M26): the answer
 * to `client.machines` and to the dashboard's `/dashboard/machines`. Records
 * are the kept transitions numbered after the `after` asked, the newest
 * `machinesAnswerLimits.recordsMax` of them, oldest first; `last` is the
 * newest number, for the next ask's `after`.
 */
export interface MachinesSnapshot {
  node: string;
  /** The node's clock (ms since the epoch). */
  t: number;
  actors: MachineActorView[];
  records: MachineTransitionView[];
  last: number;
  /** Transitions after `after` not in `records`: more than fit, or no longer kept. */
  missed: number;
}

export const machinesAnswerLimits = {
  /** Transitions in one answer: a poll once a heartbeat period keeps up with any node's machines. */
  recordsMax: 200,
} as const;

/** Where a node reads its own machines: present in a node process that watches them (it has an HTTP port). */
export type MachinesSource = (after?: number) => MachinesSnapshot;
