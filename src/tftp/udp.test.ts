import { describe, expect, it } from 'vitest';
import { bindSocket, connectSocket, createUdpSocket } from './udp.js';

describe('connectSocket', () => {
  it('connects a bound socket to its peer', async () => {
    const socket = createUdpSocket('udp4');
    try {
      await bindSocket(socket, '127.0.0.1', 0);
      await connectSocket(socket, { address: '127.0.0.1', port: 9 });
      expect(socket.remoteAddress()).toMatchObject({ address: '127.0.0.1', port: 9 });
    } finally {
      socket.close();
    }
  });

  it('rejects when the kernel refuses the connect (EACCES for broadcast), which dgram reports only to the callback', async () => {
    const socket = createUdpSocket('udp4');
    try {
      await bindSocket(socket, '127.0.0.1', 0);
      await expect(connectSocket(socket, { address: '255.255.255.255', port: 9 })).rejects.toMatchObject({ code: 'EACCES' });
      // Still unconnected: a send without a destination would throw, which is what the transfer must never meet.
      expect(() => socket.remoteAddress()).toThrow(/not connected/i);
    } finally {
      socket.close();
    }
  });

  it('rejects an invalid port instead of throwing', async () => {
    const socket = createUdpSocket('udp4');
    try {
      await bindSocket(socket, '127.0.0.1', 0);
      await expect(connectSocket(socket, { address: '127.0.0.1', port: 0 })).rejects.toMatchObject({ code: 'ERR_SOCKET_BAD_PORT' });
    } finally {
      socket.close();
    }
  });
});
