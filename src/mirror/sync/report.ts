import { isMirrorError, REPORT_CODES } from '../../errors.js';
import type { GcReport } from '../../store/gc.js';
import type { VersionChange } from '../version-diff.js';
import type { SyncWarning } from '../selection-warnings.js';
import type { SpaceCheck } from '../space.js';

export type SourceResult = 'ok' | 'partial' | 'failed';

export interface SyncFailure {
  readonly source: string;
  readonly code: string;
  readonly message: string;
  readonly path?: string;
  readonly url?: string;
  /** The product a failure belongs to, when it is one product's (a refused bootloader archive, a path conflict). */
  readonly product?: string;
}

export interface SourceReport {
  readonly name: string;
  readonly result: SourceResult;
  readonly requests: number;
  readonly changedDocuments: number;
}

export interface SyncReport {
  readonly id: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  readonly dryRun: boolean;
  /** ok: everything selected is published; partial: some of it failed; failed: nothing could be done. */
  readonly result: SourceResult;
  readonly snapshot: string | undefined;
  readonly published: boolean;
  readonly sources: SourceReport[];
  readonly plan: { changes: VersionChange[]; filesToFetch: number; bytesToFetch: number };
  readonly downloaded: { files: number; bytes: number };
  readonly failures: SyncFailure[];
  /** Nothing failed, but images may be missing unasked: filters matching nothing, products dropped. */
  readonly warnings: SyncWarning[];
  /** dataDir's free space against what the downloads need (absent when it cannot be measured). */
  readonly space?: SpaceCheck;
  readonly gc?: GcReport;
}

/** A failure as the report lists it; anything that is not a MirrorError is an internal fault. */
export function failureOf(source: string, err: unknown): SyncFailure {
  if (isMirrorError(err)) return { source, code: err.code, message: err.message };
  return { source, code: REPORT_CODES.internal, message: errMessage(err) };
}

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
