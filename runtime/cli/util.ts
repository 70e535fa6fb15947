/**
 * What every `mangrove` command shares: argument parsers, help examples,
 * output (human lines, or JSON with bytes and bigints as 0x-hex), and input
 * cut into the parts one write call carries.
 */
import { InvalidArgumentError } from 'commander';

/** Lines joined into one write: a whole trace as one string could exceed V8's limit. */
export const linesPerWrite = 1000;

export function integer(value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError('It must be an integer.');
  return Number(value);
}

export function positive(value: string): number {
  const n = integer(value);
  if (n < 1) throw new InvalidArgumentError('It must be at least 1.');
  return n;
}

export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** JSON for scripts: bytes as 0x-hex and bigints as 0x-hex (DESIGN.md, Conventions). */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return `0x${v.toString(16)}`;
    if (v instanceof Uint8Array) return `0x${Buffer.from(v).toString('hex')}`;
    // Buffer#toJSON runs before the replacer sees it.
    if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return `0x${Buffer.from((v as { data: number[] }).data).toString('hex')}`;
    }
    return v;
  });
}


/**
 * An error from a command whose exit status means something else, e.g.
 * `trace check`, where 1 says a rule was broken: a trace it cannot read must
 * exit with another status. The CLI reports `cause` and exits `exitCode`.
 */
export class ExitWith extends Error {
  constructor(
    override readonly cause: unknown,
    readonly exitCode: number,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

/** A byte stream cut into parts of `bytes` (the last shorter), in order: one write call each. */
export async function* chunksOf(source: AsyncIterable<Uint8Array | string>, bytes: number): AsyncGenerator<Buffer> {
  if (!Number.isInteger(bytes) || bytes < 1) throw new RangeError('bytes must be a positive integer');
  let buf = Buffer.allocUnsafe(bytes);
  let used = 0;
  for await (const piece of source) {
    const data = typeof piece === 'string' ? Buffer.from(piece) : piece;
    for (let at = 0; at < data.byteLength; ) {
      const n = Math.min(bytes - used, data.byteLength - at);
      buf.set(data.subarray(at, at + n), used);
      used += n;
      at += n;
      if (used === bytes) {
        yield buf;
        buf = Buffer.allocUnsafe(bytes);
        used = 0;
      }
    }
  }
  if (used > 0) yield buf.subarray(0, used);
}
