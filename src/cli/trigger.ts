import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { ExitCode, UsageError } from '../errors.js';
import type { CommandContext } from './commands.js';

/**
 * `sync --trigger URL`: asks a running daemon to sync (cron on another
 * host), waits for that sync to end and exits as a local sync would.
 */
export async function triggerRemoteSync(ctx: CommandContext): Promise<number> {
  const base = ctx.options.trigger!.replace(/\/+$/, '');
  const token = ctx.options.token ?? process.env.MAAS_MIRROR_API_TOKEN;
  if (!token) throw new UsageError('sync --trigger needs the API token: set MAAS_MIRROR_API_TOKEN or pass --token');
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const res = await request(`${base}/api/v1/sync`, { method: 'POST', headers, body: '{}' });
  const body = (await res.body.json().catch(() => ({}))) as { id?: string; running?: string; message?: string };
  if (res.statusCode === 401 || res.statusCode === 404) {
    ctx.stderr.write(`maas-mirror: ${base} refused the trigger (HTTP ${res.statusCode}): check the token, and that api.token is set on the daemon\n`);
    return ExitCode.usage;
  }
  if (res.statusCode === 409) {
    ctx.stderr.write(`a sync (${body.running ?? body.id}) is already running on ${base}; waiting for it\n`);
  } else if (res.statusCode !== 202) {
    ctx.stderr.write(`maas-mirror: ${base} answered HTTP ${res.statusCode}: ${body.message ?? ''}\n`);
    return ExitCode.failed;
  }
  const id = body.id ?? body.running;
  for (;;) {
    await sleep(1000);
    const st = await request(`${base}/api/v1/status`, { headers });
    const status = (await st.body.json()) as { running?: { id: string } | null; lastSync?: { id: string; result: string } | null };
    if (status.running?.id === id) continue;
    const last = status.lastSync;
    if (last && last.id === id) {
      if (!ctx.options.quiet) ctx.stdout.write(`sync ${id}: ${last.result}\n`);
      return last.result === 'ok' ? ExitCode.ok : ExitCode.failed;
    }
    if (!status.running) {
      ctx.stderr.write(`maas-mirror: sync ${id} is neither running nor the last finished one on ${base}\n`);
      return ExitCode.failed;
    }
  }
}
