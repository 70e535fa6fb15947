/**
 * `mangrove node key …`: the member keys of the node database
 * (docs/security.md, "Member keys"). A key given to an endpoint there is let
 * in and dialed by every node, without editing their configs or restarting
 * them; a node added to a running secure cluster needs nothing else. A
 * change is a node-database update run on an anchor (`client.ndb_update`,
 * admin only), so it needs quorum, and every node has it once committed.
 *
 *   add ENDPOINT (--public-key KEY | --key-file FILE)   let the node at ENDPOINT in with its key, or rotate it
 *   remove ENDPOINT                              take its key away: new links refused, open ones dropped
 *   list                                         the keys, as the node asked has them
 *
 * A key a node's config lists in `peers` stays let in by that node until its
 * config changes: the node database cannot revoke it.
 */
import type { Command } from 'commander';
import type { NodeStatus } from '../../actors/status.js';
import { MangroveError } from '../../bus/errors.js';
import { ask } from './ask.js';
import { examples, jsonLine, positive, print } from './util.js';

interface LinkOpts {
  connect: string;
  timeout: number;
  json?: boolean;
}

const TIMEOUT_MS = 10_000;

export function addMemberKeyCommands(node: Command, connect: string): void {
  const key = node
    .command('key')
    .description("member keys in the node database: let a node in with its public key, rotate it, or take it away (admin; needs quorum)")
    .addHelpText(
      'after',
      examples(
        'mangrove keys generate --out node-4/node.key                       # on the new node\'s host',
        'mangrove node key add tcp://10.0.0.4:7400 --key-file node-4/node.key   # then start it: it joins',
        'mangrove node key list',
        'mangrove node key remove tcp://10.0.0.4:7400                         # its links are refused from now on',
      ),
    );
  const common = (c: Command) =>
    c
      .option('--connect <endpoint>', 'an anchor node, which runs the update', connect)
      .option('--timeout <ms>', 'how long to wait for the answer', positive, TIMEOUT_MS);

  common(
    key
      .command('add')
      .description('give the node at ENDPOINT its public key: every node lets it in and dials it with it (replaces a key it had)')
      .argument('<endpoint>', 'the node\'s listen endpoint, tcp://HOST:PORT')
      .option('--public-key <key>', 'the public key, 40 Z85 characters as `mangrove keys show` prints it')
      .option('--key-file <file>', 'a key file to take the public key from (its secret is never read out or sent)')
      .option('--json', 'print {"endpoint","key","version"}'),
  ).action(async (endpoint: string, o: LinkOpts & { publicKey?: string; keyFile?: string }) => {
    const publicKey = await keyOf(o);
    const target = await endpointOf(endpoint);
    const version = await update(o, connect, target, publicKey);
    print(o.json ? jsonLine({ endpoint: target, key: publicKey, version }) : `${target} is let in with ${publicKey} (node database version ${version})`);
  });

  common(
    key
      .command('remove')
      .description('take the key of the node at ENDPOINT away: its new links are refused and open ones dropped (a key its config lists stays)')
      .argument('<endpoint>', 'the node\'s listen endpoint, tcp://HOST:PORT')
      .option('--json', 'print {"endpoint","version"}'),
  ).action(async (endpoint: string, o: LinkOpts) => {
    const target = await endpointOf(endpoint);
    const version = await update(o, connect, target, null);
    print(o.json ? jsonLine({ endpoint: target, version }) : `${target} has no member key any more (node database version ${version})`);
  });

  common(key.command('list').description('the member keys of the node database, as the node asked has them').option('--json', 'print [{"endpoint","key"}]')).action(
    async (o: LinkOpts) => {
      const status = await ask<NodeStatus>(o.connect, o.timeout, 'client.status', {}, connect);
      const keys = status.security?.memberKeys ?? [];
      if (o.json) return print(jsonLine(keys));
      if (keys.length === 0) return print(`no member keys in the node database (version ${status.version}); the nodes let in the keys their configs list`);
      const width = Math.max(...keys.map((k) => k.endpoint.length));
      print(keys.map((k) => `${k.endpoint.padEnd(width)}  ${k.key}`).join('\n'));
    },
  );
}

async function keyOf(o: { publicKey?: string; keyFile?: string }): Promise<string> {
  if ((o.publicKey === undefined) === (o.keyFile === undefined)) throw new MangroveError('E_BAD_ARGUMENT', 'give the public key with --public-key KEY or --key-file FILE (one of the two)');
  const { checkKey, readKeyFile } = await import('../../bus/transport/curve.js');
  try {
    return o.publicKey !== undefined ? checkKey('--public-key', o.publicKey) : readKeyFile(o.keyFile!).publicKey;
  } catch (err) {
    // The key file's own sentence, as a bad argument of this command rather than a bad config.
    if (err instanceof MangroveError && err.code === 'E_BAD_CONFIG') throw new MangroveError('E_BAD_ARGUMENT', err.message);
    throw err;
  }
}

async function endpointOf(endpoint: string): Promise<string> {
  const { isTcpEndpoint } = await import('../../bus/transport/endpoint.js');
  if (!isTcpEndpoint(endpoint)) throw new MangroveError('E_BAD_ARGUMENT', `ENDPOINT must be a node's listen endpoint like tcp://127.0.0.1:7404 (got ${JSON.stringify(endpoint)})`);
  return endpoint;
}

async function update(o: LinkOpts, example: string, endpoint: string, key: string | null): Promise<number> {
  const r = await ask<{ version: number }>(o.connect, o.timeout, 'client.ndb_update', { change: { op: 'key', endpoint, key } }, example);
  return r.version;
}
