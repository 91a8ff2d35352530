import type { Socket, RemoteInfo } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { BlockSource } from './blocks.js';
import type { TftpClient, TftpFile } from './files.js';
import { DataPackets } from './data-packets.js';
import { ErrorCode, Opcode, decodePacket, encodeError, encodeOack, type OptionList } from './packet.js';

export type TransferResult =
  | 'ok'
  | 'aborted_by_client'
  | 'timeout'
  | 'not_found'
  | 'access_violation'
  | 'bad_request'
  | 'busy'
  | 'evicted'
  | 'shutdown'
  | 'error';

export interface ReadTransferOptions {
  /**
   * Bound and connected to the client (its TID), used by this transfer only;
   * closed when it ends. Connected, the kernel drops packets from anyone
   * else (as tftpd-hpa's sockets do), and a send names no address, which
   * dgram makes markedly cheaper per packet.
   */
  readonly socket: Socket;
  readonly peer: TftpClient;
  /** Closed when the transfer ends. */
  readonly file: TftpFile;
  readonly netascii: boolean;
  readonly blksize: number;
  readonly windowsize: number;
  readonly timeoutMs: number;
  readonly retries: number;
  /**
   * Until the client acknowledges anything (ACK of the OACK or of DATA 1), the
   * transfer gives up after this long whatever timeout it negotiated: an RRQ
   * from a spoofed address must not hold a slot for 6 x 255 s.
   */
  readonly firstAckTimeoutMs: number;
  /**
   * Resends before the first ACK, spread over firstAckTimeoutMs: an unanswered
   * request draws 1 + this many packets, and no ERROR.
   */
  readonly firstAckResends: number;
  /**
   * Floor of the adaptive retransmission timeout (see RetransmitTimer); the
   * negotiated timeout is its ceiling. Default MIN_RTO_MS.
   */
  readonly minRtoMs?: number;
  /** Options for the OACK; empty: no OACK, DATA 1 goes first. */
  readonly accepted: OptionList;
  readonly logger: Logger;
  /** Payload bytes put on the wire, retransmissions included. */
  readonly onSent: (bytes: number) => void;
  /** Called once, at the first ACK (of the OACK or of DATA 1): from then on the transfer cannot be evicted. */
  readonly onAcknowledged?: () => void;
  readonly onEnd: (end: { result: TransferResult; bytes: number; retransmits: number }) => void;
}

type Phase = 'oack' | 'data' | 'loading' | 'done';

/**
 * The least the adaptive timeout waits before resending. Below this, a
 * client pausing between blocks (firmware writing to memory, a busy host)
 * draws resends that only add duplicates.
 */
export const MIN_RTO_MS = 50;

/**
 * One read transfer: RFC 1350 lock-step, or RFC 7440 windows, with block
 * numbers that wrap at 65536. DATA is resent only when the timer fires, never
 * because a duplicate ACK came in: answering duplicates is how the Sorcerer's
 * Apprentice bug doubles every packet for the rest of a transfer.
 *
 * Once acknowledged, the timer follows the measured round trip (RFC 6298:
 * smoothed RTT plus four deviations, samples only from windows sent once,
 * Karn's rule), between minRtoMs and the negotiated timeout: a lost packet on
 * a LAN costs a few round trips instead of a whole second. Only the first
 * resend of a window comes that early, and it does not count against
 * tftp.retries; further ones wait the negotiated timeout (a client silent
 * that long is stalled more likely than unlucky), so a silent client is
 * still given up after (retries + 1) x timeout, plus one round trip.
 */
export class ReadTransfer {
  private phase: Phase = 'data';
  /** Highest block the client acknowledged (absolute, does not wrap). */
  private acked = 0;
  /** Highest block sent in the current window. */
  private windowEnd = 0;
  private tries = 0;
  private retransmits = 0;
  /** Whether the client has acknowledged anything; until then the first-ACK budget applies. */
  private answered = false;
  private readonly firstAckDeadline: number;
  private readonly source: BlockSource;
  private readonly packets: DataPackets;
  private timer: NodeJS.Timeout;
  /** The delay the timer was armed with; refresh() re-arms with it. */
  private armedMs: number;
  /** Adaptive retransmission timeout; the negotiated timeout until a round trip was measured. */
  private rtoMs: number;
  private srtt: number | undefined;
  private rttvar = 0;
  /** When the current window (or OACK) went out, unless it was resent: then no sample (Karn). */
  private sentAt: number | undefined;

  constructor(private readonly o: ReadTransferOptions) {
    this.firstAckDeadline = performance.now() + o.firstAckTimeoutMs;
    this.source = new BlockSource(o.file, o.blksize, o.netascii);
    this.packets = new DataPackets(o.blksize, o.windowsize);
    o.socket.on('message', (msg, rinfo) => {
      try {
        this.onMessage(msg, rinfo);
      } catch (err) {
        this.o.logger.error({ err }, 'TFTP transfer failed on a packet; aborting it');
        this.fail(err);
      }
    });
    o.socket.on('error', (err) => this.onSocketError(err));
    this.rtoMs = o.timeoutMs;
    // Last, so a constructor that throws leaves no timer behind.
    this.armedMs = this.firstAckIntervalMs();
    this.timer = this.armTimer(this.armedMs);
  }

  /** False until the client acknowledged the OACK or a DATA block: such a transfer may be evicted. */
  get acknowledged(): boolean {
    return this.answered;
  }

  /** Sends the OACK or the first window. Never throws: a failure ends the transfer as an error. */
  start(): void {
    try {
      if (this.o.accepted.length > 0) {
        this.phase = 'oack';
        this.sendOack();
      } else {
        this.advance();
      }
    } catch (err) {
      this.fail(err, 'server error sending');
    }
  }

  /** Ends the transfer now, telling the client why. */
  abort(message: string, result: TransferResult): void {
    this.finish(result, encodeError(ErrorCode.undefined, message));
  }

  /**
   * Ends a transfer the client never acknowledged, to give its slot to a new
   * request. Silently: the request may have come from a spoofed address, and
   * one more packet to it is one more reflected.
   */
  evict(): void {
    this.o.logger.debug({}, 'TFTP unacknowledged transfer evicted for a new request');
    this.finish('evicted');
  }

  /** Re-arms the timer for ms from now; a timer already armed with ms is only refreshed (cheaper per block). */
  private rearm(ms: number): void {
    if (ms === this.armedMs) {
      this.timer.refresh();
      return;
    }
    clearTimeout(this.timer);
    this.armedMs = ms;
    this.timer = this.armTimer(ms);
  }

  /** RFC 6298 section 2, with the negotiated timeout as the upper bound. */
  private sampleRtt(): void {
    if (this.sentAt === undefined) return;
    const r = performance.now() - this.sentAt;
    this.sentAt = undefined;
    if (this.srtt === undefined) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    const rto = Math.ceil(this.srtt + Math.max(1, 4 * this.rttvar));
    this.rtoMs = Math.min(this.o.timeoutMs, Math.max(this.o.minRtoMs ?? MIN_RTO_MS, rto));
  }

  private armTimer(ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      // Node runs due timers before reading sockets: after a stall of the event loop (a busy host,
      // a GC) the timer would beat an ACK already waiting. Decide after the sockets were read.
      const acked = this.acked;
      const phase = this.phase;
      setImmediate(() => {
        if (this.acked !== acked || this.phase !== phase) return;
        // A throw here would be an uncaught exception in a timer, which ends the process.
        try {
          this.onTimeout();
        } catch (err) {
          this.fail(err, 'server error sending');
        }
      });
    }, ms);
  }

  /** The resend interval before the first ACK: the first-ACK budget spread over its resends. */
  private firstAckIntervalMs(): number {
    const spread = Math.floor(this.o.firstAckTimeoutMs / (this.o.firstAckResends + 1));
    return Math.max(1, Math.min(this.o.timeoutMs, spread));
  }

  /** The first ACK switches from the first-ACK budget to the negotiated timeout and retries. */
  private markAnswered(): void {
    if (this.answered) return;
    this.answered = true;
    this.rearm(this.o.timeoutMs);
    this.o.onAcknowledged?.();
  }

  private onSocketError(err: Error): void {
    // The connected socket reports an ICMP port unreachable as ECONNREFUSED: the client closed its
    // port (gone, or restarted with a new request). Resending for another 5 timeouts helps no one.
    if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED' && this.phase !== 'done') {
      this.o.logger.info({ block: this.acked }, 'TFTP client port closed (ICMP port unreachable); transfer ended');
      this.finish('aborted_by_client');
      return;
    }
    // Other send errors (ENOBUFS, host unreachable) are recovered by retransmission or end in a timeout.
    this.o.logger.debug({ err }, 'TFTP transfer socket error');
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.phase === 'done') return;
    // The socket is connected, so only the client reaches it; the check is a second lock.
    if (rinfo.port !== this.o.peer.port || rinfo.address !== this.o.peer.address) return;
    // The hot path: one ACK per block or window, so skip the general decoder.
    if (msg.length >= 4 && msg[0] === 0 && msg[1] === Opcode.ACK) {
      this.onAck(msg.readUInt16BE(2));
      return;
    }
    const packet = decodePacket(msg);
    switch (packet.op) {
      case 'ack':
        this.onAck(packet.block);
        return;
      case 'error':
        this.onClientError(packet.code, packet.message);
        return;
      default:
        // Garbage from the client's own port is dropped rather than ending a boot.
        this.o.logger.debug({ op: packet.op }, 'TFTP transfer ignored an unexpected packet');
    }
  }

  private onAck(wire: number): void {
    if (this.phase === 'oack') {
      if (wire === 0) {
        this.sampleRtt();
        this.markAnswered();
        this.phase = 'data';
        // The OACK's resends are spent; the first window gets all its retries, even if it must be read first.
        this.tries = 0;
        this.advance();
      }
      return;
    }
    if (this.phase !== 'data') return;
    const delta = (wire - this.acked) & 0xffff;
    // delta 0 is a duplicate; beyond the window is stale (an older wrap): neither triggers a send.
    if (delta === 0 || this.acked + delta > this.windowEnd) return;
    this.sampleRtt();
    this.markAnswered();
    this.acked += delta;
    // Progress: the timeouts of the old window must not count against the next, which may still
    // have to be read from disk (the loading phase) before sendNext() would reset this.
    this.tries = 0;
    this.advance();
  }

  private onClientError(code: number, message: string): void {
    // Firmware asking for tsize only aborts right after our OACK (code 8, or anything): routine.
    const level = this.phase === 'oack' ? 'debug' : 'info';
    this.o.logger[level]({ code, message, block: this.acked }, 'TFTP client aborted the transfer');
    this.finish('aborted_by_client');
  }

  /**
   * Sends the next window after an acknowledgement (partial ones included,
   * RFC 7440). Synchronous while the blocks are in memory, which is nearly
   * always: a promise per block is measurable in lock-step.
   */
  private advance(): void {
    const first = this.acked + 1;
    const lastBlock = this.source.lastBlock;
    if (lastBlock !== undefined && first > lastBlock) {
      this.finish('ok');
      return;
    }
    const want = this.acked + this.o.windowsize;
    if (this.source.has(first, want)) {
      this.sendNext(want);
      return;
    }
    this.phase = 'loading';
    // Reading from disk is not a round trip: it gets the negotiated timeout.
    this.sentAt = undefined;
    if (this.answered) this.rearm(this.o.timeoutMs);
    else this.timer.refresh();
    this.source
      .load(first, want)
      .then(() => {
        if (this.phase !== 'loading') return;
        this.phase = 'data';
        this.sendNext(want);
      })
      .catch((err: unknown) => this.fail(err));
  }

  private sendNext(want: number): void {
    this.windowEnd = Math.min(want, this.source.lastBlock ?? want);
    this.tries = 0;
    this.sendWindow();
    this.sentAt = performance.now();
    // Before the first ACK the first-ACK budget sets the pace.
    if (this.answered) this.rearm(this.rtoMs);
    else this.timer.refresh();
  }

  private sendWindow(): void {
    for (let b = this.acked + 1; b <= this.windowEnd; b++) {
      const slot = this.packets.slot(b);
      const length = this.source.copyBlock(b, slot, 4);
      this.o.socket.send(this.packets.packet(slot, length));
      this.o.onSent(length);
    }
  }

  private sendOack(): void {
    this.send(encodeOack(this.o.accepted));
    this.sentAt = this.retransmits === 0 ? performance.now() : undefined;
  }

  private onTimeout(): void {
    if (this.phase === 'done') return;
    // The early resend (after the measured round trip) is spent for free: the client keeps the whole
    // tftp.retries x timeout of patience it had with a fixed timer (firmware resends its ACK only after 4 s).
    if (this.answered && this.phase === 'data' && this.armedMs < this.o.timeoutMs) {
      this.resend();
      return;
    }
    this.tries++;
    if (!this.answered && this.phase !== 'loading') {
      this.onFirstAckTimeout();
      return;
    }
    if (this.tries > this.o.retries && this.phase === 'loading') {
      this.fail(new Error(`reading the file took more than ${this.o.retries + 1} timeouts`));
      return;
    }
    if (this.tries > this.o.retries) {
      this.o.logger.info({ block: this.acked, retries: this.o.retries }, 'TFTP client stopped answering; transfer abandoned');
      this.abort('timed out waiting for the client', 'timeout');
      return;
    }
    this.resend();
  }

  private resend(): void {
    if (this.phase === 'oack') {
      this.retransmits++;
      this.sendOack();
    } else if (this.phase === 'data') {
      this.retransmits += this.windowEnd - this.acked;
      this.sendWindow();
      this.sentAt = undefined;
    }
    // While loading there is nothing to resend; counting the tick still bounds a hung read.
    if (this.answered) this.rearm(this.o.timeoutMs);
    else this.timer.refresh();
  }

  /**
   * Before the first ACK, its own budget instead of tftp.retries: resend while
   * resends are left, then wait out the rest of the time silently, then drop
   * the transfer without an ERROR (one more packet to a spoofed address is
   * one more reflected).
   */
  private onFirstAckTimeout(): void {
    const left = this.firstAckDeadline - performance.now();
    if (left < 1) {
      // Debug only: a flood of spoofed requests would otherwise write a line per request.
      this.o.logger.debug({ ms: this.o.firstAckTimeoutMs }, 'TFTP request never acknowledged; transfer dropped');
      this.finish('timeout');
    } else if (this.tries <= this.o.firstAckResends) {
      this.resend();
    } else {
      clearTimeout(this.timer);
      this.armedMs = left;
      this.timer = this.armTimer(left);
    }
  }

  private fail(err: unknown, message = 'server error reading the file'): void {
    if (this.phase === 'done') return;
    this.o.logger.error({ err }, 'TFTP transfer failed');
    this.abort(message, 'error');
  }

  private send(buf: Buffer): void {
    this.o.socket.send(buf);
  }

  /** @param lastWords an ERROR for the client, sent before the socket closes. */
  private finish(result: TransferResult, lastWords?: Buffer): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    clearTimeout(this.timer);
    const close = () => {
      try {
        this.o.socket.close();
      } catch {
        // already closed
      }
    };
    // close() right after send() would drop the datagram, so close once it is out.
    try {
      if (lastWords) this.o.socket.send(lastWords, close);
      else close();
    } catch {
      close();
    }
    this.o.file.close().catch((err: unknown) => this.o.logger.warn({ err }, 'closing a served file failed'));
    this.o.onEnd({ result, bytes: this.source.bytesThrough(this.acked), retransmits: this.retransmits });
  }
}
