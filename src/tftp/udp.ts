import { createSocket, type Socket, type SocketType } from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns';
import { isIP } from 'node:net';

let last = { address: '', version: 0 };

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * Every send names its destination, and dgram resolves it through
 * dns.lookup plus an extra tick each time, even for a literal address: a
 * measurable share of a lock-step transfer. Literals are answered at once,
 * and the last one (a transfer sends every packet to one peer) without even
 * parsing it again.
 */
function literalLookup(address: string, family: unknown, callback: LookupCallback): void {
  if (address !== last.address) {
    const version = isIP(address);
    if (version === 0) {
      dnsLookup(address, { family: family === 6 ? 6 : 4 }, callback);
      return;
    }
    last = { address, version };
  }
  callback(null, address, last.version);
}

/** IPv6 sockets are IPv6-only, so "0.0.0.0" and "[::]" can both be listed. */
export function createUdpSocket(type: SocketType): Socket {
  return createSocket({ type, ipv6Only: type === 'udp6', lookup: literalLookup as never });
}

export function bindSocket(socket: Socket, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    socket.once('error', onError);
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

/**
 * Connects a bound socket to the transfer's peer. dgram hands a failed
 * connect (a failed lookup, or the kernel refusing it: EACCES for a broadcast
 * address) to the callback and emits no 'error', so the callback's argument
 * is the only place the failure shows. An invalid port throws at once, which
 * rejects too.
 */
export function connectSocket(socket: Socket, to: { readonly address: string; readonly port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    // @types/node types the callback as () => void; dgram does pass the error.
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    socket.connect(to.port, to.address, done);
  });
}
