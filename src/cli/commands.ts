import { mkdir, writeFile } from 'node:fs/promises';
import { configPath, loadConfig, type Config } from '../config/load.js';
import { ExitCode, UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { runSync } from '../mirror/sync.js';
import { exportPublic, loadOrCreateSigningKey } from '../pgp/keys.js';
import { BlobStore } from '../store/blobs.js';
import { collectGarbage } from '../store/gc.js';
import { Layout } from '../store/layout.js';
import { clearHold, writeHold } from '../store/hold.js';
import { acquireLock } from '../store/lock.js';
import { listSnapshots, switchCurrent } from '../store/snapshots.js';
import { verifyStore } from '../store/verify.js';
import { archiveLimits } from '../store/archive-unpack.js';
import { unpackBootloaders } from '../store/bootloaders.js';
import { readManifest } from '../store/manifest.js';
import { formatBytes, printPlan, printReport } from './format.js';
import { attachProgressBar } from './progress-bar.js';
import { SyncProgress } from '../mirror/progress.js';
import { triggerRemoteSync } from './trigger.js';

export interface CommandContext {
  args: string[];
  options: {
    config?: string;
    'dry-run'?: boolean;
    json?: boolean;
    quiet?: boolean;
    'allow-downgrade'?: boolean;
    trigger?: string;
    token?: string;
    armor?: boolean;
    output?: string;
    help?: boolean;
  };
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export type Command = (ctx: CommandContext) => Promise<number>;

function config(ctx: CommandContext): Config {
  return loadConfig(configPath(ctx.options.config));
}

/** Logs go to stderr in CLI commands, so stdout stays clean for --json and pipes. */
function cliLogger(ctx: CommandContext, withBar = false) {
  // A progress bar and info lines on one terminal garble each other: the bar wins unless LOG_LEVEL says otherwise.
  const quiet = ctx.options.quiet || ctx.options.json || withBar;
  const level = process.env.LOG_LEVEL ?? (quiet ? 'warn' : 'info');
  return createLogger({ level, destination: process.stderr });
}

const sync: Command = async (ctx) => {
  if (ctx.options.trigger) return triggerRemoteSync(ctx);
  const cfg = config(ctx);
  const progress = new SyncProgress();
  const bar = !ctx.options.json && !ctx.options.quiet && ctx.stderr.isTTY ? attachProgressBar(progress, ctx.stderr) : undefined;
  const logger = cliLogger(ctx, bar !== undefined);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const report = await runSync({
      config: cfg,
      logger,
      dryRun: ctx.options['dry-run'],
      allowDowngrade: ctx.options['allow-downgrade'],
      progress,
      signal: abort.signal,
    });
    bar?.stop();
    if (ctx.options.json) ctx.stdout.write(JSON.stringify(report, null, 1) + '\n');
    else if (ctx.options['dry-run']) printPlan(ctx.stdout, report);
    else if (!ctx.options.quiet) printReport(ctx.stdout, report);
    return report.result === 'ok' ? ExitCode.ok : ExitCode.failed;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
};

const gc: Command = async (ctx) => {
  const cfg = config(ctx);
  const layout = new Layout(cfg.dataDir);
  const lock = ctx.options['dry-run'] ? undefined : await acquireLock(layout.lockFile, 'gc');
  try {
    const report = await collectGarbage({
      layout,
      store: new BlobStore(layout),
      keepSnapshots: cfg.publish.keepSnapshots,
      partialProtectionMs: cfg.download.partialProtection,
      dryRun: ctx.options['dry-run'],
    });
    if (ctx.options.json) {
      ctx.stdout.write(JSON.stringify(report, null, 1) + '\n');
    } else {
      const verb = report.dryRun ? 'would free' : 'freed';
      ctx.stdout.write(
        `gc ${verb} ${formatBytes(report.bytesFreed)} in ${report.blobsRemoved} blobs, ` +
          `${formatBytes(report.partialBytesFreed)} in ${report.partialsRemoved} stale partial files; ` +
          `snapshots ${report.dryRun ? 'to remove' : 'removed'}: ${report.snapshotsRemoved.join(', ') || 'none'}\n`,
      );
    }
    return ExitCode.ok;
  } finally {
    await lock?.release();
  }
};

const verify: Command = async (ctx) => {
  const cfg = config(ctx);
  const layout = new Layout(cfg.dataDir);
  const lock = await acquireLock(layout.lockFile, 'verify');
  try {
    const report = await verifyStore(layout, new BlobStore(layout));
    if (ctx.options.json) ctx.stdout.write(JSON.stringify(report, null, 1) + '\n');
    else {
      ctx.stdout.write(`verified ${report.checked} blobs (${formatBytes(report.bytes)})\n`);
      for (const c of report.corrupt) {
        ctx.stdout.write(`CORRUPT ${c.sha256} (hashes to ${c.actual}): moved to ${c.quarantined}; the next sync fetches it again\n`);
      }
    }
    return report.corrupt.length === 0 ? ExitCode.ok : ExitCode.failed;
  } finally {
    await lock.release();
  }
};

const keys: Command = async (ctx) => {
  if (ctx.args[0] !== 'export') {
    ctx.stderr.write('usage: maas-mirror keys export [--armor] [-o FILE]\n');
    return ExitCode.usage;
  }
  const cfg = config(ctx);
  const layout = new Layout(cfg.dataDir);
  const key = await loadOrCreateSigningKey(layout.keysDir, cfg.publish.signingKey);
  const bytes = exportPublic(key, Boolean(ctx.options.armor));
  if (ctx.options.output) {
    await writeFile(ctx.options.output, bytes);
    ctx.stderr.write(`wrote the public key ${key.fingerprint} to ${ctx.options.output}\n`);
  } else {
    if (!ctx.options.armor && ctx.stdout.isTTY) {
      throw new UsageError('refusing to write a binary key to a terminal; use -o FILE or --armor');
    }
    ctx.stdout.write(bytes);
  }
  return ExitCode.ok;
};

const snapshots: Command = async (ctx) => {
  const cfg = config(ctx);
  const list = await listSnapshots(new Layout(cfg.dataDir));
  if (ctx.options.json) ctx.stdout.write(JSON.stringify(list, null, 1) + '\n');
  else if (list.length === 0) ctx.stdout.write('no snapshots yet: run "maas-mirror sync"\n');
  else {
    for (const s of list) {
      ctx.stdout.write(`${s.current ? '*' : ' '} ${s.id}  ${s.created}  ${s.files} files  ${formatBytes(s.bytes)}\n`);
    }
  }
  return ExitCode.ok;
};

const rollback: Command = async (ctx) => {
  const cfg = config(ctx);
  const layout = new Layout(cfg.dataDir);
  const lock = await acquireLock(layout.lockFile, 'rollback');
  try {
    const list = await listSnapshots(layout);
    let target = ctx.args[0];
    if (!target) {
      const cur = list.findIndex((s) => s.current);
      target = cur > 0 ? list[cur - 1]!.id : undefined;
      if (!target) throw new UsageError('there is no older snapshot to roll back to');
    }
    const newest = list.at(-1);
    if (!list.some((s) => s.id === target)) throw new UsageError(`there is no snapshot ${target}; "maas-mirror snapshots" lists them`);
    const forward = !newest || newest.id === target;
    if (!forward) {
      // Written before the switch: a crash between the two leaves a hold on a snapshot that is not current, which syncs ignore.
      await mkdir(layout.stateDir, { recursive: true });
      const fingerprint = (await readManifest(layout, newest.id)).fingerprint;
      await writeHold(layout, { snapshot: target, newest: newest.id, newestFingerprint: fingerprint, since: new Date().toISOString() });
    }
    await switchCurrent(layout, target);
    if (forward) await clearHold(layout);
    try {
      await unpackBootloaders(layout, await readManifest(layout, target), cliLogger(ctx), { limits: archiveLimits(cfg.bootloaders) });
    } catch (err) {
      // current has switched; the daemon unpacks what is missing when it notices (as after a crash).
      ctx.stderr.write(`warning: bootloaders of ${target} not unpacked: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    ctx.stdout.write(
      forward
        ? `current is now ${target}, the newest snapshot; syncs publish as usual\n`
        : `current is now ${target}; syncs keep it there until upstream changes (to go forward now: maas-mirror rollback ${newest!.id})\n`,
    );
    return ExitCode.ok;
  } finally {
    await lock.release();
  }
};

const checkConfig: Command = async (ctx) => {
  const cfg = config(ctx);
  ctx.stdout.write(
    JSON.stringify({ ...cfg, api: { token: cfg.api.token ? '[set]' : undefined } }, (k, v) => (v instanceof RegExp ? v.source : v), 1) + '\n',
  );
  return ExitCode.ok;
};

export const commands: Record<string, Command> = {
  sync,
  gc,
  verify,
  keys,
  snapshots,
  rollback,
  'check-config': checkConfig,
  serve: async (ctx) => (await import('./serve.js')).serve(ctx, config(ctx)),
  demo: async (ctx) => (await import('./demo.js')).demo(ctx),
};
