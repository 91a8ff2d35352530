import type { OpenedFile, TargetKind } from '../store/resolver.js';

/** What is about to be sent: validators, headers policy and where the bytes are. */
export interface Entity {
  readonly size: number;
  /** Quoted strong entity tag. */
  readonly etag: string;
  readonly lastModified: Date;
  readonly contentType: string;
  readonly cacheControl: string;
  /** The same bytes gzipped, when this is worth compressing (metadata). */
  readonly gzip?: Buffer;
  /** Sent with Vary: Accept-Encoding. */
  readonly negotiated: boolean;
  readonly body: { readonly kind: 'buffer'; readonly data: Buffer } | { readonly kind: 'file'; readonly file: OpenedFile };
}

export const CACHE_IMMUTABLE = 'public, max-age=31536000, immutable';
/** Revalidate every time: the URL may name other bytes after the next publish. */
export const CACHE_REVALIDATE = 'no-cache';

/**
 * .sjson is clear-signed JSON, not JSON: text/plain lets browsers show it and
 * MAAS (python urllib) ignores the type anyway.
 */
export function contentTypeOf(kind: TargetKind | 'keyring', path: string): string {
  if (kind === 'keyring') return 'application/pgp-keys';
  if (kind !== 'metadata') return 'application/octet-stream';
  if (path.endsWith('.json')) return 'application/json';
  if (path.endsWith('.sjson')) return 'text/plain; charset=utf-8';
  if (path.endsWith('.gpg')) return 'application/pgp-signature';
  return 'application/octet-stream';
}

/** Worth gzipping: JSON text of some size; signatures and binaries are not. */
export function compressible(kind: TargetKind | 'keyring', path: string, size: number): boolean {
  return kind === 'metadata' && size >= 512 && (path.endsWith('.json') || path.endsWith('.sjson'));
}

export function quoteTag(hex: string): string {
  return `"${hex}"`;
}
