import { mkdtemp, readFile, readlink, readdir, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isTempName, replaceSymlink, tempNameFor, writeFileAtomic } from './fsutil.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const tmp = async () => {
  const d = await mkdtemp(join(tmpdir(), 'mm-fsutil-'));
  dirs.push(d);
  return d;
};

describe('fsutil', () => {
  it('names temp files one way, and knows the names earlier versions left', () => {
    const name = tempNameFor('/x/current');
    expect(isTempName(name)).toBe(true);
    expect(isTempName('current.tmp-4242')).toBe(true);
    expect(isTempName('abc.json.tmp-12-k3j9xz')).toBe(true);
    expect(isTempName('current')).toBe(false);
    expect(isTempName('a.tmp-notes.txt')).toBe(false);
  });

  it('writeFileAtomic replaces the content whole, with the mode asked, leaving no temp file', async () => {
    const d = await tmp();
    const f = join(d, 'k');
    await writeFileAtomic(f, 'one');
    await writeFileAtomic(f, 'two', { mode: 0o600 });
    expect(await readFile(f, 'utf8')).toBe('two');
    expect((await stat(f)).mode & 0o777).toBe(0o600);
    expect(await readdir(d)).toEqual(['k']);
  });

  it('writeFileAtomic with unlessSame leaves an identical file untouched', async () => {
    const d = await tmp();
    const f = join(d, 'k');
    await writeFileAtomic(f, 'same');
    const before = (await stat(f)).ino;
    await writeFileAtomic(f, Buffer.from('same'), { unlessSame: true });
    expect((await stat(f)).ino).toBe(before);
    await writeFileAtomic(f, 'other', { unlessSame: true });
    expect((await stat(f)).ino).not.toBe(before);
  });

  it('replaceSymlink swaps a link in one step', async () => {
    const d = await tmp();
    const link = join(d, 'current');
    await symlink('a', link);
    await replaceSymlink(link, 'b');
    expect(await readlink(link)).toBe('b');
    expect(await readdir(d)).toEqual(['current']);
  });
});
