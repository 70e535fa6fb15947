/**
 * The package version, read from package.json at run time. Importing the
 * JSON would make tsc copy it into dist/; walking up from this file finds
 * it both from the sources (runtime/) and from the build (dist/runtime/).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'mangrove';
/** runtime/ or dist/runtime/ sit at most this deep below the package root. */
const levelsMax = 4;

let cached: { root: string | null; version: string } | undefined;

function findPackage(): { root: string | null; version: string } {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < levelsMax; i++) {
    dir = dirname(dir);
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === PACKAGE_NAME && typeof pkg.version === 'string') return (cached = { root: dir, version: pkg.version });
    } catch {
      // No package.json at this level: keep walking up.
    }
  }
  return (cached = { root: null, version: '0.0.0-unknown' });
}

export function packageVersion(): string {
  return findPackage().version;
}

/** The package's folder (where package.json is), from the sources or the build; null if it cannot be found. */
export function packageRoot(): string | null {
  return findPackage().root;
}

