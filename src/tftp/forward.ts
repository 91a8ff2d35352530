import type { Logger } from '../log.js';
import { TftpForwardError } from '../errors.js';
import { TftpAccessError, TftpRemoteError, formatAddress } from './errors.js';
import type { TftpFile, TftpOpen } from './files.js';
import { ErrorCode } from './packet.js';
import { tftpGet } from './client.js';

/**
 * Relaying the per-machine boot configs a MAAS rack generates: a read we
 * cannot answer, for a name in FORWARDED_NAMES, is fetched from the rack into
 * memory and then served by our own transfer engine. The client only ever
 * talks to us, with our limits, timeouts and options; the rack sees one plain
 * read from us.
 */

/** Config files are a few KiB; anything bigger is not a config, and memory per slot stays small. */
export const FORWARD_MAX_BYTES = 1024 * 1024;
/** Blocks we ask the rack for: fewer round trips than 512, still below any Ethernet MTU. */
export const FORWARD_BLKSIZE = 1428;
/** A rack that trickles (one block just inside each timeout) is given up after this long in all. */
export const FORWARD_DEADLINE_MS = 10_000;

/**
 * Names a rack decides per machine: pxelinux's per-MAC/IP/default files,
 * GRUB's grub.cfg and grub.cfg-<mac|default-arch>, iPXE's ipxe.cfg and
 * ipxe.cfg-<mac>. Matched on the cleaned name (no "..", no leading "/").
 */
const FORWARDED_NAMES = [/^pxelinux\.cfg\/[^/]+$/, /^grub\/grub\.cfg(?:-[^/]+)?$/, /^ipxe\.cfg(?:-[^/]+)?$/];

export function isForwardedName(name: string): boolean {
  return FORWARDED_NAMES.some((re) => re.test(name));
}

export interface ForwardOptions {
  readonly host: string;
  readonly port: number;
  /** Our own retransmission timeout and retries, used towards the rack too. */
  readonly timeoutMs: number;
  readonly retries: number;
  readonly logger: Logger;
}

/**
 * An opener that asks `inner` first and, when it has no such file and the
 * name is one a rack decides, fetches it from the rack. The rack's ERROR 1
 * becomes our "not found" (ERROR 1), its ERROR 2 our access violation; a rack
 * that does not answer, answers anything else or sends too much is an error
 * (ERROR 0 to the client). The fetch runs inside the client's slot, so it
 * counts against the same transfer limits, and stops when that slot is given up.
 */
export function forwardingOpener(inner: TftpOpen, o: ForwardOptions): TftpOpen {
  const rack = formatAddress(o.host, o.port);
  return async (name, client, signal) => {
    const own = await inner(name, client, signal);
    if (own !== undefined || !isForwardedName(name)) return own;
    const chunks: Buffer[] = [];
    try {
      await tftpGet({
        host: o.host,
        port: o.port,
        file: name,
        blksize: FORWARD_BLKSIZE,
        tsize: true,
        timeoutMs: o.timeoutMs,
        retries: o.retries,
        maxBytes: FORWARD_MAX_BYTES,
        deadlineMs: FORWARD_DEADLINE_MS,
        signal,
        onData: (data) => chunks.push(Buffer.from(data)),
      });
    } catch (err) {
      if (err instanceof TftpRemoteError && err.tftpCode === ErrorCode.notFound) return undefined;
      if (err instanceof TftpRemoteError && err.tftpCode === ErrorCode.accessViolation) {
        throw new TftpAccessError(name, `the forward server ${rack} refused it`);
      }
      throw new TftpForwardError(rack, name, { cause: err });
    }
    const data = Buffer.concat(chunks);
    o.logger.debug({ file: name, rack, bytes: data.length }, 'TFTP read relayed from the forward server');
    return memoryFile(data);
  };
}

function memoryFile(data: Buffer): TftpFile {
  return {
    size: data.length,
    read: (buffer, position) => Promise.resolve(data.copy(buffer, 0, position, position + buffer.length)),
    close: () => Promise.resolve(),
  };
}
