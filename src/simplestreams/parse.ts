import { MetadataError } from '../errors.js';
import { jsonTooDeepAt, METADATA_LIMITS, valueTooDeep } from './limits.js';
import type { IndexDocument, ProductsDocument } from './types.js';

/**
 * Shape checks for the two simplestreams documents, before we believe a word
 * of them. Only what the mirror relies on is checked; every other field is
 * kept as it came (the very same objects are returned), because upstream
 * adds fields over time and MAAS reads some we never look at.
 */

const SHA256 = /^[0-9a-f]{64}$/;
/** Enough to fix the first few things; a garbage document would list thousands. */
const MAX_REPORTED = 5;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const key = (k: string) => `[${JSON.stringify(k)}]`;

function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const text = JSON.stringify(v);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

class Problems {
  readonly list: string[] = [];
  add(path: string, expected: string, got: unknown): void {
    this.list.push(`${path}: expected ${expected}, got ${shown(got)}`);
  }
  /** True when `v` is an object; otherwise notes the problem. */
  object(path: string, v: unknown): v is Obj {
    if (isObj(v)) return true;
    this.add(path, 'an object', v);
    return false;
  }
  nonEmptyString(path: string, v: unknown): void {
    if (typeof v !== 'string' || v === '') this.add(path, 'a non-empty string', v);
  }
  optionalString(path: string, v: unknown): void {
    if (v !== undefined && typeof v !== 'string') this.add(path, 'a string', v);
  }
  throwIfAny(url: string): void {
    const n = this.list.length;
    if (n === 0) return;
    const more = n > MAX_REPORTED ? `; and ${n - MAX_REPORTED} more` : '';
    throw new MetadataError(url, `is not a valid simplestreams document: ${this.list.slice(0, MAX_REPORTED).join('; ')}${more}`);
  }
}

function load(input: unknown, url: string): unknown {
  let text = input;
  if (input instanceof Uint8Array) {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(input);
    } catch {
      throw new MetadataError(url, 'is not valid UTF-8');
    }
  }
  const max = METADATA_LIMITS.maxDepth;
  if (typeof text !== 'string') {
    if (valueTooDeep(text, max)) throw tooDeep(url, max);
    return text;
  }
  // Before JSON.parse: a document nested 100,000 deep must never reach anything that recurses.
  const at = jsonTooDeepAt(text, max);
  if (at >= 0) throw tooDeep(url, max, at);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new MetadataError(url, `is not valid JSON (${(err as Error).message})`);
  }
}

function tooDeep(url: string, max: number, offset?: number): MetadataError {
  return new MetadataError(url, `nests arrays and objects more than ${max} deep${offset === undefined ? '' : ` (at character ${offset})`}, far beyond any real simplestreams document; refusing it`);
}

/** Throws when an object has more members than a limit allows (counted before they are walked). */
function atMost(url: string, what: string, o: Obj, max: number): void {
  let n = 0;
  for (const _ in o) if (++n > max) throw new MetadataError(url, `lists more than ${max} ${what}, far beyond any real simplestreams document; refusing it`);
}

/** An `index:1.0` document, from its JSON text (or already parsed); throws MetadataError. */
export function parseIndex(input: string | unknown, url: string): IndexDocument {
  const doc = load(input, url);
  const p = new Problems();
  if (!p.object('(top level)', doc)) p.throwIfAny(url);
  const d = doc as Obj;
  if (d.format !== 'index:1.0') p.add('format', '"index:1.0"', d.format);
  p.optionalString('updated', d.updated);
  if (p.object('index', d.index)) {
    atMost(url, 'index entries', d.index, METADATA_LIMITS.maxIndexEntries);
    for (const [id, entry] of Object.entries(d.index)) {
      const at = `index${key(id)}`;
      if (!p.object(at, entry)) continue;
      p.nonEmptyString(`${at}.path`, entry.path);
      for (const f of ['format', 'datatype', 'updated']) p.optionalString(`${at}.${f}`, entry[f]);
      if (entry.products !== undefined) {
        if (!Array.isArray(entry.products)) p.add(`${at}.products`, 'a list of product ids', entry.products);
        else {
          const bad = entry.products.findIndex((x) => typeof x !== 'string');
          if (bad >= 0) p.add(`${at}.products[${bad}]`, 'a string', entry.products[bad]);
        }
      }
    }
  }
  p.throwIfAny(url);
  return d as IndexDocument;
}

/** A `products:1.0` document, from its JSON text (or already parsed); throws MetadataError. */
export function parseProducts(input: string | unknown, url: string): ProductsDocument {
  const doc = load(input, url);
  const p = new Problems();
  if (!p.object('(top level)', doc)) p.throwIfAny(url);
  const d = doc as Obj;
  if (d.format !== 'products:1.0') p.add('format', '"products:1.0"', d.format);
  p.nonEmptyString('content_id', d.content_id);
  p.optionalString('datatype', d.datatype);
  p.optionalString('updated', d.updated);
  if (p.object('products', d.products)) {
    atMost(url, 'products', d.products, METADATA_LIMITS.maxProducts);
    let items = 0;
    for (const [pid, product] of Object.entries(d.products)) {
      const pat = `products${key(pid)}`;
      if (!p.object(pat, product) || !p.object(`${pat}.versions`, product.versions)) continue;
      atMost(url, `versions in ${pat}`, product.versions, METADATA_LIMITS.maxVersions);
      for (const [vname, version] of Object.entries(product.versions)) {
        const vat = `${pat}.versions${key(vname)}`;
        if (!p.object(vat, version) || !p.object(`${vat}.items`, version.items)) continue;
        atMost(url, `items in ${vat}`, version.items, METADATA_LIMITS.maxItemsPerVersion);
        items += Object.keys(version.items).length;
        if (items > METADATA_LIMITS.maxItems) throw new MetadataError(url, `lists more than ${METADATA_LIMITS.maxItems} items, far beyond any real simplestreams document; refusing it`);
        for (const [iname, item] of Object.entries(version.items)) {
          const iat = `${vat}.items${key(iname)}`;
          if (!p.object(iat, item)) continue;
          p.nonEmptyString(`${iat}.path`, item.path);
          if (typeof item.sha256 !== 'string' || !SHA256.test(item.sha256)) p.add(`${iat}.sha256`, '64 hex digits (lowercase)', item.sha256);
          if (typeof item.size !== 'number' || !Number.isSafeInteger(item.size) || item.size < 0) {
            p.add(`${iat}.size`, 'a whole number of bytes', item.size);
          }
          p.optionalString(`${iat}.ftype`, item.ftype);
        }
      }
    }
  }
  p.throwIfAny(url);
  return d as ProductsDocument;
}
