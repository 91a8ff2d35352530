import type { FlatItem, Item, ProductsDocument, Scalar } from './types.js';

/**
 * The fields of one level that take part in inheritance and filters, as
 * python simplestreams' `stringitems` picks them: strings, and numbers
 * (python's `isinstance(v, (int, float))`). Python's bool is an int, so a
 * JSON true/false takes part too, as str(True) = "True"; we spell it the same
 * so a filter written for sstream-mirror keeps matching. Objects, arrays and
 * null never do.
 */
function scalars(level: Record<string, unknown>): [string, Scalar][] {
  const out: [string, Scalar][] = [];
  for (const [k, v] of Object.entries(level)) {
    if (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))) out.push([k, v]);
    else if (typeof v === 'boolean') out.push([k, v ? 'True' : 'False']);
  }
  return out;
}

/**
 * `base` with `levels` laid over it, a later field overriding (and keeping its place). A field named
 * "__proto__" is defined, not assigned: it must stay a field.
 */
function over(base: Record<string, Scalar>, ...levels: [string, Scalar][][]): Record<string, Scalar> {
  const out = { ...base };
  for (const level of levels) {
    for (const [k, v] of level) {
      if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
      else out[k] = v;
    }
  }
  return out;
}

/**
 * Every item with its inherited fields, as python simplestreams'
 * `products_exdata(tree, (product, version, item))` computes them for
 * sstream-mirror's filters: the whole top level's scalars (so content_id,
 * format, datatype and updated are all there), then the product's, the
 * version's and the item's, a lower level overriding; each level's name
 * (product_name, version_name, item_name) is set right after that level's
 * own fields, so a field of a deeper level could still override it.
 *
 * `_aliases` expansion (util.expand_tree) is not done: MAAS streams do not
 * use it, and MAAS 3.8 reads documents without expanding it either.
 */
export function flattenProducts(doc: ProductsDocument): FlatItem[] {
  const out: FlatItem[] = [];
  // Each level's fields merged once; an item's are laid over its version's when asked for.
  const top = over({}, scalars(doc));
  for (const [productId, product] of Object.entries(doc.products)) {
    const p = over(top, scalars(product), [['product_name', productId]]);
    for (const [versionName, version] of Object.entries(product.versions)) {
      const v = over(p, scalars(version), [['version_name', versionName]]);
      for (const [itemName, item] of Object.entries(version.items)) {
        out.push(new Flat(doc.content_id, productId, versionName, itemName, item, v));
      }
    }
  }
  return out;
}

/**
 * One item. Its fields are merged each time they are read, not kept: held for 40,000 items (10,000
 * products) they took some 70 MB, and every reader looks at them once or a few times, then lets go.
 */
class Flat implements FlatItem {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  readonly #item: Item;
  readonly #version: Record<string, Scalar>;

  constructor(
    readonly contentId: string,
    readonly productId: string,
    readonly versionName: string,
    readonly itemName: string,
    item: Item,
    version: Record<string, Scalar>,
  ) {
    this.path = item.path;
    this.sha256 = item.sha256;
    this.size = item.size;
    this.#item = item;
    this.#version = version;
  }

  get fields(): Record<string, Scalar> {
    return over(this.#version, scalars(this.#item), [['item_name', this.itemName]]);
  }
}
