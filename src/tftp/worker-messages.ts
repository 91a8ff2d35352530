import type { SocketType } from 'node:dgram';
import type { Logger } from '../log.js';
import type { TftpClient, TftpOpen } from './files.js';
import type { OptionList } from './packet.js';
import type { ServeSettings } from './serve-request.js';
import type { TransferResult } from './transfer.js';

/**
 * How a worker thread gets its opener: functions cannot cross threads, so
 * the worker imports `module` (a file URL) and calls its export `name` with
 * `data` (plain, structured-cloneable). The result opens files in the
 * worker; its reload() is called when the server's invalidate() is (a
 * publish, a reloaded configuration).
 */
export interface TftpWorkerOpener {
  readonly module: string;
  readonly name: string;
  readonly data: unknown;
}

export interface WorkerOpener {
  open: TftpOpen;
  /** Drop every cache; `data` is new opener data, or undefined to keep the old. */
  reload(data: unknown): void;
}

export type WorkerOpenerFactory = (data: unknown, logger: Logger) => WorkerOpener | Promise<WorkerOpener>;

export interface WorkerStart {
  readonly index: number;
  readonly opener: TftpWorkerOpener;
  readonly settings: ServeSettings;
  /** The server logger's level: lines below it are not even sent to the main thread. */
  readonly logLevel: string;
}

export type ToWorker =
  | {
      readonly op: 'transfer';
      readonly id: number;
      readonly name: string;
      readonly client: TftpClient;
      readonly mode: string;
      readonly options: OptionList;
      readonly host: string;
      readonly type: SocketType;
      /** performance.timeOrigin + now() when the request came in: comparable across threads. */
      readonly startedAt: number;
    }
  | { readonly op: 'evict'; readonly id: number }
  | { readonly op: 'abort'; readonly id: number; readonly message: string; readonly result: TransferResult }
  | { readonly op: 'reload'; readonly data: unknown }
  | { readonly op: 'stop' };

export type FromWorker =
  | { readonly op: 'ready' }
  | { readonly op: 'reply'; readonly id: number; readonly code: number; readonly message: string }
  | { readonly op: 'acked'; readonly id: number }
  | { readonly op: 'sent'; readonly bytes: number }
  | { readonly op: 'end'; readonly id: number; readonly result: TransferResult; readonly bytes: number; readonly retransmits: number }
  | { readonly op: 'log'; readonly line: string }
  | { readonly op: 'stopped' };
