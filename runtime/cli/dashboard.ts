/**
 * `mangrove dashboard`: where a node's dashboard is (SPEC.md M25), and a
 * browser opened on it. The node's status names its HTTP port; the page is
 * served there, on 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import type { NodeStatus } from '../../actors/status.js';
import { MangroveError } from '../../bus/errors.js';
import { ask } from './ask.js';
import { examples, positive, print } from './util.js';

export function addDashboardCommand(program: Command, defaults: { connect: string; timeoutMs: number }): void {
  program
    .command('dashboard')
    .description("print a node's dashboard URL and open it in a browser")
    .option('--connect <endpoint>', 'the node whose dashboard to open', defaults.connect)
    .option('--no-open', 'only print the URL')
    .option('--json', 'print {"url": …} as one JSON line (opens nothing)')
    .option('--timeout <ms>', 'how long to wait for the node', positive, defaults.timeoutMs)
    .addHelpText(
      'after',
      examples(
        'mangrove dashboard',
        'mangrove dashboard --connect tcp://127.0.0.1:7402 --no-open',
        '',
        'Every node serves the dashboard on its HTTP port ("httpPort" in its config), on 127.0.0.1.',
        'The browser is opened with xdg-open when there is one (a desktop session).',
      ),
    )
    .action(async (opts: { connect: string; open: boolean; json?: boolean; timeout: number }) => {
      const status = await ask<NodeStatus>(opts.connect, opts.timeout, 'client.status', {}, defaults.connect);
      if (status.http === null) throw new MangroveError('E_NOT_FOUND', `the node at ${opts.connect} serves no HTTP port: give it "httpPort" in its config (mangrove local does)`);
      const url = `http://127.0.0.1:${status.http}/`;
      if (opts.json) return print(JSON.stringify({ url, node: status.self }));
      print(url);
      if (opts.open) openBrowser(url);
    });
}

/** xdg-open when there is a display; a headless host gets the URL printed only. */
function openBrowser(url: string): void {
  if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) {
    process.stderr.write('no display here: open the URL above in a browser (an ssh tunnel: ssh -L PORT:127.0.0.1:PORT host)\n');
    return;
  }
  const child = spawn('xdg-open', [url], { stdio: 'ignore', detached: true });
  child.on('error', () => process.stderr.write('xdg-open is not installed: open the URL above in a browser\n'));
  child.unref();
}
