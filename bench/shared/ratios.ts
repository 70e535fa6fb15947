/**
 * A bench's ratios against its peers: each `[name, ours, theirs]` is the
 * figure `ours` over the figure `theirs`, three significant digits, left out
 * when either was not measured.
 */
export function ratiosOf(figures: Record<string, number>, pairs: readonly (readonly [string, string, string])[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, a, b] of pairs) {
    if (figures[a] > 0 && figures[b] > 0) out[name] = Number((figures[a] / figures[b]).toPrecision(3));
  }
  return out;
}
