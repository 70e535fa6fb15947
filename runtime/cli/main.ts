#!/usr/bin/env node
/**
 * The `mangrove` command. Scripts call it in loops (`status` every second),
 * so start-up stays small: only commander is loaded up front, and each
 * command imports what it needs (zeromq only for commands that talk to
 * nodes, lmdb only for `start`).
 *
 * Every failure prints `error E_CODE: sentence` on stderr: exit 2 for a
 * usage error (E_BAD_ARGUMENT, E_BAD_ADDRESS), 1 for anything else.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import type { NodeStatus } from '../../actors/status.js';
import { MangroveError } from '../../bus/errors.js';
import { isPermanentId } from '../../machines/membership/identity.js';
import { examples, ExitWith, integer, positive, print } from './util.js';
import { addTraceCommands } from './trace.js';
import { addSimCommand } from './sim.js';
import { addMachinesCommands } from './machines.js';
import { addPageCommands } from './page.js';
import { addFsCommands } from './fs.js';
import { addMountCommands } from './mount.js';
import { addNodeCommands } from './node.js';
import { addKeysCommands } from './keys.js';
import { addDashboardCommand } from './dashboard.js';
import { packageVersion } from '../node/version.js';
import { ask } from './ask.js';

export const cliDefaults = {
  connect: 'tcp://127.0.0.1:7400',
  timeoutMs: 2000,
  localDir: './mangrove-local',
  basePort: 7400,
  periodMs: 250,
  groups: 1,
} as const;

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** After a failure, the longest the process may linger to flush its output. */
const forcedExitMs = 1000;


export function buildProgram(): Command {
  const program = createRootCommand();
  addStartCommand(program);
  addLocalCommand(program);
  addStatusCommand(program);
  addFaultCommand(program);
  addTraceCommands(program);
  addSimCommand(program);
  addMachinesCommands(program);
  addPageCommands(program, cliDefaults);
  addFsCommands(program, cliDefaults);
  addMountCommands(program, cliDefaults);
  addNodeCommands(program, cliDefaults);
  addKeysCommands(program);
  addDashboardCommand(program, cliDefaults);
  return program;
}

/**
 * The bare `mangrove` program: its help, version, error handling, and the
 * `--key` every command that talks to a node takes (before or after the
 * command's name). It becomes $MANGROVE_KEY, absolute, so the client library
 * and a command's own child processes (a mount's) find it the same way
 * (runtime/client/client-key.ts).
 */
function createRootCommand(): Command {
  const program = new Command('mangrove');
  program.hook('preAction', () => {
    const key = program.opts<{ key?: string }>().key;
    if (key !== undefined) process.env.MANGROVE_KEY = resolve(key);
  });
  return program
    .description('Mangrove: a cluster of peer nodes with heartbeat membership, quorum and a node database, sharing one paged 128-bit address space (US patent 5,909,540).')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--key <file>', 'the client key file for nodes with keys (default: $MANGROVE_KEY, else ./mangrove-local/client.key if there is one)')
    .helpOption('-h, --help', 'show help')
    // Every command's --help lists --key too.
    .configureHelp({ showGlobalOptions: true })
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .addHelpText(
      'after',
      examples(
        'mangrove local --nodes 5            # a 5-node cluster on this host, live view',
        'mangrove status --connect tcp://127.0.0.1:7401',
        'mangrove start --config /etc/mangrove/config.json',
        'mangrove <command> --help           # details of one command',
      ),
    );
}

function addStartCommand(program: Command): void {
  program
    .command('start')
    .description('run a node in this process until SIGINT/SIGTERM (logs: JSON lines on stdout)')
    .requiredOption('-c, --config <file>', 'the node\'s JSON config file')
    .option('--trace <file>', 'record every message sent and accepted to this file (overrides "trace" in the config)')
    .addHelpText(
      'after',
      examples(
        'mangrove start --config node-0/config.json',
        'mangrove start --config node-0/config.json --trace /tmp/node-0.trace',
        '',
        'A minimal config (paths are relative to the config file):',
        '  {"listen": "tcp://127.0.0.1:7400", "dataDir": "data",',
        '   "anchors": ["tcp://127.0.0.1:7400"], "anchor": true, "httpPort": 7500,',
        '   "keyFile": "node.key", "peers": {"tcp://127.0.0.1:7400": "<its public key>"},',
        '   "clients": [{"publicKey": "<a client\'s public key>", "role": "admin"}]}',
        'or "insecure": true instead of the last three fields: no keys, every process gets in.',
      ),
    )
    .action(async (opts: { config: string; trace?: string }) => {
      const { runNodeProcess } = await import('../node/start.js');
      await runNodeProcess(opts.config, { trace: opts.trace });
    });
}

function addLocalCommand(program: Command): void {
  program
    .command('local')
    .description('run a cluster of N node processes on this host and show it live until Ctrl-C')
    .requiredOption('-n, --nodes <n>', 'number of nodes (1 to 100)', positive)
    .option('-a, --anchors <k>', 'the first K nodes are anchors (default: min(3, N))', positive)
    .option('-g, --groups <g>', 'heartbeat groups; node i is in group i mod G (at most 64 nodes a group)', positive, cliDefaults.groups)
    .option('-d, --dir <dir>', 'where configs, data and logs go; an existing DIR is reused (nodes keep their identity)', cliDefaults.localDir)
    .option('-p, --base-port <port>', 'node i listens on P+i and serves HTTP (/metrics, /status) on P+100+i', integer, cliDefaults.basePort)
    .option('--period <ms>', 'heartbeat period of new configs, in ms', integer, cliDefaults.periodMs)
    .option('--trace <dir>', 'record each node\'s messages to DIR/node-<i>.trace')
    .option('--insecure', 'no keys: configs say "insecure": true, and any process that reaches a node\'s port gets in (default: keys in DIR/node-<i>/node.key, the admin client\'s in DIR/client.key)')
    .addHelpText(
      'after',
      examples(
        'mangrove local --nodes 3',
        'mangrove local --nodes 12 --groups 3 --anchors 5 --dir /tmp/m12 --base-port 9000',
        'mangrove local --nodes 4 --trace ./traces      # then: mangrove trace show traces/*.trace',
        '',
        'Each node runs as `mangrove start --config DIR/node-<i>/config.json`, output in DIR/node-<i>/node.log.',
        'Fault injection is on, so `mangrove fault` can cut nodes off from each other.',
        'Only keys get in: each node has its pair, and DIR/client.key is an admin client\'s, which',
        'every command run in the folder holding ./mangrove-local finds by itself (elsewhere: --key DIR/client.key).',
      ),
    )
    .action(async (opts: { nodes: number; anchors?: number; groups: number; dir: string; basePort: number; period: number; trace?: string; insecure?: boolean }) => {
      const { runLocal } = await import('./local.js');
      const code = await runLocal(
        { nodes: opts.nodes, anchors: opts.anchors, groups: opts.groups, dir: opts.dir, basePort: opts.basePort, periodMs: opts.period, traceDir: opts.trace, insecure: opts.insecure },
        fileURLToPath(import.meta.url),
      );
      process.exitCode = code;
    });
}

function addStatusCommand(program: Command): void {
  program
    .command('status')
    .description('show the cluster as one node sees it')
    .option('--connect <endpoint>', 'the node to ask', cliDefaults.connect)
    .option('--json', 'print the node\'s status object as one JSON line')
    .option('--timeout <ms>', 'how long to wait for the answer', positive, cliDefaults.timeoutMs)
    .addHelpText(
      'after',
      examples(
        'mangrove status',
        'mangrove status --connect tcp://127.0.0.1:7402 --json | jq .quorum',
        '',
        'Exit status 1 with E_UNREACHABLE when the node does not answer in time.',
      ),
    )
    .action(async (opts: { connect: string; json?: boolean; timeout: number }) => {
      const status = await ask<NodeStatus>(opts.connect, opts.timeout, 'client.status', {}, cliDefaults.connect);
      if (opts.json) return print(JSON.stringify(status));
      const { renderStatus } = await import('./render.js');
      print(renderStatus(status));
    });
}

function addFaultCommand(program: Command): void {
  program
    .command('fault')
    .description('cut a node off from some peers, or heal it (the node\'s config must have "faultInjection": true)')
    .requiredOption('--connect <endpoint>', 'the node whose fault filter to set')
    .addOption(new Option('--drop <ids>', 'comma-separated permanent ids whose traffic to and from this node is dropped').conflicts('heal'))
    .addOption(new Option('--heal', 'drop nothing any more').conflicts('drop'))
    .option('--json', 'print the node\'s answer as one JSON line')
    .option('--timeout <ms>', 'how long to wait for the answer', positive, cliDefaults.timeoutMs)
    .addHelpText(
      'after',
      examples(
        'mangrove fault --connect tcp://127.0.0.1:7401 --drop 0a1b2c3d4e5f-018f2c3a4b5c',
        'mangrove fault --connect tcp://127.0.0.1:7401 --drop ID1,ID2',
        'mangrove fault --connect tcp://127.0.0.1:7401 --heal',
        '',
        'Ids are in `mangrove status`. A partition is one-sided: drop on both sides for a clean cut.',
      ),
    )
    .action(async (opts: { connect: string; drop?: string; heal?: boolean; json?: boolean; timeout: number }) => {
      const body = faultBody(opts);
      const result = await ask<{ dropped?: string[] }>(opts.connect, opts.timeout, 'client.fault', body, cliDefaults.connect);
      if (opts.json) return print(JSON.stringify(result));
      const dropped = result?.dropped ?? [];
      print(dropped.length === 0 ? `${opts.connect}: healed, no peer is dropped` : `${opts.connect}: dropping all traffic to and from ${dropped.join(', ')}`);
    });
}

function faultBody(opts: { drop?: string; heal?: boolean }): { drop: string[] } | { heal: true } {
  if (opts.heal) return { heal: true };
  if (opts.drop === undefined) throw new MangroveError('E_BAD_ARGUMENT', 'say what to do: --drop ID[,ID...] or --heal');
  const ids = opts.drop
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const bad = ids.find((id) => !isPermanentId(id));
  if (ids.length === 0 || bad !== undefined) {
    throw new MangroveError('E_BAD_ARGUMENT', `--drop takes permanent node ids like 0a1b2c3d4e5f-018f2c3a4b5c, as shown by \`mangrove status\` (got ${JSON.stringify(bad ?? opts.drop)})`);
  }
  return { drop: ids };
}

/** Runs the CLI; resolves when the command's own work is done (a node keeps running after). */
export async function main(argv: readonly string[]): Promise<void> {
  // A closed pipe (`mangrove trace show big.trace | head`) is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const program = buildProgram();
  if (argv.length <= 2) {
    process.stderr.write(program.helpInformation());
    process.exitCode = EXIT_USAGE;
    return;
  }
  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    process.exitCode = report(err, helpHint(program, argv));
    // Whatever the failed command left open must not keep the process alive;
    // unref'd, so a process that ends on its own is not held for this.
    setTimeout(() => process.exit(), forcedExitMs).unref();
  }
}

/** `mangrove trace show --help` for an error in `trace show`: the deepest command named in argv. */
function helpHint(program: Command, argv: readonly string[]): string {
  const names = ['mangrove'];
  let cmd = program;
  for (const arg of argv.slice(2)) {
    const sub = cmd.commands.find((c) => c.name() === arg);
    if (!sub) break;
    names.push(arg);
    cmd = sub;
  }
  return `${names.join(' ')} --help`;
}

/** Prints the one-line error; returns the exit code. */
function report(err: unknown, hint: string): number {
  if (err instanceof ExitWith) {
    report(err.cause, hint);
    return err.exitCode;
  }
  if (err instanceof CommanderError) {
    // Help and version end in a CommanderError too, with exit code 0.
    if (err.exitCode === 0) return 0;
    const message = err.message.replace(/^error: /, '');
    process.stderr.write(`error E_BAD_ARGUMENT: ${message} (see ${hint})\n`);
    return EXIT_USAGE;
  }
  if (err instanceof MangroveError) {
    process.stderr.write(`error ${err.code}: ${err.message}\n`);
    return err.code === 'E_BAD_ARGUMENT' || err.code === 'E_BAD_ADDRESS' ? EXIT_USAGE : EXIT_FAILURE;
  }
  // A bug, not a user error: keep the stack for the report.
  process.stderr.write(`error E_INTERNAL: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT_FAILURE;
}

await main(process.argv);
