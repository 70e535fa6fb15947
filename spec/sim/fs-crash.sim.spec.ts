/**
 * Crash points of the file system's multi-page updates (SPEC.md M22): for
 * each update (create, mkdir, unlink, rmdir, link, rename in a directory,
 * rename between directories replacing a file), the node running it is
 * crashed right after its k-th page write or flush, for every k from 1 to
 * the number the update makes. Once the cluster has rebuilt without it,
 * `fs check` (run on another node) must repair what the update left (its
 * transaction mark) and report no problem, a second check must find
 * nothing to repair, and the update must have happened whole or not at
 * all, as the other nodes see it. Twice: with the directories homed on the
 * node that crashes (its arena fails over) and on another node. Then the
 * client sends the update again to another node, with the same `txn` (as a
 * mount does after a failover): it must succeed, and have happened once.
 *
 * And the same updates refused at each write or flush (E_RECOVERING, as a
 * rebuild refuses one) with their node alive: sent again with their `txn`,
 * each must succeed and have happened once (not E_NOT_FOUND or E_EXISTS
 * for its own first try's work, which a recovery completed).
 *
 * `MANGROVE_SEED=S` changes the cluster's seed; `FS_CRASH_OPS=create,rename`
 * runs only those updates; `DEBUG_FS=1` prints each check's report.
 */
import { expect } from 'chai';
import type { MangroveError } from '../../bus/errors.js';
import type { ClientFsOp } from '../../bus/messages/fs.js';
import { formedCluster } from '../helpers/page-workload.js';
import { crashAfterWrites, fsSoon, getFile, names, putFile, refuseAfterWrites } from '../helpers/fs-workload.js';
import { withTxn } from '../../runtime/client/txn.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';

interface CheckReport {
  repairs: string[];
  problems: string[];
  clean: boolean;
}

const SEED = Number(process.env.MANGROVE_SEED ?? 7);
/** The node that runs the update and crashes; node 0 checks. */
const VICTIM = 1;
const OTHER = 2;

interface Case {
  name: string;
  /** The update, on the victim node (`prepare` may make it there first, e.g. open a handle). */
  op: ClientFsOp | ((c: SimCluster) => Promise<ClientFsOp>);
  /** What the tree must be before (false) and after (true) the update: one of the two. */
  outcome: (c: SimCluster, node: number) => Promise<boolean>;
}

const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

/** Whether `path` is listed and stat-able from `node`. */
async function present(c: SimCluster, node: number, dir: string, name: string): Promise<boolean> {
  return (await names(c, node, dir)).includes(name);
}

const GROWTH = new Uint8Array(40_000).map((_, i) => (i * 13) & 0xff);

const CASES: Case[] = [
  {
    name: 'extend a file, then fsync',
    op: async (c) => {
      const { handle } = await fsSoon<{ handle: string }>(c, VICTIM, { op: 'open', fs: 'default', path: '/f/b', write: true }, 'victim');
      return { op: 'write', handle, offset: 4, data: GROWTH };
    },
    outcome: async (c, n) => {
      const got = await getFile(c, n, '/f/b');
      if (got.length === 4) return false;
      expect(got.length).to.equal(4 + GROWTH.length);
      expect(got.subarray(4)).to.deep.equal(GROWTH);
      return true;
    },
  },
  { name: 'create', op: { op: 'open', fs: 'default', path: '/d/new', create: true, write: true }, outcome: (c, n) => present(c, n, '/d', 'new') },
  { name: 'mkdir', op: { op: 'mkdir', fs: 'default', path: '/d/sub' }, outcome: (c, n) => present(c, n, '/d', 'sub') },
  {
    name: 'unlink',
    op: { op: 'unlink', fs: 'default', path: '/d/a' },
    outcome: async (c, n) => !(await present(c, n, '/d', 'a')),
  },
  { name: 'rmdir', op: { op: 'rmdir', fs: 'default', path: '/e' }, outcome: async (c, n) => !(await present(c, n, '/', 'e')) },
  {
    name: 'link',
    op: { op: 'link', fs: 'default', existing: '/d/a', path: '/d/a2' },
    outcome: async (c, n) => {
      if (!(await present(c, n, '/d', 'a2'))) return false;
      expect(decode(await getFile(c, n, '/d/a2'))).to.equal('alpha');
      return true;
    },
  },
  {
    name: 'rename in a directory',
    op: { op: 'rename', fs: 'default', from: '/d/a', to: '/d/z' },
    outcome: async (c, n) => {
      const ls = await names(c, n, '/d');
      expect(ls.includes('a') !== ls.includes('z'), `exactly one of a, z in ${ls}`).to.equal(true);
      return ls.includes('z');
    },
  },
  {
    name: 'rename between directories, replacing',
    op: { op: 'rename', fs: 'default', from: '/d/a', to: '/f/b' },
    outcome: async (c, n) => {
      const d = await names(c, n, '/d');
      const f = await names(c, n, '/f');
      expect(f).to.include('b');
      const moved = !d.includes('a');
      expect(decode(await getFile(c, n, '/f/b'))).to.equal(moved ? 'alpha' : 'beta');
      return moved;
    },
  },
];

/** The tree every case starts from, made through `home` (whose arena then holds it) and fsynced. */
async function setUp(c: SimCluster, home: number): Promise<void> {
  for (const path of ['/d', '/e', '/f']) await fsSoon(c, home, { op: 'mkdir', fs: 'default', path });
  await putFile(c, home, '/d/a', text('alpha'));
  await putFile(c, home, '/f/b', text('beta'));
}

async function check(c: SimCluster, node: number): Promise<CheckReport> {
  return fsSoon<CheckReport>(c, node, { op: 'check', fs: 'default' }, 'checker', 120_000);
}

/** Runs `kase` crashing after write `k`; returns the update's writes when it finished before k (no crash). */
async function crashAt(kase: Case, home: number, k: number): Promise<{ finished: boolean; writes: number }> {
  const c = await formedCluster(SEED, 4, { fastPath: false });
  try {
    await fsSoon(c, 0, { op: 'fileset_list' });
    await setUp(c, home);
    const op = withTxn(typeof kase.op === 'function' ? await kase.op(c) : kase.op);
    const armed = crashAfterWrites(c, VICTIM, k);
    let answered = false;
    c.node(VICTIM)!
      .fs.call(op, 'victim')
      .then(
        () => (answered = true),
        () => (answered = true),
      );
    await c.runUntilAsync(() => armed.crashed() || answered, 60_000, () => `${kase.name} to finish or crash`);
    const finished = !armed.crashed();
    const writes = armed.count();
    if (finished) {
      armed.disarm();
      return { finished, writes };
    }
    const first = await check(c, 0);
    if (process.env.DEBUG_FS) console.log(kase.name, home, k, JSON.stringify(first));
    expect(first.problems, `${kase.name}, crash after write ${k}: problems after recovery`).to.deep.equal([]);
    const second = await check(c, 0);
    expect(second.repairs, `${kase.name}, crash after write ${k}: a second check still repairs`).to.deep.equal([]);
    expect(second.clean).to.equal(true);
    const seen0 = await kase.outcome(c, 0);
    const seen2 = await kase.outcome(c, OTHER);
    expect(seen2, `${kase.name}, crash after write ${k}: nodes 0 and ${OTHER} disagree on the outcome`).to.equal(seen0);
    if ('txn' in op && op.txn !== undefined) {
      await fsSoon(c, OTHER, op, 'victim').catch((err: unknown) => expect.fail(`${kase.name}, crash after write ${k}: sent again to node ${OTHER}, it failed: ${String(err)}`));
      expect(await kase.outcome(c, 0), `${kase.name}, crash after write ${k}: sent again, it happened`).to.equal(true);
      expect((await check(c, 0)).clean, `${kase.name}, crash after write ${k}: sent again, the fileset is clean`).to.equal(true);
    }
    return { finished, writes };
  } finally {
    await c.stopAll();
  }
}

/** Runs `kase` with its write `k` refused; the client sends it again to the same node; false when it finished before k. */
async function refuseAt(kase: Case, k: number): Promise<boolean> {
  const c = await formedCluster(SEED, 4, { fastPath: false });
  try {
    await fsSoon(c, 0, { op: 'fileset_list' });
    await setUp(c, VICTIM);
    const op = withTxn(typeof kase.op === 'function' ? await kase.op(c) : kase.op);
    const armed = refuseAfterWrites(c, VICTIM, k);
    const first = await c.settle(c.node(VICTIM)!.fs.call(op, 'victim').then(() => 'ok', (err: MangroveError) => err.code), 60_000);
    armed.disarm();
    if (!armed.refused()) {
      expect(first).to.equal('ok');
      return false;
    }
    if (first !== 'ok') {
      expect(first, `${kase.name}, write ${k} refused`).to.equal('E_RECOVERING');
      await fsSoon(c, VICTIM, op, 'victim').catch((err: unknown) => expect.fail(`${kase.name}, write ${k} refused: sent again, it failed: ${String(err)}`));
    }
    expect(await kase.outcome(c, 0), `${kase.name}, write ${k} refused, then sent again: it happened`).to.equal(true);
    const report = await check(c, 0);
    expect(report.problems, `${kase.name}, write ${k} refused: problems`).to.deep.equal([]);
    return true;
  } finally {
    await c.stopAll();
  }
}

describe('file system: a crash after every page write of every multi-page update (sim)', function () {
  this.timeout(600_000);
  const only = process.env.FS_CRASH_OPS?.split(',');
  for (const kase of CASES.filter((k) => !only || only.includes(k.name.split(' ')[0]))) {
    for (const [where, home] of [
      ['homed on the crashing node', VICTIM],
      ['homed on another node', 0],
    ] as const) {
      it(`${kase.name}, ${where}`, async () => {
        let k = 1;
        for (; k < 64; k++) {
          const r = await crashAt(kase, home, k);
          if (process.env.DEBUG_FS) console.log("k", k, r);
          if (r.finished) break;
        }
        expect(k, 'the update made at least one write').to.be.greaterThan(1);
      });
    }
  }
});

describe('file system: every multi-page update refused at each write, then sent again with its txn (sim)', function () {
  this.timeout(600_000);
  const only = process.env.FS_CRASH_OPS?.split(',');
  for (const kase of CASES.filter((k) => typeof k.op !== 'function' && (!only || only.includes(k.name.split(' ')[0])))) {
    it(`${kase.name}: happens once`, async () => {
      let k = 1;
      while (k < 64 && (await refuseAt(kase, k))) k++;
      expect(k, 'the update made at least one write').to.be.greaterThan(1);
    });
  }
});
