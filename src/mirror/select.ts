import type { SourceConfig } from '../config/load.js';
import { MetadataError } from '../errors.js';
import { flattenProducts } from '../simplestreams/flatten.js';
import { matchesGroups } from '../simplestreams/filter.js';
import { assertSafeItemPath } from '../simplestreams/paths.js';
import { newestVersions } from '../simplestreams/versions.js';
import type { FlatItem } from '../simplestreams/types.js';
import type { SourceContent } from './source.js';
import { joinUrl } from './url.js';

/** One selected item file, as a sync needs it. */
export interface WantedFile {
  readonly source: string;
  readonly path: string;
  readonly url: string;
  readonly sha256: string;
  readonly size: number;
  readonly ftype?: string;
}

export interface SelectedVersion {
  readonly contentId: string;
  readonly productId: string;
  readonly version: string;
  /** Item names kept by the filters. */
  readonly items: readonly string[];
  readonly files: readonly WantedFile[];
}

export interface Selection {
  readonly versions: readonly SelectedVersion[];
  /** Problems that rule out single items (e.g. two sha256 at one path). */
  readonly problems: readonly { path: string; message: string }[];
}

/**
 * Flatten, filter, keep the newest `maxVersions` versions per product. A
 * version counts when at least one of its items passes the filters, as with
 * sstream-mirror.
 */
export function selectContent(source: SourceConfig, content: SourceContent, items: readonly FlatItem[] = flattenProducts(content.doc)): Selection {
  const byProduct = new Map<string, Map<string, FlatItem[]>>();
  const problems: { path: string; message: string }[] = [];
  const seenPaths = new Map<string, FlatItem>();
  // A version with one bad item is left out whole: MAAS takes a version as complete or not at all.
  const rejected = new Set<string>();
  const reject = (item: FlatItem, message: string) => {
    problems.push({ path: item.path, message });
    rejected.add(JSON.stringify([item.productId, item.versionName]));
  };
  for (const item of items) {
    // Fields are merged when read (simplestreams/flatten.ts): without filters there is nothing to read them for.
    if (source.filters.length > 0 && !matchesGroups(source.filters, item.fields)) continue;
    try {
      assertSafeItemPath(item.path, `${content.contentId} ${item.productId} ${item.versionName} ${item.itemName}`);
    } catch (err) {
      reject(item, (err as Error).message);
      continue;
    }
    const other = seenPaths.get(item.path);
    if (other && (other.sha256 !== item.sha256 || other.size !== item.size)) {
      reject(
        item,
        new MetadataError(content.contentId, `path ${item.path} is listed with two different sha256/size (${other.productId} ${other.versionName} and ${item.productId} ${item.versionName})`).message,
      );
      continue;
    }
    seenPaths.set(item.path, item);
    let versions = byProduct.get(item.productId);
    if (!versions) byProduct.set(item.productId, (versions = new Map()));
    let items = versions.get(item.versionName);
    if (!items) versions.set(item.versionName, (items = []));
    items.push(item);
  }
  const out: SelectedVersion[] = [];
  for (const [productId, versions] of byProduct) {
    for (const key of [...versions.keys()]) if (rejected.has(JSON.stringify([productId, key]))) versions.delete(key);
    for (const version of newestVersions([...versions.keys()], source.maxVersions)) {
      const items = versions.get(version)!;
      out.push({
        contentId: content.contentId,
        productId,
        version,
        items: items.map((i) => i.itemName),
        files: items.map((i) => {
          const ftype = i.fields.ftype;
          return { source: source.name, path: i.path, url: joinUrl(source.url, i.path), sha256: i.sha256, size: i.size, ftype: typeof ftype === 'string' ? ftype : undefined };
        }),
      });
    }
  }
  return { versions: out, problems };
}
