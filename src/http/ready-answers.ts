import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import { addBytes } from './access-log.js';
import { acceptsGzip } from './conditional.js';
import type { Entity } from './entity.js';
import { commonHeaders, gzipTag, sendEntity } from './send.js';

/**
 * A finished answer for a small file held in memory (metadata, bootloaders),
 * found by the exact request URL. A MAAS region and every booting machine
 * ask for the same few URLs over and over; answering those without a path
 * walk, a lookup or an await is what lets one process keep up with them.
 */
export interface ReadyAnswer {
  /** Which link the bytes were found through, and what it named then. */
  readonly root: 'current' | 'bootloaders';
  readonly rootId: string;
  /** Body in memory (`body.kind === 'buffer'`). */
  readonly entity: Entity & { readonly body: { readonly kind: 'buffer'; readonly data: Buffer } };
  /** Header lists for a plain 200 and, when the entity has one, a gzipped 200. */
  readonly plain: readonly string[];
  readonly gzipped: readonly string[] | undefined;
}

/** Request headers that make an answer depend on more than the URL. */
const SPECIAL = ['range', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range'] as const;

export class ReadyAnswers {
  // Keys are request URLs, so bound them: odd spellings of one path must not grow memory.
  // Bytes are shared with the content cache; the bound covers what outlives it there.
  private readonly answers: LRUCache<string, ReadyAnswer>;

  constructor(maxBytes = 32 * 1024 * 1024) {
    this.answers = new LRUCache({
      max: 4_096,
      maxSize: maxBytes,
      sizeCalculation: (a) => a.entity.body.data.length + (a.entity.gzip?.length ?? 0) + 512,
    });
  }

  get(url: string): ReadyAnswer | undefined {
    return this.answers.get(url);
  }

  remember(url: string, root: ReadyAnswer['root'], rootId: string, entity: ReadyAnswer['entity']): void {
    if (this.answers.get(url)?.rootId === rootId) return;
    this.answers.set(url, {
      root,
      rootId,
      entity,
      plain: headerList(entity, false),
      gzipped: entity.gzip ? headerList(entity, true) : undefined,
    });
  }

  clear(): void {
    this.answers.clear();
  }
}

/**
 * Answers from a hot entry. Conditional and Range requests take the general
 * path (same entity, so the same rules); a plain GET or HEAD writes the
 * prepared header list and the bytes in one go.
 */
export function sendReady(req: IncomingMessage, res: ServerResponse, hot: ReadyAnswer): void {
  const h = req.headers;
  for (const name of SPECIAL) {
    if (h[name] !== undefined) {
      void sendEntity(req, res, hot.entity);
      return;
    }
  }
  const gzip = hot.gzipped !== undefined && acceptsGzip(h['accept-encoding']);
  const body = gzip ? hot.entity.gzip! : hot.entity.body.data;
  res.writeHead(200, (gzip ? hot.gzipped : hot.plain) as string[]);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  addBytes(res, body.length);
  res.end(body);
}

/** The headers sendEntity sets for a full 200 of this entity, in its order. */
export function headerList(e: Entity, gzip: boolean): string[] {
  const list = commonHeaders(e, gzip ? gzipTag(e.etag) : e.etag);
  list.push('Content-Type', e.contentType);
  if (gzip) list.push('Content-Encoding', 'gzip');
  list.push('Content-Length', String(gzip ? e.gzip!.length : e.size));
  return list;
}
