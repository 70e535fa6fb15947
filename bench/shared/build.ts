/**
 * What benches that start node processes share: the nodes run dist/, so it
 * is rebuilt first when a source under it is newer.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root. */
export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Runs `npm run build` when dist/ is older than the sources (its output on
 * stderr: stdout is a bench's report); `say` tells the user, `fail` ends
 * the bench when the build fails.
 */
export function ensureBuild(say: (line: string) => void, fail: (why: string) => void): void {
  let built = 0;
  try {
    built = statSync(join(root, 'dist/runtime/cli/main.js')).mtimeMs;
  } catch {
    // never built
  }
  const newest = Math.max(...['actors', 'machines', 'bus', 'runtime'].map((d) => newestSource(join(root, d))));
  if (built >= newest) return;
  say('dist/ is older than the sources; running npm run build');
  const r = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 2, 2], timeout: 120_000 });
  if (r.status !== 0) fail(`npm run build failed (${r.error?.message ?? `exit ${r.status}`}); the nodes run the dist/ there is`);
}
