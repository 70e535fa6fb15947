/**
 * `mangrove keys …`: the CURVE key pairs that encrypt and authenticate the
 * links between nodes and clients (bus/transport/curve.ts). `generate`
 * writes a key file readable by its owner only and prints the public key,
 * the half that is handed to peers; `show` prints a key file's public key
 * and never its secret.
 */
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { examples, print } from './util.js';

interface GenerateOpts {
  out: string;
  force?: boolean;
  json?: boolean;
}

export function addKeysCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('CURVE key pairs: what encrypts the links between nodes and clients and proves who is at each end')
    .addHelpText(
      'after',
      examples(
        'mangrove keys generate --out node-0/node.key    # a new pair; prints the public key',
        'mangrove keys show node-0/node.key              # the public key of a key file',
        '',
        'A key file is JSON {"publicKey": "...", "secretKey": "..."} (Z85, 40 characters each).',
        'Keep the secret key where it is; give peers the public key.',
        'A client\'s key file also names the nodes it talks to: "nodes": {"tcp://HOST:PORT": "<node public key>"}',
        '(mangrove local writes DIR/client.key so); commands take it with --key FILE or $MANGROVE_KEY.',
      ),
    );

  keys
    .command('generate')
    .description('make a new key pair, write it to a key file readable by its owner only (0600), and print its public key')
    .requiredOption('-o, --out <file>', 'the key file to write')
    .option('--force', 'replace FILE if it exists (its old pair is lost: peers that knew it must be told the new public key)')
    .option('--json', 'print {"file", "publicKey"} as one JSON line')
    .addHelpText(
      'after',
      examples(
        'mangrove keys generate --out node-0/node.key',
        'mangrove keys generate --out client.key --json | jq -r .publicKey',
        '',
        'An existing FILE is refused (E_EXISTS) unless --force is given.',
      ),
    )
    .action(async (opts: GenerateOpts) => {
      const { generateKeyPair, writeKeyFile } = await import('../../bus/transport/curve.js');
      const pair = generateKeyPair();
      writeKeyFile(opts.out, pair, { overwrite: opts.force === true });
      if (opts.json) return print(JSON.stringify({ file: opts.out, publicKey: pair.publicKey }));
      print(`wrote ${opts.out} (mode 0600: readable by its owner only)\npublic key: ${pair.publicKey}`);
    });

  keys
    .command('show')
    .description('print the public key of a key file (never its secret key)')
    .argument('<file>', 'a key file: a pair, or a public key alone')
    .option('--json', 'print {"file", "publicKey", "hasSecretKey"} as one JSON line')
    .addHelpText(
      'after',
      examples('mangrove keys show node-0/node.key', 'mangrove keys show node-0/node.key --json | jq -r .publicKey'),
    )
    .action(async (file: string, opts: { json?: boolean }) => {
      const { readKeyFile } = await import('../../bus/transport/curve.js');
      const content = readKeyFile(file);
      const hasSecretKey = content.secretKey !== undefined;
      warnIfExposed(file, hasSecretKey);
      if (opts.json) return print(JSON.stringify({ file, publicKey: content.publicKey, hasSecretKey }));
      print(`public key: ${content.publicKey}\n${hasSecretKey ? 'secret key: in the file (not shown)' : 'no secret key: a public key alone'}`);
    });
}

/** A secret others can read is no secret: say so on stderr, without refusing (the output is still right). */
function warnIfExposed(file: string, hasSecretKey: boolean): void {
  if (!hasSecretKey) return;
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) === 0) return;
  process.stderr.write(`warning: ${file} holds a secret key but its mode is 0${mode.toString(8)}: run \`chmod 600 ${file}\`\n`);
}
