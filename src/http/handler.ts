import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingMessage as Request, ServerResponse as Response } from 'node:http';
import { errnoOf, MethodNotAllowedError, NotFoundError, NotHeldError, UnsafePathError } from '../errors.js';
import type { Logger } from '../log.js';
import { safeRelativePath } from '../store/safe-path.js';
import { type Located, type Resolver, type OpenedFile, type Target } from '../store/resolver.js';
import { ACCEL_HEADER, accelPathOf, accelPrefixOf, sendAccel } from './accel.js';
import type { ContentCache } from './content-cache.js';
import { CACHE_IMMUTABLE, CACHE_REVALIDATE, compressible, contentTypeOf, quoteTag, type Entity } from './entity.js';
import { sendError } from './errors.js';
import type { PullThrough } from './pull-through.js';
import { sendReady, type ReadyAnswers } from './ready-answers.js';
import { sendEntity } from './send.js';

export interface HandlerDeps {
  readonly namespace: Resolver;
  readonly cache: ContentCache;
  /** config.http.prefix, e.g. /maas/images/ephemeral-v3/stable/ */
  readonly prefix: string;
  readonly keysDir: string;
  readonly logger: Logger;
  readonly pullThrough?: PullThrough;
  /** Ready answers for small files, by request URL; cleared with the content cache. */
  readonly ready: ReadyAnswers;
  /** Whether a peer may ask for X-Accel-Redirect answers (nginx in front). */
  readonly trustedProxy?: (address: string | undefined) => boolean;
}

const KEYRINGS: Readonly<Record<string, string>> = { 'keyring.gpg': 'public.gpg', 'keyring.asc': 'public.asc' };

/**
 * The read-only catch-all: keyrings, the region tree, hash paths,
 * bootloaders; 405 for anything but GET and HEAD. Plain node req/res, so the
 * listening server can call it without express on the hot path.
 */
export function createFileHandler(deps: HandlerDeps): (req: Request, res: Response) => Promise<void> | undefined {
  const treePrefix = deps.prefix.replace(/^\/+/, '');
  // A remembered answer goes out synchronously: no promise, no microtask.
  return (req: Request, res: Response): Promise<void> | undefined => {
    const known = deps.ready.get(req.url ?? '');
    // Through nginx in front, even a remembered file is better sent by nginx (see accel.ts).
    if (known !== undefined && deps.namespace.trustedId(known.root) === known.rootId && (req.method === 'GET' || req.method === 'HEAD') && req.headers[ACCEL_HEADER] === undefined) {
      sendReady(req, res, known);
      return undefined;
    }
    return answer(req, res);
  };

  async function answer(req: Request, res: Response): Promise<void> {
    const url = req.url ?? '';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(req, res, new MethodNotAllowedError(req.method ?? '?'), deps.logger);
      return;
    }
    const raw = rawPath(url);
    const safe = raw === undefined ? undefined : safeRelativePath(raw, { decode: true });
    if (safe === undefined) {
      sendError(req, res, new UnsafePathError((raw ?? url).slice(0, 200), 'the request'), deps.logger);
      return;
    }
    const keyring = KEYRINGS[safe];
    if (keyring !== undefined) return serveKeyring(req, res, join(deps.keysDir, keyring), deps);

    const inTree = treePrefix === '' || `${safe}/`.startsWith(treePrefix);
    const locate = async (): Promise<Located> => {
      if (!inTree) return deps.namespace.locate(safe);
      const found = await deps.namespace.locateTree(safe.slice(treePrefix.length));
      // With the tree at "/", the rack paths still answer for what the tree does not have.
      if (!found.ok && treePrefix === '' && found.error instanceof NotFoundError) return deps.namespace.locate(safe);
      return found;
    };

    for (let attempt = 0; ; attempt++) {
      const located = await locate();
      if (!located.ok) {
        if (located.error instanceof NotHeldError && deps.pullThrough) return deps.pullThrough(located.error.file, req, res);
        sendError(req, res, located.error, deps.logger);
        return;
      }
      try {
        const accel = deps.trustedProxy ? accelPrefixOf(req, deps.trustedProxy) : undefined;
        const redirect = accel === undefined ? undefined : accelPathOf(accel, located.target);
        if (redirect !== undefined) {
          sendAccel(res, redirect, located.target);
          return;
        }
        await serveTarget(req, res, located.target, deps);
        return;
      } catch (err) {
        // A publish switched `current` and pruned the old tree between locate and open: look again once.
        if (attempt === 0 && err instanceof NotFoundError && (await rootChanged(deps.namespace, located.target))) continue;
        sendError(req, res, err, deps.logger);
        return;
      }
    }
  }
}

async function serveTarget(req: Request, res: Response, target: Target, deps: HandlerDeps): Promise<void> {
  if (target.kind === 'boot' || target.kind === 'template') {
    // Read at each request (the operator may edit them; templates follow the snapshot), never remembered as hot answers.
    const got = await deps.namespace.readBootFile(target);
    await sendEntity(req, res, {
      size: got.data.length,
      etag: quoteTag(got.sha256),
      lastModified: got.mtime,
      contentType: contentTypeOf(target.kind, target.path),
      cacheControl: CACHE_REVALIDATE,
      negotiated: false,
      body: { kind: 'buffer', data: got.data },
    });
    return;
  }
  if (target.kind === 'item') {
    const file = await deps.namespace.open(target);
    try {
      await sendEntity(req, res, {
        size: file.size,
        etag: quoteTag(target.sha256!),
        lastModified: file.mtime,
        contentType: contentTypeOf('item', target.path),
        cacheControl: target.immutable ? CACHE_IMMUTABLE : CACHE_REVALIDATE,
        negotiated: false,
        body: { kind: 'file', file },
      });
    } finally {
      await file.close();
    }
    return;
  }
  const got = await deps.cache.fetch(
    target.cacheKey,
    () => deps.namespace.open(target),
    (size) => compressible(target.kind, target.path, size),
  );
  const base = {
    contentType: contentTypeOf(target.kind, target.path),
    cacheControl: CACHE_REVALIDATE,
  };
  if ('data' in got) {
    const entity = {
      ...base,
      size: got.data.length,
      etag: quoteTag(got.sha256),
      lastModified: deps.namespace.lastModified(target, got.lastModified),
      gzip: got.gzip,
      negotiated: compressible(target.kind, target.path, got.data.length),
      body: { kind: 'buffer' as const, data: got.data },
    };
    deps.ready.remember(req.url ?? '', target.kind === 'bootloader' ? 'bootloaders' : 'current', target.rootId, entity);
    await sendEntity(req, res, entity);
    return;
  }
  const file: OpenedFile = got;
  try {
    await sendEntity(req, res, {
      ...base,
      size: file.size,
      etag: quoteTag(await deps.cache.hashOf(target.cacheKey, file)),
      lastModified: file.mtime,
      negotiated: false,
      body: { kind: 'file', file },
    });
  } finally {
    await file.close();
  }
}

/** The mirror's public key: a fixed path, small, read on each request (rare, and it may be rotated). */
async function serveKeyring(req: Request, res: Response, path: string, deps: HandlerDeps): Promise<void> {
  let data: Buffer;
  let mtime: Date;
  try {
    const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      data = await fh.readFile();
      mtime = (await fh.stat()).mtime;
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') {
      sendError(req, res, new NotFoundError('the mirror has no public key yet; it is made on the first publish ("maas-mirror sync")'), deps.logger);
      return;
    }
    throw err;
  }
  const entity: Entity = {
    size: data.length,
    etag: quoteTag(createHash('sha256').update(data).digest('hex')),
    lastModified: mtime,
    contentType: contentTypeOf('keyring', path),
    cacheControl: CACHE_REVALIDATE,
    negotiated: false,
    body: { kind: 'buffer', data },
  };
  await sendEntity(req, res, entity);
}

async function rootChanged(ns: Resolver, target: Target): Promise<boolean> {
  if (target.kind === 'boot') return false;
  const now = target.kind === 'bootloader' ? await ns.bootloadersId({ fresh: true }) : await ns.currentId({ fresh: true });
  return now !== target.rootId;
}

/**
 * The path of the request target, still percent-encoded, without the query.
 * An absolute-form target (proxies send them) keeps only its path.
 */
export function rawPath(url: string): string | undefined {
  let target = url;
  if (!target.startsWith('/')) {
    if (!/^https?:\/\//i.test(target)) return undefined;
    try {
      target = new URL(target).pathname;
    } catch {
      return undefined;
    }
  }
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}
