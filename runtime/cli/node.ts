/**
 * `mangrove node …`: the cluster's membership from a shell. `node remove`
 * deletes a node from the node database (M2) by a coordinated update run on
 * an anchor (`client.ndb_update`), after checks made on that anchor's own
 * status, so a refused removal sends no update at all:
 *  - the node asked must be an anchor (only anchors coordinate updates);
 *  - the id, or a unique prefix of it, must name a node of its database;
 *  - the node must not be the one asked: an anchor does not coordinate its
 *    own deletion, and since the one asked is an anchor, the last anchor
 *    can never be removed;
 *  - a node the cluster counts alive is removed only with --force (it then
 *    stops itself once it learns of it);
 *  - an anchor is removed only if the anchors left that are alive hold more
 *    than half of the votes left (M5), so the removal cannot cost quorum.
 * The update itself is refused without quorum (E_NO_QUORUM). The arenas of
 * the removed node are handed to live nodes by the PAN (M16).
 *
 * The decisions take a `NodeLink`, so a spec can run them against a
 * stand-in; the command gives them one over ZeroMQ (ask.ts).
 */
import type { Command } from 'commander';
import type { NodeStatus, NodeView } from '../../actors/status.js';
import { MangroveError, isMangroveError } from '../../bus/errors.js';
import type { NdbOp } from '../../bus/messages/index.js';
import { ask } from './ask.js';
import { addMemberKeyCommands } from './member-keys.js';
import { examples, jsonLine, positive, print } from './util.js';

export const nodeCliDefaults = {
  /** Longer than `status`'s: an update waits on every anchor of the quorum, and retries when anchors collide. */
  timeoutMs: 10_000,
} as const;

/** A permanent id (`0a1b2c3d4e5f-018f2c3a4b5c`), or its start: what `node remove` takes. */
const ID_PREFIX = /^[0-9a-f]{1,12}(-[0-9a-f]{0,12})?$/;
const ID_EXAMPLE = '0a1b2c3d4e5f-018f2c3a4b5c';

/** What `node remove` asks of the node it is connected to. */
export interface NodeLink {
  /** The node's status (`client.status`): its database, and who it counts alive. */
  status(): Promise<NodeStatus>;
  /** A node-database update coordinated by the node (`client.ndb_update`); resolves with the new version. */
  update(change: NdbOp): Promise<number>;
}

export interface RemoveOptions {
  /** The endpoint the link reaches, for messages. */
  connect: string;
  force: boolean;
}

/** A removal done: `removed` and `version` are the --json output. */
export interface Removal {
  removed: string;
  version: number;
  endpoint: string;
  /** The cluster counted it alive (so --force was given): it stops itself once it learns. */
  wasAlive: boolean;
  anchor: boolean;
}

interface LinkOpts {
  connect: string;
  timeout: number;
  json?: boolean;
}

export function addNodeCommands(program: Command, defaults: { connect: string }): void {
  const node = program
    .command('node')
    .description('the cluster\'s members: remove a node from the node database, give a node its member key')
    .addHelpText(
      'after',
      examples(
        'mangrove node remove 0a1b2c3d4e5f-018f2c3a4b5c   # a node that failed and will not come back',
        'mangrove node remove 0a1b2c --force              # one still running: it stops itself',
        'mangrove node remove --help                      # what refuses a removal',
        'mangrove node key add tcp://10.0.0.4:7400 --key-file node.key   # let a new node of a secure cluster in',
        '',
        'Ids are in `mangrove status`.',
      ),
    );
  addRemove(node, defaults.connect);
  addMemberKeyCommands(node, defaults.connect);
}

function addRemove(node: Command, connect: string): void {
  node
    .command('remove')
    .description('delete a node from the node database, so the cluster stops counting on it; the PAN hands its arenas to live nodes')
    .argument('<id>', `the node's permanent id (like ${ID_EXAMPLE}), or a unique prefix of it`)
    .option('--connect <endpoint>', 'an anchor node, which runs the update', connect)
    .option('--force', 'remove it even though the cluster counts it alive (it then stops itself)')
    .option('--json', 'print {"removed","version"}')
    .option('--timeout <ms>', 'how long to wait for each answer', positive, nodeCliDefaults.timeoutMs)
    .addHelpText(
      'after',
      examples(
        `mangrove node remove ${ID_EXAMPLE}`,
        'mangrove node remove 0a1b2c --connect tcp://127.0.0.1:7401 --json',
        'mangrove node remove 0a1b2c --force      # still running: it stops itself (exit status 3)',
        '',
        'Stop a node before removing it (its PID is in `mangrove status`), and remove it once',
        'status shows it FAILED; without --force, a node the cluster counts alive is refused.',
        'Refused, with nothing changed, when:',
        '  the node at --connect is not an anchor (E_NOT_ANCHOR); the id names no node (E_NOT_FOUND);',
        '  it names the node at --connect: connect through another anchor (E_BAD_ARGUMENT);',
        '  the cluster counts the node alive and --force is not given (E_BUSY);',
        '  it is an anchor whose removal would leave the anchors alive without a majority of the votes,',
        '  or the cluster has no quorum (E_NO_QUORUM).',
        'A removed node that is started again joins as a new member.',
      ),
    )
    .action(async (id: string, o: LinkOpts & { force?: boolean }) => {
      const wanted = parseIdPrefix(id);
      const link = askingLink(o, connect);
      const r = await removeNode(link, wanted, { connect: o.connect, force: o.force === true });
      print(o.json ? removalJson(r) : renderRemoval(r));
    });
}

/** The id argument, checked before anything is sent. */
export function parseIdPrefix(text: string): string {
  const id = text.trim().toLowerCase();
  if (!ID_PREFIX.test(id)) {
    throw new MangroveError('E_BAD_ARGUMENT', `a node is named by its permanent id, like ${ID_EXAMPLE}, or the start of it, as \`mangrove status\` lists them (got ${JSON.stringify(text)})`);
  }
  return id;
}

/** One request a call, each over its own short-lived client (ask.ts); `example` is the endpoint a bad --connect is shown. */
function askingLink(o: LinkOpts, example: string): NodeLink {
  return {
    status: () => ask<NodeStatus>(o.connect, o.timeout, 'client.status', {}, example),
    update: async (change) => (await ask<{ version: number }>(o.connect, o.timeout, 'client.ndb_update', { change }, example)).version,
  };
}

/** Checks the removal against the anchor's status, then runs it; throws what refused it. */
export async function removeNode(link: NodeLink, idOrPrefix: string, opts: RemoveOptions): Promise<Removal> {
  const status = await link.status();
  if (!status.anchor) throw notAnchor(status, opts.connect);
  const target = resolveNode(status, idOrPrefix, opts.connect);
  refuseUnsafe(status, target, opts);
  let version: number;
  try {
    version = await link.update({ op: 'delete', id: target.id });
  } catch (err) {
    throw explainFailure(err, target, opts.connect);
  }
  return { removed: target.id, version, endpoint: target.endpoint, wasAlive: target.alive, anchor: target.anchor };
}

/** The --json line: what a script needs to follow up (the id removed, the version that has it gone). */
export function removalJson(r: Removal): string {
  return jsonLine({ removed: r.removed, version: r.version });
}

export function renderRemoval(r: Removal): string {
  const lines = [`removed ${r.anchor ? 'anchor' : 'node'} ${r.removed} (${r.endpoint}): node database version ${r.version}`];
  if (r.wasAlive) lines.push('it was running: it stops itself once it learns of the new version');
  return lines.join('\n');
}

/** An anchor to suggest instead of a node that is not one: an alive one first. */
function someAnchor(status: NodeStatus, except?: string): NodeView | undefined {
  const anchors = status.nodes.filter((n) => n.anchor && n.id !== except);
  return anchors.find((n) => n.alive) ?? anchors[0];
}

function notAnchor(status: NodeStatus, connect: string): MangroveError {
  const anchor = someAnchor(status);
  const hint = anchor ? `try --connect ${anchor.endpoint} (anchor ${anchor.id})` : 'it knows no anchor yet: --connect one of the anchors in the nodes\' configs';
  return new MangroveError('E_NOT_ANCHOR', `${connect} is not an anchor, and only anchors change the node database: ${hint}`);
}

/**
 * The node `idOrPrefix` names in the anchor's database: its exact id, or the
 * only id that starts with it (as `trace --node` resolves prefixes).
 */
export function resolveNode(status: NodeStatus, idOrPrefix: string, connect: string): NodeView {
  const exact = status.nodes.find((n) => n.id === idOrPrefix);
  if (exact) return exact;
  const matches = status.nodes.filter((n) => n.id.startsWith(idOrPrefix));
  if (matches.length === 1) return matches[0];
  if (matches.length === 0) {
    throw new MangroveError(
      'E_NOT_FOUND',
      `no node of the node database (version ${status.version} at ${connect}) has the id ${idOrPrefix}${isWholeId(idOrPrefix) ? '' : ' or an id starting with it'}; \`mangrove status\` lists them`,
    );
  }
  const ids = matches.map((n) => n.id).sort();
  throw new MangroveError('E_BAD_ARGUMENT', `${idOrPrefix} is the start of ${ids.length} ids (${ids.join(', ')}): give more of it`);
}

function isWholeId(id: string): boolean {
  return id.length === ID_EXAMPLE.length;
}

function refuseUnsafe(status: NodeStatus, target: NodeView, opts: RemoveOptions): void {
  if (target.id === status.self) {
    const other = someAnchor(status, status.self);
    const hint = other ? `, e.g. --connect ${other.endpoint}` : '';
    throw new MangroveError('E_BAD_ARGUMENT', `${target.id} is the anchor at ${opts.connect}, which would run its own removal: connect through another anchor to remove it${hint}`);
  }
  if (target.alive && !opts.force) {
    throw new MangroveError(
      'E_BUSY',
      `node ${target.id} (${target.endpoint}) is alive: stop it first, and remove it once the cluster counts it failed, or pass --force to remove it running (it then stops itself)`,
    );
  }
  if (target.anchor) refuseLosingQuorum(status, target);
}

/** M5 with the anchor gone: the anchors left that are alive must hold more than half of the votes left. */
function refuseLosingQuorum(status: NodeStatus, target: NodeView): void {
  const left = status.nodes.filter((n) => n.anchor && n.id !== target.id);
  const votes = left.reduce((sum, n) => sum + n.votes, 0);
  const alive = left.filter((n) => n.alive).reduce((sum, n) => sum + n.votes, 0);
  if (2 * alive > votes) return;
  throw new MangroveError(
    'E_NO_QUORUM',
    `removing anchor ${target.id} would leave the cluster without quorum: the other anchors alive hold ${alive} of their ${votes} votes, and quorum needs more than half; bring failed anchors back first`,
  );
}

/** The update's refusal, said for this command: what was not done, and what to do. */
function explainFailure(err: unknown, target: NodeView, connect: string): unknown {
  if (!isMangroveError(err)) return err;
  const not = `node ${target.id} was not removed`;
  switch (err.code) {
    case 'E_NO_QUORUM':
      return new MangroveError('E_NO_QUORUM', `${connect} has no quorum, so the node database cannot change and ${not}: bring back anchors until \`mangrove status\` shows quorum yes, then try again`);
    case 'E_NOT_FOUND':
      return new MangroveError('E_NOT_FOUND', `node ${target.id} is no longer in the node database: another update removed it first`);
    case 'E_UNREACHABLE':
      // It answered the status a moment ago: the update is what took too long, and may still commit.
      return new MangroveError('E_TIMEOUT', `${connect} did not answer the update in time (--timeout); it may still commit: \`mangrove status\` shows whether ${target.id} is still listed`);
    default:
      return new MangroveError(err.code, `${not}: ${err.message}`);
  }
}
