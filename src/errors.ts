
/**
 * The one registry of failures. Every error the mirror raises on purpose is a
 * subclass of MirrorError with a stable `code` (for logs, JSON output and
 * alerts), the HTTP status it answers with when a request meets it, and a
 * message that tells the operator what to do next. README's "Errors" table
 * lists every code (test/http/error-registry.test.ts keeps both in step).
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
  /** HTTP status when a request meets this error; 500 unless the class says otherwise. */
  readonly statusCode: number = 500;
  /** Seconds a client should wait before asking again (Retry-After), when that is known. */
  readonly retryAfterSeconds: number | undefined = undefined;

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
  override readonly statusCode = 400;
  override readonly exitCode = ExitCode.usage;
}

export class LockedError extends MirrorError {
  readonly code = 'MM_LOCKED';
  override readonly statusCode = 409;
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
  override readonly statusCode = 400;
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
  override readonly statusCode = 507;
  constructor(dir: string, options?: { cause?: unknown }) {
    super(
      `no space left on the device holding ${dir}; free space (maas-mirror gc, fewer keepSnapshots or maxVersions) and sync again`,
      options,
    );
  }
}

export class NotFoundError extends MirrorError {
  readonly code = 'MM_NOT_FOUND';
  override readonly statusCode = 404;
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
  override readonly statusCode = 409;
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

/** An item as the manifest lists it (store/manifest.ts's ManifestFile, with its path): errors sit below the store. */
export interface ListedFile {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  readonly source: string;
  readonly held: boolean;
  readonly ftype?: string;
}

export class NotHeldError extends MirrorError {
  readonly code = 'MM_NOT_HELD';
  override readonly statusCode = 503;
  constructor(readonly file: ListedFile) {
    super(
      `${file.path} is listed by the current snapshot but not yet held; pull-through not available ` +
        `(on-demand source "${file.source}"): sync that source without onDemand, or retry once it is held`,
    );
  }
}

export class NoSnapshotError extends MirrorError {
  readonly code = 'MM_NO_SNAPSHOT';
  override readonly statusCode = 503;
  constructor(what = 'snapshot') {
    super(`no ${what} has been published yet; run "maas-mirror sync" and try again`);
  }
}

export class MethodNotAllowedError extends MirrorError {
  readonly code = 'MM_METHOD_NOT_ALLOWED';
  override readonly statusCode = 405;
  constructor(
    method: string,
    /** The Allow header's value. */
    readonly allow = 'GET, HEAD',
  ) {
    super(allow === 'GET, HEAD' ? `${method} is not served here: this mirror is read-only, use GET or HEAD` : `${method} is not allowed here; use ${allow}`);
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

/** A folder source (an export disk) whose file cannot be read: not mounted, unreadable, not a file. */
export class FolderReadError extends MirrorError {
  readonly code = 'MM_SOURCE_FOLDER';
  constructor(
    readonly file: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot read ${file}: ${reason}; check that the disk is mounted there, readable by this user, and holds a whole export`, options);
  }
}

/** An item an export's metadata lists, held neither by the export nor by the store. */
export class ItemMissingError extends MirrorError {
  readonly code = 'MM_ITEM_MISSING';
  constructor(
    readonly path: string,
    readonly file: string,
  ) {
    super(
      `item ${path} is neither on the disk (${file}) nor in this mirror's store: the version holding it is left out, the rest publishes. ` +
        'Import the export that brought it first (an earlier --since export, or a full export)',
    );
  }
}

/** An export that cannot be written as asked. */
export class ExportError extends MirrorError {
  readonly code = 'MM_EXPORT';
}
/**
 * A filter term (or contentIds pattern) that matches nothing the upstream offers: a warning, not a
 * failure, since the rest of the selection is still good; almost always a typo that silently drops images.
 */
export class FilterUnmatchedWarning extends MirrorError {
  readonly code = 'MM_FILTER_UNMATCHED';
  constructor(
    readonly source: string,
    readonly term: string,
    detail: string,
  ) {
    super(`source ${source}: filter ${JSON.stringify(term)} matches nothing upstream offers; ${detail}`);
  }
}

/** Products the current snapshot publishes would be missing from the next one. */
export class ProductDroppedWarning extends MirrorError {
  readonly code = 'MM_PRODUCT_DROPPED';
  constructor(
    readonly source: string,
    readonly products: readonly string[],
    reason: string,
  ) {
    const named = products.length > 10 ? `${products.slice(0, 10).join(', ')} (and ${products.length - 10} more)` : products.join(', ');
    super(
      `source ${source}: ${products.length === 1 ? `product ${named} is` : `${products.length} products (${named}) are`} published now ` +
        `but will not be in the new snapshot (${reason}); MAAS can no longer import ${products.length === 1 ? 'it' : 'them'} from this mirror. ` +
        `If that is not intended, fix the filters and sync again`,
    );
  }
}

/** Checked before any download: a sync that cannot fit does not start filling the disk. */
export class NotEnoughSpaceError extends MirrorError {
  readonly code = 'MM_DISK_SPACE';
  override readonly statusCode = 507;
  constructor(dir: string, needed: string, available: string, detail: string) {
    super(
      `not enough free space on the device holding ${dir}: this sync needs ${needed} (${detail}), ${available} is free; ` +
        `nothing was downloaded and the current snapshot keeps serving. Free space (maas-mirror gc, fewer keepSnapshots ` +
        `or maxVersions, narrower filters) or grow the file system, then sync again`,
    );
  }
}
/** A TFTP read relayed to `boot.forward` (a MAAS rack) got no usable answer. */
export class TftpForwardError extends MirrorError {
  readonly code = 'MM_TFTP_FORWARD';
  constructor(rack: string, file: string, options?: { cause?: unknown }) {
    const reason = options?.cause instanceof Error ? options.cause.message : 'no answer';
    super(
      `relaying TFTP read of ${JSON.stringify(file)} from ${rack} failed: ${reason}; ` +
        'check that the TFTP server in boot.forward is up and reachable, or remove boot.forward',
      options,
    );
  }
}
// Classes that used to live beside their callers (re-exported there under the same names).

/** A sync was asked for while another runs (API: POST /api/v1/sync). */
export class SyncRunningError extends MirrorError {
  readonly code = 'MM_SYNC_RUNNING';
  override readonly statusCode = 409;
  constructor(readonly running: string) {
    super(`sync ${running} is already running; wait for it to end (GET /api/v1/status), then ask again`);
  }
  override toJSON() {
    return { ...super.toJSON(), running: this.running };
  }
}

export class ShuttingDownError extends MirrorError {
  readonly code = 'MM_SHUTTING_DOWN';
  override readonly statusCode = 503;
  constructor() {
    super('the daemon is shutting down and starts no more syncs');
  }
}

export class SigningKeyError extends MirrorError {
  readonly code = 'MM_SIGNING_KEY';
}

/** A bad `filters` expression (sstream-mirror's filter language) in the configuration or on the command line. */
export class FilterSyntaxError extends MirrorError {
  readonly code = 'MM_FILTER_SYNTAX';
  override readonly exitCode = ExitCode.usage;
  override readonly statusCode = 400;
  constructor(
    readonly text: string,
    reason: string,
  ) {
    super(`filter ${JSON.stringify(text)}: ${reason}`);
  }
}

/**
 * An on-demand item cannot be served now: its upstream failed or is backing
 * off after a failure. The message names the item path only, never a local
 * file (the server log has those).
 */
export class UpstreamUnavailableError extends MirrorError {
  readonly code = 'MM_UPSTREAM_UNAVAILABLE';
  override readonly statusCode = 503;
  override readonly retryAfterSeconds: number | undefined;
  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds ?? 60;
  }
}

/** The TFTP listener could not bind; the message names the fix for the usual causes. */
export class TftpBindError extends MirrorError {
  readonly code = 'MM_TFTP_BIND';
  constructor(
    readonly host: string,
    readonly port: number,
    options?: { cause?: unknown },
  ) {
    super(`cannot listen for TFTP on ${formatAddress(host, port)}: ${tftpBindAdvice(errnoOf(options?.cause), port)}`, options);
  }
}

function tftpBindAdvice(errno: string | undefined, port: number): string {
  switch (errno) {
    case 'EACCES':
    case 'EPERM':
      return (
        `permission denied for port ${port}; run with CAP_NET_BIND_SERVICE ` +
        `(setcap or systemd AmbientCapabilities), or set tftp.listen to a high port`
      );
    case 'EADDRINUSE':
      return (
        'the address is already in use, probably by another TFTP server (tftpd-hpa, dnsmasq, a MAAS rack); ' +
        'stop it, or set tftp.listen to another address or port'
      );
    case 'EADDRNOTAVAIL':
      return 'no interface of this host has that address; fix tftp.listen (use 0.0.0.0 or [::] for all)';
    default:
      return `${errno ?? 'unknown error'}; check tftp.listen`;
  }
}

/**
 * What an open callback throws to refuse a name it will never serve (outside
 * the tree, a special file): the client gets TFTP ERROR 2, access violation.
 */
export class TftpAccessError extends MirrorError {
  readonly code = 'MM_TFTP_ACCESS';
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`refusing TFTP read of ${JSON.stringify(file)}: ${reason}`);
  }
}

/** host:port, with brackets for IPv6. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A TFTP server answered with an ERROR packet (seen by the client side). */
export class TftpRemoteError extends MirrorError {
  readonly code = 'MM_TFTP_REMOTE';
  constructor(
    readonly tftpCode: number,
    readonly remoteMessage: string,
  ) {
    super(`TFTP server refused: error ${tftpCode} "${remoteMessage}"`);
  }
}

/** The API is off: no api.token is configured (off, never open). */
export class ApiDisabledError extends MirrorError {
  readonly code = 'MM_API_DISABLED';
  override readonly statusCode = 404;
  constructor() {
    super('the API is off: set api.token (or MAAS_MIRROR_API_TOKEN) on the daemon and reload it');
  }
}

export class UnauthorizedError extends MirrorError {
  readonly code = 'MM_UNAUTHORIZED';
  override readonly statusCode = 401;
  constructor() {
    super('send Authorization: Bearer <api.token>');
  }
}

/** A request the server cannot parse (e.g. a malformed JSON body on an /api/ route). */
export class BadRequestError extends MirrorError {
  readonly code = 'MM_BAD_REQUEST';
  override readonly statusCode = 400;
}

/** Anything not raised on purpose: the client sees this, the server log has the real error. */
export class InternalError extends MirrorError {
  readonly code = 'MM_INTERNAL';
  constructor() {
    super('internal error; the server log has the details');
  }
}

/** The current snapshot's manifest exists in name but cannot be read: a server fault, not a missing file. */
export class ManifestUnreadableError extends MirrorError {
  readonly code = 'MM_MANIFEST_UNREADABLE';
  constructor(snapshot: string, options?: { cause?: unknown }) {
    super(`snapshot ${snapshot} is current but its manifest cannot be read (the server log has the details); publish again`, options);
  }
}

/** The HTTP server is at http.maxConnections: a new connection is closed at once. */
export class TooManyConnectionsError extends MirrorError {
  readonly code = 'MM_TOO_MANY_CONNECTIONS';
  override readonly statusCode = 503;
  constructor(limit: number) {
    super(`the HTTP server already holds ${limit} connections (http.maxConnections); retry later, or raise the limit`);
  }
}

/**
 * Codes that sync reports record for one item or source without an
 * exception being thrown (the item is left out, the rest goes on).
 */
export const REPORT_CODES = {
  contentConflict: 'MM_CONTENT_CONFLICT',
  pathConflict: 'MM_PATH_CONFLICT',
  metadataInvalid: 'MM_METADATA_INVALID',
  internal: 'MM_INTERNAL',
  imageClash: 'MM_IMAGE_CLASH',
  /** Also SignatureError's code: the status page reads it back from recorded failures. */
  signatureInvalid: 'MM_SIGNATURE_INVALID',
  /** Also DowngradeError's code: the status page tells a replayed older file from an unreachable source. */
  downgradeRefused: 'MM_DOWNGRADE_REFUSED',
} as const;
/** `images add` refuses a file or a name: nothing was stored or published. */
export class ImageRefusedError extends MirrorError {
  readonly code = 'MM_IMAGE_REFUSED';
  override readonly statusCode = 400;
  override readonly exitCode = ExitCode.usage;
}

export class ImageNotFoundError extends MirrorError {
  readonly code = 'MM_IMAGE_NOT_FOUND';
  override readonly statusCode = 404;
  override readonly exitCode = ExitCode.usage;
  constructor(what: string) {
    super(`there is no local image ${what}; "maas-mirror images list" shows them`);
  }
}

export class UploadTooLargeError extends MirrorError {
  readonly code = 'MM_UPLOAD_TOO_LARGE';
  override readonly statusCode = 413;
  override readonly exitCode = ExitCode.usage;
  constructor(limit: number) {
    super(`the upload is larger than images.maxUploadBytes (${limit} bytes); raise it, or run "maas-mirror images add" on the mirror host`);
  }
}

/** A file the operator asked a command to write (`-o FILE`) cannot be written there. */
export class OutputPathError extends MirrorError {
  readonly code = 'MM_OUTPUT_PATH';
  override readonly statusCode = 400;
  override readonly exitCode = ExitCode.usage;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot write ${file}: ${reason}; choose another -o path or create its folder first`, options);
  }
}

/** A bootloader archive broke an unpack budget (bytes, entries, time, memory): it is not unpacked at all. */
export class ArchiveRefusedError extends MirrorError {
  readonly code = 'MM_ARCHIVE_REFUSED';
  constructor(
    readonly archive: string,
    readonly reason: string,
    readonly productId?: string,
  ) {
    super(
      `${productId ? `${productId}: ` : ''}bootloader archive ${archive} refused: ${reason}. The previous bootloaders keep ` +
        `serving; if the archive is genuine, raise the matching bootloaders.* limit in the configuration`,
    );
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), archive: this.archive, reason: this.reason, product: this.productId };
  }
}

/** The system xz, which unpacks bootloader archives in a child process, cannot be run. */
export class UnpackToolError extends MirrorError {
  readonly code = 'MM_XZ_UNAVAILABLE';
  constructor(reason: string) {
    super(`cannot run xz to unpack bootloader archives (${reason}); install xz-utils (the xz command) and sync again`);
  }
}

export class BootTemplateError extends MirrorError {
  readonly code = 'MM_BOOT_TEMPLATE';
  constructor(template: string, reason: string) {
    super(`boot template ${template} cannot be rendered: ${reason}; fix the file in the boot.files folder`);
  }
}

/** A blob an export should copy is missing from the store or unreadable (e.g. `verify` quarantined it). */
export class ExportBlobUnreadableError extends MirrorError {
  readonly code = 'MM_EXPORT_BLOB_UNREADABLE';
  constructor(
    readonly path: string,
    readonly blob: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      `${path} cannot be read from the store (${blob}: ${reason}); its version is left out of the export, the rest is exported. ` +
        'Run "maas-mirror sync" to fetch it again (or "images add" for a site-built image), then export again',
      options,
    );
  }
}
/** An image upload whose declared size does not fit on dataDir's file system: refused before a byte of it is read. */
export class UploadNoSpaceError extends MirrorError {
  readonly code = 'MM_UPLOAD_NO_SPACE';
  override readonly statusCode = 507;
  constructor(dir: string, size: string, available: string) {
    super(
      `the upload (${size}) does not fit on the device holding ${dir} (${available} free); nothing was received or changed. ` +
        'Free space (maas-mirror gc, fewer keepSnapshots or maxVersions) or grow the file system, then upload again',
    );
  }
}

/** An image upload while another is being received or published: one at a time. */
export class UploadBusyError extends MirrorError {
  readonly code = 'MM_UPLOAD_BUSY';
  override readonly statusCode = 503;
  constructor() {
    super('another image upload is running; the mirror takes one at a time: send this one again when it has finished');
  }
}

// Signals between a striped download's parts and the download itself: they never reach an operator
// (the download falls back to one stream, or retries), so they carry no code.

/** The server answered a Range request with the whole file: the download goes back to one stream. */
export class RangeIgnored extends Error {}

/** A part's answer was not the bytes asked for: nothing in the file can be trusted to fit with it. */
export class BadPart extends Error {
  constructor(
    readonly url: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/** A TFTP worker thread (tftp.workers) could not start. */
export class TftpWorkerError extends MirrorError {
  readonly code = 'MM_TFTP_WORKER';
  constructor(
    readonly worker: number,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      `TFTP worker thread ${worker} could not start: ${reason}; ` +
        'check that the installation is complete (the worker loads dist/tftp/worker.js), or set tftp.workers: 1 to serve TFTP from the main thread',
      options,
    );
  }
}

/** An HTTP worker could not reach the primary process, which answers the API, metrics, status and pull-through. */
export class PrimaryUnavailableError extends MirrorError {
  readonly code = 'MM_PRIMARY_UNAVAILABLE';
  override readonly statusCode = 503;
  override readonly retryAfterSeconds = 5;
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      `the serving process could not reach the main maas-mirror process (${detail}); it is starting, stopping or restarting. ` +
        'Try again in a few seconds; if it persists, read the service log',
      options,
    );
  }
}
