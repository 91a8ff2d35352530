import { resolve } from 'node:path';
import type { Config } from '../config/load.js';
import { ExitCode, UsageError } from '../errors.js';
import type { Logger } from 'pino';
import { exportSnapshot } from '../mirror/export.js';
import { SyncProgress } from '../mirror/progress.js';
import { loadOrCreateSigningKey } from '../pgp/keys.js';
import { BlobStore } from '../store/blobs.js';
import { Layout } from '../store/layout.js';
import { acquireLock } from '../store/lock.js';
import type { CommandContext } from './commands.js';
import { formatBytes } from '../format.js';
import { attachProgressBar } from './progress-bar.js';

/** maas-mirror export DIR [--since ID] [--json]: the current snapshot, for a site across an air gap. */
export async function exportCommand(ctx: CommandContext, cfg: Config, logger: (withBar: boolean) => Logger): Promise<number> {
  const dir = ctx.args[0];
  if (!dir || ctx.args.length > 1) {
    ctx.stderr.write('usage: maas-mirror export DIR [--since SNAPSHOT_ID] [--json]\n');
    throw new UsageError('export needs one folder (the mounted disk, or a folder on it)');
  }
  const layout = new Layout(cfg.dataDir);
  const progress = new SyncProgress();
  const bar = !ctx.options.json && !ctx.options.quiet && ctx.stderr.isTTY ? attachProgressBar(progress, ctx.stderr) : undefined;
  const log = logger(bar !== undefined);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Held for the whole export: gc must not prune the snapshot being copied.
  const lock = await acquireLock(layout.lockFile, 'export');
  try {
    const key = await loadOrCreateSigningKey(layout.keysDir, cfg.publish.signingKey, undefined, cfg.publish.keyName);
    const report = await exportSnapshot({
      layout,
      store: new BlobStore(layout),
      key,
      dir: resolve(dir),
      since: ctx.options.since,
      logger: log,
      progress,
      signal: abort.signal,
    });
    bar?.stop();
    if (ctx.options.json) ctx.stdout.write(JSON.stringify(report, null, 1) + '\n');
    else if (!ctx.options.quiet) {
      ctx.stdout.write(
        `exported snapshot ${report.snapshot}${report.since ? ` (delta since ${report.since})` : ''} to ${report.dir}: ` +
          `wrote ${report.written.files} files (${formatBytes(report.written.bytes)}), ` +
          `kept ${report.kept.files} already there, left out ${report.omitted.files} the earlier snapshot held\n` +
          `signing key fingerprint: ${report.signedBy}\n`,
      );
      if (report.notHeld.length > 0) ctx.stdout.write(`warning: ${report.notHeld.length} on-demand items are not in the store and not on the disk\n`);
      for (const u of report.unreadable) ctx.stdout.write(`${u.code}: ${u.message}\n`);
    }
    // Exported, but not all of it: a cron job must notice.
    return report.unreadable.length > 0 ? ExitCode.failed : ExitCode.ok;
  } finally {
    bar?.stop();
    await lock.release();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
