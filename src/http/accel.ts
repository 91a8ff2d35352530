import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Target } from '../store/resolver.js';
import { CACHE_IMMUTABLE, CACHE_REVALIDATE, contentTypeOf } from './entity.js';

/**
 * Set by the nginx server block `maas-mirror nginx-config` prints, on every request it passes to us:
 * the `internal` location that maps onto dataDir. With it, a route that ends in a held file is
 * answered with `X-Accel-Redirect` and nginx sends the bytes (sendfile, Range, conditionals).
 */
export const ACCEL_HEADER = 'x-maas-mirror-accel';

/** The internal location's shape: one plain path segment between slashes. */
const PREFIX_RE = /^\/[A-Za-z0-9_-]{1,64}\/$/;

/**
 * The internal location to redirect into, when the request came through a trusted proxy that
 * asked for it. Anyone else who sends the header gets the file from us as usual: a redirect
 * would only name a path their server cannot reach.
 */
export function accelPrefixOf(req: IncomingMessage, trusted: (address: string | undefined) => boolean): string | undefined {
  const value = req.headers[ACCEL_HEADER];
  if (typeof value !== 'string' || !PREFIX_RE.test(value)) return undefined;
  return trusted(req.socket.remoteAddress) ? value : undefined;
}

/**
 * The redirect names the snapshot (or unpacked bootloaders) by id, never through `current`:
 * those folders never change once made, so what nginx sends is the file this request resolved,
 * whatever a publish does meanwhile.
 */
export function accelPathOf(prefix: string, target: Target): string | undefined {
  const folder = target.kind === 'item' ? 'snapshots' : target.kind === 'bootloader' ? 'bootloaders.d' : undefined;
  if (folder === undefined) return undefined;
  const segments = [folder, target.rootId, ...target.path.split('/')].map(encodeURIComponent);
  return prefix + segments.join('/');
}

export function sendAccel(res: ServerResponse, path: string, target: Target): void {
  res.writeHead(200, {
    'X-Accel-Redirect': path,
    'Content-Type': contentTypeOf(target.kind, target.path),
    'Cache-Control': target.immutable ? CACHE_IMMUTABLE : CACHE_REVALIDATE,
    'Content-Length': 0,
  });
  res.end();
}

/** Loopback peers, plus the addresses listed in `http.trustedProxies`. */
export function trustedPeers(listed: readonly string[]): (address: string | undefined) => boolean {
  const set = new Set(listed.map(normalise));
  return (address) => {
    if (address === undefined) return false;
    const a = normalise(address);
    return a === '::1' || a.startsWith('127.') || set.has(a);
  };
}

function normalise(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
