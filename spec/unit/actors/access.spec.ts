/**
 * What each client role may ask a node (actors/access.ts): read-only reads,
 * read-write changes data, only admin changes the cluster.
 */
import { expect } from 'chai';
import { allowed, operationOf } from '../../../actors/access.js';
import { ENVELOPE_VERSION, type Envelope } from '../../../bus/envelope.js';
import type { ClientRole } from '../../../bus/transport/key-holder.js';

const addr = new Uint8Array(16);

function req(kind: string, body: object): Envelope {
  return { v: ENVELOPE_VERSION, kind, from: 'client-1', to: '', epoch: 1, seq: 1, body };
}

const page = (body: object) => req('client.page', body);
const fs = (body: object) => req('client.fs', body);

const reads = [
  req('client.status', {}),
  req('client.machines', { after: 12 }),
  page({ op: 'read', addr, pages: 1 }),
  page({ op: 'stat', addr }),
  page({ op: 'space' }),
  page({ op: 'get_attrs', addr }),
  page({ op: 'dir_page', arena: 1 }),
  page({ op: 'access', addr, pages: 1, mode: 'read' }),
  fs({ op: 'stat', fs: 'default', path: '/a' }),
  fs({ op: 'readdir', fs: 'default', path: '/' }),
  fs({ op: 'open', fs: 'default', path: '/a', read: true }),
  fs({ op: 'read', handle: '1.1', offset: 0, length: 10 }),
  fs({ op: 'readlink', fs: 'default', path: '/l' }),
  fs({ op: 'streams', fs: 'default', path: '/a' }),
  fs({ op: 'check', fs: 'default', repair: false }),
];
const writes = [
  page({ op: 'write', addr, data: new Uint8Array(4096) }),
  page({ op: 'reserve', pages: 1 }),
  page({ op: 'lock', addr, mode: 'exclusive' }),
  page({ op: 'access', addr, pages: 1, mode: 'write' }),
  page({ op: 'set_super_root', addr }),
  fs({ op: 'open', fs: 'default', path: '/a', write: true }),
  fs({ op: 'open', fs: 'default', path: '/a', create: true, txn: 't1' }),
  fs({ op: 'write', handle: '1.1', data: new Uint8Array(1) }),
  fs({ op: 'mkdir', fs: 'default', path: '/d', txn: 't2' }),
  fs({ op: 'check', fs: 'default', repair: true }),
  // A check repairs unless told not to.
  fs({ op: 'check', fs: 'default' }),
  fs({ op: 'fileset_create', name: 'x' }),
];
const admin = [req('client.ndb_update', { change: { op: 'delete', id: 'n3' } }), req('client.fault', { heal: true })];

function may(role: ClientRole, envs: Envelope[]): string[] {
  return envs.filter((e) => allowed(role, e)).map(operationOf);
}

describe('actors/access', () => {
  it('lets a read-only client read and nothing else', () => {
    expect(may('read-only', reads)).to.deep.equal(reads.map(operationOf));
    expect(may('read-only', [...writes, ...admin])).to.deep.equal([]);
  });

  it('lets a read-write client read and write, but not change the node database or the fault filter', () => {
    expect(may('read-write', [...reads, ...writes])).to.have.length(reads.length + writes.length);
    expect(may('read-write', admin)).to.deep.equal([]);
  });

  it('lets an admin do anything', () => {
    expect(may('admin', [...reads, ...writes, ...admin])).to.have.length(reads.length + writes.length + admin.length);
  });

  it("lets a read-only client read a node's machines, which change nothing", () => {
    expect(allowed('read-only', req('client.machines', {}))).to.equal(true);
    expect(allowed('read-only', req('client.machines', { after: 40 }))).to.equal(true);
    // A kind the table does not know is no read: refused, not waved through.
    expect(allowed('read-only', req('client.machinez', {}))).to.equal(false);
  });

  it('names the operation as an error shows it', () => {
    expect(operationOf(page({ op: 'write', addr, data: new Uint8Array(0) }))).to.equal('client.page write');
    expect(operationOf(admin[0])).to.equal('client.ndb_update');
  });
});
