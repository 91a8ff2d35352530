/**
 * Preconditions (RFC 9110 §13.2.2), in the RFC's order, for GET and HEAD.
 */

export type Precondition = 'proceed' | 'not-modified' | 'failed';

export interface Validators {
  /** Quoted strong entity tag. */
  readonly etag: string;
  readonly lastModified: Date;
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

export function evaluatePreconditions(headers: Headers, v: Validators): Precondition {
  const ifMatch = one(headers['if-match']);
  if (ifMatch !== undefined) {
    if (!tagListMatches(ifMatch, v.etag, true)) return 'failed';
  } else {
    const ius = dateOf(one(headers['if-unmodified-since']));
    if (ius !== undefined && seconds(v.lastModified) > ius) return 'failed';
  }
  const ifNoneMatch = one(headers['if-none-match']);
  if (ifNoneMatch !== undefined) {
    return tagListMatches(ifNoneMatch, v.etag, false) ? 'not-modified' : 'proceed';
  }
  const ims = dateOf(one(headers['if-modified-since']));
  if (ims !== undefined && seconds(v.lastModified) <= ims) return 'not-modified';
  return 'proceed';
}

/** `*` or a list of entity tags; weak comparison ignores W/ (If-None-Match), strong does not (If-Match). */
export function tagListMatches(list: string, etag: string, strong: boolean): boolean {
  if (list.trim() === '*') return true;
  for (const raw of list.split(',')) {
    let tag = raw.trim();
    if (tag.startsWith('W/')) {
      if (strong) continue;
      tag = tag.slice(2);
    }
    if (tag === etag) return true;
  }
  return false;
}

/** Whether the client takes gzip (q > 0 for gzip, or for * when gzip is not named). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = one(header);
  if (!value) return false;
  let star: boolean | undefined;
  for (const part of value.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p)).find(Boolean);
    const ok = q ? Number(q[1]) > 0 : true;
    if (name === 'gzip' || name === 'x-gzip') return ok;
    if (name === '*') star = ok;
  }
  return star ?? false;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

function dateOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.floor(t / 1000);
}

function seconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}
