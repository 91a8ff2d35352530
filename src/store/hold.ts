import { readFile, unlink } from 'node:fs/promises';
import { errnoOf } from '../errors.js';
import { writeFileAtomic } from './fsutil.js';
import type { Layout } from './layout.js';

/**
 * Left by `rollback` to an older snapshot: syncs keep `current` there until
 * upstream offers something other than the tree the operator rolled away from
 * (the newest snapshot's contents), or until `rollback` is run to the newest.
 * Without it the next scheduled sync would publish the rolled-away images again.
 */
export interface Hold {
  /** The snapshot rolled back to. */
  readonly snapshot: string;
  /** The newest snapshot when the rollback was made, and the fingerprint of what it lists. */
  readonly newest: string;
  readonly newestFingerprint: string;
  readonly since: string;
}

export async function readHold(layout: Layout): Promise<Hold | undefined> {
  let text: string;
  try {
    text = await readFile(layout.holdFile, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const h = JSON.parse(text) as Partial<Hold>;
    if (typeof h.snapshot === 'string' && typeof h.newest === 'string' && typeof h.newestFingerprint === 'string' && typeof h.since === 'string') {
      return h as Hold;
    }
  } catch {
    // Said below.
  }
  throw new Error(`${layout.holdFile} is not a rollback hold; delete it (syncs then publish as usual) or run "maas-mirror rollback" again`);
}

export async function writeHold(layout: Layout, hold: Hold): Promise<void> {
  await writeFileAtomic(layout.holdFile, JSON.stringify(hold, null, 1) + '\n');
}

export async function clearHold(layout: Layout): Promise<void> {
  await unlink(layout.holdFile).catch((err: unknown) => {
    if (errnoOf(err) !== 'ENOENT') throw err;
  });
}
