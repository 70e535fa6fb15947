/**
 * Binds the quorum machine (M5) to what the heartbeat learns: the node's
 * level-0 role, connectivity changes, and quorum state heard in pulses. The
 * votes counted are those of the anchors the heartbeat counts alive.
 */
import { BehaviorSubject } from 'rxjs';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Clock } from '../../bus/clock.js';
import type { NodeDbSnapshot, QuorumState } from '../../bus/messages/index.js';
import { isQuorate, quorumMachine, quorumToSend, reachableVotes } from '../../machines/membership/quorum.js';
import { anchorsOf, totalVotes } from '../../machines/membership/node-db.js';
import type { HeartbeatNews } from './heartbeat.js';

export interface QuorumDeps {
  anchor: boolean;
  quorumTimeoutMs: number;
  clock: Clock;
  db: () => NodeDbSnapshot;
  isAlive: (id: string) => boolean;
  inspect?: (e: InspectionEvent) => void;
}

export class QuorumActor {
  readonly quorum$ = new BehaviorSubject(false);
  private readonly actor: Actor<typeof quorumMachine>;

  constructor(private readonly deps: QuorumDeps) {
    this.actor = createActor(quorumMachine, {
      clock: deps.clock,
      inspect: deps.inspect,
      input: { anchor: deps.anchor, role: 'member', quorumTimeoutMs: deps.quorumTimeoutMs },
    });
    this.actor.on('quorum', (e) => this.quorum$.next(e.has));
  }

  start(): void {
    this.actor.start();
  }

  stop(): void {
    this.actor.stop();
    this.quorum$.complete();
  }

  get has(): boolean {
    return isQuorate(this.actor.getSnapshot());
  }

  /** What this node puts in its pulses (undefined: nothing, M5's fourth case). */
  toSend(): QuorumState | undefined {
    return quorumToSend(this.actor.getSnapshot(), this.deps.clock.now());
  }

  /** Votes of the anchors the heartbeat counts alive. */
  reachable(): { reachableVotes: number; totalVotes: number } {
    const db = this.deps.db();
    return { reachableVotes: reachableVotes(this.deps.isAlive, anchorsOf(db)), totalVotes: totalVotes(db) };
  }

  onHeartbeat(news: HeartbeatNews): void {
    switch (news.type) {
      case 'role':
        if (news.level === 0) this.actor.send({ type: 'ROLE', role: news.role });
        return;
      case 'connectivity':
        return this.actor.send({ type: 'CONNECTIVITY', source: news.source, at: this.deps.clock.now(), ...this.reachable() });
      case 'quorum_heard': {
        const { has, ttlMs, via, fromAnchor } = news;
        return this.actor.send({ type: 'QUORUM_HEARD', has, ttlMs, via, fromAnchor, at: this.deps.clock.now() });
      }
    }
  }
}
