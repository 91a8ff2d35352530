import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortedError, ExportBlobUnreadableError, ExportError, errnoOf } from '../errors.js';
import { fsyncDir, rethrowDiskFull } from '../store/fsutil.js';
import { dirname } from 'node:path';

const CHUNK = 1 << 20;

export interface CopyContext {
  readonly signal?: AbortSignal;
  readonly onBytes?: (n: number) => void;
}

/** sha256 and length of a file as it lies on the disk, read once. */
export async function hashOnDisk(file: string, ctx: CopyContext = {}): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: CHUNK })) {
    if (ctx.signal?.aborted) throw new AbortedError();
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Whether `file` already holds exactly these bytes (a resumed export skips it). */
export async function holdsVerified(file: string, sha256: string, size: number, ctx: CopyContext): Promise<boolean> {
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile() || st.size !== size) return false;
  const got = await hashOnDisk(file, ctx);
  return got.sha256 === sha256;
}

/**
 * Copies a blob to `target`: streamed to `target.part`, fsynced, read back
 * and checked (size and sha256) before the rename that makes it count. A
 * run stopped halfway leaves only a .part, which the next run overwrites.
 * The read-back comes through the page cache, so it proves what the kernel
 * holds for the file after a successful fsync (a torn copy, a blob that
 * changed while copied, a write error the disk reported), not the medium's
 * own later faithfulness. A blob that cannot be read is the store's trouble
 * (ExportBlobUnreadableError, `path` names it), not the disk's.
 */
export async function copyVerified(from: string, target: string, sha256: string, size: number, ctx: CopyContext & { path: string }): Promise<void> {
  const src = await open(from, 'r').catch((err: unknown) => {
    throw new ExportBlobUnreadableError(ctx.path, from, errnoOf(err) === 'ENOENT' ? 'not in the store' : (errnoOf(err) ?? String(err)), { cause: err });
  });
  const part = `${target}.part`;
  try {
    const counter = new Transform({
      transform(chunk: Buffer, _e, done) {
        if (ctx.signal?.aborted) return done(new AbortedError());
        ctx.onBytes?.(chunk.length);
        done(null, chunk);
      },
    });
    const input = src.createReadStream({ highWaterMark: CHUNK });
    let readFailed: unknown;
    input.once('error', (err) => (readFailed = err));
    await pipeline(input, counter, createWriteStream(part, { flags: 'w' })).catch((err: unknown) => {
      if (readFailed !== undefined) throw new ExportBlobUnreadableError(ctx.path, from, errnoOf(readFailed) ?? String(readFailed), { cause: readFailed });
      throw err;
    });
    const fh = await open(part, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const got = await hashOnDisk(part, { signal: ctx.signal });
    if (got.size !== size || got.sha256 !== sha256) {
      throw new ExportError(
        `${part} reads back as ${got.size} bytes with sha256 ${got.sha256}, expected ${size} bytes with ${sha256}: ` +
          'the copy does not match (the disk reported a bad write, or the store\'s file changed while it was copied). ' +
          'Run "maas-mirror verify", then export again, or try another disk',
      );
    }
    await rename(part, target);
    await fsyncDir(dirname(target));
  } catch (err) {
    await unlink(part).catch(() => undefined);
    if (err instanceof AbortedError || err instanceof ExportError || err instanceof ExportBlobUnreadableError) throw err;
    const e = rethrowDiskFull(err, dirname(target));
    if (e !== err) throw e;
    throw new ExportError(`cannot write ${target}: ${errnoOf(err) ?? (err as Error).message}; check the disk is mounted writable`, { cause: err });
  } finally {
    await src.close().catch(() => undefined);
  }
}
