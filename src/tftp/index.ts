import type { Config } from '../config/load.js';
import type { Logger } from '../log.js';
import type { TftpOpen } from './files.js';
import type { TftpServerOptions } from './server.js';

export { TftpServer } from './server.js';
export type { TftpListen, TftpServerOptions, TransferEndEvent, TftpServerEvents } from './server.js';
export type { TransferResult } from './transfer.js';
export { FILES_MODULE, directoryWorkerOpener, openFromDirectory } from './files.js';
export type { TftpWorkerOpener, WorkerOpener } from './worker-messages.js';
export type { TftpFile, TftpOpen, TftpClient } from './files.js';
export { TftpBindError, TftpAccessError, TftpRemoteError } from './errors.js';
export { cleanName } from './names.js';
export { tftpGet } from './client.js';
export { forwardingOpener, isForwardedName } from './forward.js';
export type { ForwardOptions } from './forward.js';
export type { TftpGetOptions, TftpGetResult } from './client.js';

/** Server options from the `tftp` section of the configuration. */
export function tftpServerOptions(config: Config['tftp'], open: TftpOpen, logger?: Logger): TftpServerOptions {
  return {
    listen: config.listen,
    open,
    maxBlksize: config.maxBlksize,
    maxWindowsize: config.maxWindowsize,
    timeoutMs: config.timeout,
    retries: config.retries,
    maxTransfers: config.maxTransfers,
    maxTransfersPerClient: config.maxTransfersPerClient,
    firstAckTimeoutMs: config.firstAckTimeout,
    firstAckResends: config.firstAckResends,
    logger,
  };
}
