import { expect } from 'chai';
import { renderLocal, renderStatus, table } from '../../../../runtime/cli/render.js';
import { IDS, sampleStatus } from '../../../fixtures/status.js';

/** The table row of the node whose id is `id`. */
function rowOf(text: string, id: string): string {
  const row = text.split('\n').find((l) => l.includes(id) && !l.startsWith('node') && !l.startsWith('monitor') && !l.startsWith('pan'));
  if (!row) throw new Error(`no row for ${id} in:\n${text}`);
  return row;
}

describe('runtime/cli/render', () => {
  describe('table', () => {
    it('aligns columns and does not pad the last one', () => {
      expect(table(['A', 'BB'], [['xxx', 'y'], ['z', '']])).to.equal('A    BB\nxxx  y\nz');
    });
  });

  describe('renderStatus', () => {
    const text = renderStatus(sampleStatus());

    it('summarizes the node', () => {
      expect(text).to.match(/^node\s+0a1b2c3d4e5f-018f2c3a4b5c\s+\(epoch 4, pid 4242, software 0\.1\.0\)/);
      expect(text).to.match(/\nquorum\s+yes\n/);
      expect(text).to.match(/\npan\s+1b2c3d4e5f60-018f2c3a4b5d\n/);
      expect(text).to.include('version 3, 3 nodes: 2 alive, 1 failed');
      expect(text).to.include('rejected 2 (malformed 2)');
      expect(text).to.match(/\npages\s+RAM 0\.0 of 256\.0 MiB \(2 pages, 1 dirty\), disk 5 of 1048576 pages, home to 4; copies: 1 writable, 1 read-only\n/);
    });

    it('says where the rebuild and re-replication stand (M14, M15)', () => {
      expect(text).to.match(/\nrecovery\s+state normal, network normal, no rebuild yet\n/);
      expect(text).to.match(/\ncopies\s+nothing under-replicated; 0 re-replicated, 0 stale copies collected\n/);
      const busy = renderStatus(
        sampleStatus({
          recovery: { ...sampleStatus().recovery, state: 'rebuilding', network: 'rebuilding', completed: 262144, coordinating: { round: 'x/524288', phase: 'repopulating', waiting: ['a', 'b'] } },
          replication: { pagesUnderReplicated: 3, rangesUnderReplicated: 1, arenasUnderReplicated: 1, reReplicatedPages: 9, partial: false, collectedCopies: 2 },
        }),
      );
      expect(busy).to.include('state rebuilding, network rebuilding, last rebuild round 262144; coordinating round x/524288, repopulating (waiting for 2)');
      expect(busy).to.include('3 pages under-replicated, 1 directory short of replicas; 9 re-replicated, 2 stale copies collected');
    });

    it('shows which nodes are alive and which failed', () => {
      expect(rowOf(text, IDS[0])).to.match(/\balive\b/);
      expect(rowOf(text, IDS[1])).to.match(/\balive\b/);
      expect(rowOf(text, IDS[2])).to.match(/\bFAILED\b/);
    });

    it('marks this node, its monitor and the pan', () => {
      expect(rowOf(text, IDS[0])).to.match(/this node, its monitor$/);
      expect(rowOf(text, IDS[1])).to.match(/pan$/);
    });

    it('gives the term when this node is the pan', () => {
      expect(renderStatus(sampleStatus({ pan: IDS[0], panTerm: 3 }))).to.match(/\npan\s+0a1b2c3d4e5f-018f2c3a4b5c  \(this node, term 3\)\n/);
    });

    it('shouts a missing quorum', () => {
      expect(renderStatus(sampleStatus({ quorum: false }))).to.match(/\nquorum\s+NO\n/);
    });

    it('says so when there is no node database yet', () => {
      expect(renderStatus(sampleStatus({ nodes: [], phase: 'forming' }))).to.include('still forming');
    });
  });

  describe('renderLocal', () => {
    const seen = (self: string, alive: boolean[]) => {
      const s = sampleStatus({ self });
      return { ...s, nodes: s.nodes.map((n, i) => ({ ...n, alive: alive[i] })) };
    };
    const text = renderLocal({
      dir: '/tmp/cluster',
      atMs: Date.UTC(2026, 0, 1, 12, 0, 5),
      nodes: [
        { index: 0, pid: 100, status: seen(IDS[0], [true, true, false]) },
        { index: 1, pid: 101, status: seen(IDS[1], [true, true, false]) },
        { index: 2, pid: 102, exit: { code: null, signal: 'SIGKILL' } },
      ],
    });

    it('has a header with the directory, time and agreement', () => {
      expect(text).to.match(/^mangrove local: 3 nodes in \/tmp\/cluster\s+12:00:05 UTC\n/);
      expect(text).to.include('answering 2/3, quorum at 2/2, node db version 3');
    });

    it('counts how many answering nodes see each node alive', () => {
      const row0 = text.split('\n').find((l) => l.startsWith('#0 '))!;
      expect(row0).to.match(/anchor\/monitor\s+2\/2\s+yes\s+#0\s+#1\s+normal\s+-\s+0$/);
    });

    it('shows a node whose process ended', () => {
      const row2 = text.split('\n').find((l) => l.startsWith('#2 '))!;
      expect(row2).to.match(/102 .*exited \(SIGKILL\)\s+-\s+-$/);
    });

    it('shows what is left to re-replicate and what was, and explains the columns', () => {
      const busy = renderLocal({
        dir: '/tmp/cluster',
        atMs: Date.UTC(2026, 0, 1, 12, 0, 5),
        nodes: [{ index: 0, pid: 100, status: sampleStatus({ replication: { pagesUnderReplicated: 7, rangesUnderReplicated: 1, arenasUnderReplicated: 1, reReplicatedPages: 30, partial: false, collectedCopies: 0 } }) }],
      });
      expect(busy.split('\n').find((l) => l.startsWith('#0 '))).to.match(/normal\s+8\s+30$/);
      expect(busy).to.include('UNDER: pages and directories it serves that lack a copy since a failure');
    });
  });
});
