import { NoSnapshotError, NotFoundError, NotHeldError, UnsafePathError } from '../errors.js';
import type { Resolver } from '../store/resolver.js';
import { TftpAccessError } from '../tftp/errors.js';
import type { TftpFile, TftpOpen } from '../tftp/files.js';

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
