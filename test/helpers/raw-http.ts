import { connect } from 'node:net';
import type { Listen } from '../../src/config/load.js';

/** One request written byte for byte over a raw socket (HTTP clients would normalise it); the status and the raw answer. */
export function rawHttp(to: Listen, head: string, timeoutMs = 5000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(to.port, to.host, () => socket.write(head, 'latin1'));
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms to ${head.slice(0, 120)}`)));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text });
    });
  });
}

/** A GET of a path exactly as given, on a connection closed after the answer. */
export function rawGet(to: Listen, path: string): Promise<{ status: number; text: string }> {
  return rawHttp(to, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
}
