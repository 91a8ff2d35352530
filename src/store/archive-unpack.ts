import { spawn } from 'node:child_process';
import { Unpack, type ReadEntry } from 'tar';
import { AbortedError, ArchiveRefusedError, MetadataError, UnpackToolError } from '../errors.js';
import { entryKey, refuseReason } from './archive-entries.js';

/**
 * Archive safety, as a whole: one .tar.xz unpacked into a folder within
 * budgets. A signed upstream can still be hostile, and a few hundred KB of xz
 * can stand for gigabytes of tar, so nothing about an archive's size is taken
 * on trust: decompressed bytes, entries and time are all capped, and the
 * decompression itself runs in a child process that is killed the moment a
 * budget is spent.
 */

export interface RefusedEntry {
  /** Item path of the archive in the snapshot. */
  readonly archive: string;
  readonly entry: string;
  readonly reason: string;
}

export interface ArchiveLimits {
  /** Bytes of tar (decompressed) one archive may produce; xz is killed beyond it. */
  readonly maxUnpackedBytes: number;
  /** Entries (of any type, refused ones included) one archive may hold. */
  readonly maxEntries: number;
  /** Wall-clock time one archive may take to unpack, in ms. */
  readonly timeoutMs: number;
}

/**
 * The configuration's defaults (bootloaders.* in config/schema.ts), for callers without one.
 * Far above any real bootloader archive (grub's, the largest, unpacks to a few
 * MB in a few hundred entries within a second), far below what hurts a host.
 */
export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = {
  maxUnpackedBytes: 256 * 1024 * 1024,
  maxEntries: 10_000,
  timeoutMs: 60_000,
};

/** The limits the `bootloaders` configuration section sets. */
export function archiveLimits(c: { maxUnpackedBytes: number; maxEntries: number; unpackTimeout: number }): ArchiveLimits {
  return { maxUnpackedBytes: c.maxUnpackedBytes, maxEntries: c.maxEntries, timeoutMs: c.unpackTimeout };
}

/** xz's own cap on its decoder's memory: `xz -9` archives need 65 MiB; a header asking for more is refused. */
export const XZ_MEMLIMIT_BYTES = 128 * 1024 * 1024;

/** Bytes of xz's error output kept for the message. */
const MAX_STDERR = 4096;

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/**
 * Bytes allowed after the tar's end-of-archive blocks (tar pads to 10 KiB
 * records). node-tar buffers whatever follows its end by concatenation, so
 * none of it is handed over: it is only counted, and xz killed beyond this.
 */
export const MAX_TRAILING_BYTES = 1024 * 1024;

export interface UnpackArchiveOptions {
  /** The compressed archive on disk (a blob of the store). */
  readonly blob: string;
  /** Item path of the archive, for messages. */
  readonly archive: string;
  readonly productId?: string;
  readonly dest: string;
  /** Symbolic links named so far in dest, by any archive → the archive naming them. */
  readonly links: Map<string, string>;
  readonly onRefused: (r: RefusedEntry) => void;
  readonly limits: ArchiveLimits;
  readonly signal?: AbortSignal;
}

/**
 * Unpacks one archive. Entries refusal judges unsafe are skipped and reported
 * through onRefused; a spent budget, a damaged archive or an abort throws, and
 * what was written to dest by then is the caller's to remove.
 */
export async function unpackArchive(opts: UnpackArchiveOptions): Promise<void> {
  const { archive, limits } = opts;
  const refused = (reason: string) => new ArchiveRefusedError(archive, reason, opts.productId);
  let fatal: Error | undefined;
  let entries = 0;
  let declared = 0;
  let produced = 0;

  // The system xz, not a decoder in this process: decompression (the costly
  // part of a bomb) never runs on the event loop, its output is counted as it
  // arrives and the process killed when a budget is spent, --memlimit bounds
  // its memory, and xz-utils is maintained and already needed to build
  // archives (tar -J). --format=xz: no other container (lzma, raw) is tried.
  const xz = spawn('xz', ['--decompress', '--stdout', '--format=xz', `--memlimit-decompress=${XZ_MEMLIMIT_BYTES}`, '--', opts.blob], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const unpack = new Unpack({
    cwd: opts.dest,
    strict: false,
    preserveOwner: false,
    preservePaths: false,
    // Only xz is unpacked: a tar compressed again inside would be decompressed here, uncounted.
    brotli: false,
    zstd: false,
    filter: (path: string, entry) => {
      if (fatal) return false;
      const e = entry as ReadEntry;
      if (++entries > limits.maxEntries) {
        stop(refused(`holds more than ${limits.maxEntries} entries (bootloaders.maxEntries)`));
        return false;
      }
      // Refused entries count too: their bodies are read (and skipped) all the same.
      declared += e.size ?? 0;
      if (declared > limits.maxUnpackedBytes) {
        stop(refused(`unpacks to more than ${limits.maxUnpackedBytes} bytes (bootloaders.maxUnpackedBytes)`));
        return false;
      }
      const reason = refuseReason({ path, type: e.type, linkpath: e.linkpath, size: e.size }, opts.links);
      // Refused or not, a name given to a link is never walked through afterwards.
      if (e.type === 'SymbolicLink' && !opts.links.has(entryKey(path))) opts.links.set(entryKey(path), archive);
      if (reason) {
        opts.onRefused({ archive, entry: path, reason });
        return false;
      }
      return true;
    },
    onwarn: (code: string, message: string, data: Readonly<Record<string, unknown>>) => {
      // Entry-level complaints of node-tar itself are refusals too; a broken archive is fatal.
      if (code === 'TAR_BAD_ARCHIVE' || code === 'TAR_ABORT') fatal ??= new MetadataError(archive, `${message}; the archive is damaged`);
      else if (!fatal) opts.onRefused({ archive, entry: warnedEntry(data) ?? '(tar)', reason: `${code}: ${message}` });
    },
  });

  let ended = false;
  const endTar = () => {
    if (ended) return;
    ended = true;
    unpack.end();
  };
  /** Ends the unpack with err: xz is killed at once, node-tar finishes what it already started writing. */
  function stop(err: Error): void {
    fatal ??= err;
    xz.kill('SIGKILL');
    xz.stdout.destroy();
    // Not from inside node-tar's own write (a filter runs there).
    setImmediate(endTar);
  }

  const timer = setTimeout(() => stop(refused(`took longer than ${limits.timeoutMs} ms to unpack (bootloaders.unpackTimeout)`)), limits.timeoutMs);
  const onAbort = () => stop(new AbortedError(`unpacking ${archive} was aborted`));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();

  let stderr = '';
  xz.stderr.setEncoding('utf8');
  xz.stderr.on('data', (s: string) => {
    if (stderr.length < MAX_STDERR) stderr += s.slice(0, MAX_STDERR - stderr.length);
  });
  let tarEnded = false;
  let trailing = 0;
  unpack.on('eof', () => {
    tarEnded = true;
  });
  xz.stdout.on('data', (chunk: Buffer) => {
    if (fatal) return;
    if (tarEnded) {
      trailing += chunk.length;
      if (trailing > MAX_TRAILING_BYTES) stop(refused(`decompresses to more than ${MAX_TRAILING_BYTES} bytes after the end of its tar`));
      return;
    }
    if (produced === 0 && chunk.subarray(0, 2).equals(GZIP_MAGIC)) {
      stop(refused('holds a gzip stream inside the xz one, not a tar'));
      return;
    }
    produced += chunk.length;
    if (produced > limits.maxUnpackedBytes + limits.maxEntries * 512 * 2) {
      // Headers and padding beyond the declared sizes, or data after the end of the tar.
      stop(refused(`decompresses to more than ${limits.maxUnpackedBytes} bytes (bootloaders.maxUnpackedBytes)`));
      return;
    }
    if (!unpack.write(chunk)) {
      xz.stdout.pause();
      unpack.once('drain', () => xz.stdout.resume());
    }
  });
  xz.stdout.on('end', endTar);

  const xzDone = new Promise<void>((resolve) => {
    xz.on('error', (err: NodeJS.ErrnoException) => {
      fatal ??= new UnpackToolError(err.code === 'ENOENT' ? 'xz is not installed' : err.message);
      endTar();
      resolve();
    });
    xz.on('close', (code, signal) => {
      if (code !== 0 && signal === null) fatal ??= xzFailure(archive, stderr, refused);
      resolve();
    });
  });
  const tarDone = new Promise<void>((resolve) => {
    unpack.on('error', (err: Error) => {
      fatal ??= new MetadataError(archive, `cannot unpack: ${err.message}`);
      resolve();
    });
    unpack.on('end', () => resolve());
  });
  try {
    await Promise.all([xzDone, tarDone]);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (fatal) throw fatal;
}

function xzFailure(archive: string, stderr: string, refused: (reason: string) => Error): Error {
  const said = stderr.trim().replace(/^xz: /, '').replace(/\s+/g, ' ');
  if (/memory usage limit/i.test(said)) return refused(`needs more than ${XZ_MEMLIMIT_BYTES} bytes of memory to decompress`);
  return new MetadataError(archive, `cannot unpack: xz: ${said || 'failed'}; the archive is damaged`);
}

/** The entry node-tar warns about, when it says. */
function warnedEntry(data: Readonly<Record<string, unknown>> | undefined): string | undefined {
  const entry = data?.entry as { path?: unknown } | undefined;
  return typeof entry?.path === 'string' ? entry.path : undefined;
}
