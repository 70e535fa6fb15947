/**
 * One compliance suite for both disk caches, MemoryPageStore and
 * LmdbPageStore (spec/helpers/store-twins.ts), then what only the real one
 * can show: a damaged record reported, a directory refused, and every
 * acknowledged page kept across a SIGKILL (spec/fixtures/page-writer.ts).
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { addressKey, formatAddress, MAX_ADDRESS, PAGE_BYTES, parseAddress } from '../../../../machines/memory/address.js';
import { FS_ATTR_BYTES, PUT_MANY_PAGES_MAX, SCAN_PAGES_MAX, type PageStore, type PageStoreOptions, type StoredPage } from '../../../../actors/storage/page-store.js';
import { MemoryPageStore } from '../../../../runtime/storage/memory-pages.js';
import { LmdbPageStore, PAGES_FILE } from '../../../../runtime/storage/lmdb-pages.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { errorOf } from '../../../helpers/error-of.js';
import { WRITER_PAGES, writerPage } from '../../../fixtures/page-writer.js';
import { lmdbTwin, memoryTwin, twinPerTest, type TwinSetUp } from '../../../helpers/store-twins.js';
import { tempStores } from '../../../helpers/temp-stores.js';
import { killWriterWhen } from '../../../helpers/kill-writer.js';

const SEED = 5_909_540;
const P = BigInt(PAGE_BYTES);

function page(version: number, fill: number, attr = fill): StoredPage {
  return { data: new Uint8Array(PAGE_BYTES).fill(fill), version, attrs: new Uint8Array(FS_ATTR_BYTES).fill(attr) };
}

function sortBig(xs: bigint[]): bigint[] {
  return [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function pageStoreCompliance(name: string, setUp: TwinSetUp<PageStore, PageStoreOptions>): void {
  describe(`${name}: page store compliance`, () => {
    let s: PageStore;
    const twin = twinPerTest(setUp, (first) => (s = first));
    const openStore = (options?: PageStoreOptions) => twin.open(options);

    it('starts empty', () => {
      expect(s.count()).to.equal(0);
      expect(s.bytesUsed()).to.equal(0);
      expect(s.get(0n)).to.equal(undefined);
      expect(s.has(0n)).to.equal(false);
      expect(s.scan()).to.deep.equal([]);
    });

    it('gives back what was put, as copies it cannot be changed through', () => {
      const p = page(3, 0x5a, 0xa5);
      p.data[4095] = 1;
      s.put(0x1000n, p);
      p.data[0] = 0;
      const got = s.get(0x1000n);
      const expected = page(3, 0x5a, 0xa5);
      expected.data[4095] = 1;
      expect(got).to.deep.equal(expected);
      got?.data.fill(9);
      got?.attrs.fill(9);
      expect(s.get(0x1000n)?.data[0]).to.equal(0x5a);
      expect(s.get(0x1000n)?.attrs[0]).to.equal(0xa5);
      expect(s.has(0x1000n)).to.equal(true);
      expect(s.count()).to.equal(1);
      expect(s.bytesUsed()).to.equal(PAGE_BYTES);
    });

    it('keeps pages at both ends of the address space apart', () => {
      const top = MAX_ADDRESS + 1n - P;
      s.put(0n, page(1, 1));
      s.put(top, page(2, 2));
      expect(s.get(0n)?.data[0]).to.equal(1);
      expect(s.get(top)?.data[0]).to.equal(2);
      expect(s.scan().map((e) => e.addr)).to.deep.equal([0n, top]);
    });

    it('never lets a version go down; the same version may be written again', () => {
      s.put(0x2000n, page(3, 3));
      s.put(0x2000n, page(5, 5));
      expect(errorOf(() => s.put(0x2000n, page(4, 4)))).to.match(/^E_STALE: page 0x0+2000 is at version 5; version 4 is older/);
      expect(s.get(0x2000n)).to.deep.equal(page(5, 5));
      s.put(0x2000n, page(5, 5, 0x77));
      expect(s.get(0x2000n)).to.deep.equal(page(5, 5, 0x77));
      s.put(0x2000n, page(0x7fff_ffff_ffff, 6));
      expect(s.get(0x2000n)?.version).to.equal(0x7fff_ffff_ffff);
    });

    it('scans in address order from any address, a bounded number at a time (seeded)', () => {
      const rng = new SeededRandom(SEED);
      const addrs = new Set<bigint>();
      while (addrs.size < 150) {
        let a = 0n;
        for (const b of rng.bytes(16)) a = (a << 8n) | BigInt(b);
        addrs.add((a >> BigInt(rng.int(120))) & ~(P - 1n));
      }
      for (const a of addrs) s.put(a, page(1, Number((a >> 12n) & 0xffn)));
      const sorted = sortBig([...addrs]);
      expect(s.scan().map((e) => e.addr), `seed ${SEED}`).to.deep.equal(sorted);
      const walked: bigint[] = [];
      for (let from = 0n; ; ) {
        const chunk = s.scan(from, 7);
        walked.push(...chunk.map((e) => e.addr));
        if (chunk.length < 7) break;
        from = chunk[chunk.length - 1].addr + 1n;
      }
      expect(walked, `seed ${SEED}`).to.deep.equal(sorted);
      const mid = sorted[75];
      expect(s.scan(mid - 1n, 3).map((e) => e.addr), `seed ${SEED}`).to.deep.equal(sorted.slice(75, 78));
      for (const e of s.scan(0n, 20)) expect(e.page.data[0], `seed ${SEED}`).to.equal(Number((e.addr >> 12n) & 0xffn));
      expect(errorOf(() => s.scan(0n, 0))).to.match(/^E_BAD_ARGUMENT: /);
      expect(errorOf(() => s.scan(0n, SCAN_PAGES_MAX + 1))).to.match(/^E_BAD_ARGUMENT: /);
      expect(errorOf(() => s.scan(-1n))).to.match(/^E_BAD_ADDRESS: /);
    });

    it('commits a putMany whole or not at all', () => {
      s.put(0x3000n, page(5, 5));
      s.putMany([
        { addr: 0x4000n, page: page(1, 1) },
        { addr: 0x3000n, page: page(6, 6) },
      ]);
      expect(s.get(0x3000n)?.version).to.equal(6);
      expect(s.get(0x4000n)?.version).to.equal(1);
      const before = s.scan();
      const refused = [
        // A stale entry last, after new and newer pages.
        [{ addr: 0x5000n, page: page(1, 1) }, { addr: 0x4000n, page: page(2, 2) }, { addr: 0x3000n, page: page(2, 2) }],
        // The same address twice.
        [{ addr: 0x5000n, page: page(1, 1) }, { addr: 0x5000n, page: page(2, 2) }],
        // A wrong size in the middle.
        [{ addr: 0x5000n, page: page(1, 1) }, { addr: 0x6000n, page: { ...page(1, 1), data: new Uint8Array(10) } }, { addr: 0x7000n, page: page(1, 1) }],
      ];
      expect(errorOf(() => s.putMany(refused[0]))).to.match(/^E_STALE: /);
      expect(errorOf(() => s.putMany(refused[1]))).to.match(/^E_BAD_ARGUMENT: .*twice/);
      expect(errorOf(() => s.putMany(refused[2]))).to.match(/^E_BAD_ARGUMENT: .*4096 bytes of data, not 10/);
      const tooMany = Array.from({ length: PUT_MANY_PAGES_MAX + 1 }, (_, i) => ({ addr: BigInt(i) * P, page: page(1, 1) }));
      expect(errorOf(() => s.putMany(tooMany))).to.match(/^E_BAD_ARGUMENT: a batch holds at most/);
      expect(s.scan()).to.deep.equal(before);
      s.putMany([]);
      expect(s.count()).to.equal(2);
    });

    it('refuses wrong sizes, versions and addresses, and changes nothing', () => {
      s.put(0x1000n, page(2, 2));
      const bad: [bigint, StoredPage, RegExp][] = [
        [0x1000n, { ...page(3, 3), data: new Uint8Array(PAGE_BYTES - 1) }, /^E_BAD_ARGUMENT: .*not 4095/],
        [0x1000n, { ...page(3, 3), data: new Uint8Array(PAGE_BYTES + 1) }, /^E_BAD_ARGUMENT: .*not 4097/],
        [0x1000n, { ...page(3, 3), data: new Uint8Array(0) }, /^E_BAD_ARGUMENT: /],
        [0x1000n, { ...page(3, 3), attrs: new Uint8Array(15) }, /^E_BAD_ARGUMENT: .*16-byte attribute, not 15/],
        [0x1000n, { ...page(3, 3), attrs: new Uint8Array(17) }, /^E_BAD_ARGUMENT: .*16-byte attribute, not 17/],
        [0x1000n, page(-1, 3), /^E_BAD_ARGUMENT: .*version -1/],
        [0x1000n, page(1.5, 3), /^E_BAD_ARGUMENT: .*version 1.5/],
        [0x1000n, page(Number.NaN, 3), /^E_BAD_ARGUMENT: /],
        [0x1000n, page(2 ** 53, 3), /^E_BAD_ARGUMENT: /],
        [0x1001n, page(3, 3), /^E_BAD_ADDRESS: .*not the start of a page/],
        [1n << 128n, page(3, 3), /^E_BAD_ADDRESS: /],
      ];
      for (const [addr, p, re] of bad) expect(errorOf(() => s.put(addr, p)), `${addr}`).to.match(re);
      expect(s.count()).to.equal(1);
      expect(s.get(0x1000n)).to.deep.equal(page(2, 2));
      expect(errorOf(() => s.get(0x1001n))).to.match(/^E_BAD_ADDRESS: /);
    });

    it('deletes a page durably, saying whether it was there', () => {
      s.put(0x1000n, page(1, 1));
      s.put(0x2000n, page(1, 2));
      expect(s.delete(0x1000n)).to.equal(true);
      expect(s.delete(0x1000n)).to.equal(false);
      expect(s.get(0x1000n)).to.equal(undefined);
      expect(s.count()).to.equal(1);
      expect(s.scan().map((e) => e.addr)).to.deep.equal([0x2000n]);
    });

    it('holds at most pagesMax pages, and still takes new versions when full', async () => {
      await s.close();
      s = openStore({ pagesMax: 3 });
      s.putMany([0x1000n, 0x2000n].map((addr) => ({ addr, page: page(1, 1) })));
      s.put(0x3000n, page(1, 1));
      expect(errorOf(() => s.put(0x4000n, page(1, 1)))).to.match(/^E_FULL: the disk cache holds its maximum of 3 pages/);
      s.put(0x3000n, page(2, 2));
      s.delete(0x1000n);
      expect(errorOf(() => s.putMany([0x4000n, 0x5000n].map((addr) => ({ addr, page: page(1, 1) }))))).to.match(/^E_FULL: /);
      expect(s.scan().map((e) => e.addr)).to.deep.equal([0x2000n, 0x3000n]);
      s.put(0x4000n, page(1, 1));
      expect(s.count()).to.equal(3);
      expect(errorOf(() => openStore({ pagesMax: 0 }))).to.match(/^E_BAD_ARGUMENT: /);
    });

    it('keeps pages, versions and attributes across a restart', async () => {
      s.putMany([
        { addr: 0x1000n, page: page(7, 1, 0x11) },
        { addr: 0x2000n, page: page(8, 2, 0x22) },
      ]);
      s.put(0x3000n, page(9, 3, 0x33));
      s.delete(0x2000n);
      const again = await twin.restart(s);
      expect(again.scan()).to.deep.equal([
        { addr: 0x1000n, page: page(7, 1, 0x11) },
        { addr: 0x3000n, page: page(9, 3, 0x33) },
      ]);
      expect(again.count()).to.equal(2);
      expect(errorOf(() => again.put(0x3000n, page(8, 3)))).to.match(/^E_STALE: /);
    });

    it('refuses calls after close', async () => {
      await s.close();
      expect(errorOf(() => s.get(0n))).to.match(/^E_CLOSED: /);
      expect(errorOf(() => s.put(0n, page(1, 1)))).to.match(/^E_CLOSED: /);
      expect(errorOf(() => s.count())).to.match(/^E_CLOSED: /);
    });
  });
}

pageStoreCompliance('MemoryPageStore', memoryTwin((options) => new MemoryPageStore(options)));
pageStoreCompliance('LmdbPageStore', lmdbTwin('mangrove-pages-', (dir, options) => LmdbPageStore.open(dir, options)));

describe('runtime/storage/lmdb-pages', () => {
  const temp = tempStores('mangrove-pages-', (dir) => LmdbPageStore.open(dir));
  const openStore = () => temp.open();

  it('reports a damaged record as E_STORAGE naming the page', async () => {
    const s = openStore();
    s.put(0x1000n, page(1, 1));
    await s.close();
    const env = open({ path: join(temp.dir, PAGES_FILE), maxDbs: 4 });
    env.openDB<Buffer, Uint8Array>({ name: 'pages', keyEncoding: 'binary', encoding: 'binary' }).putSync(addressKey(0x1000n), Buffer.from([1, 2, 3]));
    await env.close();
    const again = openStore();
    expect(errorOf(() => again.get(0x1000n))).to.match(/^E_STORAGE: page 0x0+1000 .* is damaged \(3 bytes/);
  });

  it('commits a putManyDurably off the event loop, whole or not at all, with putMany\'s refusals', async () => {
    const s = openStore();
    await s.putManyDurably([
      { addr: 0x1000n, page: page(2, 1) },
      { addr: 0x2000n, page: page(1, 2) },
    ]);
    expect(s.get(0x1000n)).to.deep.equal(page(2, 1));
    const stale = await s.putManyDurably([
      { addr: 0x3000n, page: page(1, 3) },
      { addr: 0x1000n, page: page(1, 9) },
    ]).then(() => 'ok', (err: Error) => err.message);
    expect(stale).to.match(/^page 0x0+1000 .*version 1/);
    expect(s.has(0x3000n), 'nothing of a refused commit').to.equal(false);
    await s.close();
    const again = openStore();
    expect(again.get(0x2000n)).to.deep.equal(page(1, 2));
  });

  it('refuses a directory it cannot use, naming it', () => {
    const file = join(temp.dir, 'not-a-dir');
    writeFileSync(file, 'x');
    expect(errorOf(() => LmdbPageStore.open(join(file, 'data')))).to.match(new RegExp(`^E_STORAGE: .*${join(file, 'data')}`));
  });

  it('has every acknowledged page, intact, after the writer is killed with SIGKILL', async function () {
    const acked = await runWriterUntilKilled(temp.dir, 300);
    expect(acked.size).to.be.greaterThan(0);
    const s = openStore();
    for (const [addr, version] of acked) {
      const got = s.get(addr);
      const where = `${formatAddress(addr)} acked at version ${version}`;
      expect(got, where).to.not.equal(undefined);
      // The write in flight at the kill may have landed too, but nothing older than the ack.
      expect(got?.version, where).to.be.oneOf([version, version + 1]);
      expect(got, where).to.deep.equal(writerPage(addr, got?.version ?? -1));
    }
    const all = s.scan();
    expect(all.length).to.be.at.most(WRITER_PAGES);
    for (const { addr, page: p } of all) expect(p, formatAddress(addr)).to.deep.equal(writerPage(addr, p.version));
  });
});

/** Starts the writer, kills it once `acks` pages are acknowledged, and returns each page's highest acked version. */
async function runWriterUntilKilled(dir: string, acks: number): Promise<Map<bigint, number>> {
  const acked = new Map<bigint, number>();
  let lines = 0;
  const onLine = (line: string) => {
    const [word, addr, version] = line.split(' ');
    if (word !== 'acked') return;
    lines++;
    acked.set(parseAddress(addr), Math.max(acked.get(parseAddress(addr)) ?? 0, Number(version)));
  };
  await killWriterWhen('page-writer.ts', dir, onLine, () => lines >= acks, () => `${lines} pages, not ${acks}`);
  return acked;
}
