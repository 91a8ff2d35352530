import { randomBytes } from 'node:crypto';
import { readdir, readlink, rm, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { errnoOf, NotFoundError } from '../errors.js';
import { replaceSymlink } from './fsutil.js';
import type { Layout } from './layout.js';
import { readManifest, type SnapshotManifest } from './manifest.js';

/** Sortable by time, to the millisecond: 20261126T201500123Z-1a2b3c */
export const SNAPSHOT_ID_RE = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;

/** A new id that sorts after every existing one, even if the clock stepped back. */
export function newSnapshotId(now = new Date(), existing: readonly string[] = []): string {
  let t = now.getTime();
  const last = existing.at(-1);
  if (last) t = Math.max(t, idTime(last) + 1);
  const stamp = new Date(t).toISOString().replace(/[-:.]/g, '');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

function idTime(id: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z/.exec(id);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, +m[7]!) : 0;
}

export interface SnapshotInfo {
  readonly id: string;
  readonly created: string;
  readonly current: boolean;
  readonly files: number;
  readonly bytes: number;
}

export async function currentSnapshotId(layout: Layout): Promise<string | undefined> {
  try {
    const id = basename(await readlink(layout.current));
    return SNAPSHOT_ID_RE.test(id) ? id : undefined;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'EINVAL') return undefined;
    throw err;
  }
}

export async function snapshotIds(layout: Layout): Promise<string[]> {
  try {
    return (await readdir(layout.snapshotsDir)).filter((n) => SNAPSHOT_ID_RE.test(n)).sort();
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw err;
  }
}

export async function listSnapshots(layout: Layout): Promise<SnapshotInfo[]> {
  const current = await currentSnapshotId(layout);
  const out: SnapshotInfo[] = [];
  for (const id of await snapshotIds(layout)) {
    const m = await readManifest(layout, id).catch(() => undefined);
    if (!m) continue;
    const files = Object.values(m.files);
    out.push({
      id,
      created: m.created,
      current: id === current,
      files: files.length,
      bytes: files.reduce((n, f) => n + f.size, 0),
    });
  }
  return out;
}

/**
 * Points `current` at a snapshot: a new symlink renamed over the old one, so
 * a reader resolving `current` sees the old tree or the new, never neither.
 */
export async function switchCurrent(layout: Layout, id: string): Promise<void> {
  if (!(await snapshotIds(layout)).includes(id)) {
    throw new NotFoundError(`no snapshot ${id}; list them with "maas-mirror snapshots"`);
  }
  await replaceSymlink(layout.current, join('snapshots', id));
}

/** Deletes the oldest snapshots beyond `keep`, never the current one. Returns the ids removed. */
export async function pruneSnapshots(layout: Layout, keep: number): Promise<string[]> {
  const current = await currentSnapshotId(layout);
  const ids = await snapshotIds(layout);
  // A tree without its manifest is a crash's leftover: no reader lists it, and it counts for nothing.
  const complete: string[] = [];
  const orphans: string[] = [];
  for (const id of ids) {
    const listed = await stat(layout.manifest(id)).then(() => true, () => false);
    (listed || id === current ? complete : orphans).push(id);
  }
  const doomed = [...orphans, ...complete.slice(0, Math.max(0, complete.length - keep)).filter((id) => id !== current)];
  for (const id of doomed) {
    // Manifest first: a snapshot without one is ignored by every reader.
    await unlink(layout.manifest(id)).catch(() => undefined);
    await rm(layout.snapshot(id), { recursive: true, force: true });
  }
  return doomed;
}

export async function keptManifests(layout: Layout): Promise<SnapshotManifest[]> {
  const out: SnapshotManifest[] = [];
  for (const id of await snapshotIds(layout)) {
    const m = await readManifest(layout, id).catch(() => undefined);
    if (m) out.push(m);
  }
  return out;
}
