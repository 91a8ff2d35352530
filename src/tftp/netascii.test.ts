import { describe, expect, it } from 'vitest';
import { toNetascii } from './netascii.js';

describe('toNetascii', () => {
  it('maps LF to CR LF and a bare CR to CR NUL', () => {
    expect(toNetascii(Buffer.from('a\nb\rc\r\n')).toString('latin1')).toBe('a\r\nb\r\0c\r\0\r\n');
  });

  it('returns text without line ends unchanged', () => {
    const b = Buffer.from('no line ends');
    expect(toNetascii(b)).toBe(b);
    expect(toNetascii(Buffer.alloc(0)).length).toBe(0);
  });

  it('handles line ends at both edges', () => {
    expect(toNetascii(Buffer.from('\n\n')).toString('latin1')).toBe('\r\n\r\n');
    expect(toNetascii(Buffer.from('\r')).toString('latin1')).toBe('\r\0');
  });
});
