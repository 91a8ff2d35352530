import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Layout } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { currentSnapshotId, snapshotIds, type SnapshotInfo } from '../store/snapshots.js';
import type { ProductsDocument } from '../simplestreams/types.js';

export interface VersionSummary {
  readonly version: string;
  readonly files: number;
  readonly bytes: number;
}

export interface ProductSummary {
  readonly id: string;
  readonly contentId: string;
  readonly source: string;
  /** Product fields MAAS selects on, when the product has them. */
  readonly os?: string;
  readonly release?: string;
  readonly arch?: string;
  readonly subarch?: string;
  readonly label?: string;
  /** The kernel flavour (generic, lowlatency, …): products differing only in it look alike otherwise. */
  readonly kflavor?: string;
  /** e.g. "24.04 LTS" */
  readonly title?: string;
  /** Newest first. */
  readonly versions: readonly VersionSummary[];
}

interface Entry {
  readonly info: Omit<SnapshotInfo, 'current'>;
  products?: Promise<ProductSummary[]>;
}

/**
 * What the published snapshots hold, for the status page, the API and the
 * snapshot-age gauge. A snapshot never changes once published, so each is
 * read once; only the directory listing and `current` are looked at again.
 */
export class SnapshotCatalog {
  private readonly entries = new Map<string, Promise<Entry | undefined>>();

  constructor(private readonly dataDir: () => string) {}

  private get layout(): Layout {
    return new Layout(this.dataDir());
  }

  currentId(): Promise<string | undefined> {
    return currentSnapshotId(this.layout);
  }

  async snapshots(): Promise<SnapshotInfo[]> {
    const layout = this.layout;
    const [ids, current] = await Promise.all([snapshotIds(layout), currentSnapshotId(layout)]);
    const out: SnapshotInfo[] = [];
    for (const id of ids) {
      const e = await this.entry(layout, id);
      if (e) out.push({ ...e.info, current: id === current });
    }
    this.forgetAllBut(layout, ids);
    return out;
  }

  /** The current snapshot's id and publication time, if one is published. */
  async current(): Promise<{ id: string; created: string } | undefined> {
    const layout = this.layout;
    const id = await currentSnapshotId(layout);
    const e = id === undefined ? undefined : await this.entry(layout, id);
    return id && e ? { id, created: e.info.created } : undefined;
  }

  /** Products and versions of the current snapshot, from its products files. */
  async products(): Promise<ProductSummary[]> {
    const layout = this.layout;
    const id = await currentSnapshotId(layout);
    const e = id === undefined ? undefined : await this.entry(layout, id);
    if (!id || !e) return [];
    e.products ??= readProducts(layout, id);
    return e.products;
  }

  private entry(layout: Layout, id: string): Promise<Entry | undefined> {
    const key = `${layout.dataDir}\0${id}`;
    let e = this.entries.get(key);
    if (!e) {
      e = readManifest(layout, id).then(
        (m) => {
          const files = Object.values(m.files);
          return { info: { id, created: m.created, files: files.length, bytes: files.reduce((n, f) => n + f.size, 0) } };
        },
        () => {
          // Not there (yet, or pruned): ask again next time.
          this.entries.delete(key);
          return undefined;
        },
      );
      this.entries.set(key, e);
    }
    return e;
  }

  private forgetAllBut(layout: Layout, ids: readonly string[]): void {
    const keep = new Set(ids.map((id) => `${layout.dataDir}\0${id}`));
    for (const key of this.entries.keys()) if (!keep.has(key)) this.entries.delete(key);
  }
}

async function readProducts(layout: Layout, id: string): Promise<ProductSummary[]> {
  const manifest = await readManifest(layout, id);
  const out: ProductSummary[] = [];
  for (const c of manifest.contents) {
    let doc: ProductsDocument;
    try {
      doc = JSON.parse(await readFile(join(layout.snapshot(id), `${c.basePath}.json`), 'utf8')) as ProductsDocument;
    } catch {
      continue;
    }
    for (const [pid, p] of Object.entries(doc.products ?? {})) {
      const versions = Object.entries(p.versions ?? {})
        .map(([version, v]) => {
          const items = Object.values(v.items ?? {});
          return { version, files: items.length, bytes: items.reduce((n, i) => n + (Number(i.size) || 0), 0) };
        })
        .sort((a, b) => (a.version < b.version ? 1 : a.version > b.version ? -1 : 0));
      const field = (k: string): string | undefined => {
        const v = p[k] ?? doc[k];
        return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
      };
      out.push({
        id: pid,
        contentId: c.contentId,
        source: c.source,
        os: field('os'),
        release: field('release'),
        arch: field('arch'),
        subarch: field('subarch'),
        label: field('label'),
        kflavor: field('kflavor'),
        title: field('release_title'),
        versions,
      });
    }
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
