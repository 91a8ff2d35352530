import { open, readFile, unlink, mkdir, rename } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { errnoOf, LockedError } from '../errors.js';

interface Holder {
  pid: number;
  host: string;
  command: string;
  since: string;
}

export interface Lock {
  release(): Promise<void>;
}

/**
 * A lock file shared by every process using one dataDir (the daemon, cron's
 * `maas-mirror sync`, `gc`). Created with O_EXCL; a holder that no longer
 * runs on this host is taken over, so a crash never wedges the mirror.
 */
export async function acquireLock(file: string, command: string): Promise<Lock> {
  await mkdir(dirname(file), { recursive: true });
  const me: Holder = { pid: process.pid, host: hostname(), command, since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o644);
      await fh.writeFile(JSON.stringify(me) + '\n');
      await fh.close();
      return { release: () => releaseLock(file, me) };
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw err;
    }
    const holder = await readHolder(file);
    if (holder && isAlive(holder)) {
      throw new LockedError(file, `${holder.command}, pid ${holder.pid} on ${holder.host}, since ${holder.since}`);
    }
    // Stale: move it aside atomically so two processes cannot both take over.
    const aside = `${file}.stale-${process.pid}`;
    await rename(file, aside).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
  }
  const holder = await readHolder(file);
  throw new LockedError(file, holder ? `pid ${holder.pid} on ${holder.host}` : 'unknown holder');
}

const PROCESS_START = Date.now() - process.uptime() * 1000;

async function readHolder(file: string): Promise<Holder | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Holder;
  } catch {
    return undefined;
  }
}

function isAlive(h: Holder): boolean {
  if (h.host !== hostname()) return true; // cannot tell: assume it runs
  // In a container the daemon is often pid 1 on every start: a lock left by
  // an earlier life of "this" pid is stale.
  if (h.pid === process.pid) return Date.parse(h.since) >= PROCESS_START - 1000;
  try {
    process.kill(h.pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) === 'EPERM';
  }
}

async function releaseLock(file: string, me: Holder): Promise<void> {
  const holder = await readHolder(file);
  if (holder && holder.pid === me.pid && holder.since === me.since) {
    await unlink(file).catch(() => undefined);
  }
}

export async function readLockHolder(file: string): Promise<Holder | undefined> {
  const h = await readHolder(file);
  return h && isAlive(h) ? h : undefined;
}
