/**
 * `mangrove machines …` (SPEC.md M26): the protocol machines as charts
 * generated from their definitions, and as they run on a node. Each command
 * imports what it needs when it runs, so `mangrove` starts as fast as before:
 * `list` and `export` load the machines, `watch` only the ZeroMQ client and
 * node:http.
 */
import { Option, type Command } from 'commander';
import type { NodeStatus } from '../../actors/status.js';
import { MangroveError } from '../../bus/errors.js';
import { examples, positive, print } from './util.js';
import { DIAGRAM_FORMATS, type DiagramFormat } from '../inspect/diagram.js';
import type { TransitionRecord } from '../inspect/watch.js';
import { ask } from './ask.js';

const watchDefaults = {
  connect: 'tcp://127.0.0.1:7400',
  timeoutMs: 2000,
} as const;

export function addMachinesCommands(program: Command): void {
  const machines = program
    .command('machines')
    .description('the protocol state machines: list them, export their charts, watch them run on a node');

  machines
    .command('list')
    .description('list the protocol machines every node runs')
    .option('--json', 'print a JSON array of the machine names')
    .addHelpText('after', examples('mangrove machines list', 'mangrove machines list --json | jq -r \'.[]\''))
    .action(async (opts: { json?: boolean }) => {
      const { machineCatalog } = await import('../inspect/catalog.js');
      if (opts.json) return print(JSON.stringify(machineCatalog.map((e) => e.name)));
      const width = Math.max(...machineCatalog.map((e) => e.name.length));
      print(machineCatalog.map((e) => `${e.name.padEnd(width)}  ${e.spec.padEnd(6)}  ${e.summary}`).join('\n'));
    });

  machines
    .command('export')
    .description('print a machine\'s chart, generated from the machine definition the nodes run')
    .argument('<name>', 'the machine, as `mangrove machines list` names it')
    .addOption(new Option('-f, --format <format>', 'mermaid (stateDiagram-v2), scxml, or json (states and transitions)').choices(DIAGRAM_FORMATS).default('mermaid'))
    .addHelpText(
      'after',
      examples(
        'mangrove machines export heartbeat-member',
        'mangrove machines export quorum --format scxml > quorum.scxml',
        'mangrove machines export pan-election --format json | jq \'.transitions[] | select(.target == null)\'',
        '',
        'Labels read EVENT [guard]; `after NAME` is a delay, `always` an eventless transition;',
        'self-loops add `/ actions`. States are dotted paths, as `machines watch` prints them.',
      ),
    )
    .action(async (name: string, opts: { format: DiagramFormat }) => {
      const [{ findMachine }, { chartOf }, { renderChart }] = await Promise.all([
        import('../inspect/catalog.js'),
        import('../inspect/chart.js'),
        import('../inspect/diagram.js'),
      ]);
      print(renderChart(chartOf(findMachine(name).machine), opts.format));
    });

  machines
    .command('watch')
    .description('stream a running node\'s machine transitions as they happen, until Ctrl-C')
    .option('--connect <endpoint>', 'the node to watch: its tcp endpoint (its HTTP port is read from its status)', watchDefaults.connect)
    .option('--machine <name>', 'only this machine\'s transitions (see `mangrove machines list`)')
    .option('--all', 'also events that leave a state as it was (every heartbeat tick: many lines)')
    .option('--json', 'one JSON object per transition: {t, node, machine, actor, from, to, event}')
    .option('--timeout <ms>', 'how long to wait for the node to answer', positive, watchDefaults.timeoutMs)
    .addHelpText(
      'after',
      examples(
        'mangrove machines watch',
        'mangrove machines watch --connect tcp://127.0.0.1:7401 --machine heartbeat-member',
        'mangrove machines watch --json | jq -c \'select(.to == "candidate")\'',
        '',
        'The node must serve HTTP ("httpPort" in its config; `mangrove local` gives every node one).',
        'from is null when an actor starts, to is null when it stops. The stream is GET /machines/stream',
        'on the node\'s HTTP port (Server-Sent Events), documented in runtime/http/machines.ts.',
      ),
    )
    .action(async (opts: { connect: string; machine?: string; all?: boolean; json?: boolean; timeout: number }) => {
      await watch(opts);
    });
}

async function watch(opts: { connect: string; machine?: string; all?: boolean; json?: boolean; timeout: number }): Promise<void> {
  const status = await ask<NodeStatus>(opts.connect, opts.timeout, 'client.status', {}, watchDefaults.connect);
  const port = status.http ?? null;
  if (port === null) {
    throw new MangroveError('E_NOT_FOUND', `node ${status.self} serves no HTTP port, which is where its machines are watched: give it "httpPort" in its config`);
  }
  const { openMachineStream, streamUrl, transitions } = await import('../inspect/stream.js');
  const url = streamUrl(httpHost(opts.connect), port, { machine: opts.machine, allEvents: opts.all });
  const res = await openMachineStream(url, opts.timeout);
  // On stderr, so stdout stays transitions only; scripts can wait for this line.
  process.stderr.write(`watching node ${status.self} (${url}); Ctrl-C stops\n`);
  try {
    for await (const record of transitions(res)) print(opts.json ? JSON.stringify(record) : formatTransition(record));
  } catch (err) {
    if (!(err instanceof MangroveError) || err.code !== 'E_UNREACHABLE') throw err;
    throw new MangroveError('E_UNREACHABLE', `watching node ${status.self} ended: ${err.message} (did the node stop?)`);
  }
  throw new MangroveError('E_UNREACHABLE', `node ${status.self} closed the stream (did it stop?)`);
}


/** The node's HTTP port listens on the host its endpoint names (127.0.0.1 for a wildcard). */
function httpHost(endpoint: string): string {
  const host = endpoint.slice('tcp://'.length, endpoint.lastIndexOf(':'));
  return host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host;
}

/** `12:04:05.250  0a1b…  heartbeat-member x:12  following → candidate  (after tick)` */
export function formatTransition(r: TransitionRecord): string {
  const time = r.t >= 1e11 ? new Date(r.t).toISOString().slice(11, 23) : `${(r.t / 1000).toFixed(3)}s`;
  const from = r.from ?? '(start)';
  const to = r.to ?? '(stopped)';
  return `${time}  ${r.node}  ${r.machine} ${r.actor}  ${from} → ${to}  (${eventText(r.event)})`;
}

/** XState's own event names, as a reader says them. */
function eventText(type: string): string {
  if (type === 'xstate.init') return 'start';
  if (type === 'xstate.stop') return 'stop';
  const after = /^xstate\.after\.([^.]+)\./.exec(type);
  return after ? `after ${after[1]}` : type;
}
