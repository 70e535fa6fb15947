/** A bench's whole-number option: undefined when not given; an Error naming the flag when it is not a whole number of at least `min`. */
export function wholeArg(flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} takes a whole number of at least ${min}, not ${JSON.stringify(v)}`);
  return n;
}
