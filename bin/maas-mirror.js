#!/usr/bin/env node
// Production runs the compiled dist/ (npm run build). A development checkout
// without a build (or with MAAS_MIRROR_FROM_SOURCE=1) runs the TypeScript
// sources through tsx, a dev dependency, so `npm ci && npm exec maas-mirror`
// works straight away; without either, it says how to build.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli', 'main.js');
if (existsSync(built) && !process.env.MAAS_MIRROR_FROM_SOURCE) {
  await import(pathToFileURL(built).href);
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write(
      `maas-mirror: no build in ${join(root, 'dist')} and no tsx to run the sources.\n` +
        `Build it: cd ${root} && npm ci && npm run build && npm prune --omit=dev\n`,
    );
    process.exit(2);
  }
  register();
  await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
}
