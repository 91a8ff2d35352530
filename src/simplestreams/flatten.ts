import type { FlatItem, ProductsDocument, Scalar } from './types.js';

/** Fields that take part in inheritance and filters: strings and numbers only, as simplestreams' stringitems. */
function scalars(o: Record<string, unknown>): Record<string, Scalar> {
  const out: Record<string, Scalar> = {};
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))) out[k] = v;
  }
  return out;
}

/**
 * Every item with its inherited fields: top level → product → version →
 * item, a lower level overriding, plus product_name, version_name and
 * item_name (set after each level's own fields, as simplestreams does).
 */
export function flattenProducts(doc: ProductsDocument): FlatItem[] {
  const out: FlatItem[] = [];
  const top = scalars(doc);
  for (const [productId, product] of Object.entries(doc.products)) {
    const p = { ...top, ...scalars(product), product_name: productId };
    for (const [versionName, version] of Object.entries(product.versions)) {
      const v = { ...p, ...scalars(version), version_name: versionName };
      for (const [itemName, item] of Object.entries(version.items)) {
        out.push({
          contentId: doc.content_id,
          productId,
          versionName,
          itemName,
          path: item.path,
          sha256: item.sha256,
          size: item.size,
          fields: { ...v, ...scalars(item), item_name: itemName },
        });
      }
    }
  }
  return out;
}
