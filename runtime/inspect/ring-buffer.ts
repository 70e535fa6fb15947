/**
 * The last `capacity` items pushed, oldest first: a history that cannot grow
 * (DESIGN.md: a limit on everything). Pushing past capacity overwrites the
 * oldest item in place, so a full buffer allocates nothing more.
 */
export class RingBuffer<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`a ring buffer holds at least 1 item (got ${capacity})`);
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(item: T): void {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = item;
      this.count++;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** The newest `n` items (all by default), oldest first. */
  last(n = this.count): T[] {
    const k = Math.max(0, Math.min(n, this.count));
    const out: T[] = [];
    for (let i = this.count - k; i < this.count; i++) out.push(this.items[(this.start + i) % this.capacity] as T);
    return out;
  }
}
