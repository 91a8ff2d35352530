import { readFile } from 'node:fs/promises';
import type { Layout } from './layout.js';

/**
 * What a published snapshot lists, written beside it (manifests/<id>.json)
 * so that the servers can answer hash-prefix and bootloader requests, and
 * pull through on-demand items, without re-reading every products file.
 */
export interface SnapshotManifest {
  readonly id: string;
  /** ISO 8601 time of publication. */
  readonly created: string;
  readonly sources: Readonly<Record<string, { readonly url: string; readonly onDemand: boolean }>>;
  /** Every file the tree lists, by item path (relative to the tree root). */
  readonly files: Readonly<Record<string, ManifestFile>>;
  /** The newest version of every bootloader product in the snapshot. */
  readonly bootloaders: readonly ManifestBootloader[];
  /** Which source each products file came from, and where it stands in the tree. */
  readonly contents: readonly { readonly contentId: string; readonly source: string; readonly basePath: string }[];
  /** Identifies the published content regardless of dates; equal means a resync has nothing to do. */
  readonly fingerprint: string;
  /** The public key fingerprint that signed the tree. */
  readonly signedBy: string;
}

export interface ManifestFile {
  readonly sha256: string;
  readonly size: number;
  readonly source: string;
  /** false for an on-demand item not yet in the store (served by pull-through). */
  readonly held: boolean;
  readonly ftype?: string;
}

export interface ManifestBootloader {
  readonly productId: string;
  readonly bootloaderType: string;
  readonly arch: string;
  readonly os: string;
  readonly version: string;
  /** Item name (grub2-signed, shim-signed, syslinux…) → item path. */
  readonly items: Readonly<Record<string, string>>;
}

export async function readManifest(layout: Layout, id: string): Promise<SnapshotManifest> {
  return JSON.parse(await readFile(layout.manifest(id), 'utf8')) as SnapshotManifest;
}
