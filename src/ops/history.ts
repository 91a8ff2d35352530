import { mkdir, readFile } from 'node:fs/promises';
import { Layout } from '../store/layout.js';
import { writeFileAtomic } from '../store/fsutil.js';
import type { SyncRecord } from './coordinator.js';

/** The file holds at most historySize records of bounded size; a larger one is not ours and is ignored. */
const MAX_HISTORY_BYTES = 4 * 1024 * 1024;

/**
 * The daemon's sync records on disk (state/_history.json), newest first, so
 * a restart does not forget what the last syncs did. A missing, oversized
 * or damaged file reads as no history: it is a convenience, never a reason
 * not to start.
 */
export async function readHistory(dataDir: string, limit: number): Promise<SyncRecord[]> {
  let text: string;
  try {
    const buf = await readFile(new Layout(dataDir).historyFile);
    if (buf.length > MAX_HISTORY_BYTES) return [];
    text = buf.toString('utf8');
  } catch {
    return [];
  }
  try {
    const doc = JSON.parse(text) as unknown;
    if (!Array.isArray(doc)) return [];
    return doc.filter(isRecord).slice(0, limit).map(withDefaults);
  } catch {
    return [];
  }
}

export async function writeHistory(dataDir: string, records: readonly SyncRecord[]): Promise<void> {
  const layout = new Layout(dataDir);
  await mkdir(layout.stateDir, { recursive: true });
  // Failures are capped per record: a sync with thousands of failed items must not make the file huge.
  const trimmed = records.map((r) => ({ ...r, failures: r.failures.slice(0, 100), failuresTotal: r.failuresTotal ?? r.failures.length }));
  await writeFileAtomic(layout.historyFile, JSON.stringify(trimmed) + '\n');
}

function isRecord(v: unknown): v is SyncRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.id === 'string' &&
    typeof r.result === 'string' &&
    typeof r.startedAt === 'string' &&
    typeof r.finishedAt === 'string' &&
    typeof r.durationMs === 'number' &&
    Array.isArray(r.failures)
  );
}

function withDefaults(r: SyncRecord): SyncRecord {
  return {
    ...r,
    sources: Array.isArray(r.sources) ? r.sources : [],
    downloaded: r.downloaded ?? { files: 0, bytes: 0 },
    snapshot: r.snapshot ?? null,
    published: r.published === true,
    error: r.error ?? null,
  };
}
