/**
 * kill -9 specs of the durable stores: runs a writer fixture (a child
 * process writing `dir` and printing a line per acknowledged write), feeds
 * each whole line to `onLine`, and sends SIGKILL as soon as `enough()` holds.
 * Rejects if the writer ends on its own or is not there within 20 s; the
 * child is killed by pid in every case.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const BOUND_MS = 20_000;

export function killWriterWhen(fixture: string, dir: string, onLine: (line: string) => void, enough: () => boolean, progress: () => string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', join('spec', 'fixtures', fixture), dir, '1000000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let killed = false;
  const kill = () => {
    if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  };
  return new Promise((resolve, reject) => {
    const bound = setTimeout(() => {
      kill();
      reject(new Error(`the writer acknowledged ${progress()} in ${BOUND_MS / 1000} s: ${err}`));
    }, BOUND_MS);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const complete = out.split('\n');
      out = complete.pop() ?? '';
      for (const line of complete) onLine(line);
      if (!killed && enough()) {
        killed = true;
        kill();
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('close', (code, signal) => {
      clearTimeout(bound);
      if (signal !== 'SIGKILL') reject(new Error(`the writer ended with code ${code}, signal ${signal}, before it was killed: ${err}`));
      else resolve();
    });
  });
}
