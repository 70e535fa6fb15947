/**
 * `mangrove sim` (M29): whole runs from one seed, their reports, and the
 * byte-for-byte determinism of their traces.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSim } from '../../runtime/sim/run.js';
import { mangrove } from '../helpers/run-cli.js';

const base = { anchors: 3, durationS: 12, crash: 0, loss: 0, periodMs: 500 };

describe('mangrove sim', function () {
  this.timeout(120_000);

  it('detects every crash, in a few periods, with groups', () => {
    const r = runSim({ ...base, nodes: 200, groups: 4, seed: 11, crash: 4 });
    expect(r.formedAfterMs).to.be.at.least(0);
    expect(r.undetected).to.equal(0);
    for (const c of r.crashes) expect(c.detectedAfterMs!, c.id).to.be.at.most(8 * base.periodMs);
  });

  it('keeps the message load per node flat as the cluster grows, with groups', () => {
    const small = runSim({ ...base, nodes: 64, groups: 1, seed: 3 });
    const large = runSim({ ...base, nodes: 640, groups: 10, seed: 3 });
    expect(large.messagesPerNodePerSecond / small.messagesPerNodePerSecond).to.be.within(0.8, 1.2);
    expect(large.quorumChanges).to.equal(0);
  });

  it('loses no crash to message loss and a partition, and loses quorum only on the minority side', () => {
    const r = runSim({ ...base, nodes: 30, groups: 2, seed: 5, crash: 2, loss: 0.05, partition: [0.6, 0.4], durationS: 30 });
    expect(r.undetected).to.equal(0);
    expect(r.quorumChanges).to.be.greaterThan(0);
  });

  it('gives the same report and the same trace, byte for byte, for the same seed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mangrove-sim-'));
    try {
      const run = async (seed: number, file: string) => {
        const r = await mangrove(['sim', '--nodes', '20', '--crash', '2', '--duration', '8', '--period', '200', '--seed', String(seed), '--trace', join(dir, file), '--json'], 60_000);
        expect(r.code, r.stderr).to.equal(0);
        const report = JSON.parse(r.stdout);
        delete report.simulatedSecondsPerSecond;
        return { report, bytes: readFileSync(join(dir, file)) };
      };
      const a = await run(9, 'a.trace');
      const b = await run(9, 'b.trace');
      const c = await run(10, 'c.trace');
      expect(a.bytes.length).to.be.greaterThan(10_000);
      expect(b.bytes.equals(a.bytes), 'same seed, same trace').to.equal(true);
      expect(b.report).to.deep.equal(a.report);
      expect(c.bytes.equals(a.bytes)).to.equal(false);
      expect(a.report).to.include.keys('nodes', 'seed', 'crashes', 'undetected', 'messagesPerNodePerSecond', 'quorumChanges');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses impossible plans with a clear error', async () => {
    const r = await mangrove(['sim', '--nodes', '200', '--groups', '2']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/E_BAD_ARGUMENT: --groups 2 puts more than 64 nodes in a group/);
  });
});
