import { randomBytes } from 'node:crypto';
import { open, readFile, rename, symlink, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errnoOf, DiskFullError } from '../errors.js';
import { slices, splitTrailingSurrogate } from '../simplestreams/json-pieces.js';

/**
 * The one naming scheme for files and links being made beside their final name:
 * `<name>.tmp-<pid>-<random>`. A crash leaves them behind; gc knows them by `isTempName`.
 */
export function tempNameFor(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Also knows the shorter `<name>.tmp-<pid>[-<base36>]` names that earlier versions left. */
export function isTempName(name: string): boolean {
  return /\.tmp-\d+(?:-[0-9a-z]+)?$/.test(name);
}

/** fsync a directory so a rename or link inside it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface AtomicWriteOptions {
  /** Permission bits of the new file (default 0644). */
  readonly mode?: number;
  /** Leave an identical file alone: no write, so a full disk cannot fail an unchanged file. */
  readonly unlessSame?: boolean;
}

/** Writes a file so that readers see the old content or the new, never a torn one, and it survives a power cut. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, options: AtomicWriteOptions | number = {}): Promise<void> {
  const { mode = 0o644, unlessSame = false } = typeof options === 'number' ? { mode: options } : options;
  if (unlessSame) {
    const old = await readFile(file).catch(() => undefined);
    if (old?.equals(typeof data === 'string' ? Buffer.from(data) : data)) return;
  }
  const tmp = tempNameFor(file);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      if (typeof data === 'string') await writePieces(fh, slices(data, WRITE_SLICE_CHARS));
      else await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    await fsyncDir(dirname(file));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw rethrowDiskFull(err, file);
  }
}

/**
 * Points `link` at `target` with one rename over the old link, so a reader resolving it sees
 * the old target or the new, never neither; then makes the change durable.
 */
export async function replaceSymlink(link: string, target: string): Promise<void> {
  const tmp = tempNameFor(link);
  await symlink(target, tmp);
  try {
    await rename(tmp, link);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(link));
}

export async function writeFileDurable(file: string, data: string | Uint8Array): Promise<void> {
  try {
    await writeFile(file, data, { flush: true });
  } catch (err) {
    throw rethrowDiskFull(err, file);
  }
}

/**
 * writeFileDurable for a text given as pieces: written as they come, so a file of many MB is never
 * one string or buffer here.
 */
export async function writePiecesDurable(file: string, pieces: Iterable<string> | AsyncIterable<string>): Promise<void> {
  try {
    const fh = await open(file, 'w');
    try {
      await writePieces(fh, pieces);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw rethrowDiskFull(err, file);
  }
}

/** Characters of a long string written at a time. */
const WRITE_SLICE_CHARS = 256 * 1024;

/**
 * Text written piece by piece through one reused buffer: a fresh buffer per write is garbage the
 * size of the file, which V8 frees late (only once 64 MB of it has piled up, at worst).
 */
async function writePieces(fh: FileHandle, pieces: Iterable<string> | AsyncIterable<string>): Promise<void> {
  let buf = Buffer.allocUnsafe(0);
  let carry = '';
  const write = async (s: string) => {
    const need = Buffer.byteLength(s, 'utf8');
    if (buf.length < need) buf = Buffer.allocUnsafe(Math.max(need, 2 * buf.length));
    const length = buf.write(s, 0, 'utf8');
    for (let at = 0; at < length; ) {
      const { bytesWritten } = await fh.write(buf, at, length - at);
      if (bytesWritten === 0) throw new Error('a write made no progress');
      at += bytesWritten;
    }
  };
  for await (const piece of pieces) {
    const [whole, next] = splitTrailingSurrogate(carry + piece);
    carry = next;
    if (whole !== '') await write(whole);
  }
  if (carry !== '') await write(carry);
}

/** ENOSPC and EDQUOT become the one error an operator can act on. */
export function rethrowDiskFull(err: unknown, where: string): unknown {
  const code = errnoOf(err);
  return code === 'ENOSPC' || code === 'EDQUOT' ? new DiskFullError(where, { cause: err }) : err;
}

export async function exists(path: string): Promise<boolean> {
  try {
    const fh = await open(path, 'r');
    await fh.close();
    return true;
  } catch {
    return false;
  }
}
