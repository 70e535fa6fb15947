/**
 * The heartbeat element of a node (M3, M4): a stack of levels, each running a
 * heartbeat-member or heartbeat-monitor machine for one domain. Level 0 is
 * the node's group; a node that is monitor of its level-L domain is also that
 * domain's transmitter, a member of level L+1, up to the top domain. This
 * actor swaps machines when a member is promoted or a monitor demoted, turns
 * their outputs into `hb.*` envelopes, and tells the node what it learns
 * (who is failed, quorum state heard, the PAN, newer node databases). What
 * the protocol decides with the stack is decided beside the machines: what a
 * monitor announces (heartbeat-announce.ts), redirects (heartbeat-redirect.ts),
 * what a member pulse carries up (heartbeat-relay.ts), whom each level talks
 * to (heartbeat-peers.ts), and the levels themselves (heartbeat-stack.ts).
 */
import { createActor, type InspectionEvent } from 'xstate';
import { Subject } from 'rxjs';
import { present } from '../../bus/assert.js';
import type { Clock } from '../../bus/clock.js';
import type { Envelope } from '../../bus/envelope.js';
import type { Body, NodeDbSnapshot, NodeEntry, PanRef } from '../../bus/messages/index.js';
import { announce, reportUp } from '../../machines/membership/heartbeat-announce.js';
import { heartbeatMember, type MemberEmitted, type MemberSnapshot } from '../../machines/membership/heartbeat-member.js';
import { heartbeatMonitor, type MonitorEmitted } from '../../machines/membership/heartbeat-monitor.js';
import { claimPeers, groupMembers, upperHint, upperMembers, uppersOf } from '../../machines/membership/heartbeat-peers.js';
import { redirectedLevel, redirectFor } from '../../machines/membership/heartbeat-redirect.js';
import { anchorQuorum, holdQuorum, memberPulseBody, relayedQuorum, type HeldQuorum, type PulseExtras } from '../../machines/membership/heartbeat-relay.js';
import { monitorAt, type Level, type MemberLevel, type MonitorLevel } from '../../machines/membership/heartbeat-stack.js';
import { timingFor, type HeartbeatPlace } from '../../machines/membership/heartbeat-timing.js';
import { domainAt, levelsFor, slotAt, type Candidate } from '../../machines/membership/identity.js';
import { hasBit, slotsOf } from '../../machines/membership/bitmap.js';
import { findNode, maxGroup } from '../../machines/membership/node-db.js';
import type { Outbox } from '../outbox.js';
import type { NodeStateName } from '../../machines/recovery/node-state.js';

type NotNormal = Exclude<NodeStateName, 'normal'>;

export type { PulseExtras };

export type QuorumVia = 'member_pulse' | 'monitor_pulse' | 'upper_pulse';

export type HeartbeatNews =
  | { type: 'view'; failed: ReadonlySet<number>; horizon: number }
  | { type: 'connectivity'; source: 'own' | 'monitor_pulse' }
  | { type: 'quorum_heard'; has: boolean; ttlMs: number; via: QuorumVia; fromAnchor: boolean }
  | { type: 'pan_heard'; pan: PanRef }
  | { type: 'db_version'; version: number; from: string }
  /** Level-0 pulses told the states (M6) of this node's group: who is not normal. */
  | { type: 'states_heard'; states: ReadonlyMap<string, NodeStateName> }
  /** A level-0 pulse named the newest rebuild round its sender finished (M14; 0: none). */
  | { type: 'round_heard'; rr: number; from: string }
  | { type: 'role'; level: number; role: 'member' | 'monitor' }
  | { type: 'monitor'; level: number; id: string }
  | { type: 'member_failed'; level: number; slot: number; id: string | null }
  | { type: 'member_alive'; level: number; slot: number; id: string }
  | { type: 'excluded' | 'included'; level: number }
  /**
   * A level-0 pulse came after this node's read lease had run out: it was cut
   * off or paused for `gapMs` (from the last pulse that counted it in to this
   * one). Pulses sent before it was counted out may still be arriving, so
   * this one proves nothing either way.
   */
  | { type: 'lapsed'; level: 0; gapMs: number };

export interface HeartbeatDeps {
  self: string;
  anchor: boolean;
  outbox: Outbox;
  clock: Clock;
  periodMs: number;
  quorumTimeoutMs: number;
  preference: readonly string[];
  /** The read lease: how long being counted in by the group lasts (node.ts READ_LEASE_PERIODS). */
  leaseMs: number;
  extras: () => PulseExtras;
  inspect?: (e: InspectionEvent) => void;
}

export class HeartbeatActor {
  readonly news$ = new Subject<HeartbeatNews>();
  private levels: Level[] = [];
  private db: NodeDbSnapshot = { version: 0, nodes: [] };
  private me?: NodeEntry;
  private failed = new Set<number>();
  /** The level whose domain (around this node) the failed set covers; outside it nodes are unknown. */
  private horizon = 0;
  /** As this node's level-0 monitor, its members' states (M6) by slot, from their pulses: those not normal. */
  private memberStates = new Map<number, NotNormal>();
  /** When this node last heard its group count it in: a level-0 monitor pulse with its bit set, or, as the monitor, a member's pulse. */
  private includedAt = -Infinity;
  /** The last round and states told as news, so a pulse that says the same again is not news. */
  private roundHeard: number | undefined;
  private statesKey = '[]';
  /** Anchor-computed quorum heard from below, for the reports we send up (heartbeat-relay.ts). */
  private belowQuorum?: HeldQuorum;
  private stopped = false;

  constructor(private readonly deps: HeartbeatDeps) {}

  /** Starts, or follows a new node database (membership, short id, depth). */
  setDb(db: NodeDbSnapshot): void {
    this.db = db;
    const me = findNode(db, this.deps.self);
    const moved = !this.me || !me || me.shortId !== this.me.shortId;
    this.me = me;
    if (this.stopped) return;
    if (moved) {
      this.stopLevels(0);
      if (me) this.startMember(0);
      return;
    }
    const top = this.top();
    if (this.levels.length - 1 > top) this.stopLevels(top + 1);
    const last = this.levels[this.levels.length - 1];
    if (last && last.role === 'monitor' && last.level < top) this.startMember(last.level + 1);
    const l0 = this.levels[0];
    if (l0 && l0.role === 'monitor') l0.actor.send({ type: 'MEMBERS', members: groupMembers(this.db, l0.domain) });
  }

  stop(): void {
    this.stopped = true;
    this.stopLevels(0);
    this.news$.complete();
  }

  /** Whether the heartbeat counts this node alive: inside what we know, and not failed. */
  isAlive(n: NodeEntry): boolean {
    if (n.id === this.deps.self) return true;
    if (!this.me || this.failed.has(n.shortId)) return false;
    return domainAt(n.shortId, this.horizon) === domainAt(this.me.shortId, this.horizon);
  }

  /**
   * Whether this node's group counted it in within the last `withinMs`: its
   * monitor's pulse had its bit set, or, as the monitor, a member pulsed it.
   * A node alone in its group is counted in by nobody: it stands as long as
   * it is in the node database.
   */
  standing(withinMs: number = this.deps.leaseMs): boolean {
    const me = this.me;
    if (!me) return false;
    const domain = domainAt(me.shortId, 0);
    const alone = !this.db.nodes.some((n) => n.id !== me.id && domainAt(n.shortId, 0) === domain);
    return alone || this.deps.clock.now() - this.includedAt <= withinMs;
  }

  role(level = 0): 'member' | 'monitor' | undefined {
    return this.levels[level]?.role;
  }

  monitorOf(level = 0): string | undefined {
    return monitorAt(this.levels, level, this.deps.self);
  }

  /** Every heartbeat monitor this node knows of: its own at each level and those above. */
  monitors(): string[] {
    const out = new Set<string>();
    for (let i = 0; i < this.levels.length; i++) {
      const m = this.monitorOf(i);
      if (m) out.add(m);
    }
    const last = this.levels[this.levels.length - 1];
    if (last?.role === 'member') for (const u of last.uppers) out.add(u);
    return [...out];
  }

  depth(): number {
    return this.levels.length;
  }

  handle(env: Envelope): void {
    if (!this.me || this.stopped) return;
    switch (env.kind) {
      case 'hb.member_pulse':
        return this.onMemberPulse(env as Envelope<'hb.member_pulse', Body<'hb.member_pulse'>>);
      case 'hb.monitor_pulse':
        return this.onMonitorPulse(env as Envelope<'hb.monitor_pulse', Body<'hb.monitor_pulse'>>);
      case 'hb.claim': {
        const b = env.body as Body<'hb.claim'>;
        const l = this.levels[b.level];
        if (l && l.domain === b.domain) l.actor.send({ type: 'CLAIM', from: env.from, fromAnchor: this.isAnchor(env.from) });
        else this.redirect(env.from, b.level, b.domain);
        return;
      }
      case 'hb.redirect':
        return this.onRedirect(env.body as Body<'hb.redirect'>);
    }
  }

  /** A pulse or claim for a level we are not in: answer with a redirect (heartbeat-redirect.ts). */
  private redirect(to: string, level: number, domain: number): void {
    const me = present(this.me, 'handle() runs only once the node database names this node');
    const body = redirectFor(this.levels, me.shortId, to, { level, domain });
    if (body) this.deps.outbox.send(to, 'hb.redirect', body);
  }

  private onRedirect(b: Body<'hb.redirect'>): void {
    const r = redirectedLevel(this.db, this.levels, b);
    if (!r) return;
    if (r.level.role === 'monitor') r.level.actor.send({ type: 'TRANSMITTER', slot: r.slot, id: b.monitor });
    else r.level.actor.send({ type: 'REDIRECT', monitor: b.monitor });
  }

  private onMemberPulse(env: Envelope<'hb.member_pulse', Body<'hb.member_pulse'>>): void {
    const b = env.body;
    this.noteDbVersion(b.dbVersion, env.from);
    const sender = findNode(this.db, env.from);
    const l = this.levels[b.level];
    if (!sender || !l || l.role !== 'monitor' || l.domain !== b.domain) return;
    // The node database, not the sender's word, places it (the body's slot is for readers of traces).
    if (domainAt(sender.shortId, b.level) !== b.domain) return;
    const slot = slotAt(sender.shortId, b.level);
    if (b.level > 0) l.reports.set(slot, b.failed ?? []);
    l.actor.send({ type: 'MEMBER_PULSE', from: env.from, slot });
    if (b.level === 0) {
      this.included();
      this.noteRound(b.rr ?? 0, env.from);
      this.noteMemberState(slot, b.ns);
    }
    const quorum = anchorQuorum(b, sender.anchor);
    if (quorum) {
      this.belowQuorum = holdQuorum(quorum, this.deps.clock.now());
      this.news$.next({ type: 'quorum_heard', ...quorum, via: 'member_pulse', fromAnchor: true });
    }
    if (b.pan) this.news$.next({ type: 'pan_heard', pan: b.pan });
  }

  private onMonitorPulse(env: Envelope<'hb.monitor_pulse', Body<'hb.monitor_pulse'>>): void {
    const b = env.body;
    this.noteDbVersion(b.dbVersion, env.from);
    const l = this.levels[b.level];
    if (!l || l.domain !== b.domain) return this.redirect(env.from, b.level, b.domain);
    l.actor.send({ type: 'MONITOR_PULSE', from: env.from, fromAnchor: this.isAnchor(env.from), bitmap: b.bitmap });
    // What a pulse says counts only once the member has taken it: it follows the sender.
    if (l.role !== 'member' || this.levels[b.level] !== l) return;
    if (l.actor.getSnapshot().context.monitor?.id !== env.from) return;
    l.failed = b.failed;
    l.uppers = b.uppers ?? [];
    l.peers = b.members ?? [];
    l.horizon = b.horizon;
    if (b.level === 0) this.setFailed(b.failed, b.horizon, 'monitor_pulse');
    if (b.level === 0) {
      if (hasBit(b.bitmap, l.slot)) this.included();
      this.noteRound(b.rr ?? 0, env.from);
      this.noteStates(this.statesBySlot(l.domain, b.states ?? []));
    }
    if (b.quorum !== undefined) {
      this.news$.next({ type: 'quorum_heard', ...b.quorum, via: b.level === 0 ? 'monitor_pulse' : 'upper_pulse', fromAnchor: false });
    }
    if (b.pan) this.news$.next({ type: 'pan_heard', pan: b.pan });
  }

  /** The group counted this node in; if that comes after the lease ran out, it is news first (`lapsed`). */
  private included(): void {
    const now = this.deps.clock.now();
    if (this.includedAt !== -Infinity && now - this.includedAt > this.deps.leaseMs) this.news$.next({ type: 'lapsed', level: 0, gapMs: now - this.includedAt });
    this.includedAt = now;
  }

  /** A member's state as its pulse says it; the monitor tells the group in its next pulse, and this node's own view now. */
  private noteMemberState(slot: number, ns: NotNormal | undefined): void {
    const was = this.memberStates.get(slot);
    if (was === ns) return;
    if (ns === undefined) this.memberStates.delete(slot);
    else this.memberStates.set(slot, ns);
    const l = this.levels[0];
    if (l?.role === 'monitor') this.noteStates(this.statesBySlot(l.domain, [...this.memberStates].map(([s, n]) => ({ slot: s, ns: n }))));
  }

  /** The first round a pulse names, and every change of it, is news; the same again is not. */
  private noteRound(rr: number, from: string): void {
    if (rr === this.roundHeard) return;
    this.roundHeard = rr;
    this.news$.next({ type: 'round_heard', rr, from });
  }

  private noteStates(states: Map<string, NodeStateName>): void {
    const key = JSON.stringify([...states].sort());
    if (key === this.statesKey) return;
    this.statesKey = key;
    this.news$.next({ type: 'states_heard', states });
  }

  /** States by slot of the level-0 domain, as node ids; a slot with no node in the database is left out. */
  private statesBySlot(domain: number, states: readonly { slot: number; ns: NotNormal }[]): Map<string, NodeStateName> {
    const out = new Map<string, NodeStateName>();
    for (const { slot, ns } of states) {
      const id = this.db.nodes.find((n) => domainAt(n.shortId, 0) === domain && slotAt(n.shortId, 0) === slot)?.id;
      if (id !== undefined) out.set(id, ns);
    }
    return out;
  }

  private noteDbVersion(version: number, from: string): void {
    if (version > this.db.version) this.news$.next({ type: 'db_version', version, from });
  }

  private isAnchor(id: string): boolean {
    return findNode(this.db, id)?.anchor ?? false;
  }

  private top(): number {
    return levelsFor(maxGroup(this.db)) - 1;
  }

  private setFailed(list: readonly number[], horizon: number, source: 'own' | 'monitor_pulse'): void {
    const next = new Set(list);
    const changed = horizon !== this.horizon || next.size !== this.failed.size || list.some((s) => !this.failed.has(s));
    this.failed = next;
    this.horizon = horizon;
    if (changed) this.news$.next({ type: 'view', failed: next, horizon });
    // A monitor recomputes at every deadline, a member at every pulse (M5 asks
    // for every change; recomputing an unchanged view is the same answer).
    this.news$.next({ type: 'connectivity', source });
  }

  private stopLevels(from: number): void {
    for (const l of this.levels.splice(from)) l.actor.stop();
  }

  /** This node's domain and slot at `level`. */
  private place(level: number): { level: number; domain: number; slot: number } {
    // setDb starts levels only when the database names this node, and stops them all when it does not.
    const me = present(this.me, 'heartbeat levels run only while the node database names this node');
    return { level, domain: domainAt(me.shortId, level), slot: slotAt(me.shortId, level) };
  }

  /** What both roles are told about this node's place at `level`. */
  private roleInput(level: number): HeartbeatPlace {
    const t = timingFor(this.deps.periodMs, level);
    return {
      self: this.deps.self,
      selfAnchor: this.deps.anchor,
      ...this.place(level),
      tickMs: t.tickMs,
      ticksPerPeriod: t.ticksPerPeriod,
      preference: this.deps.preference,
    };
  }

  private startMember(level: number, monitor?: Candidate): void {
    // A new transmitter learns where to report from the pulses it heard as a member below.
    const hint = monitor ?? upperHint(this.db, this.levels[level - 1]?.uppers ?? []);
    const t = timingFor(this.deps.periodMs, level);
    const actor = createActor(heartbeatMember, {
      clock: this.deps.clock,
      inspect: this.deps.inspect,
      input: { ...this.roleInput(level), monitorSilenceTicksMax: t.monitorSilenceTicksMax, claimWindowTicks: t.claimWindowTicks, monitor: hint },
    });
    const l: MemberLevel = { ...this.place(level), role: 'member', actor, uppers: [], failed: [], peers: [], horizon: level };
    this.stopLevels(level);
    this.levels[level] = l;
    actor.on('*', (e) => this.onMemberOutput(l, e));
    actor.subscribe((s) => {
      if (s.status === 'done' && this.levels[level] === l) this.promote(l, s);
    });
    this.news$.next({ type: 'role', level, role: 'member' });
    actor.start();
  }

  private promote(was: MemberLevel, last: MemberSnapshot): void {
    const { level } = was;
    const replaced = last.output?.replaced;
    const gone = replaced ? findNode(this.db, replaced) : undefined;
    const goneSlot = gone && domainAt(gone.shortId, level) === was.domain ? slotAt(gone.shortId, level) : -1;
    const { bitmap } = last.context;
    const presumedAlive = bitmap ? slotsOf(bitmap).filter((s) => s !== goneSlot) : [];
    const members = level === 0 ? groupMembers(this.db, was.domain) : upperMembers(this.db, was, replaced, this.deps.preference);
    const t = timingFor(this.deps.periodMs, level);
    const actor = createActor(heartbeatMonitor, {
      clock: this.deps.clock,
      inspect: this.deps.inspect,
      input: { ...this.roleInput(level), memberSilenceTicksMax: t.memberSilenceTicksMax, members, presumedAlive },
    });
    const l: MonitorLevel = { ...this.place(level), role: 'monitor', actor, uppers: was.uppers, reports: new Map() };
    this.levels[level] = l;
    actor.on('*', (e) => this.onMonitorOutput(l, e));
    actor.subscribe((s) => {
      if (s.status === 'done' && this.levels[level] === l) this.demote(l, present(s.output, 'a demoted monitor names the better one').monitor);
    });
    this.news$.next({ type: 'role', level, role: 'monitor' });
    this.news$.next({ type: 'monitor', level, id: this.deps.self });
    actor.start();
    if (level < this.top() && !this.levels[level + 1]) this.startMember(level + 1, upperHint(this.db, was.uppers));
  }

  private demote(was: MonitorLevel, better: Candidate): void {
    this.stopLevels(was.level + 1);
    this.startMember(was.level, better);
    this.news$.next({ type: 'monitor', level: was.level, id: better.id });
  }

  private onMemberOutput(l: MemberLevel, e: MemberEmitted): void {
    const { outbox } = this.deps;
    switch (e.type) {
      case 'member_pulse':
        return outbox.send(e.to, 'hb.member_pulse', this.memberPulseBody(l));
      case 'claim':
        for (const id of claimPeers(this.db, this.levels, l, this.deps.self, this.deps.preference)) outbox.send(id, 'hb.claim', { level: l.level, domain: l.domain });
        return;
      case 'claim_to':
        return outbox.send(e.to, 'hb.claim', { level: l.level, domain: l.domain });
      case 'monitor':
        return this.news$.next({ type: 'monitor', level: l.level, id: e.id });
      case 'excluded':
      case 'included':
        return this.news$.next({ type: e.type, level: l.level });
    }
  }

  private onMonitorOutput(l: MonitorLevel, e: MonitorEmitted): void {
    switch (e.type) {
      case 'monitor_pulse': {
        const body = this.monitorPulseBody(l, e.bitmap);
        if (l.level === 0) this.setFailed(body.failed, body.horizon, 'own');
        for (const to of e.to) this.deps.outbox.send(to, 'hb.monitor_pulse', body);
        return;
      }
      case 'member_failed':
      case 'member_alive':
        return this.news$.next({ ...e, level: l.level });
    }
  }

  private memberPulseBody(l: MemberLevel): Body<'hb.member_pulse'> {
    const x = this.deps.extras();
    const failedBelow = l.level > 0 ? reportUp(this.db, this.levels, l.level) : [];
    return memberPulseBody(l, x, this.deps.anchor, failedBelow, relayedQuorum(this.belowQuorum, this.deps.clock.now()));
  }

  private monitorPulseBody(l: MonitorLevel, bitmap: Uint8Array): Body<'hb.monitor_pulse'> {
    const x = this.deps.extras();
    const { failed, horizon } = announce(this.db, this.levels, l);
    const body: Body<'hb.monitor_pulse'> = {
      level: l.level,
      domain: l.domain,
      dbVersion: x.dbVersion,
      bitmap,
      failed,
      horizon,
      uppers: uppersOf(this.levels, l.level, this.deps.self),
    };
    if (x.quorum !== undefined) body.quorum = x.quorum;
    if (x.pan) body.pan = x.pan;
    if (l.level === 0 && x.rr) body.rr = x.rr;
    if (l.level === 0) {
      const states: { slot: number; ns: NotNormal }[] = [...this.memberStates].filter(([slot]) => slot !== l.slot).map(([slot, ns]) => ({ slot, ns }));
      if (x.ns && x.ns !== 'normal') states.push({ slot: l.slot, ns: x.ns });
      if (states.length > 0) body.states = states.sort((a, b) => a.slot - b.slot);
    }
    if (l.level > 0) body.members = l.actor.getSnapshot().context.ids.filter((id): id is string => id !== null);
    return body;
  }
}
