import type { Config } from '../config/load.js';
import { ExitCode } from '../errors.js';
import type { CommandContext } from './commands.js';

/** A health check must answer before the container runtime's own timeout (the Dockerfile gives 5 s). */
const PROBE_TIMEOUT_MS = 4000;

/** /readyz on the first http.listen address, a wildcard read as loopback. */
export function readyUrl(http: Config['http']): string {
  const l = http.listen[0] ?? { host: '0.0.0.0', port: 8080 };
  const host = l.host === '0.0.0.0' ? '127.0.0.1' : l.host === '::' ? '[::1]' : l.host.includes(':') ? `[${l.host}]` : l.host;
  return `http://${host}:${l.port}/readyz`;
}

/**
 * `maas-mirror healthcheck`: exit 0 when the daemon answers ready, 1
 * otherwise. It reads the same configuration as the daemon, so the probe
 * follows http.listen wherever it is moved.
 */
export async function healthcheck(ctx: CommandContext, config: Config): Promise<number> {
  const url = typeof ctx.options.url === 'string' ? ctx.options.url : readyUrl(config.http);
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await res.body?.cancel();
    if (res.ok) return ExitCode.ok;
    ctx.stderr.write(`maas-mirror: ${url} answered ${res.status}\n`);
  } catch (err) {
    ctx.stderr.write(`maas-mirror: ${url}: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}\n`);
  }
  return ExitCode.failed;
}
