/**
 * Primary anchor node election (SPEC.md M16), run by every anchor. Safety
 * claim: at most one PAN per term, and at most one PAN on a quorate side.
 * A candidate becomes PAN only with granted votes MORE than half of all
 * configured votes, and an anchor grants at most one claim per term (each
 * grant raises `votedTerm`, and a claim must exceed every term the voter has
 * seen), so two candidates of one term cannot both win; a PAN steps down the
 * moment its view loses quorum, and yields to any PAN of a higher term.
 *
 * Who claims: a quorate follower that sees no live PAN and is the best
 * ranked live anchor (configured preference order first, then lowest
 * permanent id: `rankCompare`, M3's rule), or that pulses name as PAN while
 * it is not (it restarted: the others still follow it and will vote for no
 * one else, so only its own claim ends that). Views come from the heartbeat's
 * monitor pulses, which every member of a domain shares, so two anchors that
 * both believe they rank first, and split the vote, are a transient state;
 * the loser times out, backs off for `retryMs` and re-checks.
 *
 * Emits `send` (`pan.claim`, `pan.vote`, `pan.elected`) and
 * `{ type: 'pan', pan }` whenever the PAN this anchor knows changes
 * (`undefined`: none known, e.g. it died or quorum was lost).
 */
import { assign, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { PanRef } from '../../bus/messages/index.js';
import { rankCompare } from './identity.js';
import { sendTo, type SendOut } from '../outbox.js';
import { hasMajority } from './quorum.js';

export const machineName = 'pan-election';

/** The anchors as the heartbeat and quorum machines see them. */
export interface PanView {
  quorate: boolean;
  /** Live anchors' permanent ids, self included while alive. */
  aliveAnchors: string[];
  /** Configured votes per anchor (M5). */
  votes: Record<string, number>;
  totalVotes: number;
}

export interface PanElectionContext {
  self: string;
  preference: string[];
  electionTimeoutMs: number;
  retryMs: number;
  /** The highest term this anchor has granted, claimed, been refused with, or seen a PAN of. */
  term: number;
  /** The term this anchor last granted (to itself or another). */
  votedTerm: number;
  /** The PAN this anchor knows: alive in `view`, on a quorate side, or undefined. */
  pan: PanRef | undefined;
  /** Voters for the current candidacy, self included. */
  granted: string[];
  view: PanView;
  /** A candidacy just failed: claim no sooner than the next retry tick. */
  backoff: boolean;
  /** Retry ticks since the known PAN last renewed its role (`pan.elected`). */
  panSilence: number;
  /** Others name this anchor PAN, but it is not primary (it restarted). */
  namedPan: boolean;
}

export interface PanElectionInput {
  self: string;
  /** Configured PAN order (M16); empty: lowest permanent id. */
  preference: string[];
  electionTimeoutMs: number;
  retryMs: number;
}

export type PanElectionEvent =
  | ({ type: 'VIEW' } & PanView)
  | { type: 'CLAIM'; from: string; term: number }
  | { type: 'VOTE'; from: string; term: number; granted: boolean }
  | { type: 'ELECTED'; from: string; term: number }
  | { type: 'HEARD_PAN'; id: string; term: number };

/** Retry periods a follower waits for the PAN to renew before forgetting it. */
export const PAN_LEASE_RETRIES = 4;

export type PanEmitted = SendOut | { type: 'pan'; pan: PanRef | undefined };

const noView: PanView = { quorate: false, aliveAnchors: [], votes: {}, totalVotes: 0 };

const isAlive = (c: PanElectionContext, id: string): boolean => c.view.aliveAnchors.includes(id);

const livePan = (c: PanElectionContext): PanRef | undefined => (c.pan && isAlive(c, c.pan.id) ? c.pan : undefined);

function ranksFirst(c: PanElectionContext): boolean {
  const ranked = [...c.view.aliveAnchors].sort((a, b) =>
    rankCompare({ id: a, anchor: true }, { id: b, anchor: true }, c.preference),
  );
  return ranked[0] === c.self;
}

function grantedWeight(c: PanElectionContext): number {
  return c.granted.reduce((sum, id) => sum + (c.view.votes[id] ?? 0), 0);
}

/** The PAN an ELECTED or HEARD_PAN event names. */
function panNews(e: PanElectionEvent): PanRef | undefined {
  if (e.type === 'ELECTED') return { id: e.from, term: e.term };
  if (e.type === 'HEARD_PAN') return { id: e.id, term: e.term };
  return undefined;
}

function grantsClaim(c: PanElectionContext, e: PanElectionEvent): boolean {
  if (e.type !== 'CLAIM' || e.from === c.self) return false;
  const pan = livePan(c);
  return (
    c.view.quorate &&
    e.term > c.votedTerm &&
    e.term > c.term &&
    isAlive(c, e.from) &&
    (pan === undefined || pan.id === e.from)
  );
}

const samePan = (a: PanRef | undefined, b: PanRef | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.id === b.id && a.term === b.term);

export const panElectionMachine = setup({
  types: {
    context: {} as PanElectionContext,
    input: {} as PanElectionInput,
    events: {} as PanElectionEvent,
    emitted: {} as PanEmitted,
  },
  actions: {
    /** A follower or candidate forgets a PAN that died or a side that lost quorum (M16: no PAN without quorum). */
    takeView: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'VIEW') return;
      const { type: _, ...view } = event;
      enqueue.assign({ view });
      const pan = context.pan;
      if (pan && (!view.quorate || !view.aliveAnchors.includes(pan.id))) {
        enqueue.assign({ pan: undefined });
        enqueue.emit({ type: 'pan', pan: undefined });
      }
    }),
    keepView: assign({
      view: ({ context, event }) => {
        if (event.type !== 'VIEW') return context.view;
        const { type: _, ...view } = event;
        return view;
      },
    }),
    answerClaim: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'CLAIM' || event.from === context.self) return;
      const granted = grantsClaim(context, event);
      // Only a grant moves our term: a refused claim must not disturb a
      // candidacy of ours, whose votes are counted by term.
      if (granted) enqueue.assign({ term: event.term, votedTerm: event.term });
      // A refusal carries the highest term we know, so a claimant that is
      // behind (e.g. restarted) catches up instead of retrying a dead term.
      const term = granted ? event.term : Math.max(context.term, event.term);
      enqueue.emit(sendTo(event.from, 'pan.vote', { term, granted }));
    }),
    catchUpTerm: assign({
      term: ({ context, event }) => (event.type === 'VOTE' ? Math.max(context.term, event.term) : context.term),
    }),
    /**
     * Adopts a PAN of a higher term than the one known (any term when none
     * is known) if it is alive on our quorate side. On a primary this runs
     * only when it yields, so its own entry is dropped either way.
     */
    learnPan: enqueueActions(({ context, event, enqueue }) => {
      const news = panNews(event);
      if (!news) return;
      const known = context.pan?.id === context.self ? undefined : context.pan;
      const adoptable =
        news.id !== context.self &&
        context.view.quorate &&
        isAlive(context, news.id) &&
        (known === undefined || news.term > known.term);
      const next = adoptable ? news : known;
      // Named ourselves, by news no older than the PAN we know: we restarted
      // as PAN. Following another PAN ends that.
      const namedPan =
        news.id === context.self
          ? context.namedPan || known === undefined || news.term > known.term
          : context.namedPan && !adoptable;
      enqueue.assign({ term: Math.max(context.term, news.term), pan: next, namedPan, ...(adoptable ? { panSilence: 0 } : {}) });
      if (!samePan(next, context.pan)) enqueue.emit({ type: 'pan', pan: next });
    }),
    startCandidacy: assign(({ context }) => {
      const term = Math.max(context.term, context.pan?.term ?? 0) + 1;
      return { term, votedTerm: term, granted: [context.self], backoff: false, namedPan: false };
    }),
    sendClaims: enqueueActions(({ context, enqueue }) => {
      for (const id of context.view.aliveAnchors) {
        if (id !== context.self) enqueue.emit(sendTo(id, 'pan.claim', { term: context.term }));
      }
    }),
    countVote: assign({
      granted: ({ context, event }) =>
        event.type === 'VOTE' && !context.granted.includes(event.from) ? [...context.granted, event.from] : context.granted,
    }),
    /** On taking the role and every retry period after: the PAN's lease on it. */
    takePrimacy: enqueueActions(({ context, enqueue }) => {
      const pan = { id: context.self, term: context.term };
      if (!samePan(pan, context.pan)) {
        enqueue.assign({ pan });
        enqueue.emit({ type: 'pan', pan });
      }
      for (const id of context.view.aliveAnchors) {
        if (id !== context.self) enqueue.emit(sendTo(id, 'pan.elected', { term: context.term }));
      }
    }),
    stepDown: enqueueActions(({ enqueue }) => {
      enqueue.assign({ pan: undefined, granted: [] });
      enqueue.emit({ type: 'pan', pan: undefined });
    }),
    /** The known PAN renewed its lease. */
    renewLease: assign({
      panSilence: ({ context, event }) =>
        event.type === 'ELECTED' && context.pan && event.from === context.pan.id && event.term >= context.pan.term ? 0 : context.panSilence,
    }),
    /** A PAN that stops renewing is forgotten, so a stale belief cannot block the next election. */
    agePan: enqueueActions(({ context, enqueue }) => {
      if (!context.pan || context.pan.id === context.self) return;
      if (context.panSilence + 1 < PAN_LEASE_RETRIES) return void enqueue.assign({ panSilence: context.panSilence + 1 });
      enqueue.assign({ pan: undefined, panSilence: 0 });
      enqueue.emit({ type: 'pan', pan: undefined });
    }),
    beginBackoff: assign({ backoff: true, granted: [] }),
    endBackoff: assign({ backoff: false }),
  },
  guards: {
    shouldClaim: ({ context: c }) =>
      !c.backoff && c.view.quorate && isAlive(c, c.self) && livePan(c) === undefined && (c.namedPan || ranksFirst(c)),
    hasWon: ({ context: c }) => c.view.quorate && hasMajority(grantedWeight(c), c.view.totalVotes),
    grantsClaim: ({ context, event }) => grantsClaim(context, event),
    /** Without quorum, or not counted alive itself, an anchor can neither win nor stay PAN. */
    viewRulesUsOut: ({ context, event }) =>
      event.type === 'VIEW' && (!event.quorate || !event.aliveAnchors.includes(context.self)),
    isGrantForThisCandidacy: ({ context, event }) =>
      event.type === 'VOTE' && event.granted && event.term === context.term,
    isRefusalFromHigherTerm: ({ context, event }) =>
      event.type === 'VOTE' && !event.granted && event.term > context.term,
    /** Another anchor won this candidacy's term or a later one. */
    namesPanAtOrAboveOwnTerm: ({ context, event }) => {
      const news = panNews(event);
      return news !== undefined && news.id !== context.self && news.term >= context.term;
    },
    namesHigherPan: ({ context, event }) => {
      const news = panNews(event);
      return news !== undefined && news.id !== context.self && news.term > (context.pan?.term ?? 0);
    },
  },
  delays: {
    electionTimeout: ({ context }) => context.electionTimeoutMs,
    retry: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({
    self: input.self,
    preference: input.preference,
    electionTimeoutMs: input.electionTimeoutMs,
    retryMs: input.retryMs,
    term: 0,
    votedTerm: 0,
    pan: undefined,
    granted: [],
    view: noView,
    backoff: false,
    namedPan: false,
    panSilence: 0,
  }),
  initial: 'follower',
  states: {
    follower: {
      // Checked after every event: VIEW, a PAN dying, the backoff ending.
      always: { guard: 'shouldClaim', target: 'candidate' },
      // The periodic re-check, so a lost claim is retried without a new VIEW.
      after: { retry: { target: 'follower', reenter: true, actions: ['endBackoff', 'agePan'] } },
      on: {
        VIEW: { actions: 'takeView' },
        CLAIM: { actions: 'answerClaim' },
        VOTE: { actions: 'catchUpTerm' },
        ELECTED: { actions: ['learnPan', 'renewLease'] },
        HEARD_PAN: { actions: 'learnPan' },
      },
    },
    candidate: {
      entry: ['startCandidacy', 'sendClaims'],
      always: { guard: 'hasWon', target: 'primary' },
      after: { electionTimeout: { target: 'follower', actions: 'beginBackoff' } },
      on: {
        VIEW: [
          { guard: 'viewRulesUsOut', target: 'follower', actions: ['takeView', 'beginBackoff'] },
          { actions: 'takeView' },
        ],
        VOTE: [
          { guard: 'isGrantForThisCandidacy', actions: 'countVote' },
          { guard: 'isRefusalFromHigherTerm', target: 'follower', actions: ['catchUpTerm', 'beginBackoff'] },
        ],
        // Granting a later claim gives our vote away: we cannot win this round.
        CLAIM: [
          { guard: 'grantsClaim', target: 'follower', actions: ['answerClaim', 'beginBackoff'] },
          { actions: 'answerClaim' },
        ],
        ELECTED: [
          { guard: 'namesPanAtOrAboveOwnTerm', target: 'follower', actions: ['learnPan', 'beginBackoff'] },
          { actions: 'learnPan' },
        ],
        HEARD_PAN: [
          { guard: 'namesPanAtOrAboveOwnTerm', target: 'follower', actions: ['learnPan', 'beginBackoff'] },
          { actions: 'learnPan' },
        ],
      },
    },
    primary: {
      entry: 'takePrimacy',
      after: { retry: { target: 'primary', reenter: true } },
      on: {
        VIEW: [
          { guard: 'viewRulesUsOut', target: 'follower', actions: ['keepView', 'stepDown'] },
          { actions: 'keepView' },
        ],
        CLAIM: { actions: 'answerClaim' },
        // Late votes of the candidacy won are ignored: a primary's term stays its PAN term.
        ELECTED: { guard: 'namesHigherPan', target: 'follower', actions: 'learnPan' },
        HEARD_PAN: { guard: 'namesHigherPan', target: 'follower', actions: 'learnPan' },
      },
    },
  },
});

export type PanElectionSnapshot = SnapshotFrom<typeof panElectionMachine>;

/** The PAN this anchor knows (itself when primary), for its pulses and the reduplexer. */
export function currentPan(snapshot: PanElectionSnapshot): PanRef | undefined {
  return snapshot.context.pan;
}
