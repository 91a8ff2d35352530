import { describe, expect, it } from 'vitest';
import { refuseReason } from './archive-entries.js';

describe('refuseReason', () => {
  it.each([
    [{ path: 'bootx64.efi', type: 'File' }, undefined],
    [{ path: './grub/x86_64-efi/normal.mod', type: 'File' }, undefined],
    [{ path: 'pxelinux.0', type: 'SymbolicLink', linkpath: 'lpxelinux.0' }, undefined],
    [{ path: 'a/b', type: 'SymbolicLink', linkpath: '../c' }, undefined],
    [{ path: 'b', type: 'Link', linkpath: 'a' }, undefined],
    [{ path: '/etc/cron.d/x', type: 'File' }, 'absolute path'],
    [{ path: 'C:\\evil', type: 'File' }, 'absolute path'],
    [{ path: '../evil', type: 'File' }, 'path contains ".."'],
    [{ path: 'a\\..\\..\\evil', type: 'File' }, 'path contains ".."'],
    [{ path: 'x', type: 'SymbolicLink', linkpath: '/etc/passwd' }, 'symbolic link to an absolute path'],
    [{ path: 'x', type: 'SymbolicLink', linkpath: '../../secret' }, 'link points outside its folder (../../secret)'],
    [{ path: 'a/x', type: 'SymbolicLink', linkpath: '../../secret' }, 'link points outside its folder (../../secret)'],
    [{ path: 'x', type: 'Link', linkpath: '/etc/shadow' }, 'hard link to an absolute path'],
    [{ path: 'x', type: 'Link', linkpath: 'a/../../y' }, 'link points outside its folder (a/../../y)'],
    [{ path: 'dev', type: 'CharacterDevice' }, 'entry type CharacterDevice is not unpacked'],
  ])('%j → %s', (entry, want) => {
    expect(refuseReason(entry)).toBe(want);
  });

  // The kernel follows a link before a ".." after it: "c/.." with c → . is the parent, not ".".
  const links = new Set(['c', 'up', 'a/l', 'ok-link']);
  it.each([
    [{ path: 'up', type: 'SymbolicLink', linkpath: 'c/..' }, 'link target goes through the link c (c/..)'],
    [{ path: 'up2', type: 'SymbolicLink', linkpath: 'up/..' }, 'link target goes through the link up (up/..)'],
    [{ path: 'pw', type: 'SymbolicLink', linkpath: './up/etc/passwd' }, 'link target goes through the link up (./up/etc/passwd)'],
    [{ path: 'a/x', type: 'SymbolicLink', linkpath: 'l/../..' }, 'link target goes through the link a/l (l/../..)'],
    [{ path: 'x', type: 'Link', linkpath: 'up/etc/hostname' }, 'link target goes through the link up (up/etc/hostname)'],
    [{ path: 'x', type: 'Link', linkpath: 'ok-link' }, 'link target goes through the link ok-link (ok-link)'],
    [{ path: 'c/file', type: 'File' }, 'path goes through the link c'],
    [{ path: './a/l/x/', type: 'Directory' }, 'path goes through the link a/l'],
    [{ path: 'link2', type: 'SymbolicLink', linkpath: 'ok-link' }, undefined],
    [{ path: 'a/y', type: 'SymbolicLink', linkpath: '../c' }, undefined],
    [{ path: 'a/z', type: 'SymbolicLink', linkpath: '../cc/..' }, undefined],
    [{ path: 'up', type: 'File' }, undefined],
  ])('with links %j → %s', (entry, want) => {
    expect(refuseReason(entry, links)).toBe(want);
  });
});
