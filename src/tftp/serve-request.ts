import type { SocketType } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { TftpAccessError, formatAddress } from './errors.js';
import type { TftpClient, TftpFile, TftpOpen } from './files.js';
import { negotiate } from './options.js';
import { ErrorCode, type OptionList } from './packet.js';
import { ReadTransfer, type TransferResult } from './transfer.js';
import { bindSocket, connectSocket, createUdpSocket } from './udp.js';

/** The server's settings a transfer runs with; plain data, so a worker thread can be given them. */
export interface ServeSettings {
  readonly maxBlksize: number;
  readonly maxWindowsize: number;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly firstAckTimeoutMs: number;
  readonly firstAckResends: number;
  readonly minRtoMs: number;
}

/** One admitted request and the hooks into whoever holds its slot (the server, or a worker for it). */
export interface ServeJob {
  /** The cleaned name. */
  readonly name: string;
  readonly client: TftpClient;
  readonly mode: string;
  readonly options: OptionList;
  /** The listening address: the transfer socket binds the same one. */
  readonly host: string;
  readonly type: SocketType;
  /** performance.now() of this thread when the request came in. */
  readonly started: number;
  /** Aborts the open when the slot is given up. */
  readonly signal: AbortSignal;
  /** True once the slot was given up (stop, eviction) while the file was being opened. */
  cancelled(): boolean;
  /** An ERROR to the client from the listening port, for a request refused before its transfer. */
  reply(code: number, message: string): void;
  onTransfer(transfer: ReadTransfer): void;
  onSent(bytes: number): void;
  onAcknowledged?(): void;
  release(result: TransferResult, bytes: number, retransmits: number): void;
}

/**
 * Opens the file, negotiates, binds the transfer socket and starts the
 * transfer; every way out releases the slot exactly once (or leaves that to
 * the transfer's end). The same code runs in the server's thread and in a
 * worker thread.
 */
export async function serveRequest(open: TftpOpen, s: ServeSettings, logger: Logger, job: ServeJob): Promise<void> {
  const file = await openFile(open, logger, job);
  if (file === undefined) return;
  const netascii = job.mode === 'netascii';
  // netascii changes the length, so tsize cannot be promised without converting twice.
  const n = negotiate(job.options, netascii ? undefined : file.size, s);
  const socket = createUdpSocket(job.type);
  try {
    // Same address as the listener, so a client that checks the source address is satisfied.
    await bindSocket(socket, job.host, 0);
    await connectSocket(socket, job.client);
  } catch (err) {
    closeQuietly(socket);
    await file.close().catch(() => undefined);
    job.reply(ErrorCode.undefined, 'server could not open a transfer port');
    logger.error({ err, client: job.client.address }, 'TFTP could not bind or connect a transfer socket');
    job.release('error', 0, 0);
    return;
  }
  if (job.cancelled()) {
    closeQuietly(socket);
    await file.close().catch(() => undefined);
    return;
  }
  const log = logger.child({ client: formatAddress(job.client.address, job.client.port), file: job.name });
  log.debug({ options: Object.fromEntries(n.accepted), mode: job.mode }, 'TFTP transfer started');
  let transfer: ReadTransfer;
  try {
    transfer = new ReadTransfer({
      socket,
      peer: job.client,
      file,
      netascii,
      blksize: n.blksize,
      windowsize: n.windowsize,
      timeoutMs: n.timeoutMs ?? s.timeoutMs,
      retries: s.retries,
      firstAckTimeoutMs: s.firstAckTimeoutMs,
      firstAckResends: s.firstAckResends,
      minRtoMs: s.minRtoMs,
      accepted: n.accepted,
      logger: log,
      onSent: job.onSent,
      onAcknowledged: job.onAcknowledged,
      onEnd: ({ result, bytes, retransmits }) => {
        if (result === 'ok') {
          log.info({ bytes, ms: Math.round(performance.now() - job.started), retransmits }, 'TFTP transfer done');
        }
        job.release(result, bytes, retransmits);
      },
    });
  } catch (err) {
    // Not made, so nothing owns the socket and file yet.
    log.error({ err }, 'TFTP transfer failed to start');
    closeQuietly(socket);
    await file.close().catch(() => undefined);
    job.release('error', 0, 0);
    return;
  }
  job.onTransfer(transfer);
  // Never throws: a failure to send ends the transfer (timer, socket, file) as an error.
  transfer.start();
}

/** The open file, or undefined when the request ended here (refused, missing, given up). */
async function openFile(open: TftpOpen, logger: Logger, job: ServeJob): Promise<TftpFile | undefined> {
  let file: TftpFile | undefined;
  try {
    file = await open(job.name, job.client, job.signal);
  } catch (err) {
    if (job.cancelled()) return undefined;
    if (err instanceof TftpAccessError) {
      job.reply(ErrorCode.accessViolation, 'access violation');
      logger.info({ client: job.client.address, file: job.name, reason: err.message }, 'TFTP request refused');
      job.release('access_violation', 0, 0);
    } else {
      job.reply(ErrorCode.undefined, 'server error opening the file');
      logger.error({ err, file: job.name }, 'TFTP open failed');
      job.release('error', 0, 0);
    }
    return undefined;
  }
  if (file === undefined) {
    if (!job.cancelled()) job.reply(ErrorCode.notFound, 'file not found');
    logger.debug({ client: job.client.address, file: job.name }, 'TFTP file not found');
    job.release('not_found', 0, 0);
    return undefined;
  }
  if (job.cancelled()) {
    await file.close().catch(() => undefined);
    return undefined;
  }
  return file;
}

export function closeQuietly(socket: { close(): void }): void {
  try {
    socket.close();
  } catch {
    // not bound or already closed
  }
}
