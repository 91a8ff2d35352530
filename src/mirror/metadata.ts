import { MetadataTooLargeError } from '../errors.js';
import type { DocumentState } from '../store/state.js';
import { translateError, type UpstreamClient } from './client.js';
import { withRetries } from './retry.js';

/** Real products files are a few MB at most; anything far larger is an attack or a mistake. */
export const MAX_METADATA_BYTES = 64 * 1024 * 1024;

export type FetchedDocument =
  | { readonly changed: false }
  | { readonly changed: true; readonly text: string; readonly etag?: string; readonly lastModified?: string };

export interface FetchDocumentOptions {
  retries: number;
  maxBytes?: number;
  signal?: AbortSignal;
  onRetry?: (err: unknown) => void;
  /** Make the request conditional on what we accepted last time. */
  previous?: DocumentState;
}

/** One conditional GET of a metadata document, read with a size cap. */
export async function fetchDocument(client: UpstreamClient, url: string, opts: FetchDocumentOptions): Promise<FetchedDocument> {
  const max = opts.maxBytes ?? MAX_METADATA_BYTES;
  return withRetries(
    async () => {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (opts.previous?.textSha256) {
        if (opts.previous.etag) headers['if-none-match'] = opts.previous.etag;
        if (opts.previous.lastModified) headers['if-modified-since'] = opts.previous.lastModified;
      }
      const res = await client.get(url, headers, opts.signal);
      if (res.status === 304) {
        await res.body.dump();
        return { changed: false as const };
      }
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (declared > max) {
        await res.body.destroy();
        throw new MetadataTooLargeError(url, max);
      }
      // Decoded as it arrives: the body's chunks and one buffer of them all would be two more
      // copies of a document of many MB. ignoreBOM keeps a BOM as text, as Buffer#toString did.
      const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
      const parts: string[] = [];
      let total = 0;
      try {
        for await (const chunk of res.body) {
          total += (chunk as Buffer).length;
          if (total > max) {
            res.body.destroy();
            throw new MetadataTooLargeError(url, max);
          }
          parts.push(decoder.decode(chunk as Buffer, { stream: true }));
        }
        parts.push(decoder.decode());
      } catch (err) {
        throw translateError(err, url);
      }
      return {
        changed: true as const,
        text: parts.join(''),
        etag: header(res.headers.etag),
        lastModified: header(res.headers['last-modified']),
      };
    },
    { retries: opts.retries, signal: opts.signal, onRetry: opts.onRetry },
  );
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
