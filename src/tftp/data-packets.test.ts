import { describe, expect, it } from 'vitest';
import { DataPackets } from './data-packets.js';
import { decodePacket } from './packet.js';

const payload = (n: number, size = 8) => Buffer.alloc(size, n & 0xff);

/** The packet for block n carrying `data`, the way ReadTransfer fills a slot. */
function build(p: DataPackets, n: number, data: Buffer): Buffer {
  const slot = p.slot(n);
  return p.packet(slot, data.copy(slot, 4));
}

describe('DataPackets', () => {
  it('builds DATA packets with wrapped block numbers and short last blocks', () => {
    const p = new DataPackets(8, 4);
    expect(decodePacket(build(p, 1, payload(1)))).toEqual({ op: 'data', block: 1, data: payload(1) });
    expect(decodePacket(build(p, 65_536, payload(0)))).toEqual({ op: 'data', block: 0, data: payload(0) });
    expect(decodePacket(build(p, 65_537, payload(1, 3)))).toEqual({ op: 'data', block: 1, data: payload(1, 3) });
    expect(build(p, 7, Buffer.alloc(0))).toHaveLength(4);
  });

  it('keeps every packet of the last two windows intact, whatever the partial ACKs', () => {
    for (const w of [1, 2, 5, 16]) {
      const p = new DataPackets(8, w);
      const handed = new Map<number, Buffer>();
      // Across the 16-bit wrap of block numbers.
      let acked = 65_000;
      let seed = w;
      const broken: string[] = [];
      while (acked < 66_500) {
        // Send the window after `acked`, as ReadTransfer does, then take a partial (or full) ACK.
        for (let b = acked + 1; b <= acked + w; b++) {
          handed.set(b, build(p, b, payload(b)));
          for (const [old, buf] of handed) {
            // Unacknowledged packets, and a retransmission of the previous window, may still sit in the socket's queue.
            if (old > acked - w && (buf.readUInt16BE(2) !== (old & 0xffff) || !buf.subarray(4).equals(payload(old)))) broken.push(`w=${w} block ${old} after ${b}`);
          }
        }
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        acked += 1 + (seed % w);
        for (const old of handed.keys()) if (old <= acked - w) handed.delete(old);
      }
      expect(broken.slice(0, 3)).toEqual([]);
    }
  });
});
