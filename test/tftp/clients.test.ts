import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTree, random, run, sha256, startServer, tmpOut, type Running } from './helpers.js';

/**
 * Real clients against the server on loopback. They must be installed (CI
 * installs tftp-hpa, atftp and curl); a missing one fails these tests.
 */

const ITEM = 'ubuntu/amd64/ga-24.04/noble/stable/boot-initrd';
const files = {
  'grubx64.efi': random(180_123),
  [ITEM]: random(5 * 1024 * 1024 + 77),
  // A whole number of 512- and 1024-byte blocks: the transfer must end with an empty DATA.
  'exact.bin': random(512 * 1024),
  'grub/grub.cfg': Buffer.from('set default=0\r\nmenuentry "x" {\n\tlinux /k\r}\n'.repeat(40)),
  // 40 MiB at 512-byte blocks is 81920 blocks: the block number wraps past 65535.
  'big.bin': random(40 * 1024 * 1024),
};

let tree: Awaited<ReturnType<typeof makeTree>>;
let out: Awaited<ReturnType<typeof tmpOut>>;
let srv: Running;
let n = 0;

beforeAll(async () => {
  tree = await makeTree(files);
  out = await tmpOut();
  srv = await startServer(tree.dir);
});
afterAll(async () => {
  await srv.stop();
  await tree.cleanup();
  await out.cleanup();
});

const outFile = () => join(out.dir, `o${n++}`);
const expectSame = async (path: string, name: keyof typeof files) =>
  expect(sha256(await readFile(path))).toBe(sha256(files[name]));

describe('tftp-hpa client', () => {
  it.each(['grubx64.efi', ITEM, 'exact.bin'] as const)('gets %s in binary mode', async (name) => {
    const o = outFile();
    await run('tftp', ['127.0.0.1', String(srv.port), '-m', 'binary', '-c', 'get', name, o]);
    await expectSame(o, name);
  });

  it('gets a text file in netascii mode and converts it back to the same bytes', async () => {
    const o = outFile();
    await run('tftp', ['127.0.0.1', String(srv.port), '-m', 'netascii', '-c', 'get', 'grub/grub.cfg', o]);
    await expectSame(o, 'grub/grub.cfg');
  });

  it('gets a 40 MiB file in 512-byte lock-step across the block-number wrap', async () => {
    const o = outFile();
    const before = srv.ends.length;
    await run('tftp', ['127.0.0.1', String(srv.port), '-m', 'binary', '-c', 'get', 'big.bin', o], 25_000);
    await expectSame(o, 'big.bin');
    expect(srv.ends.slice(before).find((e) => e.file === 'big.bin')).toMatchObject({ result: 'ok', bytes: 40 * 1024 * 1024 });
  });

  it('reports a missing file', async () => {
    const o = outFile();
    const { stderr, stdout } = await run('tftp', ['127.0.0.1', String(srv.port), '-m', 'binary', '-c', 'get', 'missing', o]);
    expect(stderr + stdout).toMatch(/Error code 1/);
  });
});

describe('atftp client', () => {
  const atftp = (name: string, o: string, options: string[]) =>
    run('atftp', [...options.flatMap((x) => ['--option', x]), '--get', '-r', name, '-l', o, '127.0.0.1', String(srv.port)]);

  it.each([
    ['no options', []],
    ['blksize 1468 and tsize', ['blksize 1468', 'tsize 0']],
    ['blksize 1468, tsize and windowsize 16', ['blksize 1468', 'tsize 0', 'windowsize 16']],
    ['blksize 8192 and windowsize 8', ['blksize 8192', 'windowsize 8']],
  ])('gets the bootloader and the item with %s', async (_label, options) => {
    for (const name of ['grubx64.efi', ITEM] as const) {
      const o = outFile();
      await atftp(name, o, options);
      await expectSame(o, name);
    }
  });

  it('gets a file of whole blocks with a window', async () => {
    const o = outFile();
    await atftp('exact.bin', o, ['blksize 1024', 'windowsize 16']);
    await expectSame(o, 'exact.bin');
  });
});

describe('curl client', () => {
  const curl = (name: string, o: string, args: string[]) =>
    run('curl', ['-sS', '--fail', ...args, '-o', o, `tftp://127.0.0.1:${srv.port}/${name}`]);

  it.each([
    ['default options (tsize)', []],
    ['blksize 1468', ['--tftp-blksize', '1468']],
    ['no options', ['--tftp-no-options']],
  ])('gets the bootloader and the item with %s', async (_label, args) => {
    for (const name of ['grubx64.efi', ITEM] as const) {
      const o = outFile();
      await curl(name, o, args);
      await expectSame(o, name);
    }
  });

  it('fails on a missing file', async () => {
    await expect(curl('missing', outFile(), [])).rejects.toThrow();
  });
});
