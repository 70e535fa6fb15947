/**
 * Filesets and the super-root (SPEC.md M18, M22; patent, "Fileset"): the
 * file system's super-root page, found through the engine's super-root
 * address (M7), lists every fileset by name with the address of its fileset
 * page; the fileset page holds its state, its attributes, its root
 * directory's inode and its inode table's range. Pure: layouts and checks.
 *
 * The super-root is one page, then a chain (`next`) once filesets outgrow it.
 */
import { z } from 'zod';
import { MangroveError } from '../../bus/errors.js';
import { addressFromKey, addressKey } from '../memory/address.js';
import { decodeFsPage, encodeFsPage, sealFsPage } from './fs-page.js';
import { FILESET_NAME_CHARS_MAX } from './names.js';

/** online: served; offline: unmounted, no new handles (M18); deleting: a delete began and is finished by whoever finds it. */
export type FilesetState = 'online' | 'offline' | 'deleting';

export interface FilesetRecord {
  id: number;
  name: string;
  addr: bigint;
  state: FilesetState;
}

export interface SuperRoot {
  /** The id the next fileset gets. */
  nextId: number;
  filesets: FilesetRecord[];
  /** The next page of the list, once it outgrew this one. */
  next: bigint | null;
}

export interface Fileset {
  id: number;
  name: string;
  state: FilesetState;
  createdMs: number;
  /** The root directory's inode (ROOT_INO) and where it lives. */
  rootAddr: bigint;
  /** The inode table's reserved range and the pages of it in use. */
  tableBase: bigint;
  tablePages: number;
  /** The first table page that may have a free inode (a hint: pages before it are full). */
  tableFree: number;
  /** Fileset control (M18): attributes an administrator sets. */
  attrs: { readOnly: boolean; comment: string };
}

/**
 * Filesets per super-root page at most: twelve names of the longest length
 * fit when they are ASCII; names of wider characters fit fewer, which
 * `superRootFits` tells.
 */
export const FILESETS_PER_PAGE = 12;
export const COMMENT_CHARS_MAX = 200;

const address = z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.byteLength === 16, 'an address of 16 bytes').transform(addressFromKey);
const state = z.enum(['online', 'offline', 'deleting']);
const u32 = z.number().int().min(0).max(2 ** 32 - 1);
const fsName = z.string().min(1).max(FILESET_NAME_CHARS_MAX);

const superRootSchema = z.object({
  nextId: u32,
  filesets: z.array(z.object({ id: u32, name: fsName, addr: address, state })).max(FILESETS_PER_PAGE),
  next: address.nullable(),
});

const filesetSchema = z.object({
  id: u32,
  name: fsName,
  state,
  createdMs: z.number().min(0),
  rootAddr: address,
  tableBase: address,
  tablePages: u32,
  tableFree: u32,
  attrs: z.object({ readOnly: z.boolean(), comment: z.string().max(COMMENT_CHARS_MAX) }),
});

function superRootWire(s: SuperRoot): unknown {
  return { ...s, filesets: s.filesets.map((f) => ({ ...f, addr: addressKey(f.addr) })), next: s.next === null ? null : addressKey(s.next) };
}

/** Whether the super-root page `s` fits its page: at most FILESETS_PER_PAGE filesets, and their names' bytes. */
export function superRootFits(s: SuperRoot): boolean {
  return s.filesets.length <= FILESETS_PER_PAGE && encodeFsPage('super_root', superRootWire(s)) !== undefined;
}

export function encodeSuperRoot(s: SuperRoot, addr: bigint): Uint8Array {
  if (s.filesets.length > FILESETS_PER_PAGE) throw new MangroveError('E_INTERNAL', `a super-root page holds at most ${FILESETS_PER_PAGE} filesets`);
  return sealFsPage('super_root', superRootWire(s), addr);
}

export function decodeSuperRoot(data: Uint8Array, addr: bigint): SuperRoot | null {
  return decodeFsPage('super_root', data, addr, superRootSchema);
}

export function encodeFileset(f: Fileset, addr: bigint): Uint8Array {
  return sealFsPage('fileset', { ...f, rootAddr: addressKey(f.rootAddr), tableBase: addressKey(f.tableBase) }, addr);
}

export function decodeFileset(data: Uint8Array, addr: bigint): Fileset | null {
  return decodeFsPage('fileset', data, addr, filesetSchema);
}
