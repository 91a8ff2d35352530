import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, stat, unlink, writeFile } from 'node:fs/promises';
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

/** An unreadable lock younger than this is a holder still writing it, or one we cannot judge: held. */
const UNREADABLE_GRACE_MS = 10_000;
/** A takeover guard older than this was left by a process that died mid-takeover. */
const TAKEOVER_STALE_MS = 30_000;

/**
 * A lock file shared by every process using one dataDir (the daemon, cron's
 * `maas-mirror sync`, `gc`). It appears with its content in one step (a
 * hard link of a complete temporary file), so nobody ever reads a half-made
 * lock. A holder that no longer runs on this host is taken over, one taker at
 * a time, so a crash never wedges the mirror and two takers never both win.
 */
export async function acquireLock(file: string, command: string): Promise<Lock> {
  await mkdir(dirname(file), { recursive: true });
  const me: Holder = { pid: process.pid, host: hostname(), command, since: new Date().toISOString() };
  const text = JSON.stringify(me) + '\n';
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, text, { mode: 0o644 });
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await link(tmp, file);
        return { release: () => releaseLock(file, me) };
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
      const seen = await readText(file);
      if (seen === undefined) continue; // released meanwhile: try again
      const holder = parseHolder(seen);
      if (holder === undefined) {
        if ((await ageMs(file)) < UNREADABLE_GRACE_MS) throw new LockedError(file, 'a process that has not finished writing the lock file');
      } else if (isAlive(holder)) {
        throw new LockedError(file, `${holder.command}, pid ${holder.pid} on ${holder.host}, since ${holder.since}`);
      }
      await takeOver(file, seen);
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  const holder = parseHolder((await readText(file)) ?? '');
  throw new LockedError(file, holder ? `pid ${holder.pid} on ${holder.host}` : 'unknown holder');
}

/**
 * Removes a stale lock, but only the one judged stale: under a guard file
 * made with O_EXCL, and only if the lock still holds the same text (nobody
 * else can replace a stale lock while we hold the guard).
 */
async function takeOver(file: string, staleText: string): Promise<void> {
  const guard = `${file}.takeover`;
  let mine: number;
  try {
    const fh = await open(guard, 'wx', 0o644);
    mine = (await fh.stat()).ino;
    await fh.close();
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err;
    const st = await stat(guard).catch(() => undefined);
    // Left by a taker that died: removed only if it is still that same old file.
    if (st && Date.now() - st.mtimeMs > TAKEOVER_STALE_MS) await unlinkIfSame(guard, st.ino);
    else await new Promise((r) => setTimeout(r, 20));
    return;
  }
  try {
    if ((await readText(file)) === staleText) await unlink(file).catch(() => undefined);
  } finally {
    // Only our own guard: another taker may have judged ours stale and made its own meanwhile.
    await unlinkIfSame(guard, mine);
  }
}

async function unlinkIfSame(path: string, ino: number): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (st?.ino === ino) await unlink(path).catch(() => undefined);
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

async function ageMs(file: string): Promise<number> {
  try {
    return Date.now() - (await stat(file)).mtimeMs;
  } catch {
    return Infinity;
  }
}

function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Holder;
    return typeof h?.pid === 'number' && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

const PROCESS_START = Date.now() - process.uptime() * 1000;

async function readHolder(file: string): Promise<Holder | undefined> {
  const text = await readText(file);
  return text === undefined ? undefined : parseHolder(text);
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
