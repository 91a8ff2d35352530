import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TftpAccessError } from './errors.js';
import { openFromDirectory, type TftpOpen } from './files.js';

const client = { address: '127.0.0.1', port: 1 };

describe('openFromDirectory', () => {
  let base: string;
  let root: string;
  let open: TftpOpen;

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'mm-tftp-files-'));
    root = join(base, 'root');
    await mkdir(join(root, 'grub'), { recursive: true });
    await writeFile(join(root, 'grub', 'grub.cfg'), 'set timeout=0\n');
    await writeFile(join(base, 'secret'), 'outside');
    await symlink('../secret', join(root, 'escape'));
    await symlink('grub/grub.cfg', join(root, 'inside-link'));
    await symlink(base, join(root, 'parent'));
    execFileSync('mkfifo', [join(root, 'fifo')]);
    // A link to the root must not make the root itself look like its own child.
    await symlink('/', join(root, 'slash'));
    open = openFromDirectory(root);
  });
  afterAll(() => rm(base, { recursive: true, force: true }));

  it('opens a file with its size and reads at a position', async () => {
    const f = await open('grub/grub.cfg', client);
    expect(f?.size).toBe(14);
    const buf = Buffer.alloc(7);
    expect(await f?.read(buf, 4)).toBe(7);
    expect(buf.toString()).toBe('timeout');
    expect(await f?.read(Buffer.alloc(100), 10)).toBe(4);
    expect(await f?.read(Buffer.alloc(10), 14)).toBe(0);
    await f?.close();
  });

  it('follows links that stay inside', async () => {
    const f = await open('inside-link', client);
    expect(f?.size).toBe(14);
    await f?.close();
  });

  it('refuses links that leave the directory', async () => {
    await expect(open('escape', client)).rejects.toBeInstanceOf(TftpAccessError);
    await expect(open('parent/secret', client)).rejects.toBeInstanceOf(TftpAccessError);
    await expect(open('slash/etc/hostname', client)).rejects.toBeInstanceOf(TftpAccessError);
  });

  it('fails while the root is missing, and recovers once it exists', async () => {
    const later = join(base, 'later');
    const openLater = openFromDirectory(later);
    await expect(openLater('f', client)).rejects.toThrow();
    await mkdir(later);
    await writeFile(join(later, 'f'), 'x');
    const f = await openLater('f', client);
    expect(f?.size).toBe(1);
    await f?.close();
  });

  it('answers undefined for missing files, directories and special files', async () => {
    expect(await open('nope', client)).toBeUndefined();
    expect(await open('grub/grub.cfg/x', client)).toBeUndefined();
    expect(await open('grub', client)).toBeUndefined();
    expect(await open('fifo', client)).toBeUndefined();
  });
});
