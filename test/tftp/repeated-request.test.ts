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

  it('is a stale duplicate just after its answer: not answered again, so the next request on that port gets its own answer', async () => {
    const config = Buffer.from('DEFAULT linux\n');
    const tree = await makeTree({ 'pxelinux.cfg/default': config });
    cleanups.push(tree.cleanup);
    const srv: Running = await startServer(tree.dir);
    cleanups.push(srv.stop);
    const peer = await UdpPeer.open();
    cleanups.push(() => peer.close());

    // lpxelinux walks its config names from one port; a repeat crosses the first answer.
    const missing = encodeRequest('rrq', 'pxelinux.cfg/0A', 'octet');
    peer.send(missing, srv.port);
    const notFound = await peer.recv();
    expect(notFound.packet.op).toBe('error');
    peer.send(missing, srv.port);
    expect(await peer.drain(300)).toEqual([]);

    // The client moved on: what it gets now is the answer to this request, not a late one to the last.
    peer.send(encodeRequest('rrq', 'pxelinux.cfg/default', 'octet'), srv.port);
    const answer = await peer.recv();
    expect(answer.packet.op).toBe('data');
    if (answer.packet.op !== 'data') return;
    expect(answer.packet.data).toEqual(config);
    peer.send(encodeAck(1), answer.rinfo.port);
    await until(() => srv.ends.some((e) => e.result === 'ok'));

    // Nor does a late repeat of a finished transfer start it again.
    peer.send(encodeRequest('rrq', 'pxelinux.cfg/default', 'octet'), srv.port);
    expect(await peer.drain(300)).toEqual([]);
    expect(srv.ends.map((e) => e.result)).toEqual(['not_found', 'ok']);
  });

  it('is answered again once the window has passed: a client that really lost the answer is not left waiting', async () => {
    const tree = await makeTree({ 'a.bin': random(100) });
    cleanups.push(tree.cleanup);
    const srv: Running = await startServer(tree.dir);
    cleanups.push(srv.stop);
    const peer = await UdpPeer.open();
    cleanups.push(() => peer.close());

    const rrq = encodeRequest('rrq', 'missing.bin', 'octet');
    peer.send(rrq, srv.port);
    expect((await peer.recv()).packet.op).toBe('error');
    await new Promise((r) => setTimeout(r, 2_300));
    peer.send(rrq, srv.port);
    expect((await peer.recv()).packet.op).toBe('error');
    // Another port is another request, answered at once.
    const other = await UdpPeer.open();
    cleanups.push(() => other.close());
    other.send(rrq, srv.port);
    expect((await other.recv()).packet.op).toBe('error');
  });
});
