/**
 * `mangrove fs` without a node: the pure parts (paths written back, modes,
 * ls and the other renderings, the transfer meter, input cut into writes,
 * the error line) in process, and the built command's help and argument
 * checks, which must refuse with their code and exit status before
 * anything is sent. Every built run points at a port nothing listens on
 * with a short timeout, so a request that did go out would show as
 * E_UNREACHABLE instead of the expected refusal.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { MangroveError } from '../../../../bus/errors.js';
import type { FsDirEntry } from '../../../../bus/messages/fs.js';
import type { CheckReport, FilesetInfo } from '../../../../runtime/client/files.js';
import { errorLine } from '../../../../runtime/cli/fs-link.js';
import { chunksOf } from '../../../../runtime/cli/util.js';
import {
  byName,
  canonicalPath,
  childPath,
  filesetJson,
  lastName,
  lsJson,
  Meter,
  meterLine,
  modeString,
  namesDirectory,
  parseMode,
  renderCheck,
  renderDf,
  renderFilesets,
  renderLs,
  renderLsLong,
} from '../../../../runtime/cli/fs-render.js';
import { CLI, itRefusesUsage, mangrove } from '../../../helpers/run-cli.js';

const NOBODY = ['--connect', 'tcp://127.0.0.1:1', '--timeout', '300'];
const MIB = 1024 * 1024;
const T = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

function entry(name: string, type: FsDirEntry['type'], size: number, mode: number, nlink = 1): FsDirEntry {
  const bits = type === 'dir' ? 0o040000 : type === 'symlink' ? 0o120000 : 0o100000;
  return { name, ino: 7, type, mode: bits | mode, uid: 0, gid: 0, nlink, size, blocks: Math.ceil(size / 512), atimeMs: T, mtimeMs: T, ctimeMs: T, birthtimeMs: T };
}

async function* pieces(...parts: (Uint8Array | string)[]): AsyncGenerator<Uint8Array | string> {
  for (const p of parts) yield p;
}

async function collect(source: AsyncIterable<Uint8Array | string>, bytes: number): Promise<number[][]> {
  const out: number[][] = [];
  for await (const c of chunksOf(source, bytes)) out.push([...c]);
  return out;
}

describe('runtime/cli/fs', () => {
  describe('paths', () => {
    it('names every path back with its fileset and one leading /', () => {
      expect(canonicalPath('/a/b')).to.equal('default:/a/b');
      expect(canonicalPath('a/b')).to.equal('default:/a/b');
      expect(canonicalPath('')).to.equal('default:/');
      expect(canonicalPath('backups:')).to.equal('backups:/');
      expect(canonicalPath('backups:/x')).to.equal('backups:/x');
    });

    it('joins a name onto a directory, the root included', () => {
      expect(childPath('/', 'f')).to.equal('default:/f');
      expect(childPath('default:/', 'f')).to.equal('default:/f');
      expect(childPath('b:/a/', 'f')).to.equal('b:/a/f');
      expect(childPath('b:/a//', 'f')).to.equal('b:/a/f');
      expect(childPath('a', 'f')).to.equal('default:/a/f');
    });

    it('takes the last name, and knows a path ending in / names a directory', () => {
      expect(lastName('/a/b.txt')).to.equal('b.txt');
      expect(lastName('x:/a/b/')).to.equal('b');
      expect(lastName('x:/')).to.equal('');
      expect(namesDirectory('/a/')).to.equal(true);
      expect(namesDirectory('/a')).to.equal(false);
    });
  });

  describe('modes', () => {
    it('parses octal permission bits, and nothing else', () => {
      expect(parseMode('755')).to.equal(0o755);
      expect(parseMode('0750')).to.equal(0o750);
      expect(parseMode('1777')).to.equal(0o1777);
      for (const bad of ['999', '8', '', '07777', 'rwx', '-1', '0x1ff']) expect(parseMode(bad), bad).to.equal(null);
    });

    it('spells a mode as ls -l does, with setuid, setgid and sticky', () => {
      expect(modeString('dir', 0o040755)).to.equal('drwxr-xr-x');
      expect(modeString('file', 0o100644)).to.equal('-rw-r--r--');
      expect(modeString('symlink', 0o120777)).to.equal('lrwxrwxrwx');
      expect(modeString('file', 0o4755)).to.equal('-rwsr-xr-x');
      expect(modeString('file', 0o2644)).to.equal('-rw-r-Sr--');
      expect(modeString('dir', 0o1777)).to.equal('drwxrwxrwt');
      expect(modeString('dir', 0o1776)).to.equal('drwxrwxrwT');
    });
  });

  describe('ls', () => {
    const entries = byName([entry('zeta.bin', 'file', 4194304, 0o644), entry('docs', 'dir', 0, 0o755, 3), entry('latest', 'symlink', 12, 0o777)]);

    it('sorts by name and gives --json as exactly {name, type, size, mtime}', () => {
      expect(lsJson(entries)).to.deep.equal([
        { name: 'docs', type: 'dir', size: 0, mtime: '2025-01-02T03:04:05.678Z' },
        { name: 'latest', type: 'symlink', size: 12, mtime: '2025-01-02T03:04:05.678Z' },
        { name: 'zeta.bin', type: 'file', size: 4194304, mtime: '2025-01-02T03:04:05.678Z' },
      ]);
    });

    it('shows type, size (right-aligned), mtime in UTC and name, a directory with a trailing /', () => {
      expect(renderLs(entries)).to.equal(
        [
          'TYPE     SIZE  MODIFIED (UTC)       NAME',
          'dir         0  2025-01-02 03:04:05  docs/',
          'link       12  2025-01-02 03:04:05  latest',
          'file  4194304  2025-01-02 03:04:05  zeta.bin',
        ].join('\n'),
      );
      expect(renderLs([])).to.equal('(empty)');
    });

    it('shows the long form with mode, links, owner, size and a link\'s target', () => {
      expect(renderLsLong(entries, new Map([['latest', '/docs/2025']]))).to.equal(
        [
          'drwxr-xr-x  3  0  0        0  2025-01-02 03:04:05  docs',
          'lrwxrwxrwx  1  0  0       12  2025-01-02 03:04:05  latest -> /docs/2025',
          '-rw-r--r--  1  0  0  4194304  2025-01-02 03:04:05  zeta.bin',
        ].join('\n'),
      );
    });
  });

  describe('filesets, check, df', () => {
    const info: FilesetInfo = { id: 2, name: 'backups', state: 'online', createdMs: T, attrs: { readOnly: true, comment: 'nightly' } };

    it('lists filesets as a table, and as JSON with stable fields', () => {
      expect(renderFilesets([info, { ...info, id: 1, name: 'default', attrs: { readOnly: false, comment: '' } }])).to.equal(
        ['NAME     ID  STATE              CREATED (UTC)        COMMENT', 'backups   2  online, read-only  2025-01-02 03:04:05  nightly', 'default   1  online             2025-01-02 03:04:05'].join('\n'),
      );
      expect(filesetJson(info)).to.deep.equal({ name: 'backups', id: 2, state: 'online', created: '2025-01-02T03:04:05.678Z', readOnly: true, comment: 'nightly' });
    });

    it('reports a check: counts, each repair and problem, and the verdict', () => {
      const clean: CheckReport = { fileset: 'default', directories: 1, files: 0, repairs: [], problems: [], clean: true };
      expect(renderCheck(clean, true)).to.equal('fileset default: checked 1 directory and 0 files\nclean');
      const repaired = { ...clean, directories: 3, files: 1, repairs: ['inode 5 was unlinked and open nowhere: freed'] };
      expect(renderCheck(repaired, true)).to.equal('fileset default: checked 3 directories and 1 file\nrepaired: inode 5 was unlinked and open nowhere: freed\nclean after 1 repair');
      const bad = { ...clean, problems: ['entry "x" names inode 9, which the inode table says is free'], clean: false };
      expect(renderCheck(bad, false)).to.equal(
        'fileset default: checked 1 directory and 0 files\nproblem: entry "x" names inode 9, which the inode table says is free\n1 problem remains (checked with --no-repair: nothing was changed)',
      );
    });

    it('shows df in MiB', () => {
      expect(renderDf({ fileset: 'default', totalPages: 1024, freePages: 768, pageBytes: 4096 })).to.equal(['FILESET     SIZE     USED     FREE  USE%', 'default  4.0 MiB  1.0 MiB  3.0 MiB   25%'].join('\n'));
    });
  });

  describe('the transfer meter', () => {
    function meter(total: number | undefined, tty: boolean): { m: Meter; out: string[]; at: (ms: number) => void } {
      let now = 0;
      const out: string[] = [];
      const m = new Meter({ verb: 'put', total, now: () => now, write: (t) => out.push(t), tty });
      return { m, out, at: (ms) => (now = ms) };
    }

    it('says nothing for a transfer of 8 MiB or less', () => {
      const { m, out, at } = meter(8 * MIB, false);
      at(1000);
      m.update(8 * MIB);
      m.finish(8 * MIB);
      expect(out).to.deep.equal([]);
    });

    it('shows bytes done of the total and the rate, at most every 200 ms, then a last line', () => {
      const { m, out, at } = meter(64 * MIB, false);
      at(500);
      m.update(8 * MIB);
      at(600);
      m.update(10 * MIB);
      at(700);
      m.update(12 * MIB);
      at(2000);
      m.finish(64 * MIB);
      expect(out).to.deep.equal(['put 8.0 of 64.0 MiB (12%), 16.0 MiB/s\n', 'put 12.0 of 64.0 MiB (18%), 17.1 MiB/s\n', 'put 64.0 of 64.0 MiB (100%), 32.0 MiB/s\n']);
    });

    it('overwrites its line on a terminal, and shows an unknown size once it is past 8 MiB', () => {
      const { m, out, at } = meter(undefined, true);
      at(1000);
      m.update(4 * MIB);
      m.update(9 * MIB);
      m.finish(9 * MIB);
      expect(out).to.deep.equal(['\rput 9.0 MiB, 9.0 MiB/s\x1b[K', '\rput 9.0 MiB, 9.0 MiB/s\x1b[K', '\n']);
      expect(meterLine('get', 0, 0, 0)).to.equal('get 0.0 of 0.0 MiB (100%), 0.0 MiB/s');
    });
  });

  describe('input cut into writes', () => {
    it('gives parts of the size asked, the last one shorter, in order', async () => {
      expect(await collect(pieces(new Uint8Array([1, 2, 3]), 'ab', new Uint8Array([4, 5, 6, 7, 8])), 4)).to.deep.equal([
        [1, 2, 3, 97],
        [98, 4, 5, 6],
        [7, 8],
      ]);
      expect(await collect(pieces(), 4)).to.deep.equal([]);
      expect(await collect(pieces(new Uint8Array(8).fill(9)), 4)).to.deep.equal([
        [9, 9, 9, 9],
        [9, 9, 9, 9],
      ]);
    });
  });

  it('prints a refusal with its POSIX code beside Mangrove\'s', () => {
    expect(errorLine(new MangroveError('E_NOT_FOUND', 'no "x" in "/a/x"'))).to.equal('error E_NOT_FOUND (ENOENT): no "x" in "/a/x"\n');
    expect(errorLine(new MangroveError('E_UNREACHABLE', 'no answer'))).to.equal('error E_UNREACHABLE: no answer\n');
  });

  describe('the built command', () => {
    before(function () {
      if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    });

    const commands = [
      ['fs'],
      ['fs', 'fileset'],
      ...['list', 'create', 'delete', 'online', 'offline', 'set'].map((c) => ['fs', 'fileset', c]),
      ...['ls', 'stat', 'mkdir', 'rmdir', 'rm', 'mv', 'ln', 'put', 'get', 'cat', 'lock', 'check', 'df'].map((c) => ['fs', c]),
    ];
    for (const command of commands) {
      it(`explains \`mangrove ${command.join(' ')} --help\` with an example`, async () => {
        const r = await mangrove([...command, '--help']);
        expect(r.code).to.equal(0);
        expect(r.stdout).to.include(`Usage: mangrove ${command.join(' ')}`);
        expect(r.stdout).to.include('Examples:');
        expect(r.stdout).to.match(new RegExp(`^  mangrove ${command.join(' ')}`, 'm'));
      });
    }

    itRefusesUsage([
      ['a --mode that is not octal', ['fs', 'mkdir', '/x', '--mode', '999', ...NOBODY], /^error E_BAD_ARGUMENT: option '--mode <octal>' argument '999' is invalid/],
      ['a lock of no bytes', ['fs', 'lock', '/f', '--start', '10', '--end', '10', ...NOBODY], /^error E_BAD_ARGUMENT \(EINVAL\): --end must lie after --start/],
      ['a negative --start', ['fs', 'lock', '/f', '--start', '-1', '--end', '10', ...NOBODY], /^error E_BAD_ARGUMENT: option '--start <n>' argument '-1' is invalid/],
      ['a lock without its range', ['fs', 'lock', '/f', ...NOBODY], /^error E_BAD_ARGUMENT: required option '--start <n>' not specified/],
      ['--read-only with --read-write', ['fs', 'fileset', 'set', 'x', '--read-only', '--read-write', ...NOBODY], /^error E_BAD_ARGUMENT: option '--read-only' cannot be used with option '--read-write'/],
      ['fileset set with nothing to set', ['fs', 'fileset', 'set', 'x', ...NOBODY], /^error E_BAD_ARGUMENT \(EINVAL\): fileset set has nothing to set/],
      ['get to stdout with --json', ['fs', 'get', '/f', '-', '--json', ...NOBODY], /^error E_BAD_ARGUMENT \(EINVAL\): get SRC - writes the file to stdout/],
      ['cat --json', ['fs', 'cat', '/f', '--json', ...NOBODY], /^error E_BAD_ARGUMENT \(EINVAL\): cat writes the bytes themselves/],
      ['a --connect that is no endpoint', ['fs', 'ls', '--connect', 'localhost:7400'], /^error E_BAD_ARGUMENT \(EINVAL\): --connect must be a tcp endpoint/],
    ]);

    it('refuses a local file that is not there with E_NOT_FOUND, before sending anything', async () => {
      const r = await mangrove(['fs', 'put', '/nonexistent/file', '/x', ...NOBODY]);
      expect(r.stderr).to.equal('error E_NOT_FOUND (ENOENT): cannot read /nonexistent/file: no such file\n');
      expect(r.code).to.equal(1);
    });

    it('says E_UNREACHABLE and exits 1 when no node answers', async () => {
      const r = await mangrove(['fs', 'ls', ...NOBODY]);
      expect(r.stderr).to.match(/^error E_UNREACHABLE: no answer from tcp:\/\/127\.0\.0\.1:1 within 300 ms/);
      expect(r.code).to.equal(1);
      expect(r.stdout).to.equal('');
    });
  });
});
