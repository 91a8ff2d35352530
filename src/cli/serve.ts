import type { Config } from '../config/load.js';
import { configPath } from '../config/load.js';
import { ExitCode } from '../errors.js';
import { createLogger } from '../log.js';
import type { CommandContext } from './commands.js';
import { startDaemon } from './daemon.js';

/** `maas-mirror serve`: runs until SIGTERM/SIGINT; SIGHUP reloads the configuration. */
export async function serve(ctx: CommandContext, config: Config): Promise<number> {
  const file = configPath(ctx.options.config);
  if ((config.http.workers ?? 1) > 1) return (await import('./serve-workers.js')).serveWithWorkers(file, config);
  const logger = createLogger();
  const daemon = await startDaemon({ config, logger });
  await new Promise<void>((resolve) => {
    const onHup = () => daemon.reload(file);
    const onStop = (signal: string) => {
      logger.info({ signal }, 'stopping: draining downloads and transfers');
      process.off('SIGHUP', onHup);
      void daemon.stop().then(resolve);
    };
    process.on('SIGHUP', onHup);
    process.once('SIGTERM', () => onStop('SIGTERM'));
    process.once('SIGINT', () => onStop('SIGINT'));
  });
  logger.flush();
  return ExitCode.ok;
}
