/**
 * A recorder of page calls for the durable page register's checker
 * (runtime/conformance/linearizability/durable-register.ts): the history of
 * reads, writes, flushes and crashes of a simulated run, kept as the
 * checker's header asks, and the helpers the crash specs share.
 */
import { MangroveError } from '../../bus/errors.js';
import type { ClientPageOp, ReadResult } from '../../bus/messages/page.js';
import { addressKey, formatAddress, PAGE_BYTES } from '../../machines/memory/address.js';
import type { PageEngine } from '../../actors/engine/page-engine.js';
import { durableRegisterModel, type DurableOp } from '../../runtime/conformance/linearizability/durable-register.js';
import { checkLinearizable } from '../../runtime/conformance/linearizability/search.js';
import type { SimCluster } from '../../runtime/sim/cluster.js';
import { isWhole } from './page-workload.js';

/** The engine's call timeout under crashes: a call the rebuild strands fails in seconds, not a minute. */
export const CRASH_TIMEOUT_MS = 5000;
/** A call still open this long after it was made is hung: counted (E_HUNG), and given up on. */
export const HUNG_MS = 4 * CRASH_TIMEOUT_MS;
/** Codes a call may fail with while nodes crash and the cluster rebuilds (E_CRASHED: its node went down under it). */
export const EXPECTED_FAILURES: ReadonlySet<string> = new Set(['E_RECOVERING', 'E_NO_QUORUM', 'E_TIMEOUT', 'E_CLOSED', 'E_CRASHED']);

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

interface Life {
  /** Settles when this incarnation of the node crashes. */
  down: Promise<void>;
  fell(): void;
}

function life(): Life {
  let fell!: () => void;
  const down = new Promise<void>((res) => (fell = res));
  return { down, fell };
}

/**
 * Calls into the cluster, recorded as the durable register's checker asks:
 * a write whose outcome is unknown (it failed, or its node crashed under
 * it) stays without `ret`; a read or flush that failed is left out; a crash
 * is one `crash` op per page at the crash time, by the crashed node. The
 * history lists each client's operations in the order it issued them.
 */
export class Recorder {
  readonly history: DurableOp[] = [];
  readonly torn: string[] = [];
  readonly failures: Record<string, number> = {};
  private readonly lives: Life[] = [];

  constructor(
    readonly c: SimCluster,
    readonly pages: readonly bigint[],
    /** Applied to every node's engine at each start: a planted bug. */
    private readonly plant?: (e: PageEngine) => void,
  ) {
    for (let i = 0; i < c.size; i++) {
      this.lives.push(life());
      if (c.isUp(i)) plant?.(c.node(i)!.engine);
    }
  }

  crash(i: number): void {
    const at = this.c.clock.now();
    this.c.crash(i);
    this.lives[i].fell();
    for (const page of this.pages) this.history.push({ client: `n${i}`, input: { kind: 'crash', page: formatAddress(page) }, call: at, ret: at });
  }

  /** Node i, alive, dropped every copy it held at `at` because the cluster counted it failed: a crash to the durability rule. */
  reset(i: number, at: number): void {
    for (const page of this.pages) this.history.push({ client: `reset@n${i}`, input: { kind: 'crash', page: formatAddress(page) }, call: at, ret: at });
  }

  start(i: number): void {
    this.lives[i] = life();
    this.c.start(i);
    this.plant?.(this.c.node(i)!.engine);
  }

  /** Node i is up and a rebuild has let it serve (M14). */
  serving(i: number): boolean {
    return this.c.node(i)?.engine.recoveryState().serving ?? false;
  }

  async read(i: number, client: string, page: bigint): Promise<Outcome<Uint8Array>> {
    const call = this.c.clock.now();
    const out = await this.attempt(i, client, { op: 'read', addr: addressKey(page), pages: 1 });
    if (!out.ok) return out;
    const data = new Uint8Array((out.value as ReadResult).data);
    if (!isWhole(data)) this.torn.push(`${client} read a torn ${formatAddress(page)}`);
    const op: DurableOp = { client, input: { kind: 'read', page: formatAddress(page) }, call, ret: this.c.clock.now(), output: data };
    this.history.push(op);
    return { ok: true, value: data };
  }

  async write(i: number, client: string, page: bigint, value: Uint8Array): Promise<Outcome<void>> {
    const op: DurableOp = { client, input: { kind: 'write', page: formatAddress(page), value }, call: this.c.clock.now() };
    this.history.push(op);
    const out = await this.attempt(i, client, { op: 'write', addr: addressKey(page), data: value });
    if (!out.ok) return out;
    op.ret = this.c.clock.now();
    return { ok: true, value: undefined };
  }

  async flush(i: number, client: string, page: bigint): Promise<Outcome<void>> {
    const call = this.c.clock.now();
    const out = await this.attempt(i, client, { op: 'flush', addr: addressKey(page), pages: 1 });
    if (!out.ok) return out;
    this.history.push({ client, input: { kind: 'flush', page: formatAddress(page) }, call, ret: this.c.clock.now() });
    return { ok: true, value: undefined };
  }

  /** Not recorded (it changes no value): the program no longer needs the page here, so a reader's copy goes and an owner's pages out. */
  unreference(i: number, client: string, page: bigint): Promise<Outcome<unknown>> {
    return this.attempt(i, client, { op: 'unreference', addr: addressKey(page), pages: 1 });
  }

  private async attempt(i: number, client: string, op: ClientPageOp): Promise<Outcome<unknown>> {
    const node = this.c.node(i);
    let hung: unknown;
    const out: Outcome<unknown> = !node
      ? { ok: false, code: 'E_CRASHED' }
      : await Promise.race([
          node.engine.call(op, client).then(
            (value): Outcome<unknown> => ({ ok: true, value }),
            (err: unknown): Outcome<unknown> => ({ ok: false, code: err instanceof MangroveError ? err.code : String(err) }),
          ),
          this.lives[i].down.then((): Outcome<unknown> => ({ ok: false, code: 'E_CRASHED' })),
          new Promise<Outcome<unknown>>((res) => (hung = this.c.clock.setTimeout(() => res({ ok: false, code: 'E_HUNG' }), HUNG_MS))),
        ]);
    if (hung !== undefined) this.c.clock.clearTimeout(hung);
    if (!out.ok) {
      this.failures[out.code] = (this.failures[out.code] ?? 0) + 1;
      if (process.env.DEBUG_RECOVERY) console.log(this.c.clock.now(), client, op.op, out.code);
    }
    return out;
  }
}

/** The durable register check of a recorded history (zero-filled pages at first). */
export function checkDurable(history: readonly DurableOp[]): ReturnType<typeof checkLinearizable> {
  return checkLinearizable(durableRegisterModel(new Uint8Array(PAGE_BYTES)), history, { sequentialClients: true });
}

/** Calls `attempt` until it succeeds, with a short backoff between tries: its value, and the simulated ms that took. */
export async function retrying<T>(c: SimCluster, attempt: () => Promise<Outcome<T>>, what: string, maxMs = 30_000): Promise<{ value: T; ms: number }> {
  const start = c.clock.now();
  for (;;) {
    const out = await c.settle(attempt(), 2 * HUNG_MS);
    if (out.ok) return { value: out.value, ms: c.clock.now() - start };
    if (c.clock.now() - start >= maxMs) throw new MangroveError('E_TIMEOUT', `${what} still fails after ${maxMs} simulated ms (last: ${out.code})`);
    await c.runAsync(20);
  }
}

export const allNodes = (c: SimCluster): number[] => [...Array(c.size).keys()];

/** A page's value as its writer made it (pageOf's token). */
export const tokenOf = (data: Uint8Array): number => new DataView(data.buffer, data.byteOffset, data.byteLength).getFloat64(0);
