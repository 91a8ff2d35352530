import { stat } from 'node:fs/promises';
import type { Config } from '../config/load.js';
import { ExitCode, UsageError } from '../errors.js';
import { addImage, listImages, removeImage, type ImagesContext } from '../mirror/images.js';
import type { LocalImage } from '../mirror/local-images.js';
import { SyncProgress } from '../mirror/progress.js';
import type { Logger } from '../log.js';
import type { CommandContext } from './commands.js';
import { formatBytes } from '../format.js';
import { attachProgressBar } from './progress-bar.js';

/** `images add FILE --os OS --release RELEASE --arch ARCH …` */
export async function addCommand(ctx: CommandContext, config: Config, logger: (withBar: boolean) => Logger): Promise<number> {
  const file = ctx.args[0];
  const o = ctx.options;
  if (!file || !o.os || !o.release || !o.arch) throw new UsageError('images add needs FILE, --os, --release and --arch (maas-mirror images add --help)');
  const progress = new SyncProgress();
  const bar = !o.json && !o.quiet && ctx.stderr.isTTY ? attachProgressBar(progress, ctx.stderr) : undefined;
  const images: ImagesContext = { config, logger: logger(bar !== undefined) };
  try {
    progress.setPhase('download');
    progress.plan(1, await stat(file).then((st) => st.size, () => 0));
    progress.start(file);
    const result = await addImage(images, {
      file,
      os: o.os,
      release: o.release,
      arch: o.arch,
      title: o.title,
      subarch: o.subarch,
      label: o.label,
      manifestFile: o.manifest,
      onBytes: (n) => progress.bytes(n),
    });
    bar?.stop();
    if (o.json) ctx.stdout.write(JSON.stringify(result, null, 1) + '\n');
    else {
      const i = result.image;
      ctx.stdout.write(
        `added ${i.os}/${i.release}/${i.arch} version ${i.version} (${formatBytes(i.size)}, sha256 ${i.sha256}, ${result.linked ? 'hard-linked' : 'copied'} into the store)` +
          `; published snapshot ${result.snapshot}${result.trimmed.length ? `; no longer listed (images.maxVersions): ${result.trimmed.join(', ')}` : ''}\n`,
      );
    }
    return ExitCode.ok;
  } finally {
    bar?.stop();
  }
}

/** `images remove OS/RELEASE/ARCH [--version V]` */
export async function removeCommand(ctx: CommandContext, config: Config, logger: Logger): Promise<number> {
  const parts = (ctx.args[0] ?? '').split('/');
  if (parts.length !== 3 || parts.some((p) => p === '')) throw new UsageError('name the image as OS/RELEASE/ARCH, e.g. rhel/9/amd64');
  const [os, release, arch] = parts as [string, string, string];
  const result = await removeImage({ config, logger }, { os, release, arch }, ctx.options.version);
  if (ctx.options.json) ctx.stdout.write(JSON.stringify(result, null, 1) + '\n');
  else ctx.stdout.write(`removed ${result.removed.map((i) => `${i.os}/${i.release}/${i.arch} ${i.version}`).join(', ')}; published snapshot ${result.snapshot}\n`);
  return ExitCode.ok;
}

/** `images list` */
export async function listCommand(ctx: CommandContext, config: Config): Promise<number> {
  const all = await listImages(config);
  if (ctx.options.json) ctx.stdout.write(JSON.stringify(all, null, 1) + '\n');
  else if (all.length === 0) ctx.stdout.write('no local images; add one with "maas-mirror images add FILE --os OS --release RELEASE --arch ARCH"\n');
  else for (const i of all) ctx.stdout.write(line(i));
  return ExitCode.ok;
}

function line(i: LocalImage): string {
  return `${`${i.os}/${i.release}/${i.arch}`.padEnd(24)} ${i.version}  ${formatBytes(i.size).padStart(9)}  ${i.subarch}/${i.label}  ${i.title}  ${i.sha256.slice(0, 12)}\n`;
}
