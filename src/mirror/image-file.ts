import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, stat, unlink } from 'node:fs/promises';
import { basename } from 'node:path';
import { createGunzip } from 'node:zlib';
import { errnoOf, ImageRefusedError } from '../errors.js';
import type { BlobStore } from '../store/blobs.js';
import { rethrowDiskFull } from '../store/fsutil.js';
import { placeWithoutCopy } from './import-file.js';
import type { Layout } from '../store/layout.js';

/** Compressed bytes read to find the first tar header: real archives need a few KiB at most. */
const HEAD_BUDGET = 1 << 20;
const TAR_BLOCK = 512;
const ROOT_DD =
  'MAAS 3.8 imports single-file images from a simplestreams source only as root-tgz (a gzip\'d tar of the root filesystem); ' +
  'its model has no root-dd item, so disk images (Windows, ESXi, other root-dd builds) cannot be published in the boot source. ' +
  'Upload those to the region with "maas $PROFILE boot-resources create ... filetype=ddgz"';

export interface StoredFile {
  readonly sha256: string;
  readonly size: number;
  /** true when the store took the file's own inode (same filesystem, the operator's own file that no one else may write), false when it was cloned or copied. */
  readonly linked: boolean;
}

/**
 * Refuses what MAAS could not deploy as a `root-tgz`: an empty file, one that
 * is not gzip, a gzip stream that does not start with a valid tar header, and
 * disk images (root-dd). Reads only the head of the file.
 */
export async function checkRootTarball(file: string): Promise<number> {
  const st = await stat(file).catch((err: unknown) => {
    throw new ImageRefusedError(`cannot read ${file}: ${errnoOf(err) ?? String(err)}`);
  });
  if (!st.isFile()) throw new ImageRefusedError(`${file} is not a regular file`);
  if (st.size === 0) throw new ImageRefusedError(`${file} is empty; give the root-tgz (a .tar.gz of the root filesystem) packer-maas built`);
  if (/(^|[.-])dd(\.(gz|xz|bz2|zst))?$/i.test(basename(file))) throw new ImageRefusedError(`${file} looks like a disk image (root-dd): ${ROOT_DD}`);
  const fh = await open(file, 'r');
  let magic: Buffer;
  try {
    magic = Buffer.alloc(6);
    await fh.read(magic, 0, 6, 0);
  } finally {
    await fh.close();
  }
  if (magic[0] !== 0x1f || magic[1] !== 0x8b) {
    const other = magic.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))
      ? 'xz'
      : magic.subarray(0, 3).toString('latin1') === 'BZh'
        ? 'bzip2'
        : magic.readUInt32LE(0) === 0xfd2fb528
          ? 'zstd'
          : undefined;
    throw new ImageRefusedError(
      other
        ? `${file} is ${other}-compressed; MAAS reads root-tgz as gzip: recompress it (e.g. "${other === 'bzip2' ? 'bzcat' : other === 'xz' ? 'xzcat' : 'zstdcat'} FILE | gzip > root.tar.gz")`
        : `${file} is not gzip-compressed; give the root-tgz (a .tar.gz of the root filesystem) packer-maas built`,
    );
  }
  const head = await gunzipHead(file);
  if (head.length < TAR_BLOCK) throw new ImageRefusedError(`${file} is gzip but holds less than one tar block: not a tar archive`);
  if (head.every((b) => b === 0)) throw new ImageRefusedError(`${file} is an empty tar archive`);
  if (!validTarHeader(head)) {
    if (head[510] === 0x55 && head[511] === 0xaa) throw new ImageRefusedError(`${file} is a gzip'd disk image (root-dd), not a tar: ${ROOT_DD}`);
    throw new ImageRefusedError(`${file} is gzip but not a tar archive (its first header's checksum is wrong); give a .tar.gz of the root filesystem`);
  }
  return st.size;
}

/** The first tar block of a gzip file, reading at most HEAD_BUDGET compressed bytes. */
async function gunzipHead(file: string): Promise<Buffer> {
  const input = createReadStream(file, { start: 0, end: HEAD_BUDGET - 1, highWaterMark: 64 * 1024 });
  const gunzip = createGunzip();
  const chunks: Buffer[] = [];
  let got = 0;
  try {
    await new Promise<void>((resolve) => {
      const done = () => resolve();
      gunzip.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= TAR_BLOCK) done();
      });
      gunzip.on('end', done);
      gunzip.on('error', done);
      input.on('error', done);
      input.pipe(gunzip);
    });
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  return Buffer.concat(chunks).subarray(0, TAR_BLOCK);
}

/** POSIX/GNU/v7 header: the checksum field equals the sum of the header's bytes with that field as spaces. */
export function validTarHeader(h: Buffer): boolean {
  const field = h.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]{1,8}$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === parseInt(field, 8) && h[0] !== 0;
}

/**
 * Puts a file into the store, reading it once, by the rule folder imports
 * follow (placeWithoutCopy): a file this user owns that no one else may write
 * is hard-linked on the same filesystem (the store takes its inode, and
 * adopting makes it read-only); any other file is reflinked where the
 * filesystem can, else copied while hashed, and stays as it was. Either way
 * the blob is fsynced before its name is.
 */
export async function storeLocalFile(file: string, layout: Layout, store: BlobStore, onBytes?: (n: number) => void): Promise<StoredFile> {
  const before = await stat(file);
  await mkdir(layout.partialDir, { recursive: true });
  const tmp = `${layout.partialDir}/local-${randomBytes(6).toString('hex')}.part`;
  try {
    const placed = await placeWithoutCopy(file, tmp, before);
    const linked = placed === 'link';
    const { sha256, size } = placed ? await hashAndSync(tmp, onBytes) : await copyHashing(file, tmp, onBytes);
    if (size !== before.size) throw new ImageRefusedError(`${file} changed size while it was read; try again once it is complete`);
    if (await store.has(sha256, size)) await unlink(tmp);
    else await store.adopt(tmp, sha256);
    return { sha256, size, linked };
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw rethrowDiskFull(err, layout.partialDir);
  }
}

async function hashAndSync(file: string, onBytes?: (n: number) => void): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
    onBytes?.((chunk as Buffer).length);
  }
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { sha256: h.digest('hex'), size };
}

async function copyHashing(from: string, to: string, onBytes?: (n: number) => void): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  const out = await open(to, 'wx', 0o644);
  try {
    for await (const chunk of createReadStream(from, { highWaterMark: 1 << 20 })) {
      const b = chunk as Buffer;
      h.update(b);
      for (let off = 0; off < b.length; ) off += (await out.write(b, off, b.length - off)).bytesWritten;
      size += b.length;
      onBytes?.(b.length);
    }
    await out.sync();
  } finally {
    await out.close();
  }
  return { sha256: h.digest('hex'), size };
}

/** Small files (a manifest) go through the same door: written to a partial file, fsynced, adopted. */
export async function storeBytes(bytes: Buffer, layout: Layout, store: BlobStore): Promise<{ sha256: string; size: number }> {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (await store.has(sha256, bytes.length)) return { sha256, size: bytes.length };
  await mkdir(layout.partialDir, { recursive: true });
  const tmp = `${layout.partialDir}/local-${randomBytes(6).toString('hex')}.part`;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await store.adopt(tmp, sha256);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw rethrowDiskFull(err, layout.partialDir);
  }
  return { sha256, size: bytes.length };
}
