import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ExitCode, isMirrorError, UsageError } from '../errors.js';
import { commands, type CommandContext } from './commands.js';

const USAGE = `maas-mirror: a verified, re-signed local mirror of MAAS boot images

Usage: maas-mirror <command> [options]

Commands:
  serve                      run the daemon: HTTP, TFTP, scheduled syncs
  sync [--dry-run] [--json] [--quiet] [--allow-downgrade] [--trigger URL]
                             replicate the sources and publish a new snapshot
  gc [--dry-run] [--json]    delete blobs no kept snapshot lists
  verify [--json]            re-hash every blob; quarantine corrupt ones
  keys export [--armor] [-o FILE]
                             the mirror's public key (binary by default, as MAAS wants)
  snapshots [--json]         list snapshots
  rollback [ID]              point "current" at an older snapshot (default: the previous one)
  export DIR [--since ID] [--json]
                             write the current snapshot to DIR (a USB disk) for an air-gapped site
  list [--source NAME] [FILTER...] [--json]
                             what the upstreams offer; S: the configuration selects it, H: held
  demo                       mirror a generated upstream on loopback and serve it
  check-config               validate the configuration and print it
  images add FILE --os OS --release RELEASE --arch ARCH [--title TITLE] [--subarch S] [--label L] [--manifest FILE] [--json]
  images list [--json]
  images remove OS/RELEASE/ARCH [--version V] [--json]
                             site-built root tarballs, published in the same signed tree
  nginx-config [--listen ADDR] [--upstream URL]
                             print an nginx server block that serves the tree in front of this mirror

Options:
  --config FILE              configuration file (or MAAS_MIRROR_CONFIG); default config/maas-mirror.yaml
  -h, --help                 this help

Exit codes: 0 ok, 1 failed or partial, 2 configuration or usage error, 75 another run holds the lock.
`;

const OPTIONS = {
  config: { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
  'allow-downgrade': { type: 'boolean' },
  trigger: { type: 'string' },
  token: { type: 'string' },
  armor: { type: 'boolean' },
  output: { type: 'string', short: 'o' },
  since: { type: 'string' },
  source: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  os: { type: 'string' },
  release: { type: 'string' },
  arch: { type: 'string' },
  title: { type: 'string' },
  subarch: { type: 'string' },
  label: { type: 'string' },
  manifest: { type: 'string' },
  version: { type: 'string' },
  listen: { type: 'string' },
  upstream: { type: 'string' },
} satisfies ParseArgsConfig['options'];

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`maas-mirror: ${(err as Error).message}\n\n${USAGE}`);
    return ExitCode.usage;
  }
  const [name, ...rest] = parsed.positionals;
  if (parsed.values.help || !name) {
    process.stdout.write(USAGE);
    return name || parsed.values.help ? ExitCode.ok : ExitCode.usage;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`maas-mirror: unknown command "${name}"\n\n${USAGE}`);
    return ExitCode.usage;
  }
  const ctx: CommandContext = { args: rest, options: parsed.values, stdout: process.stdout, stderr: process.stderr };
  try {
    return await command(ctx);
  } catch (err) {
    if (isMirrorError(err)) {
      if (parsed.values.json) process.stdout.write(JSON.stringify({ error: err.toJSON() }) + '\n');
      process.stderr.write(`maas-mirror: ${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof UsageError) return ExitCode.usage;
    process.stderr.write(`maas-mirror: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return ExitCode.failed;
  }
}

const code = await main(process.argv.slice(2));
// Let pino and stdout drain before leaving; the daemon never gets here.
process.exitCode = code;
