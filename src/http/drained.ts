import type { ServerResponse } from 'node:http';

/**
 * Resolves when a response can take more bytes, or when it closed (a client
 * that went away must not leave the writer waiting for a drain forever).
 */
export function drained(res: Pick<ServerResponse, 'on' | 'off' | 'destroyed' | 'writableEnded'>): Promise<void> {
  // Already over: neither event will come again.
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  return new Promise((ok) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      ok();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
