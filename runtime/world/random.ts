/**
 * Randomness, real and seeded. One seed drives a whole simulated run and
 * derives every other seed (`derive`), so a failure replays from one number.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { Random } from '../../bus/clock.js';

export class CryptoRandom implements Random {
  next(): number {
    return randomInt(0, 2 ** 48) / 2 ** 48;
  }
  int(n: number): number {
    return n <= 1 ? 0 : randomInt(0, n);
  }
  bytes(n: number): Uint8Array {
    return new Uint8Array(randomBytes(n));
  }
}

/** sfc32, seeded through splitmix32: small, fast and well distributed. */
export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const mix = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  private u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  next(): number {
    return this.u32() / 2 ** 32;
  }

  int(n: number): number {
    return n <= 1 ? 0 : Math.floor(this.next() * n);
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** A child generator whose stream depends only on this seed and the label. */
  derive(label: string): SeededRandom {
    let h = this.seed >>> 0;
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
    return new SeededRandom(h);
  }
}
