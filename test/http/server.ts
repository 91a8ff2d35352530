import { silentLogger, type Logger } from '../../src/log.js';
import { startHttpServer, type HttpServerHandle } from '../../src/http/index.js';
import type { Layout } from '../../src/store/layout.js';

export const PREFIX = '/maas/images/ephemeral-v3/stable/';

/** A real listening server on an ephemeral loopback port. */
export async function listenOnLoopback(layout: Layout, logger: Logger = silentLogger(), host = '127.0.0.1'): Promise<HttpServerHandle & { base: string }> {
  const handle = await startHttpServer({
    config: { http: { prefix: PREFIX, listen: [], publicUrl: undefined } },
    layout,
    logger,
    listen: [{ host, port: 0 }],
  });
  const a = handle.addresses[0]!;
  return Object.assign(handle, { base: `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}` });
}
