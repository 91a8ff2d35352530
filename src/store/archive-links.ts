import { lstat, readdir, readlink, realpath, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { errnoOf } from '../errors.js';
import { isAbsolute, parts } from './archive-entries.js';
import type { RefusedEntry } from './archive-unpack.js';

/** Most hops the kernel follows before ELOOP. */
const MAX_HOPS = 40;

/**
 * Walks an unpacked <type>/<arch> folder and removes every symbolic link
 * whose resolution, done step by step as the kernel does it, ever leaves the
 * folder (or loops), whatever order its archives named the links in.
 * A link that merely dangles inside the folder stays.
 */
export async function removeEscapingLinks(dest: string, archiveOf: (entry: string) => string, onRefused: (r: RefusedEntry) => void): Promise<void> {
  const root = await realpath(dest);
  const found: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(rel === '' ? root : join(root, rel), { withFileTypes: true })) {
      const path = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isSymbolicLink()) found.push(path);
      else if (d.isDirectory()) await walk(path);
    }
  };
  await walk('');
  // Judged all before removing any: a link through a bad link is bad itself, whichever goes first.
  const bad: { entry: string; reason: string }[] = [];
  for (const entry of found) {
    const reason = await escapeReason(root, entry);
    if (reason !== undefined) bad.push({ entry, reason });
  }
  for (const { entry, reason } of bad) {
    await unlink(join(root, entry));
    onRefused({ archive: archiveOf(entry), entry, reason });
  }
}

/** Why the link at root/entry leaves root when followed, or undefined if it stays inside (or dangles inside). */
async function escapeReason(root: string, entry: string): Promise<string | undefined> {
  const inside = (p: string) => p === root || p.startsWith(root + sep);
  const target = await readlink(join(root, entry));
  const outside = `link resolves outside its folder (${target})`;
  if (isAbsolute(target)) return outside;
  // `at` is always a real directory inside root: only non-link steps move it.
  let at = dirname(join(root, entry));
  let steps = parts(target);
  let hops = 0;
  while (steps.length > 0) {
    const [step, ...rest] = steps as [string, ...string[]];
    steps = rest;
    if (step === '..') {
      at = dirname(at);
      if (!inside(at)) return outside;
      continue;
    }
    const next = join(at, step);
    let isLink: boolean;
    let isDirectory: boolean;
    try {
      const st = await lstat(next);
      isLink = st.isSymbolicLink();
      isDirectory = st.isDirectory();
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return undefined;
      throw err;
    }
    if (isLink) {
      if (++hops > MAX_HOPS) return `link loops (${target})`;
      const more = await readlink(next);
      if (isAbsolute(more)) return outside;
      steps = [...parts(more), ...steps];
    } else {
      if (!isDirectory && steps.length > 0) return undefined;
      at = next;
    }
  }
  return undefined;
}

