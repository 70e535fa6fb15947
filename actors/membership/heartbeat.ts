/**
 * The heartbeat element of a node (M3, M4): a stack of levels, each running a
 * heartbeat-member or heartbeat-monitor machine for one domain. Level 0 is
 * the node's group; a node that is monitor of its level-L domain is also that
 * domain's transmitter, a member of level L+1, up to the top domain. This
 * actor swaps machines when a member is promoted or a monitor demoted, turns
 * their outputs into `hb.*` envelopes, and tells the node what it learns
 * (who is failed, quorum state heard, the PAN, newer node databases).
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { Subject } from 'rxjs';
import type { Clock } from '../../bus/clock.js';
import type { Envelope } from '../../bus/envelope.js';
import type { Body, NodeDbSnapshot, NodeEntry, PanRef, QuorumState } from '../../bus/messages/index.js';
import { heartbeatMember, type MemberEmitted } from '../../machines/membership/heartbeat-member.js';
import { heartbeatMonitor, type MonitorEmitted, type SlotMember } from '../../machines/membership/heartbeat-monitor.js';
import { timingFor, type HeartbeatPlace } from '../../machines/membership/heartbeat-timing.js';
import { mergeFailed, naturalTransmitters, nodesUnder, subtreeFailed } from '../../machines/membership/heartbeat-view.js';
import { domainAt, levelsFor, slotAt, type Candidate } from '../../machines/membership/identity.js';
import { slotsOf } from '../../machines/membership/bitmap.js';
import { findNode, maxGroup } from '../../machines/membership/node-db.js';
import type { Outbox } from '../outbox.js';

export type QuorumVia = 'member_pulse' | 'monitor_pulse' | 'upper_pulse';

export type HeartbeatNews =
  | { type: 'view'; failed: ReadonlySet<number>; horizon: number }
  | { type: 'connectivity'; source: 'own' | 'monitor_pulse' }
  | { type: 'quorum_heard'; has: boolean; ttlMs: number; via: QuorumVia; fromAnchor: boolean }
  | { type: 'pan_heard'; pan: PanRef }
  | { type: 'db_version'; version: number; from: string }
  | { type: 'role'; level: number; role: 'member' | 'monitor' }
  | { type: 'monitor'; level: number; id: string }
  | { type: 'member_failed'; level: number; slot: number; id: string | null }
  | { type: 'member_alive'; level: number; slot: number; id: string }
  | { type: 'excluded' | 'included'; level: number };

/** What the rest of the node adds to every pulse. */
export interface PulseExtras {
  dbVersion: number;
  quorum?: QuorumState;
  pan?: PanRef;
}

export interface HeartbeatDeps {
  self: string;
  anchor: boolean;
  outbox: Outbox;
  clock: Clock;
  periodMs: number;
  quorumTimeoutMs: number;
  preference: readonly string[];
  extras: () => PulseExtras;
  inspect?: (e: InspectionEvent) => void;
}

type MemberActor = Actor<typeof heartbeatMember>;
type MonitorActor = Actor<typeof heartbeatMonitor>;

interface Level {
  level: number;
  domain: number;
  slot: number;
  role: 'member' | 'monitor';
  actor: MemberActor | MonitorActor;
  /** Level >= 1 monitors: the latest failed-set report of each slot's transmitter. */
  reports: Map<number, number[]>;
  /** Members: what our monitor last told us. */
  bitmap?: Uint8Array;
  /** Members: the failed set our monitor announced (for level >= 1, news for the level below). */
  failed: number[];
  /** Members: the monitors above ours, nearest first. */
  uppers: string[];
  /** Members at level >= 1: the transmitters our monitor hears. */
  peers: string[];
  /** Members: how far our monitor's failed set reaches. */
  horizon: number;
}

export class HeartbeatActor {
  readonly news$ = new Subject<HeartbeatNews>();
  private levels: Level[] = [];
  private db: NodeDbSnapshot = { version: 0, nodes: [] };
  private me?: NodeEntry;
  private failed = new Set<number>();
  /** The level whose domain (around this node) the failed set covers; outside it nodes are unknown. */
  private horizon = 0;
  /** Anchor-computed quorum heard from below, for the reports we send up, and when it runs out. */
  private belowQuorum?: { has: boolean; expiresAt: number };
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
    if (l0 && l0.role === 'monitor') (l0.actor as MonitorActor).send({ type: 'MEMBERS', members: this.groupMembers(l0) });
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

  role(level = 0): 'member' | 'monitor' | undefined {
    return this.levels[level]?.role;
  }

  monitorOf(level = 0): string | undefined {
    const l = this.levels[level];
    if (!l) return undefined;
    return l.role === 'monitor' ? this.deps.self : (l.actor as MemberActor).getSnapshot().context.monitor?.id;
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

  /**
   * A pulse or claim for an upper level we are not in (our group's transmitter
   * changed since the sender last heard): name our own monitor one level down,
   * who is that transmitter or knows it.
   */
  private redirect(to: string, level: number, domain: number): void {
    if (level === 0 || !this.me || domainAt(this.me.shortId, level) !== domain) return;
    const below = this.levels[level - 1];
    if (!below || below.role !== 'member') return;
    const monitor = this.monitorOf(level - 1);
    if (monitor && monitor !== to) this.deps.outbox.send(to, 'hb.redirect', { level, domain, monitor });
  }

  private onRedirect(b: Body<'hb.redirect'>): void {
    const l = this.levels[b.level];
    const named = findNode(this.db, b.monitor);
    if (!l || l.domain !== b.domain || !named || domainAt(named.shortId, b.level) !== b.domain) return;
    if (l.role === 'monitor') {
      (l.actor as MonitorActor).send({ type: 'TRANSMITTER', slot: slotAt(named.shortId, b.level), id: b.monitor });
    } else if (!this.hearsMonitor(l)) {
      // Our monitor is silent: ask the named transmitter; a live monitor answers a claim with a pulse.
      this.deps.outbox.send(b.monitor, 'hb.claim', { level: b.level, domain: b.domain });
    }
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
    (l.actor as MonitorActor).send({ type: 'MEMBER_PULSE', from: env.from, slot });
    if (b.quorum !== undefined && (sender.anchor || b.level > 0)) {
      this.belowQuorum = { has: b.quorum.has, expiresAt: this.deps.clock.now() + b.quorum.ttlMs };
      this.news$.next({ type: 'quorum_heard', ...b.quorum, via: 'member_pulse', fromAnchor: true });
    }
    if (b.pan) this.news$.next({ type: 'pan_heard', pan: b.pan });
  }

  private onMonitorPulse(env: Envelope<'hb.monitor_pulse', Body<'hb.monitor_pulse'>>): void {
    const b = env.body;
    this.noteDbVersion(b.dbVersion, env.from);
    const l = this.levels[b.level];
    if (!l || l.domain !== b.domain) return this.redirect(env.from, b.level, b.domain);
    l.actor.send({ type: 'MONITOR_PULSE', from: env.from, fromAnchor: this.isAnchor(env.from), bitmap: b.bitmap });
    if (l.role !== 'member' || this.levels[b.level] !== l) return;
    if ((l.actor as MemberActor).getSnapshot().context.monitor?.id !== env.from) return;
    l.bitmap = b.bitmap;
    l.failed = b.failed;
    l.uppers = b.uppers ?? [];
    l.peers = b.members ?? [];
    l.horizon = b.horizon;
    if (b.level === 0) this.setFailed(b.failed, b.horizon, 'monitor_pulse');
    if (b.quorum !== undefined) {
      this.news$.next({ type: 'quorum_heard', ...b.quorum, via: b.level === 0 ? 'monitor_pulse' : 'upper_pulse', fromAnchor: false });
    }
    if (b.pan) this.news$.next({ type: 'pan_heard', pan: b.pan });
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

  private groupMembers(l: Level): SlotMember[] {
    return nodesUnder(this.db, 0, l.domain).map((n) => ({ slot: slotAt(n.shortId, 0), id: n.id }));
  }

  private stopLevels(from: number): void {
    for (const l of this.levels.splice(from)) l.actor.stop();
  }

  private newLevel(level: number, role: Level['role'], actor: MemberActor | MonitorActor): Level {
    const me = this.me!;
    return { level, domain: domainAt(me.shortId, level), slot: slotAt(me.shortId, level), role, actor, reports: new Map(), failed: [], uppers: [], peers: [], horizon: level };
  }

  /** What both roles are told about this node's place at `level`. */
  private roleInput(level: number): HeartbeatPlace {
    const me = this.me!;
    const t = timingFor(this.deps.periodMs, level);
    return {
      self: this.deps.self,
      selfAnchor: this.deps.anchor,
      level,
      domain: domainAt(me.shortId, level),
      slot: slotAt(me.shortId, level),
      tickMs: t.tickMs,
      ticksPerPeriod: t.ticksPerPeriod,
      preference: this.deps.preference,
    };
  }

  private startMember(level: number, monitor?: Candidate): void {
    const below = this.levels[level - 1];
    // A new transmitter learns where to report from the pulses it heard as a member below.
    const hint = monitor ?? (below?.uppers[0] ? { id: below.uppers[0], anchor: this.isAnchor(below.uppers[0]) } : undefined);
    const t = timingFor(this.deps.periodMs, level);
    const actor = createActor(heartbeatMember, {
      clock: this.deps.clock,
      inspect: this.deps.inspect,
      input: { ...this.roleInput(level), monitorSilenceTicksMax: t.monitorSilenceTicksMax, claimWindowTicks: t.claimWindowTicks, monitor: hint },
    });
    const l = this.newLevel(level, 'member', actor);
    this.stopLevels(level);
    this.levels[level] = l;
    actor.on('*', (e) => this.onMemberOutput(l, e as MemberEmitted));
    actor.subscribe((s) => {
      if (s.status === 'done' && this.levels[level] === l) this.promote(l, s.output?.replaced);
    });
    this.news$.next({ type: 'role', level, role: 'member' });
    actor.start();
  }

  private promote(was: Level, replaced: string | undefined): void {
    const { level } = was;
    const gone = replaced ? findNode(this.db, replaced) : undefined;
    const goneSlot = gone && domainAt(gone.shortId, level) === was.domain ? slotAt(gone.shortId, level) : -1;
    const presumedAlive = was.bitmap ? slotsOf(was.bitmap).filter((s) => s !== goneSlot) : [];
    const members = level === 0 ? this.groupMembers(was) : this.upperMembers(was, replaced);
    const t = timingFor(this.deps.periodMs, level);
    const actor = createActor(heartbeatMonitor, {
      clock: this.deps.clock,
      inspect: this.deps.inspect,
      input: { ...this.roleInput(level), memberSilenceTicksMax: t.memberSilenceTicksMax, members, presumedAlive },
    });
    const l = this.newLevel(level, 'monitor', actor);
    l.uppers = was.uppers;
    this.levels[level] = l;
    actor.on('*', (e) => this.onMonitorOutput(l, e as MonitorEmitted));
    actor.subscribe((s) => {
      if (s.status === 'done' && this.levels[level] === l) this.demote(l, s.output!.monitor);
    });
    this.news$.next({ type: 'role', level, role: 'monitor' });
    this.news$.next({ type: 'monitor', level, id: this.deps.self });
    actor.start();
    if (level < this.top() && !this.levels[level + 1]) this.startMember(level + 1, was.uppers[0] ? { id: was.uppers[0], anchor: this.isAnchor(was.uppers[0]) } : undefined);
  }

  private demote(was: Level, better: Candidate): void {
    this.stopLevels(was.level + 1);
    this.startMember(was.level, better);
    this.news$.next({ type: 'monitor', level: was.level, id: better.id });
  }

  private onMemberOutput(l: Level, e: MemberEmitted): void {
    const { outbox } = this.deps;
    switch (e.type) {
      case 'member_pulse':
        return outbox.send(e.to, 'hb.member_pulse', this.memberPulseBody(l));
      case 'claim':
        for (const id of this.domainPeers(l)) outbox.send(id, 'hb.claim', { level: l.level, domain: l.domain });
        return;
      case 'monitor':
        return this.news$.next({ type: 'monitor', level: l.level, id: e.id });
      case 'excluded':
      case 'included':
        return this.news$.next({ type: e.type, level: l.level });
    }
  }

  private onMonitorOutput(l: Level, e: MonitorEmitted): void {
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

  private memberPulseBody(l: Level): Body<'hb.member_pulse'> {
    const x = this.deps.extras();
    const body: Body<'hb.member_pulse'> = { level: l.level, domain: l.domain, slot: l.slot, dbVersion: x.dbVersion };
    if (x.pan) body.pan = x.pan;
    if (this.deps.anchor && x.quorum !== undefined) body.quorum = x.quorum;
    if (l.level > 0) {
      const below = this.levels[l.level - 1];
      body.failed = below?.role === 'monitor' ? this.ownSubtreeFailed(below) : [];
      // Relay up only quorum an anchor below us computed, never what came from
      // above, and only with the lifetime it has left.
      const left = this.belowQuorum ? this.belowQuorum.expiresAt - this.deps.clock.now() : 0;
      if (left > 0 && body.quorum === undefined) body.quorum = { has: this.belowQuorum!.has, ttlMs: left };
    }
    return body;
  }

  private monitorPulseBody(l: Level, bitmap: Uint8Array): Body<'hb.monitor_pulse'> {
    const x = this.deps.extras();
    const { failed, horizon } = this.announce(l.level);
    const body: Body<'hb.monitor_pulse'> = {
      level: l.level,
      domain: l.domain,
      dbVersion: x.dbVersion,
      bitmap,
      failed,
      horizon,
      uppers: this.uppersOf(l.level),
    };
    if (x.quorum !== undefined) body.quorum = x.quorum;
    if (x.pan) body.pan = x.pan;
    if (l.level > 0) body.members = (l.actor as MonitorActor).getSnapshot().context.ids.filter((id): id is string => id !== null);
    return body;
  }

  /**
   * What a monitor at `level` announces: its own subtree's failures, plus what
   * it knows from above, either as monitor of the next level too or from the
   * live upper monitor it follows; without either it knows only its subtree.
   */
  private announce(level: number): { failed: number[]; horizon: number } {
    const l = this.levels[level];
    const above = this.levels[level + 1];
    let fromAbove: readonly number[] = [];
    let horizon = level;
    if (above?.role === 'monitor') ({ failed: fromAbove, horizon } = this.announce(level + 1));
    else if (above && this.hearsMonitor(above)) {
      fromAbove = above.failed;
      horizon = Math.max(level, above.horizon);
    }
    return { failed: mergeFailed(this.ownSubtreeFailed(l), fromAbove, level, l.domain), horizon };
  }

  private hearsMonitor(l: Level): boolean {
    const s = (l.actor as MemberActor).getSnapshot();
    return s.value === 'following' && l.bitmap !== undefined && s.context.silence <= s.context.ticksPerPeriod * 2;
  }

  private ownSubtreeFailed(l: Level): number[] {
    const alive = (l.actor as MonitorActor).getSnapshot().context.alive;
    // Our own slot above level 0 is the group we transmit for: we know it first hand.
    const below = this.levels[l.level - 1];
    if (below?.role === 'monitor') l.reports.set(l.slot, this.ownSubtreeFailed(below));
    return subtreeFailed(this.db, l.level, l.domain, alive, l.reports);
  }

  /** The monitors of the levels above `level`, nearest first. */
  private uppersOf(level: number): string[] {
    const out: string[] = [];
    for (let i = level + 1; i < this.levels.length; i++) {
      const m = this.monitorOf(i);
      if (m) out.push(m);
    }
    if (this.levels.length > level + 1) {
      const last = this.levels[this.levels.length - 1];
      if (last.role === 'member') out.push(...last.uppers);
    }
    return out.slice(0, 4);
  }

  /** A new upper monitor's slots: each slot's natural transmitter, overridden by the
   * transmitters the previous monitor heard (all but the one it replaces). */
  private upperMembers(was: Level, replaced: string | undefined): SlotMember[] {
    const bySlot = new Map<number, string>();
    for (const m of naturalTransmitters(this.db, was.level, was.domain, this.deps.preference)) bySlot.set(m.slot, m.id);
    for (const id of was.peers) {
      const n = findNode(this.db, id);
      if (n && id !== replaced && domainAt(n.shortId, was.level) === was.domain) bySlot.set(slotAt(n.shortId, was.level), id);
    }
    return [...bySlot].map(([slot, id]) => ({ slot, id }));
  }

  /** Who a claim goes to: the group's nodes at level 0; above, every slot's natural
   * transmitter, the transmitters our monitor named, and the monitor we were told of. */
  private domainPeers(l: Level): string[] {
    if (l.level === 0) return this.groupMembers(l).map((m) => m.id).filter((id) => id !== this.deps.self);
    const below = this.levels[l.level - 1];
    const known = new Set([
      ...naturalTransmitters(this.db, l.level, l.domain, this.deps.preference).map((m) => m.id),
      ...l.peers,
      ...(below?.uppers.slice(0, 1) ?? []),
    ]);
    known.delete(this.deps.self);
    return [...known];
  }
}
