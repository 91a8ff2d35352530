import cluster from 'node:cluster';
import { ExitCode, isMirrorError } from '../errors.js';
import { parseCommandLine } from './args.js';
import { COMMANDS, type CommandContext } from './commands.js';

export async function main(argv: string[]): Promise<number> {
  const line = parseCommandLine(argv, COMMANDS);
  switch (line.kind) {
    case 'help':
      process.stdout.write(line.text);
      return ExitCode.ok;
    case 'version':
      // Loaded only here: the metrics module is not small, and every other command would pay for it.
      process.stdout.write(`maas-mirror ${(await import('../ops/metrics.js')).packageVersion()}\n`);
      return ExitCode.ok;
    case 'usage-error':
      process.stderr.write(`maas-mirror: ${line.message}\n\n${line.help}`);
      return ExitCode.usage;
  }
  const options = line.options as CommandContext['options'];
  const ctx: CommandContext = { args: line.args, options, stdout: process.stdout, stderr: process.stderr };
  try {
    return await line.command.run(ctx);
  } catch (err) {
    if (isMirrorError(err)) {
      if (options.json) process.stdout.write(JSON.stringify({ error: err.toJSON() }) + '\n');
      process.stderr.write(`maas-mirror: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`maas-mirror: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return ExitCode.failed;
  }
}

// An HTTP worker of `serve` (http.workers above 1) is forked with serve's command line: it takes its orders from the primary instead.
if (cluster.isWorker) process.exit(await (await import('./http-worker.js')).runHttpWorker());
const code = await main(process.argv.slice(2));
// Let pino and stdout drain before leaving; the daemon never gets here.
process.exitCode = code;
