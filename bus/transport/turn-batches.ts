/**
 * Batching on the wire: the envelopes a process sends one link in one turn
 * of the event loop leave as one ZeroMQ message of one frame, their CBOR
 * concatenated (a CBOR sequence, bus/codec.ts `decodeFrame`). ZeroMQ's cost
 * is per message part (a call into the addon, a zero-copy buffer released
 * later on the main thread, a wake-up of its I/O thread, a promise on each
 * side): one part of eight 4 KiB envelopes costs about half what eight
 * parts do, and little more than one envelope alone. Each envelope still has
 * its own answer, error and timeout, because batching happens below them.
 *
 * A batch is cut when the turn ends (`setImmediate`: after the I/O that
 * produced the sends, so the replies to everything one message brought in
 * go back together), or earlier: at the bus's limit on envelopes per frame
 * (bus/envelope.ts), so a receiver never sees a frame it would refuse, and
 * at `BATCH_BYTES`, past which the cost per message no longer shows and a
 * bigger batch would only keep the receiver idle while the sender works
 * (smaller messages let the two processes overlap). Order per link is kept:
 * a batch cut early leaves before the envelopes that follow it.
 */
import { assert } from '../assert.js';
import { limits } from '../envelope.js';

/** Bytes of frames a batch grows to before it is cut (a bigger frame travels alone). */
export const BATCH_BYTES = 64 * 1024;

interface Batch<To, Item> {
  to: To;
  frames: Uint8Array[];
  /** What each frame carries, for the sender to fail item by item. */
  items: Item[];
  bytes: number;
}

/** Sends one batch to `to`: one frame, carrying `items` in order. */
export type BatchSender<To, Item> = (to: To, frame: Uint8Array, items: Item[]) => void;

export class TurnBatches<To, Item> {
  private batches = new Map<string, Batch<To, Item>>();
  private scheduled = false;
  /** Messages sent so far and the envelopes they carried: envelopes / messages is what batching saves. */
  readonly counts = { messages: 0, frames: 0 };

  constructor(private readonly sender: BatchSender<To, Item>) {}

  /** Whether the link named `key` has a batch this turn (it took a frame already). */
  has(key: string): boolean {
    return this.batches.has(key);
  }

  /**
   * Queues `frame` (carrying `item`) for the link named `key`, which `to`
   * reaches; `to` may be left out while the link has a batch (`has`): a
   * batch cut early passes its link to the next one.
   */
  add(key: string, to: To | undefined, frame: Uint8Array, item: Item): void {
    let batch = this.batches.get(key);
    const link = to ?? batch?.to;
    assert(link !== undefined, 'a frame for a link with no batch this turn says where the link goes');
    if (batch !== undefined && (batch.frames.length >= limits.envelopesPerFrameMax || batch.bytes + frame.byteLength > BATCH_BYTES)) {
      this.batches.delete(key);
      this.send(batch);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { to: link, frames: [], items: [], bytes: 0 };
      this.batches.set(key, batch);
    }
    batch.frames.push(frame);
    batch.items.push(item);
    batch.bytes += frame.byteLength;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Sends every batch now. */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.batches.size === 0) return;
    const all = this.batches;
    this.batches = new Map();
    for (const batch of all.values()) this.send(batch);
  };

  private send(batch: Batch<To, Item>): void {
    this.counts.messages++;
    this.counts.frames += batch.frames.length;
    this.sender(batch.to, batch.frames.length === 1 ? batch.frames[0] : Buffer.concat(batch.frames, batch.bytes), batch.items);
  }

  /** Forgets what waits: the link is closing (its owner fails or forgets the items itself). */
  clear(): void {
    this.batches = new Map();
  }
}
