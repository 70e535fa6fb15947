/**
 * `mangrove trace …`: reading the message traces nodes record (`start
 * --trace`, `local --trace`): CBOR sequences of {t, node, dir, env}.
 */
import type { Command } from 'commander';
import { MangroveError } from '../bus/errors.js';
import { examples, jsonLine, linesPerWrite, print } from './cli-util.js';

export function addTraceCommands(program: Command): void {
  const trace = program.command('trace').description('read message traces recorded by nodes (`start --trace`, `local --trace`)');
  trace
    .command('show')
    .description('print the records of one or more traces, merged in time order')
    .argument('<files...>', 'trace files')
    .option('--json', 'one JSON object per record (bytes and bigints as 0x-hex)')
    .addHelpText('after', examples('mangrove trace show traces/node-0.trace', 'mangrove trace show traces/*.trace --json | jq .env.kind'))
    .action(async (files: string[], opts: { json?: boolean }) => {
      const { readTrace, formatRecord } = await import('../bus/trace.js');
      const records = files.flatMap((file) => {
        try {
          return readTrace(file, (tail) => process.stderr.write(`${file}: ignored a torn last record (${tail.bytes} bytes at byte ${tail.offset})\n`));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') throw new MangroveError('E_NOT_FOUND', `no trace file ${file}`);
          throw err;
        }
      });
      // Array#sort is stable: records of one node at the same time keep their order.
      if (files.length > 1) records.sort((a, b) => a.t - b.t);
      for (let i = 0; i < records.length; i += linesPerWrite) {
        print(records.slice(i, i + linesPerWrite).map((r) => (opts.json ? jsonLine(r) : formatRecord(r))).join('\n'));
      }
    });

}
