import { describe, expect, it } from 'vitest';
import { matchesGroups, parseFilter, parseFilterGroups } from './filter.js';

const item = { arch: 'amd64', release: 'noble', os: 'ubuntu', size: 1234, subarches: 'generic,hwe-p' };

describe('parseFilter', () => {
  it.each([
    ['arch=amd64', true],
    ['arch=amd', false],
    ['arch!=amd64', false],
    ['arch!=arm64', true],
    ['release~nob', true],
    ['release~^(jammy|noble)$', true],
    ['release~^jammy$', false],
    ['release!~^jammy$', true],
    ['release!~oble', false],
    ['size=1234', true],
    ['subarches~hwe-p', true],
    ['missing=', true],
    ['missing!=x', true],
    ['missing~.', false],
    ['arch = amd64', true],
  ])('%s on the sample item → %s', (text, expected) => {
    expect(parseFilter(text).matches(item)).toBe(expected);
  });

  it('ignores non-scalar values as sstream-mirror would', () => {
    expect(parseFilter('versions~.').matches({ versions: { a: 1 } })).toBe(false);
  });

  it.each(['arch', '=amd64', 'a b=c', 'arch~('])('rejects %j with a message', (text) => {
    expect(() => parseFilter(text)).toThrow(/filter/);
  });
});

describe('filter groups', () => {
  const groups = parseFilterGroups([
    ['os=ubuntu', 'arch=amd64', 'release~^(jammy|noble)$'],
    ['bootloader-type~.'],
  ]);
  it('ANDs within a group and ORs across groups', () => {
    expect(matchesGroups(groups, item)).toBe(true);
    expect(matchesGroups(groups, { ...item, arch: 'arm64' })).toBe(false);
    expect(matchesGroups(groups, { os: 'grub-efi', 'bootloader-type': 'uefi', arch: 'arm64' })).toBe(true);
  });
  it('keeps everything with no groups', () => {
    expect(matchesGroups([], {})).toBe(true);
  });
});

describe('doubled operators', () => {
  it('refuses "==", "!==", "=~" and "!=~", naming the filter meant', () => {
    expect(() => parseFilter('arch==amd64')).toThrow('filter "arch==amd64": "==" is not an operator; did you mean "arch=amd64"?');
    expect(() => parseFilter('arch!==amd64')).toThrow('did you mean "arch!=amd64"?');
    expect(() => parseFilter('release=~^no')).toThrow('did you mean "release~^no"?');
    expect(() => parseFilter('release!=~^no')).toThrow('did you mean "release!~^no"?');
    expect(parseFilter('release~=x').value).toBe('=x');
  });
});
