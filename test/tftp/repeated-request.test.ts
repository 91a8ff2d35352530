import { afterEach, describe, expect, it } from 'vitest';
import { encodeAck, encodeRequest } from '../../src/tftp/packet.js';
import { UdpPeer, makeTree, random, sha256, startServer, until, type Running } from './helpers.js';

/**
 * lpxelinux sends every request from the same port (49153) and repeats a
 * request it thinks lost. Seen with 25 machines booting at once: each repeat
 * started one more transfer to that port, and their DATA kept arriving while
 * the client had moved on to its next file on the same port, so machines hung
 * after ldlinux.c32.
 */
describe('a request repeated from the same client port', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('is a retransmission while its transfer runs: one transfer, one server port, whole file', async () => {
    const body = random(5 * 512 + 100);
    const tree = await makeTree({ 'ldlinux.c32': body });
    cleanups.push(tree.cleanup);
    const srv: Running = await startServer(tree.dir);
    cleanups.push(srv.stop);
    const peer = await UdpPeer.open();
    cleanups.push(() => peer.close());

    const rrq = encodeRequest('rrq', 'ldlinux.c32', 'octet');
    peer.send(rrq, srv.port);
    const first = await peer.recv();
    peer.send(rrq, srv.port);
    peer.send(rrq, srv.port);
    const extra = await peer.drain(300);
    // Every DATA comes from the first transfer's port; the repeats started nothing.
    expect(new Set([first, ...extra].map((r) => r.rinfo.port))).toEqual(new Set([first.rinfo.port]));

    // The running transfer still completes.
    const parts: Buffer[] = [];
    let got = first;
    for (;;) {
      if (got.packet.op === 'data') {
        if (parts.length < got.packet.block) parts.push(got.packet.data);
        peer.send(encodeAck(got.packet.block), got.rinfo.port);
        if (got.packet.data.length < 512) break;
      }
      got = await peer.recv();
    }
    expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
    await until(() => srv.ends.length > 0);
    expect(srv.ends.map((e) => e.result)).toEqual(['ok']);
  });
});
