/**
 * `mangrove fs …` (SPEC.md M18-M22, M24): the file system from a shell,
 * through the client library's `client.fs` (runtime/client/files.ts). Paths
 * are `FILESET:/a/b`, or `/a/b` in the fileset `default`; local files are
 * plain paths, `-` for stdin or stdout.
 *
 * This file registers the family and holds the commands on names (ls, stat,
 * mkdir, rmdir, rm, mv, ln); fs-files.ts moves bytes (put, get, cat) and
 * holds byte-range locks; fs-filesets.ts runs filesets, check and df;
 * fs-link.ts is what they share (options, the client, error lines);
 * fs-render.ts what they print. A refusal prints `error E_CODE (POSIX):
 * sentence` and exits 2 for a usage error, 1 otherwise (E_LOCKED too, as
 * `page lock`); `fs check` exits 3 when problems remain.
 */
import type { Command } from 'commander';
import { MangroveError } from '../../bus/errors.js';
import type { FsDirEntry } from '../../bus/messages/fs.js';
import type { FsClient } from '../client/files.js';
import { addFileCommands } from './fs-files.js';
import { addFilesetCommands } from './fs-filesets.js';
import { act, fsCliDefaults, fsSession, fsSubcommand, intoDirectory, isDirectory, isMissing, octal, type FsCli, type FsLinkOpts } from './fs-link.js';
import { byName, canonicalPath, childPath, lastName, lsJson, namesDirectory, renderLs, renderLsLong, renderStat } from './fs-render.js';
import { examples, jsonLine, print } from './util.js';

export function addFsCommands(program: Command, defaults: { connect: string }): void {
  const cmd = program
    .command('fs')
    .description('the file system: filesets, directories and files in the shared space, through any node')
    .addHelpText(
      'after',
      examples(
        'mangrove fs mkdir -p /photos/2024                 # in the fileset "default"',
        'mangrove fs put holiday.jpg /photos/2024/         # streamed, fsynced before it returns',
        'mangrove fs ls -l /photos/2024',
        'mangrove fs get /photos/2024/holiday.jpg copy.jpg --connect tcp://127.0.0.1:7401',
        'mangrove fs fileset create backups && mangrove fs put - backups:/db.dump < db.dump',
        '',
        'Paths are FILESET:/a/b, or /a/b in the fileset "default". Times are shown in UTC.',
        `Every subcommand takes --connect (default the node at ${defaults.connect}), --timeout, --json.`,
        'A refusal prints `error E_CODE (POSIX): sentence` on stderr: exit 2 for a usage error, 1 otherwise.',
      ),
    );
  const cli: FsCli = { cmd, connect: defaults.connect };
  addFilesetCommands(cli);
  addLs(cli);
  addStat(cli);
  addMkdir(cli);
  addRemove(cli);
  addMove(cli);
  addLink(cli);
  addFileCommands(cli);
}

function addLs(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'ls', 'list a directory: each entry\'s type, size and modification time', 'print an array of {name, type, size, mtime} (mtime an ISO string)')
    .argument('[path]', 'the directory (or one file)', fsCliDefaults.path)
    .option('-l, --long', 'the long form: mode, links, uid, gid, size, mtime, name (and a link\'s target)')
    .addHelpText(
      'after',
      examples('mangrove fs ls', 'mangrove fs ls -l /photos', 'mangrove fs ls backups:/ --json | jq \'.[].name\'', '', 'Entries in name order; times in UTC. A file is listed as itself.'),
    )
    .action(
      act(async (path: string, o: FsLinkOpts & { long?: boolean }) => {
        const { entries, targets } = await fsSession(o, async (fs) => {
          const entries = byName(await listing(fs, path));
          const targets = new Map<string, string>();
          if (o.long && !o.json) {
            for (const e of entries) if (e.type === 'symlink') targets.set(e.name, await fs.readlink(entryPath(path, e, entries)));
          }
          return { entries, targets };
        });
        if (o.json) return print(jsonLine(lsJson(entries)));
        print(o.long ? renderLsLong(entries, targets) : renderLs(entries));
      }),
    );
}

/** The entries of a directory, or a file (or link) as one entry named as the path names it. */
async function listing(fs: FsClient, path: string): Promise<FsDirEntry[]> {
  const s = await fs.lstat(path);
  const dir = s.type === 'dir' || (s.type === 'symlink' && (await isDirectory(fs, path)));
  if (dir) return fs.readdirStat(path);
  return [{ ...s, name: lastName(path) || canonicalPath(path) }];
}

/** The path of an entry `ls` listed: inside the directory, or the path itself when it listed one file. */
function entryPath(path: string, e: FsDirEntry, entries: readonly FsDirEntry[]): string {
  return entries.length === 1 && e.name === lastName(path) && !namesDirectory(path) ? path : childPath(path, e.name);
}

function addStat(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'stat', 'show what a path names: type, size, mode, owner, links, inode and times', 'print the stat object {ino, type, mode, uid, gid, nlink, size, blocks, atimeMs, mtimeMs, ctimeMs, birthtimeMs}')
    .argument('<path>', 'the file, directory or link')
    .option('-L, --dereference', 'follow a symbolic link: show what it points to')
    .addHelpText('after', examples('mangrove fs stat /photos/a.jpg', 'mangrove fs stat backups:/db.dump --json | jq .size', '', 'As stat(1), a symbolic link is shown itself, with its target, unless -L.'))
    .action(
      act(async (path: string, o: FsLinkOpts & { dereference?: boolean }) => {
        const { s, target } = await fsSession(o, async (fs) => {
          const s = o.dereference ? await fs.stat(path) : await fs.lstat(path);
          return { s, target: s.type === 'symlink' && !o.json ? await fs.readlink(path) : undefined };
        });
        print(o.json ? jsonLine(s) : renderStat(canonicalPath(path), s, target));
      }),
    );
}

function addMkdir(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'mkdir', 'make a directory', 'print {"path"}')
    .argument('<path>', 'the directory to make')
    .option('-p, --parents', 'make missing parents too; no error if the directory exists')
    .option('--mode <octal>', 'permission bits (default 755)', octal)
    .addHelpText('after', examples('mangrove fs mkdir /photos', 'mangrove fs mkdir -p backups:/2024/05 --mode 700'))
    .action(
      act(async (path: string, o: FsLinkOpts & { parents?: boolean; mode?: number }) => {
        await fsSession(o, async (fs) => {
          await fs.mkdir(path, { recursive: o.parents === true, ...(o.mode === undefined ? {} : { mode: o.mode }) });
          // With -p an existing name is no error, but it must be a directory.
          if (o.parents && !(await isDirectory(fs, path))) throw new MangroveError('E_EXISTS', `${canonicalPath(path)} exists and is not a directory`);
        });
        print(o.json ? jsonLine({ path: canonicalPath(path) }) : `made directory ${canonicalPath(path)}`);
      }),
    );
}

function addRemove(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'rmdir', 'remove an empty directory', 'print {"path"}')
    .argument('<path>', 'the directory')
    .addHelpText('after', examples('mangrove fs rmdir /photos/old', '', 'A directory that is not empty is refused with E_NOT_EMPTY (ENOTEMPTY); rm -r removes it with all it holds.'))
    .action(
      act(async (path: string, o: FsLinkOpts) => {
        await fsSession(o, (fs) => fs.rmdir(path));
        print(o.json ? jsonLine({ path: canonicalPath(path) }) : `removed directory ${canonicalPath(path)}`);
      }),
    );

  fsSubcommand(cli.cmd, cli, 'rm', 'remove a file or link (-r: a directory and everything in it)', 'print {"path", "files", "directories"} (what was removed)')
    .argument('<path>', 'what to remove')
    .option('-r, --recursive', 'remove a directory and all it holds: its files and links, then its directories, deepest first')
    .option('-f, --force', 'no error when nothing is there')
    .addHelpText(
      'after',
      examples('mangrove fs rm /photos/a.jpg', 'mangrove fs rm -r /photos/old', 'mangrove fs rm -f backups:/maybe', '', 'rm -r stops at the first refusal: what was removed before it stays removed.'),
    )
    .action(
      act(async (path: string, o: FsLinkOpts & { recursive?: boolean; force?: boolean }) => {
        const gone = await fsSession(o, (fs) => remove(fs, path, o.recursive === true, o.force === true));
        if (o.json) return print(jsonLine({ path: canonicalPath(path), ...gone }));
        if (gone.files + gone.directories === 0) return;
        const what = gone.directories === 0 && gone.files === 1 ? '' : ` (${gone.files} file${gone.files === 1 ? '' : 's'}, ${gone.directories} director${gone.directories === 1 ? 'y' : 'ies'})`;
        print(`removed ${canonicalPath(path)}${what}`);
      }),
    );
}

/** Removes `path` (with -r, a whole tree, deepest first); counts what went. */
export async function remove(fs: FsClient, path: string, recursive: boolean, force: boolean): Promise<{ files: number; directories: number }> {
  const gone = { files: 0, directories: 0 };
  let top;
  try {
    top = await fs.lstat(path);
  } catch (err) {
    if (force && isMissing(err)) return gone;
    throw err;
  }
  if (top.type !== 'dir' || !recursive) {
    await fs.unlink(path);
    gone.files++;
    return gone;
  }
  // Depth first without recursion: a directory is removed once everything listed in it is.
  const stack: { path: string; listed: boolean }[] = [{ path, listed: false }];
  while (stack.length > 0) {
    const at = stack[stack.length - 1];
    if (!at.listed) {
      at.listed = true;
      for (const e of await fs.readdirStat(at.path)) {
        const child = childPath(at.path, e.name);
        if (e.type === 'dir') stack.push({ path: child, listed: false });
        else {
          // Gone already (another client removed it): nothing to count.
          const removed = await fs.unlink(child).then(
            () => true,
            (err: unknown) => {
              if (isMissing(err)) return false;
              throw err;
            },
          );
          if (removed) gone.files++;
        }
      }
      continue;
    }
    stack.pop();
    await fs.rmdir(at.path);
    gone.directories++;
  }
  return gone;
}

function addMove(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'mv', 'rename or move a file or directory, atomically, inside its fileset', 'print {"from", "to"}')
    .argument('<from>', 'what to move')
    .argument('<to>', 'its new path; an existing directory (or a path ending in /): move it inside')
    .option('-T, --no-target-directory', 'TO is the new name even if it is a directory (an empty one is replaced)')
    .addHelpText('after', examples('mangrove fs mv /a.txt /b.txt', 'mangrove fs mv /photos/a.jpg /archive/', '', 'A file that TO named is replaced, as rename(2) does.'))
    .action(
      act(async (from: string, to: string, o: FsLinkOpts & { targetDirectory: boolean }) => {
        const dest = await fsSession(o, async (fs) => {
          const dest = o.targetDirectory ? await intoDirectory(fs, to, lastName(from), 'entry') : to;
          await fs.rename(from, dest);
          return dest;
        });
        print(o.json ? jsonLine({ from: canonicalPath(from), to: canonicalPath(dest) }) : `moved ${canonicalPath(from)} to ${canonicalPath(dest)}`);
      }),
    );
}

function addLink(cli: FsCli): void {
  fsSubcommand(cli.cmd, cli, 'ln', 'make a hard link to a file (-s: a symbolic link holding TARGET)', 'print {"path", "target", "symbolic"}')
    .argument('<target>', 'the existing file (with -s: the text the link holds, a path in the same fileset)')
    .argument('<path>', 'the new name; an existing directory (or a path ending in /): the link goes inside it')
    .option('-s, --symbolic', 'a symbolic link: TARGET need not exist')
    .addHelpText('after', examples('mangrove fs ln /a.txt /also-a.txt', 'mangrove fs ln -s /photos/2024 /latest', '', 'A hard link stays in its fileset; a directory cannot be hard-linked (E_IS_DIR).'))
    .action(
      act(async (target: string, path: string, o: FsLinkOpts & { symbolic?: boolean }) => {
        const made = await fsSession(o, async (fs) => {
          const name = o.symbolic ? (target.split('/').filter((p) => p !== '').at(-1) ?? '') : lastName(target);
          const made = await intoDirectory(fs, path, name, 'link');
          if (o.symbolic) await fs.symlink(target, made);
          else await fs.link(target, made);
          return made;
        });
        const shown = o.symbolic ? target : canonicalPath(target);
        if (o.json) return print(jsonLine({ path: canonicalPath(made), target: shown, symbolic: o.symbolic === true }));
        print(o.symbolic ? `${canonicalPath(made)} -> ${target}` : `linked ${canonicalPath(made)} to ${shown}`);
      }),
    );
}

