import { parseStrictRfc2822 } from './dates.js';
import { unsafePathReason } from './paths.js';
import type { IndexDocument, ProductsDocument } from './types.js';

/**
 * What MAAS demands of a boot source, as a list of problems (empty = fine).
 *
 * MAAS 3.8 (maasservicelayer/simplestreams) fetches every index entry and
 * reads each products file with pydantic models; one bad product, version or
 * item fails the whole file, and the import with it. Those models read each
 * level's OWN keys: nothing is inherited from the top level or a parent the
 * way python simplestreams' products_exdata (and MAAS <= 3.6) did. A tree
 * valid here is therefore valid for the older readers too.
 * A few rules are ours, not MAAS's, and say so: they keep the tree we publish
 * consistent (index lists what the files hold, one path one content).
 */

export interface MaasProblem {
  readonly where: string;
  readonly message: string;
}

type Obj = Record<string, unknown>;
type Kind = 'bootloader' | 'single-file' | 'multi-file';

const DATATYPES = ['image-ids', 'image-downloads'];
const FIELDS: Record<Kind, string[]> = {
  bootloader: ['arch', 'arches', 'label', 'os', 'bootloader-type'],
  'single-file': ['arch', 'label', 'os', 'release', 'release_title', 'subarch', 'subarches', 'version'],
  'multi-file': ['arch', 'label', 'os', 'release', 'release_title', 'subarch', 'subarches', 'version'],
};
/** `str | None = None` in the models: may be absent or null, but not another type. */
const OPTIONAL_STRINGS: Record<Kind, string[]> = { bootloader: [], 'single-file': [], 'multi-file': ['kflavor', 'krel', 'release_codename'] };
const BOOTLOADER_ITEMS = ['grub2-signed', 'shim-signed', 'grub2', 'syslinux'];
// image_sync.py only takes image products whose id matches these, silently skipping the rest.
const IMAGE_ID = /:v([23]|3\+platform):/i;
const BOOTLOADER_ID = /:1:/;
const SHA256 = /^[0-9a-f]{64}$/;
const ISO_DAY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_EXAMPLE = '"Thu, 24 Jul 2025 09:01:43 +0000"';

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isText = (v: unknown): v is string => typeof v === 'string' && v !== '';
const at = (k: string) => `[${JSON.stringify(k)}]`;

function isIsoDay(v: string): boolean {
  const m = ISO_DAY.exec(v);
  if (!m) return false;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.getUTCMonth() === Number(m[2]) - 1 && d.getUTCDate() === Number(m[3]);
}

function listSome(ids: string[]): string {
  return ids.slice(0, 3).join(', ') + (ids.length > 3 ? ` and ${ids.length - 3} more` : '');
}

class Report {
  readonly problems: MaasProblem[] = [];
  add(where: string, message: string): void {
    this.problems.push({ where, message });
  }
  /** updated: strptime("%a, %d %b %Y %H:%M:%S %z") in every MAAS model that has it. */
  updated(where: string, v: unknown): void {
    if (v === undefined) this.add(where, 'updated is missing');
    else if (typeof v !== 'string' || !parseStrictRfc2822(v)) {
      this.add(where, `updated ${JSON.stringify(v)} is not an RFC 2822 date like ${DATE_EXAMPLE}`);
    }
  }
  /** support_eol and friends: null, or a real YYYY-MM-DD day. */
  day(where: string, obj: Obj, field: string): void {
    const v = obj[field];
    if (v !== undefined && v !== null && !(typeof v === 'string' && isIsoDay(v))) {
      this.add(where, `${field} ${JSON.stringify(v)} is not a YYYY-MM-DD date`);
    }
  }
}

/** Which of MAAS 3.8's three product models this product is meant for. */
function kindOf(top: Obj, product: Obj): Kind {
  if (product['bootloader-type'] !== undefined || top['bootloader-type'] !== undefined) return 'bootloader';
  const versions = isObj(product.versions) ? Object.values(product.versions) : [];
  return versions.some((v) => isObj(v) && isObj(v.items) && 'root-tgz' in v.items) ? 'single-file' : 'multi-file';
}

interface Seen {
  readonly sha256: unknown;
  readonly size: unknown;
  readonly where: string;
}

export function validateForMaas(index: IndexDocument, products: ReadonlyMap<string, ProductsDocument>): MaasProblem[] {
  const r = new Report();
  const byPath = new Map<string, Seen>();
  const singleFile = new Map<string, string>();

  if (index.format !== 'index:1.0') r.add('index', `format must be "index:1.0", not ${JSON.stringify(index.format)}`);
  r.updated('index', index.updated);
  // SimpleStreamsIndexList only turns a non-empty "index" into its entries.
  if (!isObj(index.index) || Object.keys(index.index).length === 0) r.add('index', 'has no entries');
  for (const [contentId, e] of Object.entries(isObj(index.index) ? index.index : {})) {
    const where = `index${at(contentId)}`;
    const entry = e as unknown;
    if (!isObj(entry)) {
      r.add(where, 'is not an object');
      continue;
    }
    // IndexContent(name=..., **entry): a "name" key is a TypeError, not a validation error.
    if ('name' in entry) r.add(where, 'has a "name" field, which MAAS 3.8 cannot take (it passes the content id as name)');
    // MAAS defaults a missing format, but sstream-mirror (and MAAS <= 3.6) never follow such an entry.
    if (entry.format !== 'products:1.0') r.add(where, `format must be "products:1.0", not ${JSON.stringify(entry.format)}`);
    if (entry.datatype !== undefined && !DATATYPES.includes(entry.datatype as string)) {
      r.add(where, `datatype must be image-ids or image-downloads, not ${JSON.stringify(entry.datatype)}`);
    }
    r.updated(where, entry.updated);
    const listed = Array.isArray(entry.products) && entry.products.every((p) => typeof p === 'string') ? (entry.products as string[]) : undefined;
    if (!listed) r.add(where, 'products must be a list of product ids');
    if (!isText(entry.path)) {
      r.add(where, 'path is missing');
      continue;
    }
    const reason = unsafePathReason(entry.path);
    if (reason) r.add(where, `path ${JSON.stringify(entry.path)} is unsafe: ${reason}`);
    const doc = products.get(entry.path);
    if (!doc) {
      r.add(where, `no products file was given for its path ${entry.path}`);
      continue;
    }
    checkProductsFile(r, byPath, singleFile, entry.path, contentId, listed, doc);
  }
  checkLayout(r, byPath);
  return r.problems;
}

function checkProductsFile(r: Report, byPath: Map<string, Seen>, singleFile: Map<string, string>, file: string, contentId: string, listed: string[] | undefined, doc: ProductsDocument): void {
  const d = doc as Obj;
  if (d.format !== 'products:1.0') r.add(file, `format must be "products:1.0", not ${JSON.stringify(d.format)}`);
  if (d.content_id !== contentId) r.add(file, `content_id is ${JSON.stringify(d.content_id)}, but the index lists the file as ${contentId}`);
  if (!DATATYPES.includes(d.datatype as string)) r.add(file, `datatype must be image-ids or image-downloads, not ${JSON.stringify(d.datatype)}`);
  r.updated(file, d.updated);
  const all = isObj(d.products) ? d.products : {};
  // Like the index: an empty "products" object never becomes a product list, and fails.
  if (Object.keys(all).length === 0) r.add(file, 'has no products (drop the index entry instead)');

  // Ours: the index is what MAAS and the UI list, the file is what they get.
  if (listed) {
    const inFile = Object.keys(all);
    const onlyIndex = [...new Set(listed)].filter((id) => !(id in all));
    const onlyFile = inFile.filter((id) => !listed.includes(id));
    const dups = listed.filter((id, i) => listed.indexOf(id) !== i);
    const parts = [
      onlyIndex.length ? `lists ${onlyIndex.length} product(s) the file does not have (${listSome(onlyIndex)})` : '',
      onlyFile.length ? `misses ${onlyFile.length} product(s) the file has (${listSome(onlyFile)})` : '',
      dups.length ? `lists ${listSome(dups)} more than once` : '',
    ].filter(Boolean);
    if (parts.length) r.add(`index${at(contentId)}`, `products ${parts.join('; ')}`);
  }

  const kinds = new Map<Kind, number>();
  for (const [productId, product] of Object.entries(all)) {
    const where = `${file} products${at(productId)}`;
    if (!isObj(product)) {
      r.add(where, 'is not an object');
      continue;
    }
    const kind = kindOf(d, product);
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    checkProduct(r, byPath, where, productId, kind, d, product);
    if (kind === 'single-file') noteSelection(r, singleFile, where, product);
  }
  // SimpleStreamsProductListFactory validates the whole file as one model.
  if (kinds.size > 1) {
    const mix = [...kinds].map(([k, n]) => `${n} ${k}`).join(', ');
    r.add(file, `mixes kinds of products (${mix}): MAAS 3.8 reads a products file as a single kind and rejects this one`);
  }
}

function checkProduct(r: Report, byPath: Map<string, Seen>, where: string, productId: string, kind: Kind, top: Obj, product: Obj): void {
  for (const f of FIELDS[kind]) {
    const v = product[f];
    if (isText(v)) continue;
    if (v === undefined && isText(top[f])) r.add(where, `${f} is only set at the top level; MAAS 3.8 reads it from the product itself`);
    else if (v === undefined) r.add(where, `${f} is missing`);
    else r.add(where, `${f} must be a non-empty string, not ${JSON.stringify(v)}`);
  }
  for (const f of OPTIONAL_STRINGS[kind]) {
    const v = product[f];
    if (v !== undefined && v !== null && typeof v !== 'string') r.add(where, `${f} must be a string, not ${JSON.stringify(v)}`);
  }
  if (kind !== 'bootloader') r.day(where, product, 'support_eol');
  // Product(product_name=..., **product): the same TypeError as an index entry's "name".
  if ('product_name' in product) r.add(where, 'has a "product_name" field, which MAAS 3.8 cannot take');
  if (kind === 'bootloader' && !BOOTLOADER_ID.test(productId)) r.add(where, 'a bootloader product id must contain ":1:" or MAAS skips it');
  if (kind === 'multi-file' && !IMAGE_ID.test(productId)) r.add(where, 'an image product id must contain ":v3:" (or ":v2:", ":v3+platform:") or MAAS skips it');

  const versions = isObj(product.versions) ? Object.entries(product.versions) : [];
  if (versions.length === 0) {
    r.add(where, 'has no versions (drop the product instead)');
    return;
  }
  for (const [versionName, version] of versions) {
    const vwhere = `${where}.versions${at(versionName)}`;
    if (!isObj(version) || !isObj(version.items)) {
      r.add(vwhere, 'has no items');
      continue;
    }
    checkVersion(r, vwhere, kind, version, version.items);
    for (const [name, item] of Object.entries(version.items)) {
      if (isObj(item)) notePath(r, byPath, `${vwhere}.items${at(name)}`, item);
    }
  }
}

function checkVersion(r: Report, where: string, kind: Kind, version: Obj, items: Obj): void {
  // version_class()(version_name=..., **version), after the items are merged into it.
  if ('version_name' in version || 'version_name' in items) r.add(where, 'has a "version_name" field or item, which MAAS 3.8 cannot take');
  const item = (name: string, ftype: string, extra: string[] = []) => checkItem(r, `${where}.items${at(name)}`, items[name], ftype, extra);
  if (kind === 'bootloader') {
    const present = BOOTLOADER_ITEMS.filter((n) => n in items);
    if (present.length === 0) r.add(where, `has none of the items ${BOOTLOADER_ITEMS.join(', ')}`);
    // MAAS only unpacks files whose ftype is archive.tar.xz into bootloaders/<type>/<arch>/.
    for (const n of present) item(n, 'archive.tar.xz', ['src_package', 'src_release', 'src_version']);
    return;
  }
  const dd = Object.keys(items).find((n) => n.startsWith('root-dd'));
  if (dd !== undefined && !('root-tgz' in items)) {
    r.add(where, `item ${dd}: MAAS 3.8's simplestreams models carry no root-dd (disk image) item, so it rejects this version; a single-file image must be a root-tgz`);
    return;
  }
  const required = kind === 'single-file' ? ['manifest', 'root-tgz'] : ['boot-kernel', 'boot-initrd', 'manifest'];
  const optional = kind === 'single-file' ? [] : ['squashfs', 'root-image.gz'];
  for (const n of required) {
    if (n in items) item(n, n);
    else r.add(where, `item ${n} is missing`);
  }
  for (const n of optional) if (n in items) item(n, n);
  if (kind === 'multi-file') {
    if (!('squashfs' in items) && !('root-image.gz' in items)) r.add(where, 'needs a squashfs or a root-image.gz item');
    r.day(where, version, 'support_eol');
    r.day(where, version, 'support_esm_eol');
  }
}

/**
 * Ours: MAAS selects a single-file product by os, release and arch alone
 * (image_sync's _image_product_matches_selection), so two such products with
 * the same three, in any products files of the tree, are one selection that
 * imports both under one name.
 */
function noteSelection(r: Report, seen: Map<string, string>, where: string, product: Obj): void {
  const [os, release, arch] = [product.os, product.release, product.arch];
  if (!isText(os) || !isText(release) || !isText(arch)) return; // reported by checkProduct
  const key = JSON.stringify([os, release, arch]);
  const first = seen.get(key);
  if (first === undefined) seen.set(key, where);
  else r.add(where, `has the os/release/arch ${os}/${release}/${arch} of ${first}; MAAS selects single-file images by those three and could not tell them apart`);
}

/**
 * MAAS 3.8 finds items by name and then stores each file as
 * BootResourceFileType(ftype): an unknown ftype is an error there, and a
 * kernel whose ftype says initrd would be served as one. So the ftype of a
 * named item must be that name (or archive.tar.xz for a bootloader).
 */
function checkItem(r: Report, where: string, item: unknown, ftype: string, extra: string[]): void {
  if (!isObj(item)) {
    r.add(where, 'is not an object');
    return;
  }
  if (item.ftype !== ftype) r.add(where, `ftype must be ${ftype}, not ${JSON.stringify(item.ftype)}`);
  if (!isText(item.path)) r.add(where, 'path is missing');
  if (typeof item.sha256 !== 'string' || !SHA256.test(item.sha256)) r.add(where, 'sha256 must be 64 lowercase hex digits');
  if (typeof item.size !== 'number' || !Number.isSafeInteger(item.size) || item.size < 0) r.add(where, 'size must be a whole number of bytes');
  if (item.kpackage !== undefined && item.kpackage !== null && typeof item.kpackage !== 'string') r.add(where, 'kpackage must be a string');
  for (const f of extra) {
    if (!isText(item[f])) r.add(where, item[f] === undefined ? `${f} is missing` : `${f} must be a non-empty string`);
  }
}

/** Every item of the tree, whatever its kind: its path must be usable, and mean one content. */
function notePath(r: Report, byPath: Map<string, Seen>, where: string, item: Obj): void {
  const path = item.path;
  if (!isText(path)) return; // reported by checkItem for the items MAAS reads
  const reason = unsafePathReason(path);
  if (reason) r.add(where, `path ${JSON.stringify(path)} is unsafe: ${reason}`);
  // MAAS fetches urljoin(source_url, path) unescaped: "%", "?" and "#" would change the URL.
  else if (/[%?#]/.test(path)) r.add(where, `path ${JSON.stringify(path)} has a "%", "?" or "#", so MAAS cannot fetch it by that path`);
  // Ours: the mirror's own metadata lives there, and an item must never replace it.
  else if (path.startsWith('streams/')) r.add(where, `path ${JSON.stringify(path)} lies under streams/, where the metadata lives`);
  const seen = byPath.get(path);
  if (!seen) byPath.set(path, { sha256: item.sha256, size: item.size, where });
  // Ours: one path is one file on disk, so everything naming it must describe the same bytes.
  else if (seen.sha256 !== item.sha256 || seen.size !== item.size) {
    r.add(where, `path ${path} is also used by ${seen.where} with another sha256 or size`);
  }
}

/** A path cannot be a file for one item and a directory for another. */
function checkLayout(r: Report, byPath: Map<string, Seen>): void {
  const dirs = new Set<string>();
  for (const path of byPath.keys()) {
    for (let i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) dirs.add(path.slice(0, i));
  }
  for (const [path, seen] of byPath) {
    if (dirs.has(path)) r.add(seen.where, `path ${path} is a file here but a directory for other items`);
  }
}
