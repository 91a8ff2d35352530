import type { ManifestFile } from './store/manifest.js';

/**
 * The one registry of failures. Every error the mirror raises on purpose is a
 * subclass of MirrorError with a stable `code` (for logs, JSON output and
 * alerts) and a message that tells the operator what to do next.
 */

export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  locked: 75,
} as const;

export abstract class MirrorError extends Error {
  abstract readonly code: string;
  /** Process exit code when this error ends a CLI command. */
  readonly exitCode: number = ExitCode.failed;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message };
  }
}

export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends MirrorError {
  readonly code = 'MM_CONFIG_INVALID';
  override readonly exitCode = ExitCode.usage;
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    super(
      `invalid configuration in ${file}:\n` +
        issues.map((i) => `  - ${i.path || '(top level)'}: ${i.message}`).join('\n') +
        '\nFix the keys above and run again; nothing was changed on disk.',
    );
  }
  override toJSON() {
    return { ...super.toJSON(), file: this.file, issues: this.issues };
  }
}

export class UsageError extends MirrorError {
  readonly code = 'MM_USAGE';
  override readonly exitCode = ExitCode.usage;
}

export class LockedError extends MirrorError {
  readonly code = 'MM_LOCKED';
  override readonly exitCode = ExitCode.locked;
  constructor(
    readonly lockFile: string,
    readonly holder: string,
  ) {
    super(
      `another maas-mirror run holds ${lockFile} (${holder}); wait for it to finish, ` +
        `or remove the lock file if that process no longer exists`,
    );
  }
}

export class SignatureError extends MirrorError {
  readonly code = 'MM_SIGNATURE_INVALID';
  constructor(
    message: string,
    readonly url: string,
    readonly keyring: string,
    readonly keyIds: string[] = [],
  ) {
    super(message);
  }
}

export class DowngradeError extends MirrorError {
  readonly code = 'MM_DOWNGRADE_REFUSED';
  constructor(url: string, offered: string, accepted: string) {
    super(
      `${url} is dated "${offered}", older than the "${accepted}" already accepted: ` +
        `this looks like a replayed old signed file. If upstream really went back in time, ` +
        `run sync with --allow-downgrade`,
    );
  }
}

export class MetadataError extends MirrorError {
  readonly code = 'MM_METADATA_INVALID';
  constructor(
    readonly url: string,
    reason: string,
  ) {
    super(`${url}: ${reason}`);
  }
}

/** A source's saved state cannot be read: replay protection depends on it, so the source is not trusted blindly. */
export class StateError extends MirrorError {
  readonly code = 'MM_STATE_INVALID';
  constructor(file: string, reason: string) {
    super(
      `${file} cannot be read (${reason}). It holds the dates that refuse a replayed old index: restore it from a ` +
        `backup, or move it aside to start afresh (the next sync then accepts any validly signed index)`,
    );
  }
}

/** What we would publish breaks a rule MAAS enforces (see simplestreams/maas-rules.ts). */
export class MaasRulesError extends MirrorError {
  readonly code = 'MM_MAAS_RULES';
  constructor(what: string, problems: readonly { where: string; message: string }[]) {
    const shown = problems.slice(0, 3).map((p) => `${p.where}: ${p.message}`).join('; ');
    const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : '';
    super(
      `${what}: MAAS would reject it: ${shown}${more}. If a filter removed an item MAAS needs ` +
        `(such as ftype=manifest), widen it; otherwise the upstream product is one MAAS cannot read`,
    );
  }
}

export class MetadataTooLargeError extends MirrorError {
  readonly code = 'MM_METADATA_TOO_LARGE';
  constructor(url: string, limit: number) {
    super(
      `${url} is larger than ${limit} bytes, far larger than any real simplestreams document; refusing it`,
    );
  }
}

export class UnsafePathError extends MirrorError {
  readonly code = 'MM_UNSAFE_PATH';
  constructor(
    readonly path: string,
    where: string,
  ) {
    super(`refusing unsafe path ${JSON.stringify(path)} in ${where}: paths must be relative and stay inside the tree`);
  }
}

export class UpstreamHttpError extends MirrorError {
  readonly code = 'MM_UPSTREAM_HTTP';
  constructor(
    readonly url: string,
    readonly status: number,
    readonly retryAfterMs?: number,
  ) {
    super(`${url} answered HTTP ${status}`);
  }
  get retryable(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

export class UpstreamNetworkError extends MirrorError {
  readonly code = 'MM_UPSTREAM_NETWORK';
  constructor(
    readonly url: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${url}: ${reason}; check that the upstream is reachable from this host`, options);
  }
}

export class ChecksumError extends MirrorError {
  readonly code = 'MM_CHECKSUM_MISMATCH';
  constructor(
    readonly url: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${url}: sha256 is ${actual}, expected ${expected}; the download was discarded`);
  }
}

export class SizeMismatchError extends MirrorError {
  readonly code = 'MM_SIZE_MISMATCH';
  constructor(
    readonly url: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${url}: got ${actual} bytes, expected ${expected}; the download was discarded`);
  }
}

export class DiskFullError extends MirrorError {
  readonly code = 'MM_DISK_FULL';
  constructor(dir: string, options?: { cause?: unknown }) {
    super(
      `no space left on the device holding ${dir}; free space (maas-mirror gc, fewer keepSnapshots or maxVersions) and sync again`,
      options,
    );
  }
}

export class NotFoundError extends MirrorError {
  readonly code = 'MM_NOT_FOUND';
}

export class AbortedError extends MirrorError {
  readonly code = 'MM_ABORTED';
  constructor(message = 'the operation was aborted') {
    super(message);
  }
}

// What the servers answer (HTTP and TFTP).

export class AmbiguousHashError extends MirrorError {
  readonly code = 'MM_HASH_AMBIGUOUS';
  constructor(
    readonly prefix: string,
    readonly candidates: readonly string[],
  ) {
    super(
      `hash prefix ${prefix} matches more than one file of the current snapshot (${candidates.join(', ')}); ` +
        `ask again with more hex digits of the sha256 you mean`,
    );
  }
  override toJSON() {
    return { ...super.toJSON(), prefix: this.prefix, candidates: this.candidates };
  }
}

export class NotHeldError extends MirrorError {
  readonly code = 'MM_NOT_HELD';
  constructor(readonly file: ManifestFile & { readonly path: string }) {
    super(
      `${file.path} is listed by the current snapshot but not yet held; pull-through not available ` +
        `(on-demand source "${file.source}"): sync that source without onDemand, or retry once it is held`,
    );
  }
}

export class NoSnapshotError extends MirrorError {
  readonly code = 'MM_NO_SNAPSHOT';
  constructor(what = 'snapshot') {
    super(`no ${what} has been published yet; run "maas-mirror sync" and try again`);
  }
}

export class MethodNotAllowedError extends MirrorError {
  readonly code = 'MM_METHOD_NOT_ALLOWED';
  constructor(method: string) {
    super(`${method} is not served here: this mirror is read-only, use GET or HEAD`);
  }
}

export class ListenError extends MirrorError {
  readonly code = 'MM_HTTP_LISTEN';
  constructor(address: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot listen on ${address}: ${reason}; free that port or change http.listen in the configuration`, options);
  }
}

export function isMirrorError(err: unknown): err is MirrorError {
  return err instanceof MirrorError;
}

/** errno of a Node system error, if it is one. */
export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

export class BootTemplateError extends MirrorError {
  readonly code = 'MM_BOOT_TEMPLATE';
  constructor(template: string, reason: string) {
    super(`boot template ${template} cannot be rendered: ${reason}; fix the file in the boot.files folder`);
  }
}
