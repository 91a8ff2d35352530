import type { SyncReport } from '../mirror/sync.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export function printPlan(out: NodeJS.WritableStream, r: SyncReport): void {
  if (r.plan.changes.length === 0) out.write('no changes: the current snapshot already has everything selected\n');
  for (const c of r.plan.changes) {
    out.write(`${c.action} ${c.productId} ${c.version} (${formatBytes(c.bytes)})\n`);
  }
  out.write(`to fetch: ${r.plan.filesToFetch} files, ${formatBytes(r.plan.bytesToFetch)}\n`);
  printSpace(out, r);
  printWarnings(out, r);
  printFailures(out, r);
}

function printSpace(out: NodeJS.WritableStream, r: SyncReport): void {
  const s = r.space;
  if (!s) {
    out.write('free space on dataDir: unknown (cannot measure its file system)\n');
    return;
  }
  const resumed = s.resumable > 0 ? `, ${formatBytes(s.resumable)} of it already in partial files` : '';
  out.write(
    `free space on dataDir: ${formatBytes(s.available)}; needed: ${formatBytes(s.needed)} (${formatBytes(s.toFetch)} to fetch${resumed}, ` +
      `${formatBytes(s.margin)} kept free for metadata): ${s.fits ? 'fits' : 'DOES NOT FIT, a sync would stop before downloading'}\n`,
  );
}

function printWarnings(out: NodeJS.WritableStream, r: SyncReport): void {
  if (r.warnings.length === 0) return;
  out.write(`${r.warnings.length} warning${r.warnings.length > 1 ? 's' : ''}:\n`);
  for (const w of r.warnings) out.write(`  [${w.source}] ${w.code}: ${w.message}\n`);
}

export function printReport(out: NodeJS.WritableStream, r: SyncReport): void {
  const secs = (r.durationMs / 1000).toFixed(1);
  out.write(
    `sync ${r.id}: ${r.result}; ${r.published ? `published snapshot ${r.snapshot}` : `no new snapshot (current: ${r.snapshot ?? 'none'})`}; ` +
      `fetched ${r.downloaded.files} files, ${formatBytes(r.downloaded.bytes)} in ${secs}s\n`,
  );
  for (const c of r.plan.changes) out.write(`  ${c.action} ${c.productId} ${c.version}\n`);
  if (r.gc && (r.gc.blobsRemoved > 0 || r.gc.snapshotsRemoved.length > 0)) {
    out.write(`  gc freed ${formatBytes(r.gc.bytesFreed)} in ${r.gc.blobsRemoved} blobs\n`);
  }
  printWarnings(out, r);
  printFailures(out, r);
}

function printFailures(out: NodeJS.WritableStream, r: SyncReport): void {
  if (r.failures.length === 0) return;
  out.write(`${r.failures.length} failure${r.failures.length > 1 ? 's' : ''}:\n`);
  for (const f of r.failures) out.write(`  [${f.source}] ${f.code}: ${f.message}\n`);
}
