import { MirrorError, errnoOf } from '../errors.js';

/** The TFTP listener could not bind; the message names the fix for the usual causes. */
export class TftpBindError extends MirrorError {
  readonly code = 'MM_TFTP_BIND';
  constructor(
    readonly host: string,
    readonly port: number,
    options?: { cause?: unknown },
  ) {
    super(`cannot listen for TFTP on ${formatAddress(host, port)}: ${bindAdvice(errnoOf(options?.cause), port)}`, options);
  }
}

function bindAdvice(errno: string | undefined, port: number): string {
  switch (errno) {
    case 'EACCES':
    case 'EPERM':
      return (
        `permission denied for port ${port}; run with CAP_NET_BIND_SERVICE ` +
        `(setcap or systemd AmbientCapabilities), or set tftp.listen to a high port`
      );
    case 'EADDRINUSE':
      return (
        'the address is already in use, probably by another TFTP server (tftpd-hpa, dnsmasq, a MAAS rack); ' +
        'stop it, or set tftp.listen to another address or port'
      );
    case 'EADDRNOTAVAIL':
      return 'no interface of this host has that address; fix tftp.listen (use 0.0.0.0 or [::] for all)';
    default:
      return `${errno ?? 'unknown error'}; check tftp.listen`;
  }
}

/**
 * What an open callback throws to refuse a name it will never serve (outside
 * the tree, a special file): the client gets TFTP ERROR 2, access violation.
 */
export class TftpAccessError extends MirrorError {
  readonly code = 'MM_TFTP_ACCESS';
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`refusing TFTP read of ${JSON.stringify(file)}: ${reason}`);
  }
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A TFTP server answered with an ERROR packet (seen by the client side). */
export class TftpRemoteError extends MirrorError {
  readonly code = 'MM_TFTP_REMOTE';
  constructor(
    readonly tftpCode: number,
    readonly remoteMessage: string,
  ) {
    super(`TFTP server refused: error ${tftpCode} "${remoteMessage}"`);
  }
}
