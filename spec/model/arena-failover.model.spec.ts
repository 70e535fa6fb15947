/**
 * Generated paths through the PAN's arena failover (M16; docs/recovery.md
 * "Failover of an arena"): every state is reached, and replaying every path
 * an independent reading of the claim holds at every step:
 * - a hand-over is proposed only while the last view said PAN and quorate;
 * - only for an arena whose home at the generation below is due: deleted, or
 *   counted not alive in every view since a moment at which the anchor was
 *   already an active PAN, with that home's grace event delivered since
 *   (the unit spec shows the event comes graceMs after the clock starts);
 * - to a node of the database that is alive, is not that home, and holds a
 *   replica of the arena's directory;
 * - one at a time: the next only after the outcome of the one before, or
 *   after a view that stopped the work.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import type { NdbOp, NodeDbSnapshot } from '../../bus/messages/index.js';
import { applyChange, arenaEntryOf, findNode, genesis } from '../../machines/membership/node-db.js';
import {
  arenaFailoverMachine,
  machineName,
  type ArenaChange,
  type ArenaFailoverEvent,
  type ArenaFailoverSnapshot,
} from '../../machines/recovery/arena-failover.js';
import { applied, nodeAt } from '../fixtures/node-entries.js';
import { afterEvent, leafStates, pathEvents, replay, type Emitted } from '../helpers/machine-harness.js';

const apply = applied;

const SELF = 'a';
const NODES = ['a', 'b', 'd'];
/** Anchors a and b, non-anchor d: arenas 0 and 1 at a, 2 at b, 3 at d, each with its directory replicated on every other node. */
const D1 = apply(genesis(['a', 'b'].map((id) => ({ id, endpoint: `tcp://${id}:1`, anchor: true, votes: 1, group: 0 }))), { op: 'add', node: nodeAt('d', 3) });
const D0 = apply(D1, ...(D1.arenas ?? []).map((a): NdbOp => ({ op: 'arena_replicas', arena: a.arena, gen: a.gen, replicas: NODES.filter((id) => id !== a.home) })));
const DBS: NodeDbSnapshot[] = [
  D0,
  // d serves two arenas.
  apply(D0, { op: 'arena', arena: 2, home: 'd', gen: 2 }),
  // d deleted, its arena still naming it.
  apply(D0, { op: 'delete', id: 'd' }),
  // d's arena already at b.
  apply(D0, { op: 'arena', arena: 3, home: 'b', gen: 2 }),
];
const ALIVES = [['a', 'b', 'd'], ['a', 'b'], ['a', 'd']];

type View = Extract<ArenaFailoverEvent, { type: 'VIEW' }>;
/** Every database with every alive set while active; inactive views need one each, since nothing carries over. */
const views: View[] = [
  ...DBS.flatMap((db) => ALIVES.map((alive) => ({ type: 'VIEW' as const, db, alive, isPan: true, quorate: true }))),
  { type: 'VIEW', db: D0, alive: ['a', 'b'], isPan: false, quorate: true },
  { type: 'VIEW', db: D0, alive: ['a', 'b'], isPan: true, quorate: false },
];
const events: ArenaFailoverEvent[] = [
  ...views,
  { type: 'GRACE_ELAPSED', home: 'b' },
  { type: 'GRACE_ELAPSED', home: 'd' },
  ...[2, 3].flatMap((arena) => [
    { type: 'OUTCOME' as const, arena, ok: true },
    { type: 'OUTCOME' as const, arena, ok: false, code: 'E_STALE_GEN' },
  ]),
  afterEvent(machineName, 'retry', 'active.backoff') as unknown as ArenaFailoverEvent,
];

const valueOf = (s: ArenaFailoverSnapshot): string =>
  typeof s.value === 'string' ? s.value : Object.entries(s.value).map(([k, v]) => `${k}.${v}`).join();

/** The claim, read from the events alone. */
class Reader {
  active = false;
  view: View | undefined;
  /** Per node not alive: whether its grace event came since the moment it was last seen so while active. */
  graced = new Map<string, boolean>();
  /** Hand-overs whose outcome was ok, by `arena/gen`. */
  ok = new Map<string, ArenaChange>();
  inFlight: ArenaChange | undefined;

  step(e: ArenaFailoverEvent): void {
    if (e.type === 'VIEW') this.see(e);
    if (e.type === 'GRACE_ELAPSED' && this.graced.has(e.home)) this.graced.set(e.home, true);
    if (e.type === 'OUTCOME' && this.inFlight?.arena === e.arena) {
      if (e.ok) this.ok.set(`${e.arena}/${this.inFlight.gen}`, this.inFlight);
      this.inFlight = undefined;
    }
  }

  private see(v: View): void {
    this.view = v;
    this.active = v.isPan && v.quorate;
    if (!this.active) {
      this.graced.clear();
      this.inFlight = undefined;
      return;
    }
    for (const id of NODES) {
      const down = id !== SELF && !v.alive.includes(id);
      if (!down) this.graced.delete(id);
      else if (!this.graced.has(id)) this.graced.set(id, false);
    }
  }

  /** The home of `arena` at generation `gen`, from the view or an ok'd hand-over. */
  private homeAt(arena: number, gen: number): string | undefined {
    const entry = this.view && arenaEntryOf(this.view.db, arena);
    if (entry?.gen === gen) return entry.home;
    return this.ok.get(`${arena}/${gen}`)?.home;
  }

  check(out: Emitted): void {
    const v = this.view;
    if (out.type === 'due') {
      expect(this.active, 'due only while the PAN and quorate').to.equal(true);
      expect(this.isDue(out.home as string), `due ${out.home as string} only after its grace`).to.equal(true);
      return;
    }
    expect(out.type).to.equal('propose');
    const c = out.change as ArenaChange;
    expect(this.active && v !== undefined, 'proposes only while the PAN and quorate').to.equal(true);
    expect(this.inFlight, 'one hand-over at a time').to.equal(undefined);
    const old = this.homeAt(c.arena, c.gen - 1);
    expect(old, `arena ${c.arena} is known at generation ${c.gen - 1}`).to.be.a('string');
    expect(this.isDue(old as string), `a hand-over from ${old as string} only after its grace`).to.equal(true);
    expect(c.home).to.not.equal(old);
    expect(findNode((v as View).db, c.home), 'the new home is in the database').to.not.equal(undefined);
    expect([...(v as View).alive, SELF], 'the new home is alive').to.include(c.home);
    expect(arenaEntryOf((v as View).db, c.arena)?.replicas ?? [], 'the new home holds a replica of the directory').to.include(c.home);
    this.inFlight = c;
  }

  private isDue(home: string): boolean {
    return !findNode((this.view as View).db, home) || this.graced.get(home) === true;
  }
}

describe('arena failover (M16), generated paths', () => {
  const input = { self: SELF, graceMs: 3200, retryMs: 100 };
  const paths = getShortestPaths(arenaFailoverMachine, {
    input,
    events,
    serializeState: (s) => {
      const c = s.context;
      const viewAt = views.findIndex((v) => v.db === c.view.db && v.alive === c.view.alive && v.isPan === c.view.isPan && v.quorate === c.view.quorate);
      // Inactive, nothing carries over: the next view replaces everything.
      if (s.value === 'inactive') return 'inactive';
      return JSON.stringify([s.value, viewAt, c.waiting, c.due, c.gone, c.inFlight, c.committed]);
    },
    limit: 500_000,
  });

  it('reaches every state', () => {
    const reached = new Set(paths.map((p) => valueOf(p.state)));
    expect([...reached].sort()).to.deep.equal(leafStates(arenaFailoverMachine).sort());
  });

  it('proposes on some path every arena a failed or deleted home can serve', () => {
    const proposed = new Set(paths.map((p) => p.state.context.inFlight?.arena).filter((a) => a !== undefined));
    expect([...proposed].sort()).to.deep.equal([2, 3]);
  });

  it('never proposes for a home before its grace, nor while not the PAN or not quorate, nor two at once', () => {
    let steps = 0;
    for (const p of paths) {
      const evs = pathEvents(p.steps);
      const { emitted } = replay(arenaFailoverMachine, input, evs);
      const reader = new Reader();
      evs.forEach((e, i) => {
        reader.step(e);
        try {
          for (const out of emitted[i + 1]) reader.check(out);
        } catch (err) {
          throw new Error(`${(err as Error).message} after ${JSON.stringify(evs.slice(0, i + 1).map(brief))}`);
        }
        steps++;
      });
    }
    expect(steps).to.be.greaterThan(paths.length);
  });
});

/** An event short enough to read in a failure message. */
function brief(e: ArenaFailoverEvent): unknown {
  return e.type === 'VIEW' ? { type: e.type, db: DBS.indexOf(e.db), alive: e.alive, isPan: e.isPan, quorate: e.quorate } : e;
}
