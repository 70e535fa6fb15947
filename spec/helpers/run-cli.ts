/** Runs the built `mangrove` command (dist/; npm test builds it first; $MANGROVE_CLI names another build). */
import { execFile } from 'node:child_process';
import { expect } from 'chai';
import { resolve } from 'node:path';

export const CLI = process.env.MANGROVE_CLI ? resolve(process.env.MANGROVE_CLI) : resolve('dist', 'runtime', 'cli', 'main.js');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function mangrove(args: string[], timeoutMs = 10_000): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/** One spec per bad command line: each is refused with exit status 2 and stderr matching its pattern, before anything is sent. */
export function itRefusesUsage(usage: readonly [what: string, args: string[], stderr: RegExp][]): void {
  for (const [what, args, expected] of usage) {
    it(`refuses ${what} with exit 2, before sending anything`, async () => {
      const r = await mangrove(args);
      expect(r.stderr).to.match(expected);
      expect(r.code).to.equal(2);
      expect(r.stdout).to.equal('');
    });
  }
}
