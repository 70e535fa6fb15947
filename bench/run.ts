/**
 * `npm run bench [-- NAME]`: runs every benchmark in bench/ (or the one
 * named), each in its own process so one cannot warm or slow another, and
 * passes its output through. `run.ts`, `*-peer.ts` helpers and shared/ are
 * not benchmarks. Arguments after the name go to that benchmark
 * (`npm run bench -- fs --quick`). Exits non-zero if any benchmark failed.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = dirname(fileURLToPath(import.meta.url));

function benchmarks(): string[] {
  return readdirSync(benchDir)
    .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('-peer.ts'))
    .map((f) => basename(f, '.ts'))
    .sort();
}

function run(name: string, args: string[] = []): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(benchDir, `${name}.ts`), ...args], { stdio: 'inherit' });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    child.on('error', (err) => {
      console.error(`bench ${name}: ${err.message}`);
      resolve(1);
    });
  });
}

const wanted = process.argv[2];
if (wanted !== undefined && !existsSync(join(benchDir, `${wanted}.ts`))) {
  console.error(`no benchmark named ${wanted}; there are: ${benchmarks().join(', ')}`);
  process.exit(2);
}
let failed = 0;
for (const name of wanted !== undefined ? [wanted] : benchmarks()) {
  if ((await run(name, wanted !== undefined ? process.argv.slice(3) : [])) !== 0) {
    console.error(`bench ${name} failed`);
    failed++;
  }
}
process.exit(failed > 0 ? 1 : 0);
