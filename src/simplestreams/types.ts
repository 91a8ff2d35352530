/**
 * Simplestreams documents as published (index:1.0 and products:1.0).
 * Unknown fields are kept and passed through: upstream adds fields over time
 * and MAAS reads some we never look at.
 */

export type Scalar = string | number;

export interface IndexEntry {
  datatype?: string;
  format?: string;
  path: string;
  products?: string[];
  updated?: string;
  [field: string]: unknown;
}

export interface IndexDocument {
  format: 'index:1.0';
  updated?: string;
  index: Record<string, IndexEntry>;
  [field: string]: unknown;
}

export interface Item {
  ftype?: string;
  path: string;
  sha256: string;
  size: number;
  [field: string]: unknown;
}

export interface Version {
  items: Record<string, Item>;
  [field: string]: unknown;
}

export interface Product {
  versions: Record<string, Version>;
  [field: string]: unknown;
}

export interface ProductsDocument {
  format: 'products:1.0';
  content_id: string;
  datatype?: string;
  updated?: string;
  products: Record<string, Product>;
  [field: string]: unknown;
}

/** An item with every inherited field resolved, as filters see it. */
export interface FlatItem {
  readonly contentId: string;
  readonly productId: string;
  readonly versionName: string;
  readonly itemName: string;
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  /** top level → product → version → item scalars, plus product_name, version_name, item_name. */
  readonly fields: Readonly<Record<string, Scalar>>;
}
