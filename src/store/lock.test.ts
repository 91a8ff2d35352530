import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockedError } from '../errors.js';
import { acquireLock } from './lock.js';

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-lock-'));
  file = join(dir, 'lock');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A pid that ran on this host and has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  return r.pid!;
}

const holder = (pid: number, command = 'sync') => JSON.stringify({ pid, host: hostname(), command, since: new Date().toISOString() }) + '\n';

describe('acquireLock', () => {
  it('refuses a second holder, naming the first, and frees the lock on release', async () => {
    const first = await acquireLock(file, 'sync (cron)');
    const err = await acquireLock(file, 'gc').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockedError);
    expect((err as LockedError).message).toContain(`sync (cron), pid ${process.pid}`);
    await first.release();
    await (await acquireLock(file, 'gc')).release();
  });

  it('treats a fresh lock file it cannot read yet as held, and an old one as stale', async () => {
    await writeFile(file, '');
    await expect(acquireLock(file, 'sync')).rejects.toBeInstanceOf(LockedError);
    const old = new Date(Date.now() - 60_000);
    await utimes(file, old, old);
    const lock = await acquireLock(file, 'sync');
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid, command: 'sync' });
    await lock.release();
  });

  it('lets exactly one of many concurrent takers take over a stale lock', async () => {
    await writeFile(file, holder(deadPid()));
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => acquireLock(file, `taker ${i}`)));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(LockedError);
    const text = JSON.parse(await readFile(file, 'utf8')) as { command: string };
    expect(text.command).toMatch(/^taker \d$/);
  });

  it('leaves no temporary files behind', async () => {
    const lock = await acquireLock(file, 'sync');
    await acquireLock(file, 'gc').catch(() => undefined);
    await lock.release();
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(dir)).toEqual([]);
  });
});
