import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { ExportBlobUnreadableError, ExportError, NoSnapshotError, UsageError, errnoOf } from '../errors.js';
import { exportPublic, type SigningKey } from '../pgp/keys.js';
import { clearsign, detachSign } from '../pgp/sign.js';
import type { IndexDocument } from '../simplestreams/types.js';
import type { BlobStore } from '../store/blobs.js';
import { writeFileAtomic } from '../store/fsutil.js';
import type { Layout } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { SNAPSHOT_ID_RE } from '../store/snapshots.js';
import { copyVerified, holdsVerified } from './export-copy.js';
import { renderExportTree } from './export-tree.js';
import { LOCAL_SOURCE, renameLocalForExport } from './local-images.js';
import type { PublishContent } from './next-tree.js';
import { readPublished } from './published.js';
import type { SyncProgress } from './progress.js';

export interface ExportOptions {
  readonly layout: Layout;
  readonly store: BlobStore;
  readonly key: SigningKey;
  readonly dir: string;
  /** An earlier export's snapshot: files it held are left out. */
  readonly since?: string;
  readonly logger: Logger;
  readonly progress?: SyncProgress;
  readonly signal?: AbortSignal;
}

export interface ExportedFile {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  /** written now; kept: already there and verified (a resumed export); omitted: the --since snapshot held it. */
  readonly status: 'written' | 'kept' | 'omitted';
}

export interface ExportReport {
  readonly dir: string;
  readonly snapshot: string;
  readonly since: string | undefined;
  readonly signedBy: string;
  readonly files: readonly ExportedFile[];
  readonly metadata: readonly string[];
  readonly written: { readonly files: number; readonly bytes: number };
  readonly kept: { readonly files: number; readonly bytes: number };
  readonly omitted: { readonly files: number; readonly bytes: number };
  /** On-demand items not in the store: listed by the metadata, not on the disk. */
  readonly notHeld: readonly string[];
  /** Files the store could not give (missing, quarantined): named, their versions left out of the export. */
  readonly unreadable: readonly { readonly path: string; readonly code: string; readonly message: string }[];
}

/** What an export held, kept in state/ so a later --since works after gc pruned its snapshot. */
interface ExportRecord {
  readonly snapshot: string;
  readonly sha256: readonly string[];
}

/**
 * Writes the current snapshot as a simplestreams tree a site can sync from:
 * item files first (verified, resumable), then the products files and the
 * index (signed with this mirror's key, FAT-safe names), keyring.gpg and
 * README.txt. Until index.sjson is written the folder is not an export a
 * sync would take.
 */
export async function exportSnapshot(opts: ExportOptions): Promise<ExportReport> {
  const published = await readPublished(opts.layout);
  if (!published) throw new NoSnapshotError();
  const { manifest } = published;
  const sinceHeld = opts.since === undefined ? undefined : await heldBy(opts.layout, opts.since);
  const root = opts.layout.snapshot(manifest.id);
  const snapshotIndex = JSON.parse(await readFile(join(root, 'streams', 'v1', 'index.json'), 'utf8')) as IndexDocument;
  const { index, contents } = withLocalRenamed(snapshotIndex, [...published.contents.values()], opts.key.fingerprint);
  const tree = renderExportTree(index, contents);
  await mkdir(opts.dir, { recursive: true }).catch((err: unknown) => {
    throw new ExportError(`cannot create ${opts.dir}: ${errnoOf(err) ?? String(err)}; check the disk is mounted writable`);
  });

  const unreadable: ExportBlobUnreadableError[] = [];
  const files = await exportItems(opts, manifest.files, tree.itemPaths, sinceHeld, unreadable);
  const kept = unreadable.length > 0 ? withoutVersionsHolding(index, contents, new Set(unreadable.map((e) => e.path))) : undefined;
  const metadata = await writeMetadata(opts, kept ? renderExportTree(kept.index, kept.contents) : tree, manifest.id);
  const lostSha = new Set(unreadable.map((e) => manifest.files[e.path]?.sha256));
  await recordExport(opts.layout, manifest.id, Object.fromEntries(Object.entries(manifest.files).filter(([, f]) => !lostSha.has(f.sha256))));
  const sum = (s: ExportedFile['status']) => {
    const l = files.filter((f) => f.status === s);
    return { files: l.length, bytes: l.reduce((n, f) => n + f.size, 0) };
  };
  const notHeld = Object.entries(manifest.files).filter(([, f]) => !f.held).map(([p]) => p);
  opts.logger.info({ snapshot: manifest.id, dir: opts.dir, since: opts.since }, 'exported');
  return {
    dir: opts.dir,
    snapshot: manifest.id,
    since: opts.since,
    signedBy: opts.key.fingerprint,
    files,
    metadata,
    written: sum('written'),
    kept: sum('kept'),
    omitted: sum('omitted'),
    notHeld,
    unreadable: unreadable.map((e) => ({ path: e.path, code: e.code, message: e.message })),
  };
}

/** The contents (and index) without the versions that list any of `paths` (files the export could not copy). */
function withoutVersionsHolding(
  index: IndexDocument,
  contents: readonly PublishContent[],
  paths: ReadonlySet<string>,
): { index: IndexDocument; contents: PublishContent[] } {
  const out: IndexDocument = { ...index, index: { ...index.index } };
  const kept = contents.map((c) => {
    const products: typeof c.doc.products = {};
    for (const [pid, p] of Object.entries(c.doc.products)) {
      const versions = Object.fromEntries(Object.entries(p.versions).filter(([, v]) => Object.values(v.items).every((i) => !paths.has(i.path))));
      if (Object.keys(versions).length > 0) products[pid] = { ...p, versions };
    }
    const entry = index.index[c.contentId];
    if (entry) out.index[c.contentId] = { ...entry, products: Object.keys(products).sort() };
    return { ...c, doc: { ...c.doc, products } };
  });
  return { index: out, contents: kept };
}

/** This mirror's site-built images under the content id that names it (see exportedLocalContentId). */
function withLocalRenamed(index: IndexDocument, contents: PublishContent[], fingerprint: string): { index: IndexDocument; contents: PublishContent[] } {
  const out: IndexDocument = { ...index, index: { ...index.index } };
  const renamed = contents.map((c) => {
    const entry = index.index[c.contentId];
    if (c.source !== LOCAL_SOURCE || !entry) return c;
    const r = renameLocalForExport(c, fingerprint);
    delete out.index[c.contentId];
    out.index[r.contentId] = { ...entry, products: Object.keys(r.doc.products).sort() };
    return r;
  });
  return { index: out, contents: renamed };
}

/** sha256s the --since snapshot held: from its export record, else from its manifest if still kept. */
async function heldBy(layout: Layout, id: string): Promise<Set<string>> {
  if (!SNAPSHOT_ID_RE.test(id)) throw new UsageError(`--since ${id} is not a snapshot id (like 20261126T201500123Z-1a2b3c): give the one in the earlier export's README.txt`);
  try {
    const rec = JSON.parse(await readFile(layout.exportRecord(id), 'utf8')) as ExportRecord;
    return new Set(rec.sha256);
  } catch {
    // No record: a snapshot exported before records existed, or never exported; its manifest still says what it held.
  }
  try {
    const m = await readManifest(layout, id);
    return new Set(Object.values(m.files).filter((f) => f.held).map((f) => f.sha256));
  } catch {
    throw new UsageError(`--since: this mirror knows nothing of snapshot ${id} (never exported here, and pruned): make a full export instead of --since`);
  }
}

async function exportItems(
  opts: ExportOptions,
  manifestFiles: Readonly<Record<string, { sha256: string; size: number; held: boolean }>>,
  itemPaths: ReadonlyMap<string, string>,
  sinceHeld: Set<string> | undefined,
  unreadable: ExportBlobUnreadableError[],
): Promise<ExportedFile[]> {
  const entries = Object.entries(manifestFiles).filter(([, f]) => f.held).sort(([a], [b]) => (a < b ? -1 : 1));
  const toWrite = entries.filter(([, f]) => !sinceHeld?.has(f.sha256));
  opts.progress?.setPhase('download');
  opts.progress?.plan(toWrite.length, toWrite.reduce((n, [, f]) => n + f.size, 0));
  const out: ExportedFile[] = [];
  for (const [path, f] of entries) {
    const safe = itemPaths.get(path) ?? path;
    if (sinceHeld?.has(f.sha256)) {
      out.push({ path: safe, sha256: f.sha256, size: f.size, status: 'omitted' });
      continue;
    }
    const target = join(opts.dir, safe);
    opts.progress?.start(safe);
    await mkdir(dirname(target), { recursive: true });
    const ctx = { signal: opts.signal, onBytes: (n: number) => opts.progress?.bytes(n), path };
    let status: ExportedFile['status'];
    if (await holdsVerified(target, f.sha256, f.size, { signal: opts.signal })) {
      status = 'kept';
      opts.progress?.bytes(f.size);
    } else {
      try {
        await copyVerified(opts.store.path(f.sha256), target, f.sha256, f.size, ctx);
      } catch (err) {
        if (!(err instanceof ExportBlobUnreadableError)) throw err;
        opts.logger.error({ err, path }, err.message);
        unreadable.push(err);
        opts.progress?.finish(safe);
        continue;
      }
      status = 'written';
    }
    opts.progress?.finish(safe);
    out.push({ path: safe, sha256: f.sha256, size: f.size, status });
  }
  opts.progress?.setPhase('publish');
  return out;
}

async function writeMetadata(opts: ExportOptions, tree: ReturnType<typeof renderExportTree>, snapshot: string): Promise<string[]> {
  const written: string[] = [];
  const put = async (rel: string, data: string | Uint8Array) => {
    const file = join(opts.dir, rel);
    await mkdir(dirname(file), { recursive: true });
    await writeFileAtomic(file, data);
    written.push(rel);
  };
  const sign = opts.key.privateKey;
  for (const { basePath, doc } of tree.products) {
    const text = JSON.stringify(doc, null, 1) + '\n';
    await put(`${basePath}.json`, text);
    await put(`${basePath}.json.gpg`, await detachSign(Buffer.from(text), sign));
    await put(`${basePath}.sjson`, await clearsign(text, sign));
  }
  await put('keyring.gpg', exportPublic(opts.key, false));
  await put('README.txt', readme(snapshot, opts.since, opts.key.fingerprint));
  const plain = JSON.stringify(tree.plain, null, 1) + '\n';
  await put('streams/v1/index.json', plain);
  await put('streams/v1/index.json.gpg', await detachSign(Buffer.from(plain), sign));
  // Last: a sync takes the folder only once its signed index is there.
  await put('streams/v1/index.sjson', await clearsign(JSON.stringify(tree.signed, null, 1) + '\n', sign));
  return written;
}

async function recordExport(layout: Layout, id: string, files: Readonly<Record<string, { sha256: string; held: boolean }>>): Promise<void> {
  const rec: ExportRecord = { snapshot: id, sha256: [...new Set(Object.values(files).filter((f) => f.held).map((f) => f.sha256))].sort() };
  await mkdir(dirname(layout.exportRecord(id)), { recursive: true });
  await writeFileAtomic(layout.exportRecord(id), JSON.stringify(rec) + '\n');
}

function readme(snapshot: string, since: string | undefined, fingerprint: string): string {
  const fpr = fingerprint.replace(/(.{4})/g, '$1 ').trim();
  return [
    'maas-mirror export',
    '==================',
    '',
    `Snapshot ${snapshot} of a maas-mirror: a simplestreams tree of MAAS boot images, signed by that mirror.`,
    since
      ? `This is a DELTA: it holds only the files snapshot ${since} did not hold. Its metadata is complete; import it\n` +
        `on a mirror that imported the export of ${since} (or any later one) first.`
      : 'This is a FULL export: it holds every file of the snapshot.',
    '',
    'Signing key fingerprint (check it against the one HQ gives you by another channel, once):',
    `  ${fpr}`,
    '  gpg --show-keys keyring.gpg',
    '',
    'To import on an air-gapped maas-mirror, add this disk as a source (once), then sync:',
    '  sources:',
    '    - name: hq',
    '      url: /media/usb/maas-export/      # where this folder is mounted',
    '      keyring: /etc/maas-mirror/hq.gpg  # a copy of keyring.gpg, checked as above',
    '  maas-mirror sync',
    '',
    'An export older than the last one imported is refused as a replay (maas-mirror sync --allow-downgrade overrides).',
    '',
  ].join('\n');
}
