import { classify } from '../store/routes.js';

/**
 * The `route` label of the HTTP metrics: a small fixed set, so that no
 * request path (which a client chooses freely) ever becomes a label value.
 */
export const ROUTE_LABELS = [
  'tree',
  'boot-resources',
  'images',
  'bootloader',
  'keyring',
  'api',
  'metrics',
  'status',
  'health',
  'other',
] as const;
export type RouteLabel = (typeof ROUTE_LABELS)[number];

const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);

/** The `method` label: the usual verbs, anything else (clients may send any token) "OTHER". */
export function methodLabel(method: string | undefined): string {
  const m = (method ?? '').toUpperCase();
  return HTTP_METHODS.has(m) ? m : 'OTHER';
}

/** The paths the ops routes answer outside /api: the HTTP server must hand these to express. */
export const OPS_PATHS: readonly string[] = ['/', '/status.json', '/metrics', '/livez', '/readyz'];

/** Path of a request target without query, absolute-form reduced to its path. */
export function requestPath(url: string): string {
  let path = url;
  if (!path.startsWith('/')) {
    const m = /^https?:\/\/[^/?#]*(\/[^?#]*)?/i.exec(path);
    path = m ? (m[1] ?? '/') : '';
  }
  const q = path.search(/[?#]/);
  return q === -1 ? path : path.slice(0, q);
}

/** True for a request the ops routes answer (status page, metrics, health, API). */
export function isOpsRequest(url: string): boolean {
  const path = requestPath(url);
  return OPS_PATHS.includes(path) || path === '/api' || path.startsWith('/api/');
}

/**
 * Which route a request path belongs to. `prefix` is config.http.prefix
 * (e.g. "/maas/images/ephemeral-v3/stable/").
 */
export function classifyRoute(url: string, prefix: string): RouteLabel {
  const path = requestPath(url);
  switch (path) {
    case '/':
    case '/status.json':
      return 'status';
    case '/metrics':
      return 'metrics';
    case '/livez':
    case '/readyz':
      return 'health';
    case '/keyring.gpg':
    case '/keyring.asc':
      return 'keyring';
  }
  if (path === '/api' || path.startsWith('/api/')) return 'api';
  if (prefix !== '/' && (path.startsWith(prefix) || `${path}/` === prefix)) return 'tree';
  const rel = path.replace(/^\/+/, '');
  const route = classify(rel);
  if (route.kind === 'hash') return rel.startsWith('MAAS/') ? 'boot-resources' : 'images';
  if (route.kind === 'bootloader') return 'bootloader';
  // With the tree at the root, whatever is not a rack path is the tree.
  if (prefix === '/' && rel !== '') return 'tree';
  return 'other';
}
