/**
 * Every protocol machine a node runs, by name (SPEC.md M26): what `mangrove
 * machines list` shows, what `export NAME` and `watch --machine NAME` accept.
 * A name is the machine file's own `machineName`, which is also the machine's
 * XState `id`, so the records of `machines watch` name the same machines.
 *
 * Loading this file loads every machine (and XState): the CLI imports it only
 * in the commands that need it.
 */
import type { AnyStateMachine } from 'xstate';
import { MangroveError } from '../../bus/errors.js';
import { heartbeatMember, machineName as heartbeatMemberName } from '../../machines/membership/heartbeat-member.js';
import { heartbeatMonitor, machineName as heartbeatMonitorName } from '../../machines/membership/heartbeat-monitor.js';
import { ndbBootstrapMachine, machineName as ndbBootstrapName } from '../../machines/membership/node-db-bootstrap.js';
import { ndbCoordinatorMachine, machineName as ndbCoordinatorName } from '../../machines/membership/node-db-coordinator.js';
import { ndbSubordinateMachine, machineName as ndbSubordinateName } from '../../machines/membership/node-db-subordinate.js';
import { nodeStateMachine, machineName as nodeStateName } from '../../machines/recovery/node-state.js';
import { panElectionMachine, machineName as panElectionName } from '../../machines/membership/pan-election.js';
import { quorumMachine, machineName as quorumName } from '../../machines/membership/quorum.js';
import { pageHomeMachine, machineName as pageHomeName } from '../../machines/memory/page-home.js';
import { pageLockMachine, machineName as pageLockName } from '../../machines/memory/page-lock.js';
import { rebuildCoordinatorMachine, machineName as rebuildCoordinatorName } from '../../machines/recovery/rebuild-coordinator.js';
import { rebuildParticipantMachine, machineName as rebuildParticipantName } from '../../machines/recovery/rebuild-participant.js';
import { arenaFailoverMachine, machineName as arenaFailoverName } from '../../machines/recovery/arena-failover.js';
import { byteRangeLockMachine, machineName as byteRangeLockName } from '../../machines/fs/byte-range-lock.js';

export interface CatalogEntry {
  name: string;
  /** The SPEC.md requirements the machine implements. */
  spec: string;
  /** One line for `machines list`; the machine file's header comment says the rest. */
  summary: string;
  machine: AnyStateMachine;
}

/** In the order a node starts them: membership first, then what builds on it. */
export const machineCatalog: readonly CatalogEntry[] = [
  {
    name: heartbeatMemberName,
    spec: 'M3, M4',
    summary: 'pulses its heartbeat monitor; claims the role when the monitor falls silent',
    machine: heartbeatMember,
  },
  {
    name: heartbeatMonitorName,
    spec: 'M3, M4',
    summary: 'keeps the connectivity bitmap, declares silent members failed, broadcasts it',
    machine: heartbeatMonitor,
  },
  { name: quorumName, spec: 'M5', summary: 'whether this node has quorum, computed or adopted by its role', machine: quorumMachine },
  {
    name: ndbBootstrapName,
    spec: 'M2',
    summary: 'a node\'s way into the node database: greeting the anchors, forming version 1, asking to join',
    machine: ndbBootstrapMachine,
  },
  {
    name: ndbSubordinateName,
    spec: 'M2',
    summary: 'an anchor\'s promises, accepts and commits of node-database versions',
    machine: ndbSubordinateMachine,
  },
  {
    name: ndbCoordinatorName,
    spec: 'M2',
    summary: 'one node-database update, from the quorum check to the commit',
    machine: ndbCoordinatorMachine,
  },
  { name: panElectionName, spec: 'M16', summary: 'the election of the primary anchor node', machine: panElectionMachine },
  { name: nodeStateName, spec: 'M6', summary: 'the node\'s recovery state: normal, notified, quiescent, rebuilding', machine: nodeStateMachine },
  {
    name: rebuildParticipantName,
    spec: 'M14, M6',
    summary: 'a node\'s part in the RAM directory rebuild: notified, drained, repopulated, resumed at the coordinator\'s word',
    machine: rebuildParticipantMachine,
  },
  {
    name: rebuildCoordinatorName,
    spec: 'M14',
    summary: 'an anchor coordinating a rebuild round: quiesce, repopulate, resume every live node',
    machine: rebuildCoordinatorMachine,
  },
  {
    name: arenaFailoverName,
    spec: 'M16, M8',
    summary: 'the PAN handing a failed home\'s arenas, past its grace, to a live directory replica',
    machine: arenaFailoverMachine,
  },
  {
    name: pageHomeName,
    spec: 'M10',
    summary: 'one page\'s coherence at its home: single writer, many readers, by invalidation',
    machine: pageHomeMachine,
  },
  {
    name: pageLockName,
    spec: 'M7, M21',
    summary: 'one page\'s lock at its home: shared or exclusive, per client, with a FIFO of waiters',
    machine: pageLockMachine,
  },
  {
    name: byteRangeLockName,
    spec: 'M21',
    summary: 'one byte-range lock request over a file\'s lock page: read shared, decide and write exclusive, or wait for the page to change',
    machine: byteRangeLockMachine,
  },
];

export function machineNames(): string[] {
  return machineCatalog.map((e) => e.name);
}

export function isMachineName(name: string): boolean {
  return machineCatalog.some((e) => e.name === name);
}

/** The catalog entry of `name`; E_NOT_FOUND names the known machines. */
export function findMachine(name: string): CatalogEntry {
  const entry = machineCatalog.find((e) => e.name === name);
  if (!entry) throw unknownMachine(name);
  return entry;
}

export function unknownMachine(name: string): MangroveError {
  return new MangroveError('E_NOT_FOUND', `no protocol machine is named ${JSON.stringify(name)}; the machines are: ${machineNames().join(', ')}`);
}
