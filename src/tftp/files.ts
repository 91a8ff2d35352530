import { constants } from 'node:fs';
import { open as openFile, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { errnoOf } from '../errors.js';
import { TftpAccessError } from './errors.js';
import type { WorkerOpener } from './worker-messages.js';

/** An open file being served. `size` is fixed at open: it is what tsize announces. */
export interface TftpFile {
  readonly size: number;
  /** Reads up to buffer.length bytes at `position`; fewer only at end of file. */
  read(buffer: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface TftpClient {
  readonly address: string;
  readonly port: number;
}

/**
 * Resolves a cleaned name (relative, "/"-separated, no "..") to an open file.
 * Return undefined for "no such file" (TFTP ERROR 1); throw TftpAccessError to
 * refuse (ERROR 2). Any other throw is logged and answered with ERROR 0.
 * `signal` aborts when the server gives the request up before the open returns
 * (shutdown, or its slot taken for a newer request): a slow open should stop.
 */
export type TftpOpen = (name: string, client: TftpClient, signal?: AbortSignal) => Promise<TftpFile | undefined>;

/**
 * Serves regular files under `root`. Symbolic links are followed only while
 * they stay inside root, checked on the resolved path, so a link planted in
 * the tree cannot expose the rest of the host.
 */
export function openFromDirectory(root: string): TftpOpen {
  let realRoot: Promise<string> | undefined;
  return async (name) => {
    // Resolved once; a failure is not kept, so a root created later is picked up.
    realRoot ??= realpath(root).catch((err: unknown) => {
      realRoot = undefined;
      throw err;
    });
    const base = await realRoot;
    let resolved: string;
    try {
      resolved = await realpath(join(base, name));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    if (!resolved.startsWith(base.endsWith(sep) ? base : base + sep)) {
      throw new TftpAccessError(name, 'it resolves outside the served directory');
    }
    let handle;
    try {
      // O_NONBLOCK: a FIFO planted in the tree must not hang a thread-pool thread in open().
      handle = await openFile(resolved, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    } catch (err) {
      if (isMissing(err)) return undefined;
      if (errnoOf(err) === 'EACCES' || errnoOf(err) === 'EPERM') {
        throw new TftpAccessError(name, 'the file is not readable by this process');
      }
      throw err;
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) {
        await handle.close();
        return undefined;
      }
      const fh = handle;
      return {
        size: stat.size,
        read: async (buffer, position) => (await fh.read(buffer, 0, buffer.length, position)).bytesRead,
        close: () => fh.close(),
      };
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  };
}

/** This module, for a worker thread to import (tftp.workers): .ts under tsx, .js when built. */
export const FILES_MODULE = import.meta.url;

/** openFromDirectory for a worker thread; `root` is the directory, reload() may give a new one. */
export function directoryWorkerOpener(root: unknown): WorkerOpener {
  let current = String(root);
  const opener: WorkerOpener = {
    open: openFromDirectory(current),
    reload(data) {
      if (data !== undefined) current = String(data);
      opener.open = openFromDirectory(current);
    },
  };
  return opener;
}

function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  // ENOTDIR: a path component is a file ("pxelinux.0/x"), which is just "not there".
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG' || code === 'ELOOP';
}
