import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Request, Response } from 'express';
import type { Config } from '../config/load.js';
import { isMirrorError, UploadBusyError, UploadNoSpaceError, UploadTooLargeError, UsageError, type MirrorError } from '../errors.js';
import { formatBytes } from '../format.js';
import { sendError } from '../http/errors.js';
import { DEFAULT_SEND_TIMEOUT_MS } from '../http/server.js';
import type { Logger } from '../log.js';
import { addImage, checkImageRequest, type AddImageRequest } from '../mirror/images.js';
import { measureFree, SPACE_MARGIN_BYTES } from '../mirror/space.js';
import { rethrowDiskFull } from '../store/fsutil.js';
import { Layout } from '../store/layout.js';

export const IMAGE_UPLOAD_PATH = '/api/v1/images';

/**
 * Uploads received at once. Each holds a partial file as large as its image,
 * then the store lock while it publishes: a second one would only wait for
 * the lock with its gigabytes on the disk.
 */
const UPLOAD_SLOTS = 1;

export interface ImageUploadDeps {
  readonly config: () => Config;
  readonly logger: Logger;
  readonly onPublished?: (snapshotId: string) => void | Promise<void>;
}

/** The one request whose body may outlast http.requestTimeout (src/http/server.ts streamedBody). */
export function isImageUpload(req: IncomingMessage): boolean {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return req.method === 'POST' && (q < 0 ? url : url.slice(0, q)) === IMAGE_UPLOAD_PATH;
}

/**
 * POST /api/v1/images?os=…&release=…&arch=…[&title=…&subarch=…&label=…], the
 * body being the root tarball. Everything that can be refused without the
 * body is refused before a byte of it is read (the name, a clash with a
 * mirrored product, images.maxUploadBytes, free space, a running upload);
 * then it is streamed to a partial file and goes through `images add` (same
 * checks, same publish); the answer is what `images add --json` prints.
 */
export function imageUploadHandler(deps: ImageUploadDeps): (req: Request, res: Response) => Promise<void> {
  let running = 0;
  return async (req, res) => {
    const config = deps.config();
    const image = await beforeBody(config, req).catch((err: unknown) => {
      if (!isMirrorError(err)) throw err;
      refuse(req, res, err, deps.logger, false);
      return undefined;
    });
    if (!image) return;
    if (running >= UPLOAD_SLOTS) {
      refuse(req, res, new UploadBusyError(), deps.logger, false);
      return;
    }
    running++;
    try {
      await receiveAndAdd(deps, config, image, req, res);
    } finally {
      running--;
    }
  };
}

type UploadImage = Omit<AddImageRequest, 'file'>;

/** The image the query names, once it passed every check that needs no body. */
async function beforeBody(config: Config, req: Request): Promise<UploadImage> {
  const q = (k: string) => (typeof req.query[k] === 'string' ? (req.query[k] as string) : undefined);
  const [os, release, arch] = [q('os'), q('release'), q('arch')];
  if (!os || !release || !arch) throw new UsageError('give the image as ?os=…&release=…&arch=… (and optionally title, subarch, label), the root tarball as the body');
  const image = { os, release, arch, title: q('title'), subarch: q('subarch'), label: q('label') };
  await checkImageRequest(config, image);
  const limit = config.images.maxUploadBytes;
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw new UploadTooLargeError(limit);
  if (Number.isSafeInteger(declared)) {
    // The partial file becomes the blob (a link): the upload itself is all the bulk it writes.
    const free = await measureFree(config.dataDir);
    if (free && declared + SPACE_MARGIN_BYTES > free.available) throw new UploadNoSpaceError(free.dir, formatBytes(declared), formatBytes(free.available));
  }
  return image;
}

async function receiveAndAdd(deps: ImageUploadDeps, config: Config, image: UploadImage, req: Request, res: Response): Promise<void> {
  const layout = new Layout(config.dataDir);
  await mkdir(layout.partialDir, { recursive: true });
  const file = join(layout.partialDir, `upload-${randomBytes(6).toString('hex')}.part`);
  let bodyRead = false;
  try {
    await receive(req, file, config.images.maxUploadBytes);
    bodyRead = true;
    // Hashing and publishing tens of GB sends nothing for a while: the client waits for the answer, not idle.
    req.socket.setTimeout(0);
    const result = await addImage({ config, logger: deps.logger, onPublished: deps.onPublished }, { file, ...image });
    req.socket.setTimeout(config.http.sendTimeout ?? DEFAULT_SEND_TIMEOUT_MS);
    res.status(201).type('application/json').send(JSON.stringify(result, null, 1) + '\n');
  } catch (err) {
    req.socket.setTimeout(config.http.sendTimeout ?? DEFAULT_SEND_TIMEOUT_MS);
    if (!isMirrorError(err)) throw err;
    deps.logger.warn({ code: err.code, client: req.socket?.remoteAddress }, `image upload refused: ${err.message}`);
    refuse(req, res, err, deps.logger, bodyRead);
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
        reject(rethrowDiskFull(err, file));
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

/** A refusal before the whole body was read ends the connection with the answer: the rest is never read. */
function refuse(req: Request, res: Response, err: MirrorError, logger: Logger, bodyRead: boolean): void {
  sendError(req, res, err, logger, {
    ...(bodyRead ? {} : { Connection: 'close' }),
    ...(err instanceof UploadBusyError ? { 'Retry-After': '60' } : {}),
  });
}
