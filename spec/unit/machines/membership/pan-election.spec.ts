import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import type { PanRef } from '../../../../bus/messages/index.js';
import {
  currentPan,
  panElectionMachine,
  type PanElectionEvent,
  type PanElectionInput,
} from '../../../../machines/membership/pan-election.js';
import type { SendOut } from '../../../../machines/outbox.js';
import { SimClock } from '../../../../runtime/world/clock.js';
import { SeededRandom } from '../../../../runtime/world/random.js';
import { Running, emittedBy } from '../../../helpers/machine-harness.js';

const electionTimeoutMs = 100;
const retryMs = 50;
const ANCHORS = ['a', 'b', 'c', 'd', 'e'];

const input = (self: string, preference: string[] = []): PanElectionInput => ({
  self,
  preference,
  electionTimeoutMs,
  retryMs,
});

/** A VIEW where every anchor of `all` has `weights[id]` votes (1 by default) and `alive` are reachable. */
function view(alive: string[], all: string[] = ANCHORS, weights: Record<string, number> = {}): PanElectionEvent {
  const votes = Object.fromEntries(all.map((id) => [id, weights[id] ?? 1]));
  const totalVotes = Object.values(votes).reduce((s, v) => s + v, 0);
  const reachable = alive.reduce((s, id) => s + (votes[id] ?? 0), 0);
  return { type: 'VIEW', quorate: 2 * reachable > totalVotes, aliveAnchors: alive, votes, totalVotes };
}

const run = (self: string, preference: string[] = []) => new Running(panElectionMachine, input(self, preference));
const vote = (from: string, term: number, granted = true): PanElectionEvent => ({ type: 'VOTE', from, term, granted });
const claim = (from: string, term: number): PanElectionEvent => ({ type: 'CLAIM', from, term });
const votesSent = (r: Running<typeof panElectionMachine>) => r.sends('pan.vote').map((s) => ({ to: s.to, ...(s.body as object) }));
const pans = (r: Running<typeof panElectionMachine>) => r.of('pan').map((e) => e.pan as PanRef | undefined);

describe('PAN election (M16)', () => {
  describe('the PAN lease', () => {
    it('a primary renews its role with pan.elected every retry period', () => {
      const a = run('a');
      a.send(view(ANCHORS));
      for (const id of ['b', 'c']) a.send(vote(id, 1));
      expect(a.value).to.equal('primary');
      const before = a.sends('pan.elected').length;
      a.clock.advance(retryMs * 3);
      expect(a.sends('pan.elected').length).to.equal(before + 3 * 4);
      expect(pans(a)).to.deep.equal([{ id: 'a', term: 1 }]);
    });

    it('a follower forgets a PAN that stops renewing, then the best live anchor claims', () => {
      const b = run('b');
      b.send(view(ANCHORS));
      b.send({ type: 'ELECTED', from: 'a', term: 1 });
      expect(currentPan(b.snapshot)).to.deep.equal({ id: 'a', term: 1 });
      for (let i = 0; i < 3; i++) {
        b.clock.advance(retryMs);
        b.send({ type: 'ELECTED', from: 'a', term: 1 });
      }
      expect(currentPan(b.snapshot)).to.deep.equal({ id: 'a', term: 1 });
      // 'a' is alive in the view but silent: its renewals are lost, or it thinks another is PAN.
      b.clock.advance(retryMs * 4);
      expect(currentPan(b.snapshot)).to.equal(undefined);
      b.send(view(['b', 'c', 'd']));
      expect(b.value).to.equal('candidate');
    });
  });

  describe('claiming', () => {
    it('a quorate follower that ranks first claims from every other live anchor', () => {
      const a = run('a');
      a.send(view(['a', 'b', 'c', 'e']));
      expect(a.value).to.equal('candidate');
      expect(a.sends('pan.claim')).to.deep.equal(
        ['b', 'c', 'e'].map((to) => ({ type: 'send', to, kind: 'pan.claim', body: { term: 1 } })),
      );
      expect(a.snapshot.context.votedTerm).to.equal(1);
    });

    it('does not claim when another live anchor ranks first', () => {
      const b = run('b');
      b.send(view(['a', 'b', 'c']));
      expect(b.value).to.equal('follower');
      expect(b.sends()).to.deep.equal([]);
    });

    it('claims when the better-ranked anchors are not alive', () => {
      const b = run('b');
      b.send(view(['b', 'c', 'd']));
      expect(b.value).to.equal('candidate');
    });

    it('does not claim without quorum', () => {
      const a = run('a');
      a.send(view(['a', 'b']));
      expect(a.value).to.equal('follower');
      expect(a.sends()).to.deep.equal([]);
    });

    it('follows the configured preference list before permanent ids', () => {
      const a = run('a', ['c', 'b']);
      const c = run('c', ['c', 'b']);
      a.send(view(ANCHORS));
      c.send(view(ANCHORS));
      expect([a.value, c.value]).to.deep.equal(['follower', 'candidate']);
      const b = run('b', ['c', 'b']);
      b.send(view(['a', 'b', 'd']));
      expect(b.value).to.equal('candidate');
    });

    it('a single anchor is PAN at once', () => {
      const a = run('a');
      a.send(view(['a'], ['a']));
      expect(a.value).to.equal('primary');
      expect(pans(a)).to.deep.equal([{ id: 'a', term: 1 }]);
      expect(a.sends()).to.deep.equal([]);
    });
  });

  describe('winning', () => {
    it('becomes PAN with more than half the votes and tells every other live anchor', () => {
      const a = run('a');
      a.send(view(ANCHORS)).send(vote('b', 1));
      expect(a.value).to.equal('candidate');
      a.send(vote('b', 1));
      expect(a.value, 'a repeated vote counts once').to.equal('candidate');
      a.drain();
      a.send(vote('c', 1));
      expect(a.value).to.equal('primary');
      expect(currentPan(a.snapshot)).to.deep.equal({ id: 'a', term: 1 });
      expect(a.sends('pan.elected').map((s) => s.to)).to.deep.equal(['b', 'c', 'd', 'e']);
      expect(a.of('pan')).to.deep.equal([{ type: 'pan', pan: { id: 'a', term: 1 } }]);
    });

    it('weights votes, and exactly half is not a majority', () => {
      const all = ['a', 'b', 'c'];
      const a = run('a');
      a.send(view(all, all, { c: 2 })).send(vote('b', 1));
      expect(a.value, '2 of 4 votes').to.equal('candidate');
      a.send(vote('c', 1));
      expect(a.value, '4 of 4 votes').to.equal('primary');
    });

    it('ignores votes for another term and refusals of its own term', () => {
      const a = run('a');
      a.send(view(ANCHORS)).send(vote('b', 7)).send(vote('c', 0)).send(vote('d', 1, false)).send(vote('e', 1, false));
      expect(a.value).to.equal('candidate');
      expect(a.snapshot.context.granted).to.deep.equal(['a']);
    });
  });

  describe('voting', () => {
    const follower = (self = 'b') => {
      const r = run(self);
      r.send(view(ANCHORS));
      return r;
    };

    it('grants a live claimant when no PAN is known, once per term', () => {
      const b = follower();
      b.send(claim('a', 1)).send(claim('c', 1));
      expect(votesSent(b)).to.deep.equal([
        { to: 'a', term: 1, granted: true },
        { to: 'c', term: 1, granted: false },
      ]);
      expect(b.snapshot.context.votedTerm).to.equal(1);
    });

    it('refuses a claimant that is not alive', () => {
      const b = run('b');
      b.send(view(['b', 'c', 'd'])).send(claim('a', 5));
      expect(votesSent(b)).to.deep.equal([{ to: 'a', term: 5, granted: false }]);
    });

    it('refuses without quorum', () => {
      const b = run('b');
      b.send(view(['a', 'b'])).send(claim('a', 1));
      expect(votesSent(b)).to.deep.equal([{ to: 'a', term: 1, granted: false }]);
    });

    it('refuses while a live PAN other than the claimant is known, and grants the PAN itself', () => {
      const b = follower();
      b.send({ type: 'ELECTED', from: 'c', term: 3 }).send(claim('a', 4)).send(claim('c', 5));
      expect(votesSent(b)).to.deep.equal([
        { to: 'a', term: 4, granted: false },
        { to: 'c', term: 5, granted: true },
      ]);
    });

    it('answers a claim below a term it has seen with that term, so the claimant catches up', () => {
      const b = follower();
      b.send(claim('c', 6)).send(claim('a', 2));
      expect(votesSent(b)).to.deep.equal([
        { to: 'c', term: 6, granted: true },
        { to: 'a', term: 6, granted: false },
      ]);
    });

    it('refuses a claim below the term of a PAN it knew, though it never voted', () => {
      const b = follower();
      b.send({ type: 'ELECTED', from: 'c', term: 3 }).send(view(['a', 'b', 'd', 'e'])).send(claim('a', 2));
      expect(b.snapshot.context.votedTerm).to.equal(0);
      expect(votesSent(b)).to.deep.equal([{ to: 'a', term: 3, granted: false }]);
    });

    it('a candidate that grants a later claim gives up its candidacy', () => {
      const a = run('a');
      a.send(view(['a', 'c', 'd'])).send(claim('c', 2));
      expect(a.value).to.equal('follower');
      expect(votesSent(a)).to.deep.equal([{ to: 'c', term: 2, granted: true }]);
    });

    it('a PAN refuses every other claimant', () => {
      const a = run('a');
      a.send(view(['a'], ['a', 'b', 'c'], { a: 3 }));
      expect(a.value).to.equal('primary');
      a.send(view(['a', 'b'], ['a', 'b', 'c'], { a: 3 })).send(claim('b', 9));
      expect(votesSent(a)).to.deep.equal([{ to: 'b', term: 9, granted: false }]);
      expect(a.value).to.equal('primary');
    });
  });

  describe('timeouts and retries', () => {
    it('a candidate that does not win in time returns to follower and claims again after retryMs', () => {
      const a = run('a');
      a.send(view(ANCHORS)).send(vote('b', 1));
      a.clock.advance(electionTimeoutMs - 1);
      expect(a.value).to.equal('candidate');
      a.clock.advance(1);
      expect(a.value).to.equal('follower');
      a.drain();
      a.send(view(ANCHORS));
      expect(a.value, 'a VIEW during the backoff does not claim').to.equal('follower');
      a.clock.advance(retryMs);
      expect(a.value, 'the periodic re-check claims again').to.equal('candidate');
      expect(a.sends('pan.claim').map((s) => s.body)).to.deep.equal([{ term: 2 }, { term: 2 }, { term: 2 }, { term: 2 }]);
      expect(a.snapshot.context.granted).to.deep.equal(['a']);
    });

    it('a candidate refused with a higher term steps down and claims above it', () => {
      const a = run('a');
      a.send(view(ANCHORS)).send(vote('b', 8, false));
      expect(a.value).to.equal('follower');
      expect(a.snapshot.context.term).to.equal(8);
      a.drain();
      a.clock.advance(retryMs);
      expect(a.value).to.equal('candidate');
      expect(a.sends('pan.claim')[0].body).to.deep.equal({ term: 9 });
    });

    it('split votes: nobody wins the term, and the retry after views converge elects one PAN', () => {
      // b cannot see a, and a cannot see b: both rank first in their own view.
      const all = ['a', 'b', 'c', 'd'];
      const clock = new SimClock();
      const nodes = Object.fromEntries(all.map((id) => [id, new Running(panElectionMachine, input(id), clock)]));
      nodes.a.send(view(['a', 'c', 'd'], all));
      nodes.b.send(view(['b', 'c', 'd'], all));
      nodes.c.send(view(all, all));
      nodes.d.send(view(all, all));
      expect([nodes.a.value, nodes.b.value]).to.deep.equal(['candidate', 'candidate']);
      // c hears a first, d hears b first: two votes each, exactly half of four.
      nodes.c.send(claim('a', 1)).send(claim('b', 1));
      nodes.d.send(claim('b', 1)).send(claim('a', 1));
      for (const [voter, sends] of [
        ['c', nodes.c.sends('pan.vote')],
        ['d', nodes.d.sends('pan.vote')],
      ] as const) {
        for (const s of sends) nodes[s.to].send(vote(voter, (s.body as { term: number }).term, (s.body as { granted: boolean }).granted));
      }
      expect([nodes.a.value, nodes.b.value]).to.deep.equal(['candidate', 'candidate']);
      clock.advance(electionTimeoutMs);
      expect([nodes.a.value, nodes.b.value]).to.deep.equal(['follower', 'follower']);
      // The heartbeat converges: everyone sees everyone.
      for (const id of all) nodes[id].send(view(all, all));
      for (const id of all) nodes[id].drain();
      clock.advance(retryMs);
      expect(nodes.a.value).to.equal('candidate');
      expect(nodes.b.value).to.equal('follower');
      expect(nodes.a.sends('pan.claim')[0].body).to.deep.equal({ term: 2 });
      for (const id of ['b', 'c']) {
        nodes[id].send(claim('a', 2));
        const reply = nodes[id].sends('pan.vote')[0].body as { term: number; granted: boolean };
        nodes.a.send(vote(id, reply.term, reply.granted));
      }
      expect(nodes.a.value).to.equal('primary');
      expect(currentPan(nodes.a.snapshot)).to.deep.equal({ id: 'a', term: 2 });
    });
  });

  describe('stepping down and learning', () => {
    const primaryA = () => {
      const a = run('a');
      a.send(view(ANCHORS)).send(vote('b', 1)).send(vote('c', 1));
      expect(a.value).to.equal('primary');
      a.drain();
      return a;
    };

    it('a PAN that loses quorum steps down at once', () => {
      const a = primaryA();
      a.send(view(['a', 'b']));
      expect(a.value).to.equal('follower');
      expect(currentPan(a.snapshot)).to.equal(undefined);
      expect(a.of('pan')).to.deep.equal([{ type: 'pan', pan: undefined }]);
    });

    it('a PAN yields to a PAN of a higher term', () => {
      const a = primaryA();
      a.send({ type: 'HEARD_PAN', id: 'c', term: 1 });
      expect(a.value, 'not for its own term').to.equal('primary');
      a.send({ type: 'ELECTED', from: 'c', term: 2 });
      expect(a.value).to.equal('follower');
      expect(pans(a)).to.deep.equal([{ id: 'c', term: 2 }]);
    });

    it('a candidate yields to a PAN of its own term or later, not an earlier one', () => {
      const a = run('a');
      a.send(view(ANCHORS)).send({ type: 'ELECTED', from: 'e', term: 0 });
      expect(a.value).to.equal('candidate');
      a.send({ type: 'HEARD_PAN', id: 'c', term: 1 });
      expect(a.value).to.equal('follower');
      expect(currentPan(a.snapshot)).to.deep.equal({ id: 'c', term: 1 });
    });

    it('a follower adopts a higher-term PAN, forgets one that dies, then claims', () => {
      const a = run('a');
      a.send(view(['a', 'b', 'c', 'd'])); // candidate, term 1
      a.send({ type: 'ELECTED', from: 'd', term: 4 });
      expect(a.value).to.equal('follower');
      a.send({ type: 'HEARD_PAN', id: 'b', term: 3 });
      expect(currentPan(a.snapshot), 'a lower term is stale news').to.deep.equal({ id: 'd', term: 4 });
      a.drain();
      a.clock.advance(retryMs);
      expect(a.value, 'a live PAN is known').to.equal('follower');
      a.send(view(['a', 'b', 'c']));
      expect(pans(a)).to.deep.equal([undefined]);
      expect(a.value).to.equal('candidate');
      expect(a.sends('pan.claim')[0].body).to.deep.equal({ term: 5 });
    });

    it('does not adopt a PAN it cannot reach, nor one named while without quorum', () => {
      const b = run('b');
      b.send(view(['a', 'b', 'c'])).send({ type: 'HEARD_PAN', id: 'e', term: 2 });
      expect(currentPan(b.snapshot)).to.equal(undefined);
      b.send(view(['a', 'b'])).send({ type: 'HEARD_PAN', id: 'a', term: 3 });
      expect(currentPan(b.snapshot)).to.equal(undefined);
      expect(b.snapshot.context.term, 'but it remembers the term').to.equal(3);
    });

    it('a follower forgets the PAN when its side loses quorum', () => {
      const b = run('b');
      b.send(view(ANCHORS)).send({ type: 'ELECTED', from: 'a', term: 1 });
      b.send(view(['a', 'b']));
      expect(pans(b)).to.deep.equal([{ id: 'a', term: 1 }, undefined]);
    });

    it('a restarted PAN that pulses still name claims back the role though it does not rank first', () => {
      const all = ['a', 'b', 'c'];
      const a = run('a');
      const b = run('b');
      // a still follows b, elected in term 3 before b restarted.
      a.send(view(all, all)).send(vote('b', 1, false)).send(vote('c', 1, false));
      a.clock.advance(electionTimeoutMs);
      a.send({ type: 'HEARD_PAN', id: 'b', term: 3 });
      expect(currentPan(a.snapshot)).to.deep.equal({ id: 'b', term: 3 });
      b.send(view(all, all));
      expect(b.value, 'a ranks first: b does not claim on rank').to.equal('follower');
      b.send({ type: 'HEARD_PAN', id: 'b', term: 3 });
      expect(b.value).to.equal('candidate');
      expect(b.sends('pan.claim')[0].body).to.deep.equal({ term: 4 });
      a.drain();
      a.send(claim('b', 4));
      expect(votesSent(a)).to.deep.equal([{ to: 'b', term: 4, granted: true }]);
      b.send(vote('a', 4));
      expect(b.value).to.equal('primary');
    });

    it('does not reclaim on old news of itself once it follows a later PAN', () => {
      const b = run('b');
      b.send(view(ANCHORS)).send({ type: 'ELECTED', from: 'c', term: 5 }).send({ type: 'HEARD_PAN', id: 'b', term: 3 });
      b.send(view(['a', 'b', 'd', 'e']));
      expect(b.value, 'c died, but a ranks first').to.equal('follower');
    });

    it('a restarted anchor named PAN in pulses claims above that term', () => {
      const a = run('a');
      a.send({ type: 'HEARD_PAN', id: 'a', term: 6 }).send(view(ANCHORS));
      expect(a.value).to.equal('candidate');
      expect(a.sends('pan.claim')[0].body).to.deep.equal({ term: 7 });
    });
  });

  it('works through the pure transition() too', () => {
    const [s0] = initialTransition(panElectionMachine, input('a'));
    const [s1, actions] = transition(panElectionMachine, s0, view(['a'], ['a']));
    expect(s1.value).to.equal('primary');
    expect(emittedBy(actions)).to.deep.equal([{ type: 'pan', pan: { id: 'a', term: 1 } }]);
  });
});

/**
 * Five anchors' election machines wired by a tiny router: messages cross
 * only within a side, with seeded delays; every anchor relays the PAN it
 * knows every `pulseMs`, as the heartbeat does in its pulses.
 */
class PanCluster {
  readonly clock = new SimClock();
  readonly nodes = new Map<string, Running<typeof panElectionMachine>>();
  private sides: string[][] = [];
  private readonly pulseMs = 20;

  constructor(
    readonly ids: string[],
    private readonly rng: SeededRandom,
  ) {
    for (const id of ids) {
      const r = new Running(panElectionMachine, input(id), this.clock);
      r.actor.on('send', (s: SendOut) => this.route(id, s));
      this.nodes.set(id, r);
    }
    this.partition([ids]);
    this.pulse();
  }

  private sideOf(id: string): string[] {
    return this.sides.find((s) => s.includes(id)) ?? [];
  }

  private connected(a: string, b: string): boolean {
    return this.sideOf(a).includes(b);
  }

  private route(from: string, s: SendOut): void {
    this.clock.setTimeout(() => {
      if (!this.connected(from, s.to)) return;
      const body = s.body as { term: number; granted?: boolean };
      const node = this.nodes.get(s.to)!;
      if (s.kind === 'pan.claim') node.send({ type: 'CLAIM', from, term: body.term });
      if (s.kind === 'pan.vote') node.send({ type: 'VOTE', from, term: body.term, granted: body.granted === true });
      if (s.kind === 'pan.elected') node.send({ type: 'ELECTED', from, term: body.term });
    }, 1 + this.rng.int(8));
  }

  private pulse(): void {
    this.clock.setTimeout(() => {
      for (const [from, r] of this.nodes) {
        const pan = currentPan(r.snapshot);
        if (!pan) continue;
        for (const to of this.sideOf(from)) {
          if (to !== from) this.nodes.get(to)!.send({ type: 'HEARD_PAN', id: pan.id, term: pan.term });
        }
      }
      this.pulse();
    }, this.pulseMs);
  }

  /** The anchor crashes and comes back at once, with a fresh machine: the heartbeat never missed it. */
  restart(id: string): void {
    this.nodes.get(id)!.actor.stop();
    const r = new Running(panElectionMachine, input(id), this.clock);
    r.actor.on('send', (s: SendOut) => this.route(id, s));
    this.nodes.set(id, r);
    r.send(view(this.sideOf(id), this.ids));
  }

  partition(sides: string[][]): void {
    this.sides = sides;
    for (const side of sides) for (const id of side) this.nodes.get(id)!.send(view(side, this.ids));
  }

  primaries(): { id: string; term: number; quorate: boolean }[] {
    return [...this.nodes]
      .filter(([, r]) => r.value === 'primary')
      .map(([id, r]) => ({ id, term: currentPan(r.snapshot)?.term ?? -1, quorate: r.snapshot.context.view.quorate }));
  }

  /** Runs `ms` of virtual time a millisecond at a time, checking safety after each. */
  runChecked(ms: number, check: () => void): void {
    for (let t = 0; t < ms; t++) {
      this.clock.advance(1);
      check();
    }
  }
}

describe('PAN election in a 3|2 partition (M16, M17)', () => {
  const seeds = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

  for (const seed of seeds) {
    it(`elects one PAN on the quorate side only, moves it when the sides swap, survives its restart (seed ${seed})`, () => {
      try {
        const cluster = new PanCluster(ANCHORS, new SeededRandom(seed));
        const termsWon = new Map<number, string>();
        const safety = () => {
          const quoratePrimaries = cluster.primaries().filter((p) => p.quorate);
          expect(quoratePrimaries.length, 'PANs on quorate sides').to.be.at.most(1);
          for (const p of cluster.primaries()) {
            const prior = termsWon.get(p.term);
            expect(prior ?? p.id, `two PANs in term ${p.term}`).to.equal(p.id);
            termsWon.set(p.term, p.id);
          }
        };

        cluster.partition([
          ['a', 'b', 'c'],
          ['d', 'e'],
        ]);
        cluster.runChecked(1000, safety);
        const first = cluster.primaries();
        expect(first.map((p) => p.id)).to.have.length(1);
        expect(['a', 'b', 'c']).to.include(first[0].id);
        for (const id of ['a', 'b', 'c']) expect(currentPan(cluster.nodes.get(id)!.snapshot)).to.deep.equal({ id: first[0].id, term: first[0].term });
        for (const id of ['d', 'e']) expect(currentPan(cluster.nodes.get(id)!.snapshot)).to.equal(undefined);

        // The old PAN's side becomes the minority.
        cluster.partition([
          ['a', 'b'],
          ['c', 'd', 'e'],
        ]);
        cluster.runChecked(1000, safety);
        const second = cluster.primaries();
        expect(second.map((p) => p.id)).to.have.length(1);
        expect(['c', 'd', 'e']).to.include(second[0].id);
        expect(second[0].term).to.be.greaterThan(first[0].term);
        for (const id of ['a', 'b']) expect(cluster.nodes.get(id)!.value).to.equal('follower');

        // Healed: the PAN stays, everyone learns it from pulses.
        cluster.partition([ANCHORS]);
        cluster.runChecked(500, safety);
        expect(cluster.primaries()).to.deep.equal(second);
        for (const id of ANCHORS) expect(currentPan(cluster.nodes.get(id)!.snapshot)?.id).to.equal(second[0].id);

        // The PAN restarts unnoticed: the others still name it, and it takes the role back.
        cluster.restart(second[0].id);
        expect(cluster.primaries()).to.deep.equal([]);
        cluster.runChecked(1000, safety);
        const third = cluster.primaries();
        expect(third.map((p) => p.id)).to.deep.equal([second[0].id]);
        expect(third[0].term).to.be.greaterThan(second[0].term);
        for (const id of ANCHORS) expect(currentPan(cluster.nodes.get(id)!.snapshot)).to.deep.equal({ id: third[0].id, term: third[0].term });
      } catch (err) {
        (err as Error).message = `seed ${seed}: ${(err as Error).message}`;
        throw err;
      }
    });
  }
});
