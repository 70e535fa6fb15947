/**
 * Mount processes and outside programs for the mount's specs and bench
 * (SPEC.md M28): `mangrove mount --foreground` from dist/ as a child of
 * this process, up once the kernel lists the mount, stopped by pid
 * (SIGTERM: it closes its files and unmounts), with `fusermount -uz` after
 * as the last word; and `run`, which runs a program (git, sqlite3, fio…)
 * with a deadline and keeps what it printed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CLI } from './run-cli.js';
import { until } from './until.js';

export interface MountProcess {
  dir: string;
  child: ChildProcess;
  /** What the mount logged (stderr) and printed. */
  output(): string;
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Processes started here and not yet ended: `stopAll` ends them by pid. */
const started = new Set<ChildProcess>();

export function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir);
}

/** Mounts `fileset` on `dir` (an empty directory) through the nodes at `endpoints`, in the foreground of a child process. */
export async function mountOn(dir: string, endpoints: string[], opts: { fileset?: string; timeoutMs?: number } = {}): Promise<MountProcess> {
  const args = [CLI, 'mount', '--foreground', '--fileset', opts.fileset ?? 'default', ...endpoints.flatMap((e) => ['--connect', e]), dir];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  child.on('exit', () => started.delete(child));
  const m: MountProcess = { dir, child, output: () => out };
  await until(`a mount on ${dir}`, () => {
    if (child.exitCode !== null) throw new Error(`the mount process exited (${child.exitCode}): ${out}`);
    return isMounted(dir);
  }, { timeoutMs: opts.timeoutMs ?? 30_000, pollMs: 100 });
  return m;
}

/** Stops a mount by pid (SIGTERM), then SIGKILL and fusermount -uz if it does not go. */
export async function unmountProcess(m: MountProcess, waitMs = 15_000): Promise<void> {
  if (m.child.exitCode === null && m.child.signalCode === null) {
    m.child.kill('SIGTERM');
    const gone = await until('the mount process to exit', () => m.child.exitCode !== null || m.child.signalCode !== null, { timeoutMs: waitMs, pollMs: 50 }).catch(() => false);
    if (!gone) m.child.kill('SIGKILL');
  }
  if (isMounted(m.dir)) spawnSync('fusermount', ['-uz', m.dir]);
}

/** Ends every mount process started here (for `after`). */
export async function stopAll(dirs: string[]): Promise<void> {
  for (const child of [...started]) child.kill('SIGKILL');
  for (const dir of dirs) if (isMounted(dir)) spawnSync('fusermount', ['-uz', dir]);
}

/** Runs `cmd` with `args` (in `cwd`), killed after `timeoutMs`; never rejects for a failed program. */
export function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; input?: string } = {}): Promise<Ran> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    started.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code: -1, stdout, stderr: `${stderr}${String(err)}`, ms: Date.now() - t0 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code: code ?? -1, stdout, stderr: stderr + (signal ? ` (killed by ${signal})` : ''), ms: Date.now() - t0 });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** `run` in a shell. */
export function sh(script: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<Ran> {
  return run('bash', ['-c', script], opts);
}
