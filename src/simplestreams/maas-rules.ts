import { parseRfc2822 } from './dates.js';
import type { IndexDocument, Item, Product, ProductsDocument } from './types.js';

/**
 * What MAAS (3.8 validates strictly) demands of a boot source, as a list of
 * problems: a single one fails the whole import on the region, so the
 * mirror checks its own tree against these before anyone else does.
 */

export interface MaasProblem {
  readonly where: string;
  readonly message: string;
}

const PRODUCT_FIELDS = ['arch', 'label', 'os', 'release', 'release_title', 'subarch', 'subarches', 'version'];
const BOOTLOADER_FIELDS = ['arch', 'arches', 'label', 'os', 'bootloader-type'];
const BOOTLOADER_ITEMS = ['grub2-signed', 'shim-signed', 'grub2', 'syslinux'];
const BOOTLOADER_ITEM_FIELDS = ['path', 'sha256', 'size', 'src_package', 'src_release', 'src_version'];
const DATATYPES = ['image-ids', 'image-downloads'];
const IMAGE_ID = /:(v2|v3|v3\+platform):/;

type Kind = 'bootloader' | 'single-file' | 'multi-file';

function present(v: unknown): boolean {
  return (typeof v === 'string' && v !== '') || typeof v === 'number';
}

function scalarsOf(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => typeof v === 'string' || typeof v === 'number'));
}

function ftypes(items: Record<string, Item>): Set<string> {
  return new Set(Object.entries(items).map(([name, i]) => (typeof i.ftype === 'string' ? i.ftype : name)));
}

/** Which of MAAS's three product shapes this is. */
function kindOf(fields: Record<string, unknown>, product: Product): Kind {
  if (present(fields['bootloader-type'])) return 'bootloader';
  const anyVersion = Object.values(product.versions)[0];
  if (anyVersion && ftypes(anyVersion.items).has('root-tgz')) return 'single-file';
  return 'multi-file';
}

export function validateForMaas(index: IndexDocument, products: ReadonlyMap<string, ProductsDocument>): MaasProblem[] {
  const problems: MaasProblem[] = [];
  const add = (where: string, message: string) => problems.push({ where, message });
  const checkDate = (where: string, v: unknown) => {
    if (!present(v)) add(where, 'updated is missing');
    else if (!parseRfc2822(String(v))) add(where, `updated ${JSON.stringify(v)} is not an RFC 2822 date`);
  };
  const paths = new Map<string, { sha256: string; size: number; where: string }>();

  if (index.format !== 'index:1.0') add('index', 'format must be "index:1.0"');
  checkDate('index', index.updated);
  for (const [contentId, entry] of Object.entries(index.index)) {
    const where = `index entry ${contentId}`;
    if (entry.format !== 'products:1.0') add(where, 'format must be "products:1.0" (sstream-mirror skips entries without it)');
    if (!present(entry.path)) add(where, 'path is missing');
    if (!Array.isArray(entry.products)) add(where, 'products is missing');
    checkDate(where, entry.updated);
    const doc = products.get(entry.path);
    if (!doc) {
      add(where, `its products file ${entry.path} is missing`);
      continue;
    }
    const dwhere = `products file ${entry.path}`;
    if (doc.content_id !== contentId) add(dwhere, `content_id is ${JSON.stringify(doc.content_id)}, the index says ${contentId}`);
    if (!DATATYPES.includes(String(doc.datatype))) add(dwhere, `datatype must be image-ids or image-downloads, not ${JSON.stringify(doc.datatype)}`);
    checkDate(dwhere, doc.updated);
    if (!doc.products || typeof doc.products !== 'object') {
      add(dwhere, 'products is missing');
      continue;
    }
    const listed = [...(entry.products ?? [])].sort();
    const actual = Object.keys(doc.products).sort();
    if (JSON.stringify(listed) !== JSON.stringify(actual)) {
      add(where, `products lists ${listed.length} ids but the products file has ${actual.length} (${diff(listed, actual)})`);
    }
    const top = scalarsOf(doc);
    for (const [productId, product] of Object.entries(doc.products)) {
      const pwhere = `product ${productId}`;
      const fields = { ...top, ...scalarsOf(product) };
      const versions = Object.entries(product.versions ?? {});
      if (versions.length === 0) {
        add(pwhere, 'has no versions');
        continue;
      }
      const kind = kindOf(fields, product);
      const required = kind === 'bootloader' ? BOOTLOADER_FIELDS : PRODUCT_FIELDS;
      for (const f of required) if (!present(fields[f])) add(pwhere, `${f} is missing`);
      if (kind === 'bootloader' && !productId.includes(':1:')) add(pwhere, 'a bootloader product id must contain ":1:"');
      if (kind === 'multi-file' && !IMAGE_ID.test(productId)) add(pwhere, 'an image product id must contain ":v3:" (or ":v2:", ":v3+platform:")');
      for (const [versionName, version] of versions) {
        const vwhere = `${pwhere} version ${versionName}`;
        const items = version.items ?? {};
        const types = ftypes(items);
        if (kind === 'bootloader') {
          const loaders = Object.entries(items).filter(([name]) => BOOTLOADER_ITEMS.includes(name));
          if (loaders.length === 0) add(vwhere, `has none of the items ${BOOTLOADER_ITEMS.join(', ')}`);
          for (const [name, item] of loaders) {
            if (item.ftype !== 'archive.tar.xz') add(`${vwhere} item ${name}`, 'ftype must be archive.tar.xz');
            for (const f of BOOTLOADER_ITEM_FIELDS) if (!present(item[f])) add(`${vwhere} item ${name}`, `${f} is missing`);
          }
        } else if (kind === 'single-file') {
          for (const t of ['manifest', 'root-tgz']) if (!types.has(t)) add(vwhere, `item ${t} is missing`);
        } else {
          for (const t of ['boot-kernel', 'boot-initrd', 'manifest']) if (!types.has(t)) add(vwhere, `item ${t} is missing`);
          if (!types.has('squashfs') && !types.has('root-image.gz')) add(vwhere, 'needs a squashfs or root-image.gz item');
        }
        for (const [name, item] of Object.entries(items)) {
          const seen = paths.get(item.path);
          if (seen && (seen.sha256 !== item.sha256 || seen.size !== item.size)) {
            add(`${vwhere} item ${name}`, `path ${item.path} is also listed by ${seen.where} with another sha256 or size`);
          } else if (!seen) {
            paths.set(item.path, { sha256: item.sha256, size: item.size, where: `${vwhere} item ${name}` });
          }
        }
      }
    }
  }
  return problems;
}

function diff(a: string[], b: string[]): string {
  const onlyA = a.filter((x) => !b.includes(x));
  const onlyB = b.filter((x) => !a.includes(x));
  return [...onlyA.map((x) => `only in the index: ${x}`), ...onlyB.map((x) => `only in the file: ${x}`)].join(', ');
}
