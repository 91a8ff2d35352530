import { describe, expect, it } from 'vitest';
import { MAX_NAME_BYTES, cleanName } from './names.js';

describe('cleanName', () => {
  it.each([
    ['pxelinux.0', 'pxelinux.0'],
    ['/grub/grub.cfg', 'grub/grub.cfg'],
    ['\\bootx64.efi', 'bootx64.efi'],
    ['ubuntu\\amd64\\ga-24.04/noble/stable/boot-kernel', 'ubuntu/amd64/ga-24.04/noble/stable/boot-kernel'],
    ['//a//./b/', 'a/b'],
    ['./a', 'a'],
    ['a..b/..c/d..', 'a..b/..c/d..'],
    ['ünïcode/naïve', 'ünïcode/naïve'],
  ])('cleans %j to %j', (raw, clean) => {
    expect(cleanName(raw)).toEqual({ ok: true, name: clean });
    expect(cleanName(Buffer.from(raw))).toEqual({ ok: true, name: clean });
  });

  it.each(['../etc/passwd', '..\\..\\x', '/../x', 'a/../../x', 'a/..', '..', 'a\\..\\b'])('refuses traversal %j with access violation', (raw) => {
    expect(cleanName(raw)).toMatchObject({ ok: false, refusal: 'access_violation' });
  });

  it('refuses NUL inside a name', () => {
    expect(cleanName('pxelinux.0\0../../etc/passwd')).toMatchObject({ ok: false, refusal: 'access_violation' });
  });

  it('refuses empty, over-long, non-UTF-8 and control-character names as not found', () => {
    expect(cleanName('')).toMatchObject({ ok: false, refusal: 'not_found' });
    expect(cleanName('/')).toMatchObject({ ok: false, refusal: 'not_found' });
    expect(cleanName('a'.repeat(MAX_NAME_BYTES + 1))).toMatchObject({ ok: false, refusal: 'not_found' });
    expect(cleanName('a'.repeat(MAX_NAME_BYTES))).toMatchObject({ ok: true });
    expect(cleanName(Buffer.from([0x61, 0xff, 0x62]))).toMatchObject({ ok: false, refusal: 'not_found' });
    expect(cleanName('a\nb')).toMatchObject({ ok: false, refusal: 'not_found' });
  });
});
