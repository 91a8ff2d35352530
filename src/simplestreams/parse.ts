import { MetadataError } from '../errors.js';
import type { IndexDocument, ProductsDocument } from './types.js';

const SHA256 = /^[0-9a-f]{64}$/;
const MAX_REPORTED = 5;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const key = (k: string) => `[${JSON.stringify(k)}]`;

function parseJson(input: string | unknown, url: string): unknown {
  if (typeof input !== 'string') return input;
  try {
    return JSON.parse(input);
  } catch (err) {
    throw new MetadataError(url, `is not valid JSON (${(err as Error).message})`);
  }
}

function fail(url: string, problems: string[]): never {
  const shown = problems.slice(0, MAX_REPORTED).join('; ');
  const more = problems.length > MAX_REPORTED ? ` (and ${problems.length - MAX_REPORTED} more)` : '';
  throw new MetadataError(url, `is not a valid simplestreams document: ${shown}${more}`);
}

/**
 * Checks the shape of an index before we believe a word of it. Unknown
 * fields pass through untouched: upstream adds fields over time.
 */
export function parseIndex(input: string | unknown, url: string): IndexDocument {
  const doc = parseJson(input, url);
  const problems: string[] = [];
  if (!isObj(doc)) fail(url, ['top level: expected an object']);
  if (doc.format !== 'index:1.0') problems.push(`format: expected "index:1.0", got ${JSON.stringify(doc.format)}`);
  if (!isObj(doc.index)) problems.push('index: expected an object');
  else {
    for (const [id, e] of Object.entries(doc.index)) {
      const at = `index${key(id)}`;
      if (!isObj(e)) {
        problems.push(`${at}: expected an object`);
        continue;
      }
      if (typeof e.path !== 'string' || e.path === '') problems.push(`${at}.path: expected a string`);
      if (e.products !== undefined && (!Array.isArray(e.products) || e.products.some((p) => typeof p !== 'string'))) {
        problems.push(`${at}.products: expected a list of strings`);
      }
    }
  }
  if (doc.updated !== undefined && typeof doc.updated !== 'string') problems.push('updated: expected a string');
  if (problems.length > 0) fail(url, problems);
  return doc as IndexDocument;
}

/** Checks a products file's shape: every item with a path, a sha256 and a size. */
export function parseProducts(input: string | unknown, url: string): ProductsDocument {
  const doc = parseJson(input, url);
  const problems: string[] = [];
  if (!isObj(doc)) fail(url, ['top level: expected an object']);
  if (doc.format !== 'products:1.0') problems.push(`format: expected "products:1.0", got ${JSON.stringify(doc.format)}`);
  if (typeof doc.content_id !== 'string' || doc.content_id === '') problems.push('content_id: expected a string');
  if (doc.updated !== undefined && typeof doc.updated !== 'string') problems.push('updated: expected a string');
  if (!isObj(doc.products)) problems.push('products: expected an object');
  else {
    for (const [pid, p] of Object.entries(doc.products)) {
      const pat = `products${key(pid)}`;
      if (!isObj(p) || !isObj(p.versions)) {
        problems.push(`${pat}.versions: expected an object`);
        continue;
      }
      for (const [vn, v] of Object.entries(p.versions)) {
        const vat = `${pat}.versions${key(vn)}`;
        if (!isObj(v) || !isObj(v.items)) {
          problems.push(`${vat}.items: expected an object`);
          continue;
        }
        for (const [iname, item] of Object.entries(v.items)) {
          const iat = `${vat}.items${key(iname)}`;
          if (!isObj(item)) {
            problems.push(`${iat}: expected an object`);
            continue;
          }
          if (typeof item.path !== 'string' || item.path === '') problems.push(`${iat}.path: expected a string`);
          if (typeof item.sha256 !== 'string' || !SHA256.test(item.sha256)) problems.push(`${iat}.sha256: expected 64 lowercase hex digits`);
          if (typeof item.size !== 'number' || !Number.isSafeInteger(item.size) || item.size < 0) {
            problems.push(`${iat}.size: expected a whole number of bytes`);
          }
        }
      }
    }
  }
  if (problems.length > 0) fail(url, problems);
  return doc as ProductsDocument;
}
