import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { closest, formatDuration, plural, shellQuote } from './format.js';

describe('shellQuote', () => {
  const hostile = ['ubuntu$(touch${IFS}X)', "it's", "'", '`id`', 'a b', '"$HOME"', 'x\ny', '', '*', 'a;b|c&d', '\\', '!event'];
  it('gives bash back exactly the text, whatever it holds', () => {
    const script = hostile.map((t) => `printf '%s\\0' ${shellQuote(t)}`).join('\n');
    const out = execFileSync('bash', ['-c', script], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
    expect(out.split('\0').slice(0, -1)).toEqual(hostile);
  });
  it('leaves plain words bare', () => {
    expect(shellQuote('url=http://mirror:8080/maas/images/ephemeral-v3/stable/')).toBe('url=http://mirror:8080/maas/images/ephemeral-v3/stable/');
    expect(shellQuote('arches=amd64,arm64')).toBe('arches=amd64,arm64');
  });
});

describe('wording', () => {
  it('says "1 file" and "2 files"', () => {
    expect(plural(1, 'file')).toBe('1 file');
    expect(plural(0, 'file')).toBe('0 files');
    expect(plural(2, 'filter group')).toBe('2 filter groups');
  });
  it('writes durations without zero parts', () => {
    expect([5_000, 65_000, 120_000, 6 * 3600_000, 3600_000 + 600_000].map(formatDuration)).toEqual(['5 s', '1 min 5 s', '2 min', '6 h', '1 h 10 min']);
  });
  it('suggests the closest spelling only when it is close', () => {
    expect(closest('--dryrun', ['--dry-run', '--json'])).toBe('--dry-run');
    expect(closest('sycn', ['sync', 'serve'])).toBe('sync');
    expect(closest('frobnicate', ['sync', 'serve'])).toBeUndefined();
  });
});
