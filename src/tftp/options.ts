import type { OptionList } from './packet.js';

/**
 * Option negotiation for a read request: RFC 2347 (OACK), 2348 (blksize),
 * 2349 (timeout, tsize) and 7440 (windowsize). Pure. Anything we do not know
 * or cannot honour is left out of the OACK, which is the RFC's way to refuse
 * an option without failing the transfer.
 */

export const MIN_BLKSIZE = 8;
export const MAX_BLKSIZE = 65464;
export const DEFAULT_BLKSIZE = 512;
/**
 * Payload bytes in flight per window. A window bigger than the client's
 * receive buffer loses its tail, and only the client's timeout recovers a
 * lost tail (measured: 8192 x 16 on loopback fell from ~100 MB/s to 0.1).
 * 64 KiB fits the Linux default buffer (208 KiB) with room for overhead.
 */
export const MAX_WINDOW_BYTES = 64 * 1024;

export interface NegotiationLimits {
  /** Largest blksize granted (RFC 2348 lets the server answer a smaller one). */
  readonly maxBlksize: number;
  readonly maxWindowsize: number;
}

export interface Negotiated {
  readonly blksize: number;
  readonly windowsize: number;
  /** Retransmission timeout the client asked for, if it did and it was valid. */
  readonly timeoutMs: number | undefined;
  /** What goes into the OACK, in request order; empty means: send no OACK, start with DATA 1. */
  readonly accepted: OptionList;
}

/**
 * @param size the file size to announce for tsize, or undefined when it is not
 *   known in advance (netascii, where conversion changes the length).
 */
export function negotiate(requested: OptionList, size: number | undefined, limits: NegotiationLimits): Negotiated {
  let blksize = DEFAULT_BLKSIZE;
  let windowsize = 1;
  let timeoutMs: number | undefined;
  const accepted: [string, string][] = [];
  const seen = new Set<string>();

  let windowAccepted = false;
  for (const [name, value] of requested) {
    // A repeated option is ambiguous; the first one wins, as in tftpd-hpa.
    if (seen.has(name)) continue;
    seen.add(name);
    const n = parseDecimal(value);
    switch (name) {
      case 'blksize':
        if (n === undefined || n < MIN_BLKSIZE) break;
        blksize = Math.min(n, MAX_BLKSIZE, limits.maxBlksize);
        accepted.push([name, String(blksize)]);
        break;
      case 'windowsize':
        if (n === undefined || n < 1 || n > 65535) break;
        windowsize = Math.min(n, limits.maxWindowsize);
        windowAccepted = true;
        // The value is settled below, once blksize is known whatever the option order.
        accepted.push([name, '']);
        break;
      case 'timeout':
        // RFC 2349: the server must answer the same value, or leave the option out.
        if (n === undefined || n < 1 || n > 255) break;
        timeoutMs = n * 1000;
        accepted.push([name, String(n)]);
        break;
      case 'tsize':
        if (n === undefined || size === undefined) break;
        accepted.push([name, String(size)]);
        break;
      default:
        break;
    }
  }
  if (windowAccepted) {
    windowsize = Math.max(1, Math.min(windowsize, Math.floor(MAX_WINDOW_BYTES / blksize)));
    const i = accepted.findIndex(([name]) => name === 'windowsize');
    accepted[i] = ['windowsize', String(windowsize)];
  }
  return { blksize, windowsize, timeoutMs, accepted };
}

/** Plain decimal only: "0x10", "1e3", " 5" or "" are not numbers in TFTP. */
function parseDecimal(value: string): number | undefined {
  if (!/^[0-9]{1,15}$/.test(value)) return undefined;
  return Number(value);
}
