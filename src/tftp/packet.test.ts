import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  dataHeader,
  decodePacket,
  encodeAck,
  encodeData,
  encodeError,
  encodeOack,
  encodeRequest,
} from './packet.js';

const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

describe('decodePacket', () => {
  it('decodes an RRQ with options, lower-casing mode and option names', () => {
    const p = decodePacket(bytes([0, 1], 'pxelinux.0\0OCTET\0BlkSize\x001468\0tsize\x000\0'));
    expect(p).toMatchObject({ op: 'rrq', mode: 'octet', options: [['blksize', '1468'], ['tsize', '0']] });
    expect(p.op === 'rrq' && p.filename.toString()).toBe('pxelinux.0');
  });

  it('decodes a WRQ', () => {
    expect(decodePacket(bytes([0, 2], 'x\0octet\0'))).toMatchObject({ op: 'wrq', mode: 'octet', options: [] });
  });

  it('keeps the name as raw bytes, whatever the encoding', () => {
    const p = decodePacket(bytes([0, 1], [0xff, 0xfe, 0x41], '\0octet\0'));
    expect(p.op === 'rrq' && [...p.filename]).toEqual([0xff, 0xfe, 0x41]);
  });

  it('drops a truncated trailing option but keeps the request', () => {
    expect(decodePacket(bytes([0, 1], 'f\0octet\0blksize\x001468\0tsi'))).toMatchObject({
      op: 'rrq',
      options: [['blksize', '1468']],
    });
    expect(decodePacket(bytes([0, 1], 'f\0octet\0blksize\0'))).toMatchObject({ op: 'rrq', options: [] });
  });

  it('skips NUL padding between and after options', () => {
    expect(decodePacket(bytes([0, 1], 'f\0octet\0\0\0tsize\x000\0\0\0\0'))).toMatchObject({
      options: [['tsize', '0']],
    });
  });

  it('keeps an option with an empty value (negotiation decides)', () => {
    expect(decodePacket(bytes([0, 1], 'f\0octet\0tsize\0\0'))).toMatchObject({ options: [['tsize', '']] });
  });

  it('reports requests without terminators as malformed', () => {
    expect(decodePacket(bytes([0, 1], 'file'))).toMatchObject({ op: 'malformed' });
    expect(decodePacket(bytes([0, 1], 'file\0octet'))).toMatchObject({ op: 'malformed' });
    expect(decodePacket(bytes([0, 1]))).toMatchObject({ op: 'malformed' });
  });

  it('reports packets too short for their opcode as malformed', () => {
    expect(decodePacket(Buffer.alloc(0))).toMatchObject({ op: 'malformed' });
    expect(decodePacket(Buffer.from([0]))).toMatchObject({ op: 'malformed' });
    expect(decodePacket(Buffer.from([0, 4, 1]))).toMatchObject({ op: 'malformed' });
    expect(decodePacket(Buffer.from([0, 3, 0]))).toMatchObject({ op: 'malformed' });
    expect(decodePacket(Buffer.from([0, 5, 0]))).toMatchObject({ op: 'malformed' });
  });

  it('reports unknown opcodes with their number', () => {
    expect(decodePacket(Buffer.from([0, 7]))).toEqual({ op: 'unknown', opcode: 7 });
    expect(decodePacket(Buffer.from([0xff, 0xff, 1, 2]))).toEqual({ op: 'unknown', opcode: 0xffff });
    expect(decodePacket(Buffer.from([0, 0]))).toEqual({ op: 'unknown', opcode: 0 });
  });

  it('accepts a padded ACK', () => {
    expect(decodePacket(Buffer.from([0, 4, 0x12, 0x34, 0, 0, 0]))).toEqual({ op: 'ack', block: 0x1234 });
  });

  it('decodes DATA, ERROR (with or without terminator) and OACK', () => {
    const d = decodePacket(Buffer.from([0, 3, 0xff, 0xff, 1, 2, 3]));
    expect(d.op === 'data' && d.block).toBe(65535);
    expect(d.op === 'data' && [...d.data]).toEqual([1, 2, 3]);
    expect(decodePacket(bytes([0, 5, 0, 8], 'no tsize\0'))).toEqual({ op: 'error', code: 8, message: 'no tsize' });
    expect(decodePacket(bytes([0, 5, 0, 1], 'nope'))).toEqual({ op: 'error', code: 1, message: 'nope' });
    expect(decodePacket(bytes([0, 6], 'blksize\x00512\0'))).toEqual({ op: 'oack', options: [['blksize', '512']] });
  });

  it('never throws on random input', () => {
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.alloc(Math.floor(Math.random() * 40));
      for (let j = 0; j < b.length; j++) b[j] = Math.random() < 0.3 ? 0 : Math.floor(Math.random() * 256);
      if (b.length >= 2 && Math.random() < 0.5) b[0] = 0;
      expect(() => decodePacket(b)).not.toThrow();
    }
  });
});

describe('encoders', () => {
  it('round-trip through the decoder', () => {
    expect(decodePacket(encodeRequest('rrq', 'a/b', 'octet', [['blksize', '1468']]))).toMatchObject({
      op: 'rrq',
      mode: 'octet',
      options: [['blksize', '1468']],
    });
    expect(decodePacket(encodeAck(7))).toEqual({ op: 'ack', block: 7 });
    expect(decodePacket(encodeError(ErrorCode.notFound, 'file not found'))).toEqual({
      op: 'error',
      code: 1,
      message: 'file not found',
    });
    expect(decodePacket(encodeOack([['tsize', '42']]))).toEqual({ op: 'oack', options: [['tsize', '42']] });
    const d = decodePacket(encodeData(3, Buffer.from('xyz')));
    expect(d.op === 'data' && d.data.toString()).toBe('xyz');
  });

  it('wraps block numbers at 65536', () => {
    expect([...dataHeader(65535)]).toEqual([0, 3, 0xff, 0xff]);
    expect([...dataHeader(65536)]).toEqual([0, 3, 0, 0]);
    expect([...dataHeader(65537)]).toEqual([0, 3, 0, 1]);
    expect([...encodeAck(65536 + 5)]).toEqual([0, 4, 0, 5]);
  });

  it('terminates ERROR messages with NUL', () => {
    expect([...encodeError(2, 'x')]).toEqual([0, 5, 0, 2, 0x78, 0]);
  });
});
