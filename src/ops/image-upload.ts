import { randomBytes } from 'node:crypto';
import { mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Request, Response } from 'express';
import type { Config } from '../config/load.js';
import { isMirrorError, UploadTooLargeError, UsageError, type MirrorError } from '../errors.js';
import { sendError } from '../http/errors.js';
import type { Logger } from '../log.js';
import { addImage } from '../mirror/images.js';
import { Layout } from '../store/layout.js';

export interface ImageUploadDeps {
  readonly config: () => Config;
  readonly logger: Logger;
  readonly onPublished?: (snapshotId: string) => void | Promise<void>;
}

/**
 * POST /api/v1/images?os=…&release=…&arch=…[&title=…&subarch=…&label=…], the
 * body being the root tarball. It is streamed to a partial file within
 * images.maxUploadBytes, then goes through `images add` (same checks, same
 * publish); the answer is what `images add --json` prints.
 */
export async function handleImageUpload(deps: ImageUploadDeps, req: Request, res: Response): Promise<void> {
  const config = deps.config();
  const client = req.socket?.remoteAddress;
  const q = (k: string) => (typeof req.query[k] === 'string' ? (req.query[k] as string) : undefined);
  const [os, release, arch] = [q('os'), q('release'), q('arch')];
  if (!os || !release || !arch) {
    refuse(req, res, new UsageError('give the image as ?os=…&release=…&arch=… (and optionally title, subarch, label), the root tarball as the body'), deps.logger);
    return;
  }
  const limit = config.images.maxUploadBytes;
  if (Number(req.headers['content-length'] ?? 0) > limit) {
    refuse(req, res, new UploadTooLargeError(limit), deps.logger);
    req.resume();
    return;
  }
  const layout = new Layout(config.dataDir);
  await mkdir(layout.partialDir, { recursive: true });
  const file = join(layout.partialDir, `upload-${randomBytes(6).toString('hex')}.part`);
  try {
    await receive(req, file, limit);
    const result = await addImage(
      { config, logger: deps.logger, onPublished: deps.onPublished },
      { file, os, release, arch, title: q('title'), subarch: q('subarch'), label: q('label') },
    );
    res.status(201).type('application/json').send(JSON.stringify(result, null, 1) + '\n');
  } catch (err) {
    if (!isMirrorError(err)) throw err;
    deps.logger.warn({ code: err.code, client }, `image upload refused: ${err.message}`);
    refuse(req, res, err, deps.logger);
  } finally {
    await unlink(file).catch(() => undefined);
  }
}

/**
 * The body into `file`, fsynced, one chunk at a time (the request is paused
 * while a chunk is written). Past `limit` bytes reading stops at once; the
 * request is left paused, not destroyed, so the 413 still reaches the client.
 */
async function receive(req: Request, file: string, limit: number): Promise<void> {
  const out = await open(file, 'wx', 0o600);
  try {
    await new Promise<void>((resolve, reject) => {
      let size = 0;
      let writing = Promise.resolve();
      const fail = (err: unknown) => {
        req.off('data', onData);
        req.pause();
        reject(err);
      };
      const onData = (b: Buffer) => {
        size += b.length;
        if (size > limit) return fail(new UploadTooLargeError(limit));
        req.pause();
        writing = writing
          .then(async () => {
            for (let off = 0; off < b.length; ) off += (await out.write(b, off, b.length - off)).bytesWritten;
            req.resume();
          })
          .catch(fail);
      };
      req.on('data', onData);
      req.once('end', () => void writing.then(resolve, reject));
      req.once('error', fail);
      req.once('close', () => {
        if (!req.complete) fail(new Error('the client closed the connection before the upload ended'));
      });
    });
    await out.sync();
  } finally {
    await out.close();
  }
}

function refuse(req: Request, res: Response, err: MirrorError, logger: Logger): void {
  // The rest of a refused body is not read: the connection ends with the answer.
  sendError(req, res, err, logger, err instanceof UploadTooLargeError ? { Connection: 'close' } : {});
}
