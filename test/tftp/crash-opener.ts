import { directoryWorkerOpener } from '../../src/tftp/files.js';
import type { WorkerOpener } from '../../src/tftp/index.js';

/** This module, for a worker thread to import. */
export const CRASH_OPENER_MODULE = import.meta.url;

/**
 * Serves `root` like the directory opener, except that a request for
 * "crash" throws an uncaught exception in the worker thread, which ends it.
 */
export function crashingOpener(root: unknown): WorkerOpener {
  const inner = directoryWorkerOpener(root);
  return {
    open: (name, client, signal) => {
      if (name !== 'crash') return inner.open(name, client, signal);
      setImmediate(() => {
        throw new Error('a worker thread crashing on purpose');
      });
      return new Promise(() => undefined);
    },
    reload: (data) => inner.reload(data),
  };
}
