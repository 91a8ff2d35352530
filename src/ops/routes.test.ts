import { describe, expect, it } from 'vitest';
import { classifyRoute, isOpsRequest, methodLabel, requestPath } from './routes.js';

const PREFIX = '/maas/images/ephemeral-v3/stable/';

describe('classifyRoute', () => {
  it.each([
    ['/', 'status'],
    ['/status.json?x=1', 'status'],
    ['/metrics', 'metrics'],
    ['/livez', 'health'],
    ['/readyz', 'health'],
    ['/keyring.gpg', 'keyring'],
    ['/keyring.asc', 'keyring'],
    ['/api/v1/sync', 'api'],
    ['/api', 'api'],
    [`${PREFIX}streams/v1/index.sjson`, 'tree'],
    ['/maas/images/ephemeral-v3/stable', 'tree'],
    ['/MAAS/boot-resources/0123456789abcdef/boot-kernel', 'boot-resources'],
    ['/images/0123456abc/squashfs', 'images'],
    ['/bootloaders/uefi/amd64/bootx64.efi', 'bootloader'],
    ['/pxelinux.0', 'bootloader'],
    ['/grubx64.efi', 'bootloader'],
    ['/ldlinux.c32', 'bootloader'],
    ['/etc/passwd', 'other'],
    ['/apix', 'other'],
    ['/maas/images/ephemeral-v3/stablex', 'other'],
    ['http://mirror:8080/metrics?q', 'metrics'],
  ])('%s → %s', (url, route) => {
    expect(classifyRoute(url, PREFIX)).toBe(route);
  });

  it('takes every other path as the tree when the tree is served at the root', () => {
    expect(classifyRoute('/streams/v1/index.json', '/')).toBe('tree');
    expect(classifyRoute('/pxelinux.0', '/')).toBe('bootloader');
    expect(classifyRoute('/', '/')).toBe('status');
  });

  it('maps hostile and odd paths to "other", never to a label made from the path', () => {
    for (const p of ['/%2e%2e/%2e%2e/etc/passwd', '/a"b', '/x\ny', '//evil.example/', '/images', '/MAAS/boot-resources/zz', '/bootloaders/../x']) {
      expect(classifyRoute(p, PREFIX), p).toBe('other');
    }
  });
});

describe('requestPath and isOpsRequest', () => {
  it('drops the query and reduces absolute-form targets to their path', () => {
    expect(requestPath('/a/b?c=d')).toBe('/a/b');
    expect(requestPath('http://host:8080/x#y')).toBe('/x');
    expect(requestPath('http://host')).toBe('/');
  });
  it('names the paths the HTTP server must hand to express', () => {
    for (const p of ['/', '/status.json', '/metrics', '/livez', '/readyz', '/api/v1/status']) expect(isOpsRequest(p)).toBe(true);
    for (const p of ['/keyring.gpg', '/maas/images/x', '/pxelinux.0', '/apis']) expect(isOpsRequest(p)).toBe(false);
  });
});

describe('methodLabel', () => {
  it('keeps the usual verbs and folds anything else into OTHER', () => {
    expect(methodLabel('get')).toBe('GET');
    expect(methodLabel('HEAD')).toBe('HEAD');
    expect(methodLabel('PROPFIND')).toBe('OTHER');
    expect(methodLabel(undefined)).toBe('OTHER');
  });
});
