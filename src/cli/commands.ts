import { mkdir, writeFile } from 'node:fs/promises';
import { configPath, loadConfig, type Config } from '../config/load.js';
import { dirname, resolve } from 'node:path';
import { errnoOf, ExitCode, OutputPathError, UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { checkSavedFilters } from '../mirror/saved-metadata.js';
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
import { formatBytes, formatDuration, plural } from '../format.js';
import type { CommandSpec } from './args.js';
import { printPlan, printReport } from './format.js';
import { attachProgressBar } from './progress-bar.js';
import { SyncProgress } from '../mirror/progress.js';
import { triggerRemoteSync } from './trigger.js';
import { preferSmallHeap } from './batch-heap.js';

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
    since?: string;
    source?: string;
    version?: string;
    listen?: string;
    upstream?: string;
    os?: string;
    release?: string;
    arch?: string;
    title?: string;
    subarch?: string;
    label?: string;
    manifest?: string;
    /** A flag another command declares in its table entry. */
    [flag: string]: string | boolean | undefined;
  };
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export type Command = (ctx: CommandContext) => Promise<number>;
export type CommandEntry = CommandSpec<CommandContext>;

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
  // Only a sync that publishes makes the garbage this is for; a dry run plans at full speed.
  if (!ctx.options['dry-run']) preferSmallHeap();
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
        ctx.stdout.write(`CORRUPT ${c.sha256} (hashes to ${c.actual}): moved to ${c.quarantined}; the next sync fetches it again (a site-built image's file: add the image again)\n`);
      }
    }
    return report.corrupt.length === 0 ? ExitCode.ok : ExitCode.failed;
  } finally {
    await lock.release();
  }
};

const keysExport: Command = async (ctx) => {
  const cfg = config(ctx);
  const layout = new Layout(cfg.dataDir);
  const key = await loadOrCreateSigningKey(layout.keysDir, cfg.publish.signingKey, undefined, cfg.publish.keyName);
  const bytes = exportPublic(key, Boolean(ctx.options.armor));
  if (ctx.options.output) {
    await writeOutput(ctx.options.output, bytes);
    ctx.stderr.write(`wrote the public key ${key.fingerprint} to ${ctx.options.output}\n`);
  } else {
    if (!ctx.options.armor && ctx.stdout.isTTY) {
      throw new UsageError('refusing to write a binary key to a terminal; use -o FILE or --armor');
    }
    ctx.stdout.write(bytes);
  }
  return ExitCode.ok;
};

/** Writes what -o names; a path that cannot be written is the operator's to fix (exit 2), not a crash. */
async function writeOutput(file: string, bytes: Uint8Array): Promise<void> {
  try {
    await writeFile(file, bytes);
  } catch (err) {
    const reasons: Record<string, string> = {
      ENOENT: `its folder ${dirname(resolve(file))} does not exist`,
      ENOTDIR: 'a part of the path is not a folder',
      EISDIR: 'it is a folder',
      EACCES: 'permission denied',
      EPERM: 'permission denied',
      EROFS: 'the file system is read-only',
    };
    const code = errnoOf(err);
    throw new OutputPathError(file, (code && reasons[code]) ?? (err instanceof Error ? err.message : String(err)), { cause: err });
  }
}

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
  if (ctx.options.json) {
    ctx.stdout.write(
      JSON.stringify({ ...cfg, api: { token: cfg.api.token ? '[set]' : undefined } }, (k, v) => (v instanceof RegExp ? v.source : typeof v === 'string' ? hideUserinfo(v) : v), 1) + '\n',
    );
  } else {
    ctx.stdout.write(`${configSummary(cfg)}\n`);
  }
  await reportSavedFilterCheck(ctx, cfg);
  return ExitCode.ok;
};

/** Filters that match nothing, judged by the metadata the last sync verified (no network): on stderr, so stdout stays clean. */
async function reportSavedFilterCheck(ctx: CommandContext, cfg: Config): Promise<void> {
  for (const c of await checkSavedFilters(cfg)) {
    if (c.metadataOf === undefined) {
      ctx.stderr.write(`source ${c.source}: filters not checked: no sync has saved its metadata yet ("maas-mirror list" reads the upstream)\n`);
      continue;
    }
    ctx.stderr.write(`source ${c.source}: filters checked against the metadata the last sync verified (${c.metadataOf}): ${c.warnings.length === 0 ? 'each matches' : plural(c.warnings.length, 'warning')}\n`);
    for (const w of c.warnings) ctx.stderr.write(`warning: ${w.code}: ${w.message}\n`);
  }
}

/** Prints the nginx server block that puts nginx in front of this mirror. */
const nginxConfigCommand: Command = async (ctx) => {
  const { nginxConfig } = await import('../ops/nginx-config.js');
  ctx.stdout.write(nginxConfig(config(ctx), { listen: ctx.options.listen, upstream: ctx.options.upstream }));
  return ExitCode.ok;
};

/** `images add|list|remove`: site-built root tarballs, published in the same signed tree. */
const images = (sub: 'add' | 'list' | 'remove'): Command => async (ctx) => {
  const m = await import('./images.js');
  const cfg = config(ctx);
  if (sub === 'add') return m.addCommand(ctx, cfg, (withBar) => cliLogger(ctx, withBar));
  if (sub === 'remove') return m.removeCommand(ctx, cfg, cliLogger(ctx));
  return m.listCommand(ctx, cfg);
};

/** A URL's user:password (a proxy's, a source's) shown as "***": set, but not printed. */
function hideUserinfo(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]*@/i, '$1***@');
}

/** check-config's one line: enough to see at a glance that the right file was read. */
export function configSummary(cfg: Config): string {
  const sources = cfg.sources.map((s) => `${s.name}${s.filterText.length > 0 ? `: ${plural(s.filterText.length, 'filter group')}` : ''}`);
  const listen = (l: readonly { host: string; port: number }[]) => l.map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)).join(',');
  return (
    `OK ${cfg.file}: ${plural(cfg.sources.length, 'source')} (${sources.join(', ')}), dataDir ${cfg.dataDir}, ` +
    `http ${listen(cfg.http.listen)}, tftp ${cfg.tftp.enabled ? listen(cfg.tftp.listen) : 'off'}, ` +
    `sync every ${formatDuration(cfg.schedule.interval)}, API ${cfg.api.token ? 'on' : 'off'}`
  );
}

const JSON_FLAG = { type: 'boolean', help: 'print the result as JSON on stdout' } as const;
const DRY_RUN = { type: 'boolean', help: 'show what would happen; change nothing' } as const;

/**
 * Every command: name, flags, usage and what runs. To add one, write its
 * Command and add an entry here; parsing, `--help` and the overview follow.
 */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'serve',
    summary: 'run the daemon: HTTP, TFTP, scheduled syncs',
    run: async (ctx) => (await import('./serve.js')).serve(ctx, config(ctx)),
  },
  {
    name: 'sync',
    summary: 'replicate the sources and publish a new snapshot',
    flags: {
      'dry-run': { type: 'boolean', help: 'print the plan (changes, bytes to fetch); download nothing' },
      json: { type: 'boolean', help: 'print the report as JSON on stdout' },
      quiet: { type: 'boolean', help: 'print nothing but errors (for cron)' },
      'allow-downgrade': { type: 'boolean', help: 'accept metadata older than what was accepted before' },
      trigger: { type: 'string', value: 'URL', help: 'ask the daemon at URL to sync (MAAS_MIRROR_API_TOKEN) and wait for its result' },
      token: { type: 'string', value: 'TOKEN', help: 'the API token for --trigger (prefer MAAS_MIRROR_API_TOKEN)' },
    },
    run: sync,
  },
  { name: 'gc', summary: 'delete blobs no kept snapshot lists', flags: { 'dry-run': DRY_RUN, json: JSON_FLAG }, run: gc },
  { name: 'verify', summary: 're-hash every blob; quarantine corrupt ones', flags: { json: JSON_FLAG }, run: verify },
  {
    name: 'keys export',
    summary: 'the mirror\'s public key (binary by default, as MAAS wants)',
    flags: {
      armor: { type: 'boolean', help: 'ASCII-armored instead of binary' },
      output: { type: 'string', short: 'o', value: 'FILE', help: 'write to FILE instead of stdout' },
    },
    run: keysExport,
  },
  { name: 'snapshots', summary: 'list snapshots', flags: { json: JSON_FLAG }, run: snapshots },
  {
    name: 'rollback',
    summary: 'point "current" at an older snapshot (default: the previous one)',
    args: '[ID]',
    maxArgs: 1,
    run: rollback,
  },
  { name: 'demo', summary: 'mirror a generated upstream on loopback and serve it', run: async (ctx) => (await import('./demo.js')).demo(ctx) },
  {
    name: 'healthcheck',
    summary: 'exit 0 when the daemon on http.listen answers ready (for container health checks)',
    flags: { url: { type: 'string', value: 'URL', help: 'probe URL instead (default: /readyz on the first http.listen address)' } },
    run: async (ctx) => (await import('./healthcheck.js')).healthcheck(ctx, config(ctx)),
  },
  {
    name: 'export',
    summary: 'write the current snapshot to DIR (a USB disk) for an air-gapped site',
    args: 'DIR',
    maxArgs: 1,
    flags: {
      since: { type: 'string', value: 'ID', help: 'write only the files snapshot ID (an earlier export) did not hold' },
      json: { type: 'boolean', help: 'print every file written, kept or left out as JSON' },
    },
    run: async (ctx) => (await import('./export.js')).exportCommand(ctx, config(ctx), (withBar) => cliLogger(ctx, withBar)),
  },
  {
    name: 'list',
    summary: 'what the upstreams offer, and the local images; S: the configuration selects it, H: held',
    args: '[FILTER...]',
    maxArgs: Infinity,
    flags: {
      source: { type: 'string', value: 'NAME', help: 'only this source' },
      json: JSON_FLAG,
      'allow-downgrade': { type: 'boolean', help: 'list metadata older than what was accepted before' },
    },
    run: async (ctx) => (await import('./list.js')).list(ctx),
  },
  {
    name: 'images add',
    summary: 'store a site-built root tarball (.tar.gz) and publish it in the signed tree',
    args: 'FILE',
    maxArgs: 1,
    flags: {
      os: { type: 'string', value: 'OS', required: true, help: 'centos, rhel, ol, suse, ubuntu or custom' },
      release: { type: 'string', value: 'RELEASE', required: true, help: 'the release, e.g. 9' },
      arch: { type: 'string', value: 'ARCH', required: true, help: 'e.g. amd64' },
      title: { type: 'string', value: 'TITLE', help: 'release_title shown by MAAS' },
      subarch: { type: 'string', value: 'SUBARCH', help: 'default generic' },
      label: { type: 'string', value: 'LABEL', help: 'default stable' },
      manifest: { type: 'string', value: 'FILE', help: 'the image manifest (generated when absent)' },
      json: JSON_FLAG,
    },
    run: images('add'),
  },
  { name: 'images list', summary: 'site-built images the current snapshot publishes', flags: { json: JSON_FLAG }, run: images('list') },
  {
    name: 'images remove',
    summary: 'stop publishing a site-built image (or one --version of it)',
    args: 'OS/RELEASE/ARCH',
    maxArgs: 1,
    flags: { version: { type: 'string', value: 'V', help: 'only this version' }, json: JSON_FLAG },
    run: images('remove'),
  },
  {
    name: 'nginx-config',
    summary: 'print an nginx server block that serves the tree in front of this mirror',
    flags: {
      listen: { type: 'string', value: 'ADDR', help: 'nginx\'s listen address (default 80)' },
      upstream: { type: 'string', value: 'URL', help: 'where nginx reaches maas-mirror (default: http.listen, wildcards as loopback)' },
    },
    run: nginxConfigCommand,
  },
  {
    name: 'check-config',
    summary: 'validate the configuration; one line when it is fine',
    flags: { json: { type: 'boolean', help: 'print the whole resolved configuration (token and URL credentials hidden)' } },
    run: checkConfig,
  },
];
