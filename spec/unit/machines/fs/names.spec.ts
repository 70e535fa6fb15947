/**
 * Names and paths (machines/fs/names.ts; SPEC M18, M19): what an entry and a
 * fileset may be called, how a path splits and names its fileset, and the
 * hash and order that place an entry in its directory.
 */
import { expect } from 'chai';
import {
  checkFilesetName,
  checkName,
  compareNames,
  DEFAULT_FILESET,
  FILESET_NAME_CHARS_MAX,
  NAME_BYTES_MAX,
  nameHash,
  parseFsPath,
  PATH_BYTES_MAX,
  pathParts,
} from '../../../../machines/fs/names.js';
import { errorOf } from '../../../helpers/error-of.js';

const utf8 = new TextEncoder();

describe('machines/fs/names', () => {
  describe('checkName', () => {
    it('answers a good name as its UTF-8 bytes', () => {
      for (const name of ['a', 'hello.txt', '...', '.hidden', 'a:b', 'with space', 'ünïcødé', '日本語', '😀', 'x'.repeat(NAME_BYTES_MAX)]) {
        expect(checkName(name), name).to.deep.equal(utf8.encode(name));
      }
    });

    it("refuses an empty name, '/', NUL, '.' and '..' with E_BAD_NAME", () => {
      expect(errorOf(() => checkName(''))).to.match(/^E_BAD_NAME: .*an empty one was given/);
      expect(errorOf(() => checkName('a/b'))).to.match(/^E_BAD_NAME: the name "a\/b" holds '\/' or NUL/);
      expect(errorOf(() => checkName('/'))).to.match(/^E_BAD_NAME: .*holds '\/' or NUL/);
      expect(errorOf(() => checkName('a\0b'))).to.match(/^E_BAD_NAME: .*holds '\/' or NUL/);
      expect(errorOf(() => checkName('.'))).to.match(/^E_BAD_NAME: '\.' names a directory's place/);
      expect(errorOf(() => checkName('..'))).to.match(/^E_BAD_NAME: '\.\.' names a directory's place/);
      for (const notString of [undefined, null, 7, ['a'], { name: 'a' }]) {
        expect(errorOf(() => checkName(notString)), String(notString)).to.match(/^E_BAD_NAME: /);
      }
    });

    it('counts the limit in UTF-8 bytes, not characters: 255 bytes pass, 256 are E_NAME_TOO_LONG', () => {
      const cases: [string, number][] = [
        ['x'.repeat(255), 255],
        ['é'.repeat(127) + 'x', 255],
        ['€'.repeat(85), 255],
        ['😀'.repeat(63) + 'xyz', 255],
      ];
      for (const [name, bytes] of cases) expect(checkName(name).length, name.slice(0, 4)).to.equal(bytes);
      for (const name of ['x'.repeat(256), 'é'.repeat(128), '€'.repeat(85) + 'x', '😀'.repeat(64)]) {
        expect(errorOf(() => checkName(name)), name.slice(0, 4)).to.equal(`E_NAME_TOO_LONG: a name is at most ${NAME_BYTES_MAX} bytes of UTF-8; this one is 256`);
      }
      // 128 characters, 256 bytes: a character count would have let it through.
      expect('é'.repeat(128).length).to.be.below(NAME_BYTES_MAX);
    });

    it('refuses a lone surrogate E_BAD_NAME: the name could not read back as it was given', () => {
      for (const name of ['\uD800', 'a\uDC00b', 'x\uD83D', '\uDE00x', '\uDE00\uD83D']) {
        expect(errorOf(() => checkName(name)), JSON.stringify(name)).to.match(/^E_BAD_NAME: .*not well-formed Unicode/);
      }
      expect(checkName('\uD83D\uDE00')).to.deep.equal(Uint8Array.from([0xf0, 0x9f, 0x98, 0x80]));
    });
  });

  describe('checkFilesetName', () => {
    it(`takes 1 to ${FILESET_NAME_CHARS_MAX} characters and answers the name`, () => {
      for (const name of ['default', 'a', 'home-2', 'x'.repeat(FILESET_NAME_CHARS_MAX), 'données', '.']) {
        expect(checkFilesetName(name)).to.equal(name);
      }
    });

    it("refuses empty, too long, ':', '/', NUL, a lone surrogate and a non-string with E_BAD_NAME", () => {
      const bad: unknown[] = ['', 'x'.repeat(FILESET_NAME_CHARS_MAX + 1), 'a:b', ':', 'a/b', 'a\0', 'a\uD800', 7, null];
      for (const name of bad) expect(errorOf(() => checkFilesetName(name)), JSON.stringify(name)).to.match(/^E_BAD_NAME: a fileset's name /);
    });
  });

  describe('pathParts', () => {
    it("splits on '/', drops empty parts and '.', keeps '..'", () => {
      expect(pathParts('/a/b/c')).to.deep.equal(['a', 'b', 'c']);
      expect(pathParts('a/b')).to.deep.equal(['a', 'b']);
      expect(pathParts('//a///./b/.//c/')).to.deep.equal(['a', 'b', 'c']);
      expect(pathParts('/a/../b/..')).to.deep.equal(['a', '..', 'b', '..']);
      expect(pathParts('/../..')).to.deep.equal(['..', '..']);
      expect(pathParts('...')).to.deep.equal(['...']);
      expect(pathParts('')).to.deep.equal([]);
      expect(pathParts('/')).to.deep.equal([]);
      expect(pathParts('/./.')).to.deep.equal([]);
    });

    it('refuses NUL E_BAD_NAME, a non-string E_BAD_ARGUMENT, and checks every part as a name', () => {
      expect(errorOf(() => pathParts('/a\0/b'))).to.equal('E_BAD_NAME: a path may not hold NUL');
      expect(errorOf(() => pathParts(undefined))).to.equal('E_BAD_ARGUMENT: a path must be a string');
      expect(errorOf(() => pathParts(['a']))).to.match(/^E_BAD_ARGUMENT: /);
      expect(errorOf(() => pathParts(`/a/${'x'.repeat(256)}/b`))).to.match(/^E_NAME_TOO_LONG: a name is at most 255 bytes/);
      expect(errorOf(() => pathParts('/a/\uD800/b'))).to.match(/^E_BAD_NAME: .*not well-formed/);
    });

    it(`takes a path of ${PATH_BYTES_MAX} UTF-8 bytes and refuses one more E_NAME_TOO_LONG`, () => {
      // 16 parts of '/' and 255 bytes make 4096 bytes.
      const longest = Array.from({ length: 16 }, (_, i) => '/' + String(i).padStart(255, 'y')).join('');
      expect(utf8.encode(longest).length).to.equal(PATH_BYTES_MAX);
      expect(pathParts(longest)).to.have.length(16);
      expect(errorOf(() => pathParts(longest + '/'))).to.equal(`E_NAME_TOO_LONG: a path is at most ${PATH_BYTES_MAX} bytes`);
      // Bytes, not characters: 1,366 characters of 3 bytes each.
      const wide = Array.from({ length: 16 }, () => '/' + '€'.repeat(85)).join('') + '/€€€';
      expect(wide.length).to.be.below(PATH_BYTES_MAX);
      expect(errorOf(() => pathParts(wide))).to.equal(`E_NAME_TOO_LONG: a path is at most ${PATH_BYTES_MAX} bytes`);
    });
  });

  describe('parseFsPath', () => {
    it(`names the default fileset ('${DEFAULT_FILESET}') when there is no colon`, () => {
      expect(parseFsPath('/a/b')).to.deep.equal({ fileset: 'default', path: '/a/b' });
      expect(parseFsPath('a')).to.deep.equal({ fileset: 'default', path: 'a' });
      expect(parseFsPath('')).to.deep.equal({ fileset: 'default', path: '/' });
      expect(DEFAULT_FILESET).to.equal('default');
    });

    it("splits at the first colon: 'fs:/a/b', 'fs:' is the root, the rest may hold colons", () => {
      expect(parseFsPath('fs:/a/b')).to.deep.equal({ fileset: 'fs', path: '/a/b' });
      expect(parseFsPath('fs:')).to.deep.equal({ fileset: 'fs', path: '/' });
      expect(parseFsPath('fs:a')).to.deep.equal({ fileset: 'fs', path: 'a' });
      expect(parseFsPath('home:/x:y/z')).to.deep.equal({ fileset: 'home', path: '/x:y/z' });
    });

    it('refuses a bad fileset name before the colon E_BAD_NAME', () => {
      expect(errorOf(() => parseFsPath(':/a'))).to.match(/^E_BAD_NAME: a fileset's name /);
      expect(errorOf(() => parseFsPath('/a/b:c'))).to.match(/^E_BAD_NAME: a fileset's name may not hold/);
      expect(errorOf(() => parseFsPath(`${'f'.repeat(256)}:/`))).to.match(/^E_BAD_NAME: /);
    });
  });

  describe('nameHash and compareNames', () => {
    it('is 32-bit FNV-1a: the published test vectors, stable across runs', () => {
      expect(nameHash(utf8.encode(''))).to.equal(0x811c9dc5);
      expect(nameHash(utf8.encode('a'))).to.equal(0xe40c292c);
      expect(nameHash(utf8.encode('foobar'))).to.equal(0xbf9cf968);
      // Over bytes, so a name's hash is that of its UTF-8 form.
      expect(nameHash(utf8.encode('é'))).to.equal(nameHash(Uint8Array.from([0xc3, 0xa9])));
      expect(nameHash(utf8.encode('ab'))).to.not.equal(nameHash(utf8.encode('ba')));
      for (const name of ['x', 'é', 'x'.repeat(255)]) {
        const h = nameHash(utf8.encode(name));
        expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32, name.slice(0, 3)).to.equal(true);
      }
    });

    it('orders names bytewise, as they are stored (not by UTF-16 code units)', () => {
      const cmp = (a: string, b: string) => Math.sign(compareNames(utf8.encode(a), utf8.encode(b)));
      expect(cmp('a', 'a')).to.equal(0);
      expect(cmp('a', 'b')).to.equal(-1);
      expect(cmp('b', 'a')).to.equal(1);
      expect(cmp('B', 'a')).to.equal(-1);
      expect(cmp('a', 'ab')).to.equal(-1);
      expect(cmp('ab', 'a')).to.equal(1);
      expect(cmp('z', 'é')).to.equal(-1);
      // U+FFFF is EF BF BF, U+1F600 is F0 9F 98 80: bytewise smaller, though its UTF-16 unit is larger.
      expect('\uFFFF' > '😀').to.equal(true);
      expect(cmp('\uFFFF', '😀')).to.equal(-1);
      const sorted = ['😀', 'a', 'ab', 'B', 'é', '\uFFFF', 'a😀'].map((n) => utf8.encode(n)).sort(compareNames);
      expect(sorted.map((b) => new TextDecoder().decode(b))).to.deep.equal(['B', 'a', 'ab', 'a😀', 'é', '\uFFFF', '😀']);
    });
  });
});
