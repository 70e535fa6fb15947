/**
 * Request ids for the file system's updates of names (runtime/client/txn.ts):
 * given once, to the ops that take one, and kept by every try.
 */
import { expect } from 'chai';
import { clientFsOp, FS_TXN_CHARS_MAX, FS_TXN_OPS, type ClientFsOp } from '../../../../bus/messages/fs.js';
import { newTxn, withTxn } from '../../../../runtime/client/txn.js';

describe('runtime/client/txn', () => {
  const updates: ClientFsOp[] = [
    { op: 'open', fs: 'default', path: '/a', create: true, write: true },
    { op: 'mkdir', fs: 'default', path: '/d' },
    { op: 'symlink', fs: 'default', target: 'a', path: '/l' },
    { op: 'link', fs: 'default', existing: '/a', path: '/b' },
    { op: 'unlink', fs: 'default', path: '/a' },
    { op: 'rmdir', fs: 'default', path: '/d' },
    { op: 'rename', fs: 'default', from: '/a', to: '/c' },
  ];

  it('gives every update of names an id the message schema takes, a new one each time', () => {
    expect(updates.map((o) => o.op)).to.have.members([...FS_TXN_OPS]);
    for (const op of updates) {
      const a = withTxn(op) as { txn?: string };
      const b = withTxn(op) as { txn?: string };
      expect(a.txn, op.op).to.be.a('string').with.length.within(1, FS_TXN_CHARS_MAX);
      expect(a.txn).to.not.equal(b.txn);
      expect(clientFsOp.safeParse(a).success, op.op).to.equal(true);
      expect(op, 'the op given is left as it was').to.not.have.property('txn');
    }
  });

  it('keeps an id already given, so a try sent again carries the first one', () => {
    const once = withTxn({ op: 'rename', fs: 'default', from: '/a', to: '/b' });
    expect(withTxn(once)).to.equal(once);
  });

  it('gives none to an open without create, or to an op that changes no name', () => {
    const plain: ClientFsOp[] = [
      { op: 'open', fs: 'default', path: '/a', write: true },
      { op: 'stat', fs: 'default', path: '/a' },
      { op: 'write', handle: 'h', offset: 0, data: new Uint8Array(1) },
    ];
    for (const op of plain) expect(withTxn(op), op.op).to.equal(op);
  });

  it('refuses an id longer than the schema allows', () => {
    expect(clientFsOp.safeParse({ op: 'unlink', fs: 'default', path: '/a', txn: 't'.repeat(FS_TXN_CHARS_MAX + 1) }).success).to.equal(false);
    expect(newTxn()).to.match(/^[A-Za-z0-9_-]{16}$/);
  });
});
