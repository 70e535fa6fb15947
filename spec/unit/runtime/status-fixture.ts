/** A NodeStatus as a 3-node cluster with one failed member would report it. */
import type { NodeStatus } from '../../../actors/status.js';
import { REJECT_REASONS, type RejectReason } from '../../../bus/envelope.js';

export const IDS = ['0a1b2c3d4e5f-018f2c3a4b5c', '1b2c3d4e5f60-018f2c3a4b5d', '2c3d4e5f6071-018f2c3a4b5e'] as const;

export function sampleStatus(overrides: Partial<NodeStatus> = {}): NodeStatus {
  const rejectedByReason = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
  return {
    self: IDS[0],
    epoch: 4,
    version: 3,
    quorum: true,
    monitor: IDS[0],
    pan: IDS[1],
    panTerm: null,
    state: 'normal',
    phase: 'joined',
    endpoint: 'tcp://127.0.0.1:7400',
    pid: 4242,
    anchor: true,
    group: 0,
    monitors: [IDS[0]],
    nodes: [
      { id: IDS[0], shortId: 0, endpoint: 'tcp://127.0.0.1:7400', pid: 4242, anchor: true, votes: 1, group: 0, role: 'monitor', state: 'normal', alive: true },
      { id: IDS[1], shortId: 1, endpoint: 'tcp://127.0.0.1:7401', pid: null, anchor: true, votes: 1, group: 0, role: 'member', state: null, alive: true },
      { id: IDS[2], shortId: 2, endpoint: 'tcp://127.0.0.1:7402', pid: null, anchor: false, votes: 0, group: 0, role: 'member', state: null, alive: false },
    ],
    rejected: 2,
    rejectedByReason: { ...rejectedByReason, malformed: 2 },
    codec: { native: true },
    faults: { enabled: true, dropped: [] },
    messages: { sent: 10, received: 9, unsent: 1, filtered: 0 },
    software: '0.1.0',
    http: 7500,
    pages: {
      node: IDS[0],
      ram: { budgetBytes: 268435456, usedBytes: 8192, pages: 2, dirtyPages: 1 },
      disk: { pages: 5, pagesMax: 1048576, freePages: 1048571 },
      homePages: 4,
      copies: { read: 1, write: 1, kept: 0, incoming: 0 },
    },
    ...overrides,
  };
}
