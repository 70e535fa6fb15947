/**
 * `mangrove node remove` without a cluster: its decisions in process,
 * against a stand-in node that answers `client.status` with a fixture and
 * records every update it is sent (a refusal must send none), and the built
 * command's argument checks, which refuse before anything is sent: every
 * built run points at a port nothing listens on with a short timeout, so a
 * request that did go out would show as E_UNREACHABLE instead.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import type { NodeStatus, NodeView } from '../../../../actors/status.js';
import { MangroveError } from '../../../../bus/errors.js';
import type { NdbOp } from '../../../../bus/messages/index.js';
import { addNodeCommands, nodeCliDefaults, parseIdPrefix, removalJson, removeNode, renderRemoval, type NodeLink, type Removal } from '../../../../runtime/cli/node.js';
import { errorOf } from '../../../helpers/error-of.js';
import { CLI, itRefusesUsage, mangrove } from '../../../helpers/run-cli.js';
import { IDS, sampleStatus } from '../../../fixtures/status.js';

const NOBODY = 'tcp://127.0.0.1:1';
const AT = 'tcp://127.0.0.1:7400';

/** A node answering with `status`, and each update with `answer` (the next version by default). */
class StandIn implements NodeLink {
  readonly updates: NdbOp[] = [];
  constructor(
    private readonly s: NodeStatus,
    private readonly answer: (change: NdbOp) => Promise<number> = async () => s.version + 1,
  ) {}

  async status(): Promise<NodeStatus> {
    return this.s;
  }

  update(change: NdbOp): Promise<number> {
    this.updates.push(change);
    return this.answer(change);
  }
}

/** The sample cluster (IDS[0] and IDS[1] anchors, IDS[2] a failed member), with `over` applied to the node views. */
function cluster(over: Partial<Record<0 | 1 | 2 | 3, Partial<NodeView>>> = {}, extra: NodeView[] = [], status: Partial<NodeStatus> = {}): NodeStatus {
  const s = sampleStatus(status);
  return { ...s, nodes: [...s.nodes, ...extra].map((n, i) => ({ ...n, ...over[i as 0 | 1 | 2 | 3] })) };
}

/** What `removeNode` threw, as `CODE: message`; 'no error' when it resolved. */
async function refusal(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'no error',
    (err: unknown) => {
      if (err instanceof MangroveError) return `${err.code}: ${err.message}`;
      throw err;
    },
  );
}

const remove = (link: NodeLink, id: string, force = false) => removeNode(link, id, { connect: AT, force });

describe('runtime/cli/node', () => {
  describe('node remove, against a stand-in node', () => {
    it('removes a failed node by its id, sending one delete, and says the new version', async () => {
      const link = new StandIn(cluster());
      const r = await remove(link, IDS[2]);
      expect(link.updates).to.deep.equal([{ op: 'delete', id: IDS[2] }]);
      expect(r).to.deep.equal({ removed: IDS[2], version: 4, endpoint: 'tcp://127.0.0.1:7402', wasAlive: false, anchor: false });
      expect(renderRemoval(r)).to.equal(`removed node ${IDS[2]} (tcp://127.0.0.1:7402): node database version 4`);
    });

    it('takes a unique prefix of the id, as `trace show --node` does, and an exact id over the longer ids it starts', async () => {
      const link = new StandIn(cluster());
      expect((await remove(link, '2c3d')).removed).to.equal(IDS[2]);
      const short: NodeView = { ...sampleStatus().nodes[2], id: '2c3d4e5f6071', endpoint: 'tcp://127.0.0.1:7403' };
      const both = new StandIn(cluster({}, [short]));
      expect((await remove(both, '2c3d4e5f6071')).removed).to.equal('2c3d4e5f6071');
      expect(await refusal(remove(both, '2c3d4e'))).to.equal(`E_BAD_ARGUMENT: 2c3d4e is the start of 2 ids (2c3d4e5f6071, ${IDS[2]}): give more of it`);
    });

    it('says E_NOT_FOUND for an id the database does not hold, sending nothing', async () => {
      const link = new StandIn(cluster());
      expect(await refusal(remove(link, 'ffffffffffff-ffffffffffff'))).to.equal(
        `E_NOT_FOUND: no node of the node database (version 3 at ${AT}) has the id ffffffffffff-ffffffffffff; \`mangrove status\` lists them`,
      );
      expect(await refusal(remove(link, 'ff'))).to.match(/^E_NOT_FOUND: .* has the id ff or an id starting with it;/);
      expect(link.updates).to.deep.equal([]);
    });

    it('refuses a node that is not an anchor with E_NOT_ANCHOR, naming an alive anchor to connect to', async () => {
      const member = cluster({ 0: { anchor: false, votes: 0 } }, [], { anchor: false });
      const link = new StandIn(member);
      expect(await refusal(remove(link, IDS[2]))).to.equal(
        `E_NOT_ANCHOR: ${AT} is not an anchor, and only anchors change the node database: try --connect tcp://127.0.0.1:7401 (anchor ${IDS[1]})`,
      );
      const forming = new StandIn({ ...member, nodes: [] });
      expect(await refusal(remove(forming, IDS[2]))).to.match(/^E_NOT_ANCHOR: .*it knows no anchor yet: --connect one of the anchors/);
      expect(link.updates.length + forming.updates.length).to.equal(0);
    });

    it('refuses a node the cluster counts alive unless --force, saying to stop it first', async () => {
      const link = new StandIn(cluster({ 2: { alive: true } }));
      expect(await refusal(remove(link, IDS[2]))).to.equal(
        `E_BUSY: node ${IDS[2]} (tcp://127.0.0.1:7402) is alive: stop it first, and remove it once the cluster counts it failed, or pass --force to remove it running (it then stops itself)`,
      );
      expect(link.updates).to.deep.equal([]);
      const r = await remove(link, IDS[2], true);
      expect(link.updates).to.deep.equal([{ op: 'delete', id: IDS[2] }]);
      expect(renderRemoval(r)).to.equal(
        `removed node ${IDS[2]} (tcp://127.0.0.1:7402): node database version 4\nit was running: it stops itself once it learns of the new version`,
      );
    });

    it('refuses the anchor it is connected to, even with --force, naming another anchor: so the last anchor always stays', async () => {
      const link = new StandIn(cluster());
      expect(await refusal(remove(link, IDS[0], true))).to.equal(
        `E_BAD_ARGUMENT: ${IDS[0]} is the anchor at ${AT}, which would run its own removal: connect through another anchor to remove it, e.g. --connect tcp://127.0.0.1:7401`,
      );
      expect(link.updates).to.deep.equal([]);
    });

    it('removes an anchor only if the anchors left that are alive keep more than half of the votes left', async () => {
      // Three anchors of one vote each, this node one of them. A failed one goes while the third is
      // alive (2 of the 2 votes left); not once the third has failed too (1 of 2 is no majority),
      // and a live one not even with --force then. With all three alive, a live one goes with --force.
      const three = (aliveThird: boolean) => cluster({ 1: { alive: false }, 2: { anchor: true, votes: 1, alive: aliveThird } });
      const failed = new StandIn(three(true));
      expect((await remove(failed, IDS[1])).anchor).to.equal(true);
      const lonely = new StandIn(three(false));
      expect(await refusal(remove(lonely, IDS[1]))).to.equal(
        `E_NO_QUORUM: removing anchor ${IDS[1]} would leave the cluster without quorum: the other anchors alive hold 1 of their 2 votes, and quorum needs more than half; bring failed anchors back first`,
      );
      const live = new StandIn(cluster({ 2: { anchor: true, votes: 1, alive: false } }));
      expect(await refusal(remove(live, IDS[1], true))).to.match(/^E_NO_QUORUM: removing anchor .* hold 1 of their 2 votes/);
      expect(lonely.updates.length + live.updates.length).to.equal(0);
      const anchor = await remove(new StandIn(cluster({ 2: { anchor: true, votes: 1, alive: true } })), IDS[1], true);
      expect(renderRemoval(anchor)).to.match(/^removed anchor /);
    });

    it('says what an update refused means: no quorum, removed meanwhile, no answer in time, anything else', async () => {
      const failing = (err: MangroveError) => new StandIn(cluster(), () => Promise.reject(err));
      const noQuorum = failing(new MangroveError('E_NO_QUORUM', 'the node database update failed (E_NO_QUORUM): this node has no quorum'));
      expect(await refusal(remove(noQuorum, IDS[2]))).to.equal(
        `E_NO_QUORUM: ${AT} has no quorum, so the node database cannot change and node ${IDS[2]} was not removed: bring back anchors until \`mangrove status\` shows quorum yes, then try again`,
      );
      const gone = failing(new MangroveError('E_NOT_FOUND', 'the node database update failed (E_UNKNOWN_NODE): …'));
      expect(await refusal(remove(gone, IDS[2]))).to.equal(`E_NOT_FOUND: node ${IDS[2]} is no longer in the node database: another update removed it first`);
      const slow = failing(new MangroveError('E_UNREACHABLE', `no answer from ${AT} within 300 ms: is the node running?`));
      expect(await refusal(remove(slow, IDS[2]))).to.equal(
        `E_TIMEOUT: ${AT} did not answer the update in time (--timeout); it may still commit: \`mangrove status\` shows whether ${IDS[2]} is still listed`,
      );
      const busy = failing(new MangroveError('E_BUSY', 'the node database update failed (E_BUSY): gave up after 12 tries (E_BUSY)'));
      expect(await refusal(remove(busy, IDS[2]))).to.equal(`E_BUSY: node ${IDS[2]} was not removed: the node database update failed (E_BUSY): gave up after 12 tries (E_BUSY)`);
    });

    it('prints {removed, version} for --json', () => {
      const r: Removal = { removed: IDS[2], version: 9, endpoint: 'tcp://127.0.0.1:7402', wasAlive: true, anchor: false };
      expect(removalJson(r)).to.equal(`{"removed":"${IDS[2]}","version":9}`);
    });
  });

  describe('the id argument', () => {
    it('takes a permanent id or its start, in either case', () => {
      expect(parseIdPrefix(IDS[0])).to.equal(IDS[0]);
      expect(parseIdPrefix('0A1B')).to.equal('0a1b');
      expect(parseIdPrefix('0a1b2c3d4e5f-')).to.equal('0a1b2c3d4e5f-');
      expect(parseIdPrefix('0a1b2c3d4e5f-018f')).to.equal('0a1b2c3d4e5f-018f');
    });

    it('refuses anything else with E_BAD_ARGUMENT', () => {
      for (const bad of ['', 'node-1', '0a1b2c3d4e5f0', `${IDS[0]}0`, '-018f', 'xyz']) {
        expect(errorOf(() => parseIdPrefix(bad)), JSON.stringify(bad)).to.match(/^E_BAD_ARGUMENT: a node is named by its permanent id, like 0a1b2c3d4e5f-018f2c3a4b5c, or the start of it/);
      }
    });
  });

  it('adds `node remove` with --connect, --force, --json and --timeout', () => {
    const program = new Command('mangrove');
    addNodeCommands(program, { connect: AT });
    const remove = program.commands.find((c) => c.name() === 'node')!.commands.find((c) => c.name() === 'remove')!;
    expect(remove.options.map((o) => o.long)).to.have.members(['--connect', '--force', '--json', '--timeout']);
    expect(remove.options.find((o) => o.long === '--timeout')!.defaultValue).to.equal(nodeCliDefaults.timeoutMs);
    expect(remove.options.find((o) => o.long === '--connect')!.defaultValue).to.equal(AT);
  });

  describe('the built command', function () {
    this.timeout(30_000);
    before(() => {
      if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    });

    for (const args of [['node'], ['node', 'remove']]) {
      it(`explains \`mangrove ${args.join(' ')} --help\` with examples`, async () => {
        const r = await mangrove([...args, '--help']);
        expect(r.code).to.equal(0);
        expect(r.stdout).to.include(`Usage: mangrove ${args.join(' ')}`);
        expect(r.stdout).to.include('Examples:');
      });
    }

    it('says in remove --help what refuses a removal, by code', async () => {
      const help = (await mangrove(['node', 'remove', '--help'])).stdout;
      for (const code of ['E_NOT_ANCHOR', 'E_NOT_FOUND', 'E_BAD_ARGUMENT', 'E_BUSY', 'E_NO_QUORUM']) expect(help, code).to.include(code);
      expect(help).to.include('--force');
    });

    const at = ['--connect', NOBODY, '--timeout', '300'];
    const usage: [string, string[], RegExp][] = [
      ['a missing id', ['node', 'remove', ...at], /^error E_BAD_ARGUMENT: missing required argument 'id' \(see mangrove node remove --help\)\n$/],
      ['an id that is none', ['node', 'remove', 'node-3', ...at], /^error E_BAD_ARGUMENT: a node is named by its permanent id, like 0a1b2c3d4e5f-018f2c3a4b5c, or the start of it, as `mangrove status` lists them \(got "node-3"\)\n$/],
      ['a bad --connect', ['node', 'remove', '0a1b', '--connect', 'localhost:7400'], /^error E_BAD_ARGUMENT: --connect must be a tcp endpoint like tcp:\/\/127\.0\.0\.1:7400 \(got "localhost:7400"\)\n$/],
      ['--timeout 0', ['node', 'remove', '0a1b', '--connect', NOBODY, '--timeout', '0'], /^error E_BAD_ARGUMENT: option '--timeout <ms>' argument '0' is invalid/],
      ['an unknown subcommand', ['node', 'frob'], /^error E_BAD_ARGUMENT: unknown command 'frob'/],
    ];
    itRefusesUsage(usage);

    it('says E_UNREACHABLE and exits 1 when a valid call finds no node', async () => {
      const r = await mangrove(['node', 'remove', '0a1b', ...at]);
      expect(r.stderr).to.equal(`error E_UNREACHABLE: no answer from ${NOBODY} within 300 ms: is the node running?\n`);
      expect(r.code).to.equal(1);
      expect(r.stdout).to.equal('');
    });
  });
});
