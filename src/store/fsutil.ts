import { open, rename, writeFile, unlink } from 'node:fs/promises';
import { errnoOf, DiskFullError } from '../errors.js';

/** fsync a directory so a rename or link inside it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes a file so that readers see the old content or the new, never a torn one. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw rethrowDiskFull(err, file);
  }
}

export async function writeFileDurable(file: string, data: string | Uint8Array): Promise<void> {
  try {
    await writeFile(file, data, { flush: true });
  } catch (err) {
    throw rethrowDiskFull(err, file);
  }
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
