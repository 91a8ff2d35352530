import { Opcode } from './packet.js';

/**
 * DATA packets built in place, one slot per block of the last two windows.
 * dgram sends one whole buffer for about half the cost of a [header,
 * payload] list (measured), which is what bounds a windowed transfer. A slot
 * is reused only for a block two windows on: every unacknowledged packet, and
 * a late retransmission of the window before, may still be queued in the
 * socket and is never overwritten (resending a block rewrites the same bytes).
 */
export class DataPackets {
  private readonly slots: (Buffer | undefined)[];

  constructor(
    private readonly blksize: number,
    windowsize: number,
  ) {
    this.slots = new Array<Buffer | undefined>(2 * windowsize);
  }

  /** The slot for block n with its DATA header written; the payload goes at offset 4. */
  slot(n: number): Buffer {
    const i = n % this.slots.length;
    // Allocated on first use: a short file never needs the whole ring.
    const slot = (this.slots[i] ??= Buffer.allocUnsafeSlow(4 + this.blksize));
    slot[0] = 0;
    slot[1] = Opcode.DATA;
    slot[2] = (n >> 8) & 0xff;
    slot[3] = n & 0xff;
    return slot;
  }

  /** The packet in `slot` once `length` payload bytes are in it (a full block needs no new view). */
  packet(slot: Buffer, length: number): Buffer {
    return length === this.blksize ? slot : slot.subarray(0, 4 + length);
  }
}
