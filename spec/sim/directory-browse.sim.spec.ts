/**
 * Browsing an arena's directory (the GDD, M8; what the dashboard's Store
 * view and `mangrove page dir` show): `dir_page`, asked of any node, is
 * answered by the arena's home from its disk. Walking it from the root must
 * find every reservation exactly once, with its state and core holders, in
 * a tree deep enough to have inner pages; it keeps working, with the same
 * content, after the home is killed and the arena handed over; and bad
 * input is refused with a stable code. A failing seed is printed.
 */
import { expect } from 'chai';
import type { DirectoryPageView } from '../../bus/messages/page.js';
import { arenaBase, arenaOf, DATA_OFFSET } from '../../actors/pages/page-space.js';
import { addressKey, formatAddress, PAGE_BYTES, parseAddress } from '../../machines/memory/address.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';
import { forSeedsAsync } from '../helpers/sim-checks.js';
import { codeOf, formedCluster, reserved } from '../helpers/page-workload.js';
import { eventually } from '../helpers/sim-calls.js';

/** Reservations made: enough that the directory's root splits into inner pages. */
const RESERVATIONS = 400;

type Entry = DirectoryPageView['entries'][number];

/** Every entry of `arena`'s directory, walked from its root through node `via`, and every page seen. */
async function walk(c: SimCluster, via: number, arena: number): Promise<{ root: DirectoryPageView; entries: Entry[]; pages: DirectoryPageView[] }> {
  const ask = (page?: string) =>
    eventually(c, () => c.node(via)!.engine.call({ op: 'dir_page', arena, ...(page ? { page: addressKey(parseAddress(page)) } : {}) }, 'browser') as Promise<DirectoryPageView>);
  const root = await ask();
  const pages: DirectoryPageView[] = [];
  const entries: Entry[] = [];
  const visit = async (view: DirectoryPageView, depth: number): Promise<void> => {
    expect(depth, 'the walk stays within the tree\'s depth').to.be.below(root.root!.depth);
    pages.push(view);
    entries.push(...view.entries);
    for (const child of view.children) {
      const next = await ask(child.address);
      expect(next.level, `${child.address} is one level below its parent`).to.equal(view.level - 1);
      // A child's first entry starts at or after the key its parent routes to it from.
      if (child.from !== null && next.entries.length > 0) expect(parseAddress(next.entries[0]!.start) >= parseAddress(child.from)).to.equal(true);
      await visit(next, depth + 1);
    }
  };
  await visit(root, 0);
  return { root, entries, pages };
}

describe('browsing an arena\'s directory (dir_page, M8)', function () {
  this.timeout(120_000);

  it('walks from the root through inner pages to every reservation, through a node that is not the home, and again after the home is killed', async () => {
    await forSeedsAsync([3, 17], async (seed) => {
      const c = await formedCluster(seed, 4);
      const e0 = c.node(0)!.engine;
      const starts: bigint[] = [];
      for (let i = 0; i < RESERVATIONS; i++) starts.push(await reserved(c, 0, 1 + (i % 3)));
      const arena = Number(arenaOf(starts[0]!));
      // Every tenth reservation materialized with two core copies.
      const materialized = new Set<string>();
      for (let i = 0; i < RESERVATIONS; i += 10) {
        await c.settle(e0.call({ op: 'alloc', addr: addressKey(starts[i]!), pages: 1 + (i % 3), copies: 2 }));
        materialized.add(formatAddress(starts[i]!));
      }

      const check = async (via: number, home: string) => {
        const { root, entries, pages } = await walk(c, via, arena);
        expect(root.home, 'the arena\'s home answers').to.equal(home);
        expect(root.kind, `${RESERVATIONS} entries do not fit one page`).to.equal('inner');
        expect(root.root!.depth).to.be.at.least(2);
        expect(root.root!.entries, 'the root counts every entry').to.equal(RESERVATIONS);
        expect(root.root!.pages, 'the root counts every page the walk found').to.equal(pages.length);
        expect(parseAddress(root.root!.highWater) > starts[RESERVATIONS - 1]!, 'the high-water mark is past the last reservation').to.equal(true);
        expect(entries.map((e) => e.start), 'every reservation once, in address order').to.deep.equal(starts.map(formatAddress));
        for (const [i, e] of entries.entries()) {
          expect(e.pages, e.start).to.equal(1 + (i % 3));
          if (materialized.has(e.start)) expect([e.state, e.copies, e.holders.length], e.start).to.deep.equal(['materialized', 2, 2]);
          else expect([e.state, e.holders], e.start).to.deep.equal(['reserved', []]);
        }
      };
      await check(2, c.id(0));

      // Bad input: a data address is no directory page; a directory address never written; an arena no node serves.
      const code = (arenaNo: number, page?: bigint) => codeOf(c, c.node(1)!.engine.call({ op: 'dir_page', arena: arenaNo, ...(page === undefined ? {} : { page: addressKey(page) }) }, 'browser'));
      expect(await code(arena, starts[0]!), 'a reservation\'s page').to.equal('E_BAD_ARGUMENT');
      expect(await code(arena, arenaBase(BigInt(arena)) + DATA_OFFSET - BigInt(PAGE_BYTES)), 'a directory page never written').to.equal('E_NOT_FOUND');
      expect(await code(arena, arenaBase(BigInt(arena)) + 1n), 'not page aligned').to.equal('E_BAD_ADDRESS');
      expect(await code(4000), 'an arena no node serves').to.equal('E_NOT_RESERVED');
      const untouched = c.status(1)!.arenas!.find((a) => a.home === c.id(3))!;
      const empty = (await c.settle(c.node(1)!.engine.call({ op: 'dir_page', arena: untouched.arena }, 'browser'))) as DirectoryPageView;
      expect([empty.home, empty.kind, empty.root!.entries, empty.entries], 'an arena nothing was reserved in reads as an empty root').to.deep.equal([c.id(3), 'leaf', 0, []]);
      expect(c.diskOf(3).get(arenaBase(BigInt(untouched.arena))), 'reading it wrote no directory').to.equal(undefined);
      expect(await code(untouched.arena, arenaBase(BigInt(untouched.arena)) + BigInt(PAGE_BYTES)), 'a page of a directory never written').to.equal('E_NOT_FOUND');

      // The home dies: the arena is handed over, and its directory reads the same from its new home.
      c.crash(0);
      const { root } = await walk(c, 1, arena);
      expect(root.home, 'a live node serves the arena now').to.be.oneOf([1, 2, 3].map((i) => c.id(i)));
      await check(3, root.home);
      await c.stopAll();
    });
  });
});
