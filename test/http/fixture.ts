import { createHash } from 'node:crypto';
import { link, mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';
import { Layout } from '../../src/store/layout.js';
import type { ManifestBootloader, ManifestFile, SnapshotManifest } from '../../src/store/manifest.js';

/**
 * Builds published snapshots the way the sync engine lays them out (blobs,
 * hard-linked tree, manifest, `current` symlink) so the servers can be tested
 * without it.
 */

export interface TempData {
  readonly dataDir: string;
  readonly layout: Layout;
  cleanup(): Promise<void>;
}

export async function tempDataDir(prefix = 'mm-http-'): Promise<TempData> {
  const dataDir = await mkdtemp(join(tmpdir(), prefix));
  return { dataDir, layout: new Layout(dataDir), cleanup: () => rm(dataDir, { recursive: true, force: true }) };
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Sortable ids in the sync engine's format. */
export function snapshotId(n: number): string {
  return `20261126T2015${String(n % 60).padStart(2, '0')}Z-${n.toString(16).padStart(6, '0')}`;
}

export interface ItemSpec {
  readonly content: Buffer | string;
  /** false: listed but not in the store (on-demand). */
  readonly held?: boolean;
  readonly source?: string;
  readonly ftype?: string;
}

export interface SnapshotSpec {
  readonly id: string;
  /** Tree files that are not items (streams/v1/…). */
  readonly metadata?: Readonly<Record<string, Buffer | string>>;
  readonly items?: Readonly<Record<string, Buffer | string | ItemSpec>>;
  readonly bootloaders?: readonly ManifestBootloader[];
  /** Point `current` at it (default true). */
  readonly switch?: boolean;
}

export async function writeBlob(layout: Layout, content: Buffer | string): Promise<string> {
  const hash = sha256(content);
  const file = layout.blob(hash);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, content);
  return hash;
}

export async function publishSnapshot(layout: Layout, spec: SnapshotSpec): Promise<SnapshotManifest> {
  const root = layout.snapshot(spec.id);
  await mkdir(root, { recursive: true });
  const files: Record<string, ManifestFile> = {};
  for (const [path, raw] of Object.entries(spec.items ?? {})) {
    const item: ItemSpec = typeof raw === 'string' || Buffer.isBuffer(raw) ? { content: raw } : raw;
    const held = item.held ?? true;
    const content = item.content;
    const hash = sha256(content);
    if (held) {
      await writeBlob(layout, content);
      const dest = join(root, path);
      await mkdir(dirname(dest), { recursive: true });
      await unlink(dest).catch(() => undefined);
      await link(layout.blob(hash), dest);
    }
    files[path] = { sha256: hash, size: Buffer.byteLength(content), source: item.source ?? 'stable', held, ftype: item.ftype };
  }
  for (const [path, content] of Object.entries(spec.metadata ?? {})) {
    const dest = join(root, path);
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(dest, content);
  }
  const manifest: SnapshotManifest = {
    id: spec.id,
    created: new Date().toISOString(),
    sources: { stable: { url: 'https://images.maas.io/ephemeral-v3/stable/', onDemand: false } },
    files,
    bootloaders: spec.bootloaders ?? [],
    contents: [],
    fingerprint: sha256(JSON.stringify(files)),
    signedBy: 'TEST',
  };
  await mkdir(layout.manifestsDir, { recursive: true });
  await writeFile(layout.manifest(spec.id), JSON.stringify(manifest, null, 1));
  if (spec.switch ?? true) await switchCurrent(layout, spec.id);
  return manifest;
}

/** New symlink renamed over the old one, as the sync engine does. */
export async function switchCurrent(layout: Layout, id: string): Promise<void> {
  const tmp = `${layout.current}.tmp-${Math.random().toString(36).slice(2)}`;
  await symlink(join('snapshots', id), tmp);
  await rename(tmp, layout.current);
}

export interface CapturedLogger {
  readonly logger: Logger;
  readonly lines: Record<string, unknown>[];
}

/** A real pino logger whose JSON lines are kept for assertions. */
export function captureLogger(level = 'debug'): CapturedLogger {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level, destination }), lines };
}

/** A realistic small region tree: index + products, signed variants, two items. */
export function sampleTree(tag: string): { metadata: Record<string, string>; items: Record<string, string> } {
  const products = JSON.stringify({
    content_id: 'com.ubuntu.maas:stable:v3:download',
    datatype: 'image-ids',
    format: 'products:1.0',
    updated: 'Thu, 24 Jul 2025 09:01:43 +0000',
    tag,
    products: {},
  });
  const index = JSON.stringify({
    format: 'index:1.0',
    updated: 'Thu, 24 Jul 2025 09:01:43 +0000',
    tag,
    index: {
      'com.ubuntu.maas:stable:v3:download': {
        datatype: 'image-ids',
        format: 'products:1.0',
        path: 'streams/v1/com.ubuntu.maas:stable:v3:download.json',
        products: [],
        updated: 'Thu, 24 Jul 2025 09:01:43 +0000',
      },
    },
    padding: 'x'.repeat(2000),
  });
  const signed = (body: string) =>
    `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n${body}\n-----BEGIN PGP SIGNATURE-----\n\nfake-${tag}\n-----END PGP SIGNATURE-----\n`;
  const sig = `-----BEGIN PGP SIGNATURE-----\n\nfake-detached-${tag}\n-----END PGP SIGNATURE-----\n`;
  return {
    metadata: {
      'streams/v1/index.json': index,
      'streams/v1/index.sjson': signed(index),
      'streams/v1/index.json.gpg': sig,
      'streams/v1/com.ubuntu.maas:stable:v3:download.json': products,
      'streams/v1/com.ubuntu.maas:stable:v3:download.sjson': signed(products),
      'streams/v1/com.ubuntu.maas:stable:v3:download.json.gpg': sig,
    },
    items: {
      'ubuntu/amd64/ga-24.04/noble/stable/20250701/boot-kernel': `kernel-${tag}-`.repeat(5000),
      'ubuntu/amd64/ga-24.04/noble/stable/20250701/boot-initrd': `initrd-${tag}-`.repeat(20000),
    },
  };
}
