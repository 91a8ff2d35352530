import { createHash } from 'node:crypto';
import type { RemoteInfo } from 'node:dgram';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TftpRemoteError } from './errors.js';
import { createUdpSocket } from './udp.js';
import { ErrorCode, decodePacket, encodeAck, encodeError, encodeRequest, type OptionList } from './packet.js';

/**
 * A small TFTP read client (RFC 1350, 2347-2349, 7440): for checking a
 * running server end to end, the benchmark and tests. It hashes what it gets
 * rather than keeping it.
 */

export interface TftpGetOptions {
  readonly host: string;
  readonly port: number;
  readonly file: string | Buffer;
  readonly mode?: 'octet' | 'netascii';
  readonly blksize?: number;
  readonly windowsize?: number;
  /** Ask for tsize (sends "tsize 0"). */
  readonly tsize?: boolean;
  /** More options, sent as given after the ones above. */
  readonly extraOptions?: OptionList;
  /** Client retransmission timeout; default 1000. */
  readonly timeoutMs?: number;
  readonly retries?: number;
  /** Source address; default: any of the server's family. */
  readonly localAddress?: string;
  /** Each payload in order, e.g. to keep the bytes. */
  readonly onData?: (data: Buffer) => void;
  /** Gives up (ERROR 3 to the server) once the file, or the tsize it announces, exceeds this. */
  readonly maxBytes?: number;
  /** Gives up after this long in all, however steadily the server trickles. */
  readonly deadlineMs?: number;
  /** Gives up (ERROR 0 to the server) when aborted. */
  readonly signal?: AbortSignal;
}

export interface TftpGetResult {
  readonly bytes: number;
  readonly sha256: string;
  /** Options the server accepted (its OACK), empty when it sent none. */
  readonly options: Readonly<Record<string, string>>;
  readonly dataPackets: number;
  /** DATA packets that did not advance the transfer (retransmissions, window overshoot). */
  readonly duplicates: number;
  readonly durationMs: number;
}

export function tftpGet(o: TftpGetOptions): Promise<TftpGetResult> {
  const family = o.host.includes(':') ? 'udp6' : 'udp4';
  const socket = createUdpSocket(family);
  const requestOptions: (readonly [string, string])[] = [];
  if (o.blksize !== undefined) requestOptions.push(['blksize', String(o.blksize)]);
  if (o.windowsize !== undefined) requestOptions.push(['windowsize', String(o.windowsize)]);
  if (o.tsize) requestOptions.push(['tsize', '0']);
  requestOptions.push(...(o.extraOptions ?? []));
  const request = encodeRequest('rrq', o.file, o.mode ?? 'octet', requestOptions);
  const timeoutMs = o.timeoutMs ?? 1000;
  const retries = o.retries ?? 5;
  const started = performance.now();
  const pinned = isIP(o.host) === 0 ? undefined : o.host;

  return new Promise<TftpGetResult>((resolve, reject) => {
    const hash = createHash('sha256');
    let server: { port: number; address: string } | undefined;
    let options: Record<string, string> = {};
    let blksize = 512;
    let windowsize = 1;
    let received = 0;
    let bytes = 0;
    let inWindow = 0;
    let dataPackets = 0;
    let duplicates = 0;
    let answeredGap = false;
    let tries = 0;
    let finished = false;
    let lastSent = request;

    const timer = setTimeout(onTimeout, timeoutMs);
    const deadline =
      o.deadlineMs === undefined
        ? undefined
        : setTimeout(() => giveUp(ErrorCode.undefined, `no complete answer within ${o.deadlineMs} ms`), o.deadlineMs);
    const onAbort = () => giveUp(ErrorCode.undefined, 'request cancelled');
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const giveUp = (code: number, reason: string) => {
      end(new Error(`TFTP read from ${o.host}:${o.port} abandoned: ${reason}`), encodeError(code, reason));
    };
    const tooBig = (n: number) => o.maxBytes !== undefined && n > o.maxBytes;
    const send = (buf: Buffer) => {
      lastSent = buf;
      socket.send(buf, server?.port ?? o.port, server?.address ?? o.host);
    };
    const end = (err: Error | undefined, lastWords?: Buffer) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(deadline);
      o.signal?.removeEventListener('abort', onAbort);
      const close = () => {
        try {
          socket.close();
        } catch {
          // already closed
        }
        if (err) reject(err);
        else {
          resolve({
            bytes,
            sha256: hash.digest('hex'),
            options,
            dataPackets,
            duplicates,
            durationMs: performance.now() - started,
          });
        }
      };
      if (lastWords && server) socket.send(lastWords, server.port, server.address, close);
      else close();
    };

    function onTimeout(): void {
      if (finished) return;
      if (++tries > retries) {
        end(new Error(`TFTP server ${o.host}:${o.port} stopped answering after block ${received}`));
        return;
      }
      answeredGap = false;
      send(lastSent);
      timer.refresh();
    }

    function onMessage(msg: Buffer, rinfo: RemoteInfo): void {
      if (finished) return;
      // Until the server's TID is known, only its address may answer: anyone else could inject a file.
      if (!server && pinned !== undefined && rinfo.address !== pinned) return;
      if (server && (rinfo.port !== server.port || rinfo.address !== server.address)) {
        // A second server TID (a duplicated RRQ was answered twice): refuse it, as RFC 1350 says.
        socket.send(encodeError(ErrorCode.unknownTid, 'unknown transfer ID'), rinfo.port, rinfo.address);
        return;
      }
      const p = decodePacket(msg);
      if (p.op === 'error') {
        end(new TftpRemoteError(p.code, p.message));
        return;
      }
      server ??= { port: rinfo.port, address: rinfo.address };
      if (p.op === 'oack') {
        if (dataPackets > 0) return;
        options = Object.fromEntries(p.options);
        if (tooBig(Number(options.tsize ?? 0))) {
          giveUp(ErrorCode.diskFull, `file of ${options.tsize} bytes is over the ${o.maxBytes}-byte limit`);
          return;
        }
        blksize = Number(options.blksize ?? 512);
        windowsize = Number(options.windowsize ?? 1);
        tries = 0;
        timer.refresh();
        send(encodeAck(0));
        return;
      }
      if (p.op !== 'data') return;
      dataPackets++;
      if (p.block !== ((received + 1) & 0xffff)) {
        duplicates++;
        // One ACK per gap tells a windowed sender where to restart; more would be noise.
        if (!answeredGap) {
          answeredGap = true;
          inWindow = 0;
          send(encodeAck(received));
        }
        return;
      }
      received++;
      answeredGap = false;
      tries = 0;
      timer.refresh();
      bytes += p.data.length;
      if (tooBig(bytes)) {
        giveUp(ErrorCode.diskFull, `file is over the ${o.maxBytes}-byte limit`);
        return;
      }
      hash.update(p.data);
      o.onData?.(p.data);
      if (p.data.length < blksize) {
        end(undefined, encodeAck(received));
        return;
      }
      if (++inWindow >= windowsize) {
        inWindow = 0;
        send(encodeAck(received));
      }
    }

    socket.on('message', (msg, rinfo) => {
      try {
        onMessage(msg, rinfo);
      } catch (err) {
        end(err as Error);
      }
    });
    socket.on('error', (err) => end(err));
    if (o.signal?.aborted) {
      end(new Error(`TFTP read from ${o.host}:${o.port} abandoned: request cancelled`));
      return;
    }
    socket.bind({ port: 0, address: o.localAddress }, () => {
      if (!finished) send(request);
    });
  });
}
