import { configPath, loadConfig } from '../config/load.js';
import { ExitCode, isMirrorError, UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { readLocalOffer, readOffer, type OfferedProduct, type SourceOffer } from '../mirror/offer.js';
import { FilterSyntaxError, parseFilter } from '../simplestreams/filter.js';
import type { CommandContext } from './commands.js';
import { formatBytes } from '../format.js';

/** Values shown per key in the text listing; --json has every value kept. */
const SHOWN_VALUES = 30;

/** `maas-mirror list [--source NAME] [FILTER...] [--json]`: what each upstream offers, and what the config takes of it. */
export async function list(ctx: CommandContext): Promise<number> {
  const cfg = loadConfig(configPath(ctx.options.config));
  const narrow = parseTerms(ctx.args);
  const wanted = ctx.options.source;
  const sources = wanted === undefined ? cfg.sources : cfg.sources.filter((s) => s.name === wanted);
  if (sources.length === 0) {
    throw new UsageError(`there is no source "${wanted}"; the configuration has: ${cfg.sources.map((s) => s.name).join(', ')}`);
  }
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn', destination: process.stderr });
  const offers: SourceOffer[] = [];
  const errors: { source: string; code: string; message: string }[] = [];
  for (const source of sources) {
    try {
      offers.push(await readOffer({ config: cfg, source, filters: narrow, logger, allowDowngrade: ctx.options['allow-downgrade'] }));
    } catch (err) {
      if (!isMirrorError(err)) throw err;
      errors.push({ source: source.name, code: err.code, message: err.message });
      ctx.stderr.write(`maas-mirror: source ${source.name} cannot be read: ${err.message}\n`);
    }
  }
  // Site-built images belong to no source: listed unless one source was asked for.
  const local = wanted === undefined ? await readLocalOffer(cfg, narrow) : [];
  if (ctx.options.json) ctx.stdout.write(JSON.stringify({ sources: offers, local, errors }, null, 1) + '\n');
  else {
    for (const o of offers) printOffer(ctx.stdout, o);
    if (local.length > 0) {
      ctx.stdout.write(`local images (site-built with "maas-mirror images add", published by this mirror): ${local.length} product${local.length === 1 ? '' : 's'}\n`);
      printProducts(ctx.stdout, local);
    }
  }
  return errors.length > 0 ? ExitCode.failed : ExitCode.ok;
}

function parseTerms(args: readonly string[]) {
  try {
    return args.length === 0 ? [] : [args.map(parseFilter)];
  } catch (err) {
    if (err instanceof FilterSyntaxError) throw new UsageError(err.message);
    throw err;
  }
}

function printOffer(out: NodeJS.WritableStream, o: SourceOffer): void {
  out.write(`source ${o.name} (${o.url}): ${o.products.length} product${o.products.length === 1 ? '' : 's'}\n`);
  out.write('  S: selected by the configuration · H: held in the store\n');
  printProducts(out, o.products);
  out.write(`filter keys of ${o.name} and their values:\n`);
  for (const [k, { values, more }] of Object.entries(o.keys)) {
    const many = more || values.length > SHOWN_VALUES;
    out.write(`  ${k}: ${values.slice(0, SHOWN_VALUES).join(', ')}${many ? ', …' : ''}\n`);
  }
  for (const w of o.warnings) out.write(`warning: ${w.code}: ${w.message}\n`);
}

function printProducts(out: NodeJS.WritableStream, products: readonly OfferedProduct[]): void {
  let content = '';
  for (const p of products) {
    if (p.contentId !== content) out.write(`${(content = p.contentId)}\n`);
    const described = [p.os, p.release, p.arch, p.subarch, p.kflavor && `kflavor=${p.kflavor}`, p.label && `label=${p.label}`].filter(Boolean).join(' ');
    out.write(`  ${p.id}${described ? `  (${described})` : ''}\n`);
    for (const v of p.versions) {
      out.write(`    ${v.selected ? 'S' : '-'}${v.held ? 'H' : '-'} ${v.version}  ${v.items} item${v.items === 1 ? '' : 's'}  ${formatBytes(v.bytes)}\n`);
    }
  }
}
