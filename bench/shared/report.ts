/**
 * What every bench reports besides its figures: progress and failures on
 * stderr (`say`, `fail`), the failures kept for the last stdout line
 * (`errors`), and a signal to a process that may be gone already (`killPid`).
 */
export class BenchReport {
  readonly errors: string[] = [];

  constructor(private readonly bench: string) {}

  readonly say = (line: string): void => {
    console.error(`bench ${this.bench}: ${line}`);
  };

  /** A part that failed: said, and kept for `errors`. */
  readonly fail = (part: string, text: string): void => {
    const line = `${part}: ${text}`.replace(/\s+/g, ' ').trim();
    this.errors.push(line);
    this.say(line);
  };
}

export const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export function killPid(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
