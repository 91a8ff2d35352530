import { describe, expect, it } from 'vitest';
import { fatProblem, fatSafePath, fatSafeSegment } from './fat-names.js';

describe('FAT-safe names', () => {
  it('renames what FAT/exFAT refuse, and leaves ordinary names alone', () => {
    expect(fatSafePath('streams/v1/com.ubuntu.maas:stable:v3:download.sjson')).toBe('streams/v1/com.ubuntu.maas_stable_v3_download.sjson');
    expect(fatSafeSegment('a<b>c"d|e?f*g\\h')).toBe('a_b_c_d_e_f_g_h');
    expect(fatSafeSegment('tab\there')).toBe('tab_here');
    expect(fatSafeSegment('trailing. ')).toBe('trailing__');
    expect(fatSafeSegment('CON')).toBe('_CON');
    expect(fatSafeSegment('lpt1.txt')).toBe('_lpt1.txt');
    expect(fatSafePath('noble/amd64/20250101/squashfs')).toBe('noble/amd64/20250101/squashfs');
  });

  it('says why a name would be refused', () => {
    expect(fatProblem('a:b')).toMatch(/FAT/);
    expect(fatProblem('boot-kernel')).toBeUndefined();
  });
});
