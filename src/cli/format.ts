import { formatBytes, plural } from '../format.js';
import type { SyncReport } from '../mirror/sync.js';

export function printPlan(out: NodeJS.WritableStream, r: SyncReport): void {
  if (r.plan.changes.length === 0) out.write('no changes: the current snapshot already has everything selected\n');
  for (const c of r.plan.changes) {
    out.write(`${c.action} ${c.productId} ${c.version} (${formatBytes(c.bytes)})\n`);
  }
  out.write(`to fetch: ${plural(r.plan.filesToFetch, 'file')}, ${formatBytes(r.plan.bytesToFetch)}\n`);
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
      `fetched ${plural(r.downloaded.files, 'file')}, ${formatBytes(r.downloaded.bytes)} in ${secs}s\n`,
  );
  for (const c of r.plan.changes) out.write(`  ${c.action} ${c.productId} ${c.version}\n`);
  if (r.gc && (r.gc.blobsRemoved > 0 || r.gc.snapshotsRemoved.length > 0)) {
    out.write(`  gc freed ${formatBytes(r.gc.bytesFreed)} in ${plural(r.gc.blobsRemoved, 'blob')}\n`);
  }
  printWarnings(out, r);
  printFailures(out, r);
}

function printFailures(out: NodeJS.WritableStream, r: SyncReport): void {
  if (r.failures.length === 0) return;
  out.write(`${plural(r.failures.length, 'failure')}:\n`);
  for (const f of r.failures) out.write(`  [${f.source}] ${f.code}: ${f.message}\n`);
}
