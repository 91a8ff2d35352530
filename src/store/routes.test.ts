import { describe, expect, it } from 'vitest';
import { bootloaderCandidates } from './boot-methods.js';
import { matchPrefix } from './resolver.js';
import { classify } from './routes.js';


describe('classify and the bootloader table', () => {
  it.each([
    ['MAAS/boot-resources/abcdef0/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel', { kind: 'hash', prefix: 'abcdef0', label: 'ubuntu/amd64/ga-24.04/noble/stable/boot-kernel' }],
    ['images/ABCDEF0123/x', { kind: 'hash', prefix: 'abcdef0123', label: 'x' }],
    ['images/abcdef0', { kind: 'hash', prefix: 'abcdef0', label: '' }],
    ['images/abcde/x', { kind: 'none' }],
    ['images/' + 'a'.repeat(65) + '/x', { kind: 'none' }],
  ])('%s', (path, want) => {
    expect(classify(path)).toEqual(want);
  });

  it('maps bare names through MAAS boot methods', () => {
    expect(bootloaderCandidates('bootx64.efi')).toEqual([{ bootloaderType: 'uefi', arch: 'amd64', file: 'bootx64.efi' }]);
    expect(bootloaderCandidates('grubaa64.efi')).toEqual([{ bootloaderType: 'uefi', arch: 'arm64', file: 'grubaa64.efi' }]);
    expect(bootloaderCandidates('bootppc64.bin').map((c) => c.arch)).toEqual(['ppc64el', 'ppc64']);
    expect(bootloaderCandidates('pxelinux.0')[0]).toEqual({ bootloaderType: 'pxe', arch: 'amd64', file: 'lpxelinux.0' });
    expect(bootloaderCandidates('menu.c32').map((c) => `${c.bootloaderType}/${c.arch}/${c.file}`)).toEqual(['pxe/amd64/menu.c32', 'pxe/i386/menu.c32']);
    expect(bootloaderCandidates('BOOTX64.EFI')[0]!.file).toBe('bootx64.efi');
    expect(bootloaderCandidates('vmlinuz')).toEqual([]);
    expect(classify('images/bootx64.efi')).toMatchObject({ kind: 'bootloader' });
    expect(classify('syslinux/ldlinux.c32')).toMatchObject({ kind: 'bootloader' });
    expect(classify('bootloaders/uefi/amd64/grub/grub.cfg')).toEqual({
      kind: 'bootloader',
      candidates: [{ bootloaderType: 'uefi', arch: 'amd64', file: 'grub/grub.cfg' }],
    });
    expect(classify('bootloaders/-x/amd64/a')).toEqual({ kind: 'none' });
  });

  it('matches prefixes by binary search', () => {
    const sorted = ['0a', 'abc1', 'abc2', 'abd', 'ff'];
    expect(matchPrefix(sorted, 'abc')).toEqual(['abc1', 'abc2']);
    expect(matchPrefix(sorted, 'abd')).toEqual(['abd']);
    expect(matchPrefix(sorted, 'b')).toEqual([]);
    expect(matchPrefix(sorted, 'ff0')).toEqual([]);
  });
});
