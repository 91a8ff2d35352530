import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError } from '../errors.js';
import { checkFiles, DEFAULT_CONFIG_FILE, loadConfig, parseConfig } from './load.js';
import { DEFAULT_TFTP_WORKERS_CAP } from './schema.js';

function issuesOf(text: string) {
  try {
    parseConfig(text, '/etc/maas-mirror/test.yaml', {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('loads the shipped default: stable, amd64 LTS and bootloaders, verified', () => {
    const c = loadConfig(DEFAULT_CONFIG_FILE, {});
    expect(c.sources).toHaveLength(1);
    const s = c.sources[0]!;
    expect(s.url).toBe('https://images.maas.io/ephemeral-v3/stable/');
    expect(s.verify).toBe(true);
    expect(existsSync(s.keyring!)).toBe(true);
    expect(s.maxVersions).toBe(1);
    expect(c.download.concurrency).toBe(6);
    expect(c.publish.keepSnapshots).toBe(3);
    expect(c.http.listen).toEqual([{ host: '0.0.0.0', port: 8080 }]);
    expect(c.schedule.interval).toBe(6 * 3600_000);
    expect(Object.isFrozen(c) && Object.isFrozen(c.sources[0]) && Object.isFrozen(c.download)).toBe(true);
  });

  it('resolves relative paths against the config file', () => {
    const dir = dirname(DEFAULT_CONFIG_FILE);
    const c = parseConfig('dataDir: data\nsources: [{name: a, url: "http://x/y", keyring: keyrings/ubuntu-cloudimage-keyring.gpg}]', join(dir, 'c.yaml'), {});
    expect(c.dataDir).toBe(join(dir, 'data'));
    expect(c.sources[0]!.keyring).toBe(join(dir, 'keyrings', 'ubuntu-cloudimage-keyring.gpg'));
    expect(c.sources[0]!.url).toBe('http://x/y/');
  });

  it('names a keyring or signing key that does not exist', () => {
    const config = parseConfig('dataDir: d\nsources: [{name: a, url: "http://x/", keyring: nope.gpg}]\npublish: {signingKey: nope.asc}', '/etc/mm/c.yaml', {});
    let issues: { path: string; message: string }[] = [];
    try {
      checkFiles(config);
    } catch (err) {
      issues = (err as ConfigError).issues;
    }
    expect(issues.map((i) => i.path)).toEqual(['sources[0].keyring', 'publish.signingKey']);
    expect(issues[0]!.message).toMatch(/does not exist/);
  });

  it('lists missing files together with the other problems of an invalid file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mm-config-'));
    try {
      const file = join(dir, 'c.yaml');
      writeFileSync(file, 'dataDir: d\nsources: [{name: a, url: "not a url", keyring: nope.gpg}]\ndownload: {concurrency: 0}\n');
      let issues: { path: string; message: string }[] = [];
      try {
        loadConfig(file, {});
      } catch (err) {
        issues = (err as ConfigError).issues;
      }
      expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(['sources[0].url', 'download.concurrency', 'sources[0].keyring']));
      expect(issues.find((i) => i.path === 'sources[0].keyring')!.message).toContain(`${join(dir, 'nope.gpg')} does not exist`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes the API token from MAAS_MIRROR_API_TOKEN', () => {
    const c = parseConfig('dataDir: d\nsources: [{name: a, url: "http://x/", verify: false}]', '/c.yaml', {
      MAAS_MIRROR_API_TOKEN: 'from-the-environment-123',
    });
    expect(c.api.token).toBe('from-the-environment-123');
  });

  it('lists every problem with its key path', () => {
    const issues = issuesOf(`
dataDir: /d
sources:
  - name: "bad name"
    url: ftp://x
    filters: [["arch=amd64", "nonsense"]]
    maxVersions: 0
  - name: two
    url: http://x/
    verify: true
download:
  concurrency: "four"
  connectTimeout: soon
tftp:
  listen: "0.0.0.0:99999"
extra: 1
`);
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'sources[0].name',
        'sources[0].url',
        'sources[0].filters[0][1]',
        'sources[0].maxVersions',
        'sources[1].keyring',
        'download.concurrency',
        'download.connectTimeout',
        'tftp.listen',
        '',
      ]),
    );
    expect(issues.find((i) => i.path === '')!.message).toMatch(/unknown key "extra"/);
    expect(issues.find((i) => i.path === 'sources[0].filters[0][1]')!.message).toMatch(/key=value/);
  });

  it('bounds tftp.timeout to 100ms..255s', () => {
    const base = 'dataDir: d\nsources: [{name: a, url: "http://x/", verify: false}]\ntftp: {timeout: ';
    const timeoutOf = (v: string) => parseConfig(`${base}${v}}`, '/c.yaml', {}).tftp.timeout;
    expect(timeoutOf('"100ms"')).toBe(100);
    expect(timeoutOf('255')).toBe(255_000);
    expect(parseConfig(base.replace(/\ntftp.*/, ''), '/c.yaml', {}).tftp.timeout).toBe(1000);
    for (const v of ['0', '"50ms"']) {
      expect(issuesOf(`${base}${v}}`)).toEqual([{ path: 'tftp.timeout', message: expect.stringMatching(/at least 100ms/) }]);
    }
    for (const v of ['"256s"', '2147484']) {
      expect(issuesOf(`${base}${v}}`)).toEqual([{ path: 'tftp.timeout', message: expect.stringMatching(/at most 255s/) }]);
    }
  });

  it('reports YAML syntax errors and duplicate source names', () => {
    expect(issuesOf('dataDir: [unclosed')[0]!.message).toMatch(/YAML syntax/);
    const dup = issuesOf('dataDir: d\nsources: [{name: a, url: "http://x/", verify: false}, {name: a, url: "http://y/", verify: false}]');
    expect(dup).toEqual([{ path: 'sources[1].name', message: 'duplicate source name "a"' }]);
  });

  it('names a missing file', () => {
    expect(() => loadConfig('/nonexistent/maas-mirror.yaml')).toThrow(/cannot read the file/);
  });
});

describe('config: folder sources and the proxy', () => {
  const one = (url: string, extra = '') => `dataDir: /d\nsources: [{name: hq, url: ${JSON.stringify(url)}, keyring: /k.gpg${extra}}]\n`;

  it('takes a folder as file:///abs/path/ or as an absolute path, both read as one file:/// URL', () => {
    expect(parseConfig(one('file:///media/usb/maas'), '/etc/c.yaml', {}).sources[0]!.url).toBe('file:///media/usb/maas/');
    expect(parseConfig(one('/media/usb/maas/'), '/etc/c.yaml', {}).sources[0]!.url).toBe('file:///media/usb/maas/');
    expect(parseConfig(one('/media/usb key/maas'), '/etc/c.yaml', {}).sources[0]!.url).toBe('file:///media/usb%20key/maas/');
  });

  it('refuses other schemes, a relative folder, a file URL with a host, and a folder on demand', () => {
    for (const url of ['ftp://x/y/', 'media/usb', 'file://otherhost/media/usb/']) {
      expect(issuesOf(one(url))[0]!.path).toBe('sources[0].url');
    }
    expect(issuesOf(one('/media/usb/', ', onDemand: true'))).toEqual([
      { path: 'sources[0].onDemand', message: expect.stringContaining('folder source cannot be on demand') },
    ]);
  });

  it('download.proxy: an http(s) URL, nothing else', () => {
    const base = 'dataDir: /d\nsources: [{name: a, url: "http://x/", keyring: /k.gpg}]\n';
    expect(parseConfig(`${base}download: {proxy: "http://proxy:3128"}\n`, '/etc/c.yaml', {}).download.proxy).toBe('http://proxy:3128');
    expect(parseConfig(base, '/etc/c.yaml', {}).download.proxy).toBeUndefined();
    expect(issuesOf(`${base}download: {proxy: "socks5://proxy:1080"}\n`)[0]!.path).toBe('download.proxy');
  });
});
describe('TFTP first-ACK budget and boot.forward', () => {
  const base = 'dataDir: d\nsources: [{name: a, url: "http://x/", verify: false}]\n';

  it('defaults to a 3 s first-ACK budget with 2 resends, and no forwarding', () => {
    const c = parseConfig(base, '/c.yaml', {});
    expect([c.tftp.firstAckTimeout, c.tftp.firstAckResends, c.boot.forward]).toEqual([3000, 2, undefined]);
    expect(parseConfig(`${base}tftp: {firstAckTimeout: 10s, firstAckResends: 0}`, '/c.yaml', {}).tftp).toMatchObject({
      firstAckTimeout: 10_000,
      firstAckResends: 0,
    });
    expect(issuesOf(`${base}tftp: {firstAckTimeout: 5m}`)).toEqual([{ path: 'tftp.firstAckTimeout', message: expect.stringMatching(/at most 60s/) }]);
  });

  it('defaults tftp.workers to the cores, at most DEFAULT_TFTP_WORKERS_CAP, and takes 1 to 64', () => {
    expect(parseConfig(base, '/c.yaml', {}).tftp.workers).toBe(Math.min(DEFAULT_TFTP_WORKERS_CAP, availableParallelism()));
    expect(parseConfig(`${base}tftp: {workers: 1}`, '/c.yaml', {}).tftp.workers).toBe(1);
    expect(parseConfig(`${base}tftp: {workers: 64}`, '/c.yaml', {}).tftp.workers).toBe(64);
    for (const bad of ['0', '65', '1.5']) expect(issuesOf(`${base}tftp: {workers: ${bad}}`)[0]!.path).toBe('tftp.workers');
  });

  it('reads boot.forward as host, host:port or [v6]:port, port 69 when left out', () => {
    const forward = (v: string) => parseConfig(`${base}boot: {forward: "${v}"}`, '/c.yaml', {}).boot.forward;
    expect(forward('10.0.0.2')).toEqual({ host: '10.0.0.2', port: 69 });
    expect(forward('rack.lan:6969')).toEqual({ host: 'rack.lan', port: 6969 });
    expect(forward('[fd00::2]:69')).toEqual({ host: 'fd00::2', port: 69 });
    for (const bad of ['69', '10.0.0.2:99999', 'rack lan']) {
      expect(issuesOf(`${base}boot: {forward: "${bad}"}`)).toEqual([{ path: 'boot.forward', message: expect.stringMatching(/not a TFTP server address/) }]);
    }
  });
});
