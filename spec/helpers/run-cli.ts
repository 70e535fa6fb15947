/** Runs the built `mangrove` command (dist/; npm test builds it first). */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

export const CLI = resolve('dist', 'runtime', 'cli', 'main.js');

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
