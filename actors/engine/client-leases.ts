/**
 * Leases of the clients that lock pages through this node (M14: a lock held
 * by a client that went away is released, and a waiting locker gets it).
 *
 * A client that locks with `leaseMs` keeps its locks while this node hears
 * from it: every call it makes renews the lease (the client library sends
 * `renew` while it holds leased locks and is otherwise idle). Once this node
 * has not heard from it for `leaseMs`, the lease has run out: the node asks
 * every home the client locked at to release the client's locks and waits
 * (`release_client`; page-locks.ts grants the waiters), and forgets the
 * client once each home has answered. A home that cannot be reached (down,
 * rebuilding) is asked again at the next sweep. A lock taken while the
 * release is under way goes with it, as the client counted gone.
 *
 * Nothing runs out while the node does not serve: a client's calls are
 * refused during a rebuild, so the rebuild's pause is added to every lease.
 *
 * A lease is a bet on time: a client paused for longer than its lease
 * (SIGSTOP, a long collection) loses its locks while it believes it holds
 * them, and learns it from `renew` (`held: false`). A lock without a lease
 * (the CLI's, which outlive the command) stays until it is unlocked or the
 * node it was taken through fails.
 */
import type { Clock } from '../../bus/clock.js';
import { MangroveError } from '../../bus/errors.js';
import type { Log } from '../log.js';
import { Paced } from '../recovery/paced.js';

interface Lease {
  leaseMs: number;
  lastHeard: number;
  /** Homes the client locked at (those a release must reach), each with the number of its last lock there. */
  homes: Map<string, number>;
  /** Ran out: its release is under way. */
  expired: boolean;
}

export interface ClientLeasesDeps {
  clock: Clock;
  /** Time between sweeps for leases that ran out. */
  intervalMs: number;
  /** Whether the node serves (not in a rebuild). */
  serving(): boolean;
  /** Asks `home` to release `client`'s locks and waits. */
  release(home: string, client: string): Promise<unknown>;
  log: Log;
}

export class ClientLeases {
  private readonly leases = new Map<string, Lease>();
  private readonly paced: Paced;
  /** When the node stopped serving, while it does not. */
  private pausedAt: number | null = null;
  private locks = 0;

  constructor(private readonly deps: ClientLeasesDeps) {
    this.paced = new Paced(deps.clock, deps.intervalMs, () => this.sweep());
  }

  start(): void {
    this.paced.start();
  }

  stop(): void {
    this.paced.stop();
  }

  /** `client` called: its lease, if it has one still running, starts again. */
  heard(client: string): void {
    const lease = this.leases.get(client);
    if (lease && !lease.expired) lease.lastHeard = this.deps.clock.now();
  }

  /** Whether `client` holds a lease here that has not run out. */
  holds(client: string): boolean {
    const lease = this.leases.get(client);
    return lease !== undefined && !lease.expired;
  }

  /** Refuses a leased lock while the client's last lease is being released (E_BUSY). */
  mayLock(client: string): void {
    if (this.leases.get(client)?.expired) {
      throw new MangroveError('E_BUSY', `client ${client} went silent for longer than its lock lease; its locks are being released. Lock again in a moment`);
    }
  }

  /** `client` took a lock at `home` with a lease of `leaseMs` (the longest it asked for counts). */
  locked(client: string, leaseMs: number, home: string): void {
    const n = ++this.locks;
    const lease = this.leases.get(client);
    if (!lease) {
      this.leases.set(client, { leaseMs, lastHeard: this.deps.clock.now(), homes: new Map([[home, n]]), expired: false });
      return;
    }
    lease.homes.set(home, n);
    lease.leaseMs = Math.max(lease.leaseMs, leaseMs);
  }

  private async sweep(): Promise<void> {
    const now = this.deps.clock.now();
    if (!this.deps.serving()) {
      this.pausedAt ??= now;
      return;
    }
    if (this.pausedAt !== null) {
      for (const lease of this.leases.values()) lease.lastHeard += now - this.pausedAt;
      this.pausedAt = null;
    }
    for (const [client, lease] of [...this.leases]) {
      if (!lease.expired && now - lease.lastHeard < lease.leaseMs) continue;
      if (!lease.expired) {
        lease.expired = true;
        this.deps.log.warn({ client, leaseMs: lease.leaseMs, homes: lease.homes.size }, 'a client went silent for longer than its lock lease; its locks are released');
      }
      // A lock that was on its way while the release went out is released at the next sweep.
      await Promise.all(
        [...lease.homes].map(([home, n]) =>
          this.deps.release(home, client).then(
            () => lease.homes.get(home) === n && lease.homes.delete(home),
            () => undefined,
          ),
        ),
      );
      if (lease.homes.size === 0) this.leases.delete(client);
    }
  }
}
