/**
 * `mangrove fs fileset …`, `fs check` and `fs df` (SPEC.md M18, M22):
 * filesets made, listed, mounted for every node (online), unmounted
 * (offline), changed and deleted; a fileset verified and repaired; its size
 * and free space, which are the whole space's.
 */
import { Option, type Command } from 'commander';
import { MangroveError } from '../../bus/errors.js';
import type { FilesetInfo } from '../client/files.js';
import { act, fsCliDefaults, fsSession, fsSubcommand, type FsCli, type FsLinkOpts } from './fs-link.js';
import { filesetJson, renderCheck, renderDf, renderFileset, renderFilesets } from './fs-render.js';
import { examples, ExitWith, jsonLine, print } from './util.js';

/** `fs check`: problems remain that it could not repair (1 is a check that could not run, 2 a usage error). */
export const EXIT_CORRUPT = 3;

export function addFilesetCommands(cli: FsCli): void {
  const fileset = cli.cmd
    .command('fileset')
    .description('filesets: independent trees of directories and files, each with its own root (M18)')
    .addHelpText(
      'after',
      examples(
        'mangrove fs fileset list',
        'mangrove fs fileset create backups',
        'mangrove fs fileset set backups --read-only --comment "nightly dumps"',
        'mangrove fs fileset offline backups && mangrove fs fileset delete backups',
        '',
        'The fileset "default" is made with the cluster; a path without FILESET: is in it.',
      ),
    );
  addList(fileset, cli);
  addCreate(fileset, cli);
  addState(fileset, cli, 'online', 'mount a fileset for every node: its files can be reached again');
  addState(fileset, cli, 'offline', 'unmount a fileset for every node: its files are refused with E_OFFLINE until it is online');
  addSet(fileset, cli);
  addDelete(fileset, cli);
  addCheck(cli);
  addDf(cli);
}

function addList(fileset: Command, cli: FsCli): void {
  fsSubcommand(fileset, cli, 'list', 'list the filesets: name, id, state, when made, comment', 'print an array of {name, id, state, created, readOnly, comment} (created an ISO string)')
    .addHelpText('after', examples('mangrove fs fileset list', 'mangrove fs fileset list --json | jq -r \'.[].name\''))
    .action(
      act(async (o: FsLinkOpts) => {
        const list = await fsSession(o, (fs) => fs.filesets());
        print(o.json ? jsonLine(list.map(filesetJson)) : renderFilesets(list));
      }),
    );
}

function addCreate(fileset: Command, cli: FsCli): void {
  fsSubcommand(fileset, cli, 'create', 'make a fileset, online, with an empty root directory', 'print the fileset {name, id, state, created, readOnly, comment}')
    .argument('<name>', 'its name: 1 to 255 characters, no ":" or "/"')
    .addHelpText('after', examples('mangrove fs fileset create backups', 'mangrove fs mkdir backups:/2024'))
    .action(
      act(async (name: string, o: FsLinkOpts) => {
        const f = await fsSession(o, (fs) => fs.createFileset(name));
        print(o.json ? jsonLine(filesetJson(f)) : `created ${renderFileset(f)}`);
      }),
    );
}

function addState(fileset: Command, cli: FsCli, state: 'online' | 'offline', description: string): void {
  fsSubcommand(fileset, cli, state, description, 'print the fileset {name, id, state, created, readOnly, comment}')
    .argument('<name>', 'the fileset')
    .addHelpText('after', examples(`mangrove fs fileset ${state} backups`))
    .action(
      act(async (name: string, o: FsLinkOpts) => {
        const f = await fsSession(o, (fs) => fs.setFilesetState(name, state));
        print(o.json ? jsonLine(filesetJson(f)) : renderFileset(f));
      }),
    );
}

function addSet(fileset: Command, cli: FsCli): void {
  fsSubcommand(fileset, cli, 'set', 'change a fileset\'s attributes: read-only or read-write, its comment', 'print the fileset {name, id, state, created, readOnly, comment}')
    .argument('<name>', 'the fileset')
    .addOption(new Option('--read-only', 'refuse every change to its files (E_BAD_ARGUMENT)').conflicts('readWrite'))
    .addOption(new Option('--read-write', 'allow changes again').conflicts('readOnly'))
    .option('--comment <text>', 'a note shown by `fileset list` (at most 200 characters; "" clears it)')
    .addHelpText('after', examples('mangrove fs fileset set backups --read-only', 'mangrove fs fileset set backups --read-write --comment ""'))
    .action(
      act(async (name: string, o: FsLinkOpts & { readOnly?: boolean; readWrite?: boolean; comment?: string }) => {
        const attrs = { ...(o.readOnly || o.readWrite ? { readOnly: o.readOnly === true } : {}), ...(o.comment === undefined ? {} : { comment: o.comment }) };
        if (Object.keys(attrs).length === 0) throw new MangroveError('E_BAD_ARGUMENT', 'fileset set has nothing to set: give --read-only, --read-write or --comment');
        const f: FilesetInfo = await fsSession(o, (fs) => fs.setFilesetAttrs(name, attrs));
        print(o.json ? jsonLine(filesetJson(f)) : renderFileset(f));
      }),
    );
}

function addDelete(fileset: Command, cli: FsCli): void {
  fsSubcommand(fileset, cli, 'delete', 'delete an offline fileset and every file in it', 'print {"name", "freedInodes"}')
    .argument('<name>', 'the fileset (offline first: fileset offline NAME)')
    .addHelpText('after', examples('mangrove fs fileset delete old', 'mangrove fs fileset offline old && mangrove fs fileset delete old --json', '', 'An online fileset is refused with E_BUSY; so is one with files open on the node asked.'))
    .action(
      act(async (name: string, o: FsLinkOpts) => {
        const r = await fsSession(o, (fs) => fs.deleteFileset(name));
        print(o.json ? jsonLine({ name, freedInodes: r.freedInodes }) : `deleted fileset ${name} (${r.freedInodes} inode${r.freedInodes === 1 ? '' : 's'} freed)`);
      }),
    );
}

function addCheck(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'check', 'verify a fileset\'s directories, inodes and links, repairing what it can', 'print the report {fileset, directories, files, repairs, problems, clean}', fsCliDefaults.checkTimeoutMs)
    .argument('[fileset]', 'the fileset', fsCliDefaults.fileset)
    .option('--no-repair', 'only report: change nothing')
    .addHelpText(
      'after',
      examples(
        'mangrove fs check default',
        'mangrove fs check backups --no-repair --json | jq .problems',
        '',
        `Exit 0 when no problem remains (repairs are listed), ${EXIT_CORRUPT} when some do (E_CORRUPT), 1 when it could not check.`,
      ),
    )
    .action(
      act(async (name: string, o: FsLinkOpts & { repair: boolean }) => {
        const r = await fsSession(o, (fs) => fs.check(name, { repair: o.repair }));
        print(o.json ? jsonLine(r) : renderCheck(r, o.repair));
        if (r.problems.length > 0) {
          const n = r.problems.length;
          throw new ExitWith(new MangroveError('E_CORRUPT', `${n} problem${n === 1 ? '' : 's'} remain${n === 1 ? 's' : ''} in fileset ${r.fileset}`), EXIT_CORRUPT);
        }
      }),
    );
}

function addDf(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'df', 'a fileset\'s size, used and free space (every fileset shares the whole space)', 'print {fileset, totalPages, freePages, pageBytes}')
    .argument('[fileset]', 'the fileset', fsCliDefaults.fileset)
    .addHelpText('after', examples('mangrove fs df', 'mangrove fs df backups --json'))
    .action(
      act(async (name: string, o: FsLinkOpts) => {
        const s = await fsSession(o, (fs) => fs.statfs(name));
        print(o.json ? jsonLine(s) : renderDf(s));
      }),
    );
}
