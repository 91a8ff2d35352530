import { NoSnapshotError, NotFoundError, NotHeldError, UnsafePathError } from '../errors.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../log.js';
import { bootFilesConfig, type BootFilesConfig } from '../store/boot-files.js';
import { Layout } from '../store/layout.js';
import { Resolver } from '../store/resolver.js';
import { TftpAccessError } from '../tftp/errors.js';
import type { TftpFile, TftpOpen } from '../tftp/files.js';
import { forwardingOpener, type WorkerOpener } from '../tftp/index.js';

/**
 * TFTP reads the same namespace as HTTP: bootloaders by bare name and under
 * bootloaders/, the tree's item paths, images/<hash prefix>/…
 */
export function namespaceOpener(namespace: Resolver): TftpOpen {
  return async (name) => {
    let file;
    try {
      const located = await namespace.locate(name);
      if (located.ok && (located.target.kind === 'boot' || located.target.kind === 'template')) {
        return bufferFile((await namespace.readBootFile(located.target)).data);
      }
      // Rack names first (bootloaders, images/<hash>/…), then the tree's item paths.
      file = await namespace.resolve(name).catch((err: unknown) => {
        if (err instanceof NotFoundError) return namespace.resolve(name, { tree: true });
        throw err;
      });
    } catch (err) {
      if (err instanceof UnsafePathError) throw new TftpAccessError(name, 'the path leaves the tree');
      if (err instanceof NotFoundError || err instanceof NoSnapshotError || err instanceof NotHeldError) return undefined;
      throw err;
    }
    return {
      size: file.size,
      async read(buffer, position) {
        const { bytesRead } = await file.handle.read(buffer, 0, buffer.length, position);
        return bytesRead;
      },
      close: () => file.close(),
    };
  };
}

function bufferFile(data: Buffer): TftpFile {
  return {
    size: data.length,
    read: (buffer, position) => Promise.resolve(data.copy(buffer, 0, position, Math.min(data.length, position + buffer.length))),
    close: () => Promise.resolve(),
  };
}

/** What a TFTP worker thread needs to build the daemon's opener itself (plain data: it crosses threads). */
export interface StoreOpenerData {
  readonly dataDir: string;
  readonly bootFiles: BootFilesConfig | undefined;
  /** boot.forward with the TFTP timeout and retries; fixed at start, like the listen addresses. */
  readonly forward: { readonly host: string; readonly port: number; readonly timeoutMs: number; readonly retries: number } | undefined;
}

/** This module, for a worker thread to import: .ts under tsx, .js when built. */
export const STORE_OPENER_MODULE = import.meta.url;

export function storeOpenerData(config: Config): StoreOpenerData {
  const forward = config.boot.forward;
  return {
    dataDir: config.dataDir,
    bootFiles: bootFilesConfig(config),
    forward: forward && { host: forward.host, port: forward.port, timeoutMs: config.tftp.timeout, retries: config.tftp.retries },
  };
}

/**
 * The daemon's opener, built inside a TFTP worker thread with a Resolver of
 * its own. reload() drops the Resolver's caches (a publish) and takes the
 * new boot.files (a reloaded configuration).
 */
export function storeWorkerOpener(data: unknown, logger: Logger): WorkerOpener {
  const start = data as StoreOpenerData;
  let bootFiles = start.bootFiles;
  const namespace = new Resolver({ layout: new Layout(start.dataDir), logger, bootFiles: () => bootFiles });
  const own = namespaceOpener(namespace);
  return {
    open: start.forward ? forwardingOpener(own, { ...start.forward, logger }) : own,
    reload(next) {
      if (next !== undefined) bootFiles = (next as StoreOpenerData).bootFiles;
      namespace.invalidate();
    },
  };
}
