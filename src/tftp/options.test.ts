import { describe, expect, it } from 'vitest';
import { negotiate } from './options.js';

const limits = { maxBlksize: 8192, maxWindowsize: 64 };

describe('negotiate', () => {
  it('accepts nothing without options: plain RFC 1350, no OACK', () => {
    expect(negotiate([], 100, limits)).toEqual({ blksize: 512, windowsize: 1, timeoutMs: undefined, accepted: [] });
  });

  it('answers tsize with the file size, whatever the client sent', () => {
    expect(negotiate([['tsize', '0']], 123456, limits).accepted).toEqual([['tsize', '123456']]);
    expect(negotiate([['tsize', '99']], 5, limits).accepted).toEqual([['tsize', '5']]);
  });

  it('leaves tsize out when the size is unknown (netascii)', () => {
    expect(negotiate([['tsize', '0']], undefined, limits).accepted).toEqual([]);
  });

  it('grants blksize up to the configured maximum', () => {
    expect(negotiate([['blksize', '1468']], 0, limits)).toMatchObject({ blksize: 1468, accepted: [['blksize', '1468']] });
    expect(negotiate([['blksize', '65464']], 0, limits)).toMatchObject({ blksize: 8192, accepted: [['blksize', '8192']] });
    expect(negotiate([['blksize', '8']], 0, limits)).toMatchObject({ blksize: 8 });
    expect(negotiate([['blksize', '70000']], 0, { ...limits, maxBlksize: 65464 })).toMatchObject({ blksize: 65464 });
  });

  it('ignores invalid blksize values', () => {
    for (const v of ['7', '0', '', 'abc', '-1', '0x200', '1e3', ' 512', '512 ']) {
      expect(negotiate([['blksize', v]], 0, limits), v).toMatchObject({ blksize: 512, accepted: [] });
    }
  });

  it('grants windowsize up to the configured maximum', () => {
    expect(negotiate([['windowsize', '16']], 0, limits)).toMatchObject({ windowsize: 16, accepted: [['windowsize', '16']] });
    expect(negotiate([['windowsize', '1000']], 0, limits)).toMatchObject({ windowsize: 64 });
    expect(negotiate([['windowsize', '0']], 0, limits)).toMatchObject({ windowsize: 1, accepted: [] });
    expect(negotiate([['windowsize', '65536']], 0, limits)).toMatchObject({ windowsize: 1, accepted: [] });
  });

  it('caps the window at 64 KiB of payload, whatever the option order', () => {
    expect(negotiate([['blksize', '8192'], ['windowsize', '16']], 0, limits)).toMatchObject({
      windowsize: 8,
      accepted: [['blksize', '8192'], ['windowsize', '8']],
    });
    expect(negotiate([['windowsize', '64'], ['blksize', '1468']], 0, limits)).toMatchObject({
      windowsize: 44,
      accepted: [['windowsize', '44'], ['blksize', '1468']],
    });
    expect(negotiate([['windowsize', '4'], ['blksize', '65464']], 0, { ...limits, maxBlksize: 65464 })).toMatchObject({
      windowsize: 1,
      accepted: [['windowsize', '1'], ['blksize', '65464']],
    });
  });

  it('echoes a valid timeout and uses it', () => {
    expect(negotiate([['timeout', '3']], 0, limits)).toMatchObject({ timeoutMs: 3000, accepted: [['timeout', '3']] });
    expect(negotiate([['timeout', '0']], 0, limits)).toMatchObject({ timeoutMs: undefined, accepted: [] });
    expect(negotiate([['timeout', '256']], 0, limits)).toMatchObject({ timeoutMs: undefined, accepted: [] });
  });

  it('ignores unknown options and keeps request order', () => {
    const n = negotiate(
      [
        ['multicast', ''],
        ['windowsize', '4'],
        ['utimeout', '5000'],
        ['tsize', '0'],
        ['blksize', '1024'],
      ],
      77,
      limits,
    );
    expect(n.accepted).toEqual([
      ['windowsize', '4'],
      ['tsize', '77'],
      ['blksize', '1024'],
    ]);
  });

  it('uses the first of repeated options', () => {
    expect(
      negotiate(
        [
          ['blksize', '1024'],
          ['blksize', '2048'],
        ],
        0,
        limits,
      ),
    ).toMatchObject({ blksize: 1024, accepted: [['blksize', '1024']] });
  });

  it('skips a bad first value without accepting a later duplicate', () => {
    expect(
      negotiate(
        [
          ['blksize', 'x'],
          ['blksize', '2048'],
        ],
        0,
        limits,
      ).accepted,
    ).toEqual([]);
  });
});
