import type { RemoteInfo, Socket, SocketType } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { LRUCache } from 'lru-cache';
import { performance } from 'node:perf_hooks';
import { isMirrorError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { TftpBindError, formatAddress } from './errors.js';
import type { TftpClient, TftpOpen } from './files.js';
import { cleanName } from './names.js';
import { ErrorCode, decodePacket, encodeError, type Request } from './packet.js';
import { closeQuietly, serveRequest } from './serve-request.js';
import { MIN_RTO_MS, type TransferResult } from './transfer.js';
import { bindSocket, createUdpSocket } from './udp.js';
import type { TftpWorkerOpener } from './worker-messages.js';
import { WorkerPool, type WorkerJob } from './worker-pool.js';

export interface TftpListen {
  /** IPv4 or IPv6 literal; "[::1]" is accepted too. */
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
}

export interface TftpServerOptions {
  readonly listen: readonly TftpListen[];
  readonly open: TftpOpen;
  /** Default 8192, like MAAS. */
  readonly maxBlksize?: number;
  /** Default 64. */
  readonly maxWindowsize?: number;
  /** Retransmission timeout unless the client negotiates one; default 1000. */
  readonly timeoutMs?: number;
  /** Resends of one packet before giving up; default 5. */
  readonly retries?: number;
  /** Default 500. */
  readonly maxTransfers?: number;
  /** Default 16. */
  readonly maxTransfersPerClient?: number;
  /**
   * How long a transfer may wait for its first ACK (of the OACK or DATA 1),
   * whatever timeout the client asked for; default 3000.
   */
  readonly firstAckTimeoutMs?: number;
  /** Resends within firstAckTimeoutMs; an unanswered request draws 1 + this many packets. Default 2. */
  readonly firstAckResends?: number;
  /** Floor of the adaptive retransmission timeout; default MIN_RTO_MS (50). */
  readonly minRtoMs?: number;
  readonly logger?: Logger;
  /**
   * Transfers run in this many worker threads (tftp.workers), each opening
   * files with its own opener (`open` is then not used); admission stays
   * here. Absent or count 1: everything runs in this thread.
   */
  readonly workers?: { readonly count: number; readonly opener: TftpWorkerOpener };
}

export interface TransferEndEvent {
  readonly result: TransferResult;
  /** The cleaned name, or undefined when the request was refused before that. */
  readonly file: string | undefined;
  readonly client: TftpClient;
  /** File bytes the client acknowledged. */
  readonly bytes: number;
  readonly durationMs: number;
  readonly retransmits: number;
  /** The worker thread that ran it (tftp.workers); undefined when it ran in the server's thread or never started. */
  readonly worker?: number;
}

export interface TftpServerEvents {
  transferEnd: [TransferEndEvent];
}

/** What the slot needs of a running transfer, in this thread (ReadTransfer) or in a worker. */
interface TransferHandle {
  readonly acknowledged: boolean;
  /** Its worker thread, when it runs in one. */
  readonly worker?: number;
  evict(): void;
  abort(message: string, result: TransferResult): void;
}

/** One admitted request, from RRQ until its end; counts against the limits the whole time. */
interface Slot {
  readonly client: TftpClient;
  readonly started: number;
  file: string | undefined;
  /** The running transfer, in this thread or in a worker. */
  transfer: TransferHandle | undefined;
  /** Set when stop() or an eviction gave up on it while its file was still being opened. */
  cancelled: boolean;
  /** Aborts the open (a relayed read from another server) when the slot is given up. */
  readonly opening: AbortController;
  released: boolean;
}

const BUSY_LOG_INTERVAL_MS = 10_000;

/**
 * How long a request stays answered. lpxelinux sends every request from one
 * port and repeats an RRQ every ~0.1 s until something comes back; on a busy
 * server a repeat can arrive just after the answer went out. Answered again,
 * that second answer reaches the client after it moved on to its next file,
 * and it takes it as that file's answer: "file not found" for
 * pxelinux.cfg/default (a storm of 25 machines left 12 without a config this
 * way), or the wrong file's bytes. A client that really lost the answer
 * repeats past this window and is answered then.
 */
const ANSWERED_WINDOW_MS = 2_000;
/** Requests remembered as answered; a flood past this forgets the oldest. */
const ANSWERED_MAX = 10_000;
/** Answers final for their request: a repeat of it is a stale duplicate. Busy, timeouts, evictions and aborts may be asked again. */
const FINAL_RESULTS: ReadonlySet<TransferResult> = new Set(['ok', 'not_found', 'access_violation']);

/**
 * A read-only TFTP server. Each transfer gets its own socket on a fresh port
 * (its TID); the listening sockets only take requests. No exception escapes a
 * socket handler: a packet can end at most its own transfer.
 */
export class TftpServer extends EventEmitter<TftpServerEvents> {
  private readonly opts: Required<Omit<TftpServerOptions, 'workers'>>;
  private readonly workers: TftpServerOptions['workers'];
  private pool: WorkerPool | undefined;
  private readonly sockets: { socket: Socket; host: string; type: SocketType }[] = [];
  private readonly slots = new Set<Slot>();
  /** Each client address's slots, oldest first. */
  private readonly byClient = new Map<string, Set<Slot>>();
  /** Requests (address, port, file) answered within ANSWERED_WINDOW_MS. */
  private readonly answered = new LRUCache<string, true>({ max: ANSWERED_MAX, ttl: ANSWERED_WINDOW_MS });
  private sent = 0;
  private noWorkerLoggedAt = 0;
  private stopping = false;
  private busyLogged = 0;
  private busySuppressed = 0;

  constructor(options: TftpServerOptions) {
    super();
    this.opts = {
      listen: options.listen,
      open: options.open,
      maxBlksize: options.maxBlksize ?? 8192,
      maxWindowsize: options.maxWindowsize ?? 64,
      timeoutMs: options.timeoutMs ?? 1000,
      retries: options.retries ?? 5,
      maxTransfers: options.maxTransfers ?? 500,
      maxTransfersPerClient: options.maxTransfersPerClient ?? 16,
      firstAckTimeoutMs: options.firstAckTimeoutMs ?? 3000,
      firstAckResends: options.firstAckResends ?? 2,
      minRtoMs: options.minRtoMs ?? MIN_RTO_MS,
      logger: options.logger ?? silentLogger(),
    };
    this.workers = options.workers && options.workers.count > 1 ? options.workers : undefined;
  }

  /** Transfers running in each worker thread; empty when transfers run in this thread. */
  get workerLoad(): number[] {
    return this.pool?.load ?? [];
  }

  /**
   * Worker threads drop their openers' caches (a publish), and take new
   * opener data if given (a reloaded configuration). Without workers there is
   * nothing to do: the opener is the caller's own.
   */
  invalidate(openerData?: unknown): void {
    this.pool?.reload(openerData);
  }

  /** Requests admitted and not yet finished, including those still opening their file. */
  get activeTransfers(): number {
    return this.slots.size;
  }

  /** DATA payload bytes sent since start, retransmissions included. */
  get bytesSent(): number {
    return this.sent;
  }

  /** Binds every listen address; on any failure none stays bound. */
  async start(): Promise<TftpListen[]> {
    if (this.sockets.length > 0) throw new Error('TFTP server already started');
    if (this.workers) {
      await this.startWorkers(this.workers).catch((err: unknown) => {
        // The main thread has an opener of its own: TFTP keeps working, on one core.
        this.opts.logger.error({ code: isMirrorError(err) ? err.code : undefined, err }, 'TFTP worker threads could not start; transfers run in the main thread');
      });
    }
    const bound: TftpListen[] = [];
    try {
      for (const l of this.opts.listen) {
        const host = unbracket(l.host);
        const type: SocketType = host.includes(':') ? 'udp6' : 'udp4';
        const socket = createUdpSocket(type);
        this.sockets.push({ socket, host, type });
        socket.on('message', (msg, rinfo) => this.onRequest(msg, rinfo, host, type, socket));
        await bindSocket(socket, host, l.port).catch((err: unknown) => {
          throw new TftpBindError(host, l.port, { cause: err });
        });
        // After bind, errors are from sending replies to vanished clients: not fatal.
        socket.on('error', (err) => this.opts.logger.debug({ err }, 'TFTP listener socket error'));
        // A boot storm sends hundreds of RRQs at once; a bigger buffer drops fewer of them.
        try {
          socket.setRecvBufferSize(1 << 20);
        } catch {
          // not allowed on this host: keep the default
        }
        bound.push({ host, port: socket.address().port });
      }
    } catch (err) {
      for (const { socket } of this.sockets.splice(0)) closeQuietly(socket);
      await this.pool?.stop();
      this.pool = undefined;
      throw err;
    }
    this.opts.logger.info(
      { listen: bound.map((b) => formatAddress(b.host, b.port)), workers: this.workers?.count ?? 1 },
      'TFTP server listening',
    );
    return bound;
  }

  private async startWorkers(workers: NonNullable<TftpServerOptions['workers']>): Promise<void> {
    const pool = new WorkerPool({
      count: workers.count,
      opener: workers.opener,
      settings: {
        maxBlksize: this.opts.maxBlksize,
        maxWindowsize: this.opts.maxWindowsize,
        timeoutMs: this.opts.timeoutMs,
        retries: this.opts.retries,
        firstAckTimeoutMs: this.opts.firstAckTimeoutMs,
        firstAckResends: this.opts.firstAckResends,
        minRtoMs: this.opts.minRtoMs,
      },
      logger: this.opts.logger,
      onSent: (bytes) => {
        this.sent += bytes;
      },
    });
    await pool.start();
    this.pool = pool;
  }

  /**
   * Stops taking requests, lets running transfers finish until the deadline,
   * then aborts the rest (their clients get ERROR 0).
   */
  async stop(options: { deadlineMs?: number } = {}): Promise<void> {
    this.stopping = true;
    for (const { socket } of this.sockets.splice(0)) closeQuietly(socket);
    const deadline = Date.now() + (options.deadlineMs ?? 5000);
    while (this.slots.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
    for (const slot of [...this.slots]) {
      if (slot.transfer) {
        slot.transfer.abort('server shutting down', 'shutdown');
      } else {
        this.cancel(slot, 'shutdown');
      }
    }
    // Workers report the ends of what was just aborted, then their threads end.
    await this.pool?.stop();
  }

  private onRequest(msg: Buffer, rinfo: RemoteInfo, host: string, type: SocketType, socket: Socket): void {
    try {
      const packet = decodePacket(msg);
      const client = { address: rinfo.address, port: rinfo.port };
      const reply = (code: number, message: string) => sendQuietly(socket, encodeError(code, message), client);
      switch (packet.op) {
        case 'rrq':
          this.onRead(packet, client, host, type, reply);
          return;
        case 'wrq':
          reply(ErrorCode.accessViolation, 'this server is read-only');
          this.opts.logger.info({ client: rinfo.address }, 'TFTP write request refused');
          this.emitEnd('access_violation', undefined, client, performance.now());
          return;
        case 'unknown':
          reply(ErrorCode.illegalOperation, 'illegal TFTP operation');
          return;
        case 'malformed':
          // Too short to even have an opcode: not worth an answer.
          if (msg.length < 2) return;
          reply(ErrorCode.illegalOperation, `malformed packet: ${packet.reason}`);
          return;
        default:
          // DATA, ACK, ERROR, OACK belong on a transfer port; here they are late strays.
          return;
      }
    } catch (err) {
      this.opts.logger.error({ err }, 'TFTP request handling failed');
    }
  }

  private onRead(
    packet: Request,
    client: TftpClient,
    host: string,
    type: SocketType,
    reply: (code: number, message: string) => void,
  ): void {
    const started = performance.now();
    if (this.stopping) return;
    const clean = cleanName(packet.filename);
    if (!clean.ok) {
      const access = clean.refusal === 'access_violation';
      reply(access ? ErrorCode.accessViolation : ErrorCode.notFound, access ? 'access violation' : 'file not found');
      this.opts.logger.info({ client: client.address, reason: clean.reason }, 'TFTP request refused');
      this.emitEnd(clean.refusal, undefined, client, started);
      return;
    }
    const name = clean.name;
    if (packet.mode !== 'octet' && packet.mode !== 'netascii') {
      reply(ErrorCode.illegalOperation, 'unsupported transfer mode; use octet');
      this.emitEnd('bad_request', name, client, started);
      return;
    }
    if (this.isRepeat(client, name)) {
      // A client that thinks its request lost asks again from the same port; the running transfer resends on its own timer.
      this.opts.logger.debug({ client: `${client.address}:${client.port}`, file: name }, 'TFTP request repeated while its transfer runs; ignored');
      return;
    }
    if (this.answered.has(requestKey(client, name))) {
      this.opts.logger.debug({ client: `${client.address}:${client.port}`, file: name }, 'TFTP request repeated after its answer; ignored');
      return;
    }
    const slot = this.admit(client, name, started);
    if (!slot) {
      reply(ErrorCode.undefined, 'server busy, try again later');
      this.logBusy(client, this.byClient.get(client.address)?.size ?? 0);
      this.emitEnd('busy', name, client, started);
      return;
    }
    this.serve(slot, packet, host, type, reply).catch((err: unknown) => {
      this.opts.logger.error({ err }, 'TFTP request handling failed');
      // A started transfer owns socket, file and timer: aborting it frees them all and releases the slot.
      if (slot.transfer) slot.transfer.abort('server error', 'error');
      else this.release(slot, 'error', 0, 0);
    });
  }

  private async serve(
    slot: Slot,
    packet: Request,
    host: string,
    type: SocketType,
    reply: (code: number, message: string) => void,
  ): Promise<void> {
    const job = { name: slot.file ?? '', client: slot.client, mode: packet.mode, options: packet.options, host, type, started: slot.started };
    if (this.pool && this.dispatch(slot, job, reply)) return;
    await serveRequest(this.opts.open, this.opts, this.opts.logger, {
      ...job,
      signal: slot.opening.signal,
      cancelled: () => slot.cancelled,
      reply,
      onTransfer: (transfer) => (slot.transfer = transfer),
      onSent: (bytes) => {
        this.sent += bytes;
      },
      release: (result, bytes, retransmits) => this.release(slot, result, bytes, retransmits),
    });
  }

  /**
   * Hands the slot's request to a worker thread; its messages come back as this slot's events.
   * False when no worker is ready (all restarting): the caller serves it in this thread.
   */
  private dispatch(slot: Slot, job: WorkerJob, reply: (code: number, message: string) => void): boolean {
    const remote = this.pool!.dispatch(job, {
      reply,
      end: (result, bytes, retransmits) => this.release(slot, result, bytes, retransmits),
    });
    if (!remote) {
      const now = Date.now();
      if (now - this.noWorkerLoggedAt >= BUSY_LOG_INTERVAL_MS) {
        this.noWorkerLoggedAt = now;
        this.opts.logger.warn({ client: slot.client.address, file: slot.file }, 'no TFTP worker thread is running (they are being restarted): transfers run in the main thread meanwhile');
      }
      return false;
    }
    slot.transfer = remote;
    return true;
  }

  /**
   * Same client address and port, same file, transfer still running: a
   * repeated request, not a new transfer. lpxelinux sends every request from
   * one port, so a second transfer would keep sending DATA to that port after
   * the client moved on to its next file there. (At most maxTransfersPerClient slots.)
   */
  private isRepeat(client: TftpClient, file: string): boolean {
    for (const s of this.byClient.get(client.address) ?? []) {
      if (!s.released && s.file === file && s.client.port === client.port) return true;
    }
    return false;
  }

  /**
   * A slot for a new request, or undefined when the limits are reached and no
   * slot can be freed. Transfers the client never acknowledged are given up
   * first (oldest first): an unacknowledged request costs its sender nothing,
   * so it must not be able to keep a real client out. A client at its own cap
   * replaces its oldest unacknowledged request (a firmware retrying an RRQ).
   */
  private admit(client: TftpClient, file: string, started: number): Slot | undefined {
    let mine = this.byClient.get(client.address);
    if (mine && mine.size >= this.opts.maxTransfersPerClient && !this.evictOldestPending(mine)) return undefined;
    if (this.slots.size >= this.opts.maxTransfers && !this.evictOldestPending(this.slots)) return undefined;
    const slot: Slot = {
      client,
      started,
      file,
      transfer: undefined,
      cancelled: false,
      released: false,
      opening: new AbortController(),
    };
    this.slots.add(slot);
    mine = this.byClient.get(client.address);
    if (!mine) this.byClient.set(client.address, (mine = new Set()));
    mine.add(slot);
    return slot;
  }

  /** Ends the oldest unacknowledged transfer among `slots`; false when every one is acknowledged. */
  private evictOldestPending(slots: Set<Slot>): boolean {
    for (const slot of slots) {
      if (!isPending(slot)) continue;
      if (slot.transfer) slot.transfer.evict();
      else this.cancel(slot, 'evicted');
      return true;
    }
    return false;
  }

  /** Gives up a slot whose file is still being opened; serve() closes the file when the open returns. */
  private cancel(slot: Slot, result: TransferResult): void {
    slot.cancelled = true;
    slot.opening.abort();
    this.release(slot, result, 0, 0);
  }

  private release(slot: Slot, result: TransferResult, bytes: number, retransmits: number): void {
    if (slot.released) return;
    slot.released = true;
    this.slots.delete(slot);
    const mine = this.byClient.get(slot.client.address);
    mine?.delete(slot);
    if (mine?.size === 0) this.byClient.delete(slot.client.address);
    if (slot.file !== undefined && FINAL_RESULTS.has(result)) this.answered.set(requestKey(slot.client, slot.file), true);
    this.emitEnd(result, slot.file, slot.client, slot.started, bytes, retransmits, slot.transfer?.worker);
  }

  private emitEnd(
    result: TransferResult,
    file: string | undefined,
    client: TftpClient,
    started: number,
    bytes = 0,
    retransmits = 0,
    worker?: number,
  ): void {
    const durationMs = performance.now() - started;
    try {
      this.emit('transferEnd', worker === undefined ? { result, file, client, bytes, durationMs, retransmits } : { result, file, client, bytes, durationMs, retransmits, worker });
    } catch (err) {
      // A metrics listener that throws must not take a transfer down with it.
      this.opts.logger.error({ err }, 'TFTP transferEnd listener threw');
    }
  }

  /** A boot storm can hit the limits thousands of times a minute: one line per interval. */
  private logBusy(client: TftpClient, fromClient: number): void {
    const now = Date.now();
    if (now - this.busyLogged < BUSY_LOG_INTERVAL_MS) {
      this.busySuppressed++;
      return;
    }
    this.opts.logger.warn(
      {
        client: client.address,
        active: this.slots.size,
        fromClient,
        maxTransfers: this.opts.maxTransfers,
        maxTransfersPerClient: this.opts.maxTransfersPerClient,
        suppressed: this.busySuppressed,
      },
      'TFTP request refused: transfer limit reached; raise tftp.maxTransfers or tftp.maxTransfersPerClient if this is a normal load',
    );
    this.busyLogged = now;
    this.busySuppressed = 0;
  }
}

/** Not yet acknowledged by its client: still opening its file, or waiting for the first ACK. */
function isPending(slot: Slot): boolean {
  return slot.transfer === undefined || !slot.transfer.acknowledged;
}

/** A reply may race with stop() closing the socket; a lost reply is then fine, a throw is not. */
function sendQuietly(socket: Socket, buf: Buffer, to: TftpClient): void {
  try {
    socket.send(buf, to.port, to.address);
  } catch {
    // socket closed
  }
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function requestKey(client: TftpClient, file: string): string {
  return `${client.address}\0${client.port}\0${file}`;
}
