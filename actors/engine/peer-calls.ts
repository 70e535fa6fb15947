/**
 * Requests between engines (`page.call`, answered by `page.answer`): flush
 * to core holders, fetches, allocation and locks at a page's home. A call is
 * resent every `retryMs` until answered or `timeoutMs` runs out, so a lost
 * message costs a retry, not the request. The receiving side answers a
 * repeated call from its answer cache instead of running it again, so every
 * call runs at most once on its target (an allocation retried is not
 * refused as a duplicate of itself).
 *
 * Call numbers carry the caller's epoch in their high bits: a restarted node
 * never reuses a number an old answer cache still holds.
 */
import type { Clock } from '../../bus/clock.js';
import { MangroveError, type ErrorCode } from '../../bus/errors.js';
import type { PeerCall } from '../../bus/messages/page.js';

export interface PeerCallsDeps {
  self: string;
  epoch: number;
  clock: Clock;
  /** Sends a `page.call` to another node. */
  send(to: string, body: { call: number; req: PeerCall }): void;
  /** Sends a `page.answer` to another node. */
  answer(to: string, body: { call: number; ok: boolean; result?: unknown; code?: string; message?: string }): void;
  /** Runs a call addressed to this node. */
  run(from: string, req: PeerCall): Promise<unknown>;
  retryMs: number;
  timeoutMs: number;
}

interface Outgoing {
  resolve(result: unknown): void;
  reject(err: MangroveError): void;
  retry: unknown;
  deadline: unknown;
}

type Answer = { ok: true; result: unknown } | { ok: false; code: string; message: string };

/** Answers remembered per caller, for retried calls. */
const ANSWERS_KEPT = 4096;
const CALLS_PER_EPOCH = 2 ** 32;

export class PeerCalls {
  private readonly outgoing = new Map<number, Outgoing>();
  /** Key `from/call`: the answer, or undefined while the call runs. */
  private readonly answers = new Map<string, Answer | undefined>();
  private seq = 0;

  constructor(private readonly deps: PeerCallsDeps) {}

  /** Calls `to` (this node runs the call itself, without messages); rejects with the target's error or E_TIMEOUT. */
  call<R = unknown>(to: string, req: PeerCall, timeoutMs = this.deps.timeoutMs): Promise<R> {
    if (to === this.deps.self) return this.deps.run(this.deps.self, req) as Promise<R>;
    const call = this.deps.epoch * CALLS_PER_EPOCH + (++this.seq % CALLS_PER_EPOCH);
    const { clock } = this.deps;
    return new Promise<R>((resolve, reject) => {
      const send = () => this.deps.send(to, { call, req });
      const out: Outgoing = {
        resolve: resolve as (r: unknown) => void,
        reject,
        retry: undefined,
        deadline: clock.setTimeout(() => {
          this.settle(call);
          reject(new MangroveError('E_TIMEOUT', `node ${to} did not answer ${req.op} within ${timeoutMs} ms; is it running and reachable?`));
        }, timeoutMs),
      };
      const again = () => {
        send();
        out.retry = clock.setTimeout(again, this.deps.retryMs);
      };
      this.outgoing.set(call, out);
      again();
    });
  }

  /** A `page.answer` arrived. */
  onAnswer(body: { call: number; ok: boolean; result?: unknown; code?: string; message?: string }): void {
    const out = this.settle(body.call);
    if (!out) return;
    if (body.ok) out.resolve(body.result);
    else out.reject(new MangroveError((body.code ?? 'E_INTERNAL') as ErrorCode, body.message ?? 'the call failed'));
  }

  /** A `page.call` arrived from `from`: run it once, answer it (again) whenever asked. */
  onCall(from: string, body: { call: number; req: PeerCall }): void {
    const key = `${from}/${body.call}`;
    if (this.answers.has(key)) {
      const known = this.answers.get(key);
      if (known) this.deps.answer(from, { call: body.call, ...known });
      return;
    }
    this.answers.set(key, undefined);
    if (this.answers.size > ANSWERS_KEPT) this.answers.delete(this.answers.keys().next().value!);
    const finish = (a: Answer) => {
      if (this.answers.has(key)) this.answers.set(key, a);
      this.deps.answer(from, { call: body.call, ...a });
    };
    this.deps.run(from, body.req).then(
      (result) => finish({ ok: true, result }),
      (err: unknown) => finish(err instanceof MangroveError ? { ok: false, code: err.code, message: err.message } : { ok: false, code: 'E_INTERNAL', message: String(err) }),
    );
  }

  /** Fails every call in flight (the node is stopping). */
  close(): void {
    this.failAll(new MangroveError('E_CLOSED', 'the node is stopping'));
  }

  /** Fails every call in flight with `err` (a rebuild quiesces the node: M14). Their targets may still run them. */
  failAll(err: MangroveError): void {
    for (const call of [...this.outgoing.keys()]) this.settle(call)?.reject(err);
  }

  private settle(call: number): Outgoing | undefined {
    const out = this.outgoing.get(call);
    if (!out) return undefined;
    this.outgoing.delete(call);
    this.deps.clock.clearTimeout(out.retry);
    this.deps.clock.clearTimeout(out.deadline);
    return out;
  }
}
