import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { trustedPeers } from '../http/accel.js';
import { nginxConfig } from './nginx-config.js';

const config = (dataDir = '/var/lib/maas-mirror', listen = [{ host: '0.0.0.0', port: 8080 }], prefix = '/maas/images/ephemeral-v3/stable/') => ({
  dataDir,
  http: { listen, prefix, publicUrl: undefined },
});

describe('nginxConfig', () => {
  it('serves the tree, keyrings and bootloaders from dataDir and passes the rest to maas-mirror on loopback', () => {
    const text = nginxConfig(config(), { listen: '[::]:80' });
    expect(text).toContain('server 127.0.0.1:8080;');
    expect(text).toContain('listen [::]:80;');
    expect(text).toContain('location ^~ /maas/images/ephemeral-v3/stable/ {');
    expect(text).toContain('alias "/var/lib/maas-mirror/current/";');
    expect(text).toContain('alias "/var/lib/maas-mirror/keys/public.gpg";');
    expect(text).toContain('proxy_set_header X-Maas-Mirror-Accel /_maas_mirror_files/;');
    expect(text.match(/internal;/g)).toHaveLength(3);
    expect(text).not.toContain('signing-key');
  });

  it('takes the upstream from --upstream, or the listen address in a form nginx reaches', () => {
    expect(nginxConfig(config(), { upstream: 'http://10.0.0.5:9000' })).toContain('server 10.0.0.5:9000;');
    expect(nginxConfig(config('/d', [{ host: '::', port: 81 }]))).toContain('server [::1]:81;');
    expect(nginxConfig(config('/d', [{ host: '192.0.2.1', port: 82 }]))).toContain('server 192.0.2.1:82;');
  });

  it('quotes dataDir, and refuses what nginx cannot take', () => {
    expect(nginxConfig(config('/srv/my "mirror"'))).toContain('alias "/srv/my \\"mirror\\"/current/";');
    expect(() => nginxConfig(config('/srv/$HOME'))).toThrow(UsageError);
    expect(() => nginxConfig(config(), { listen: '80; include /etc/passwd' })).toThrow(/not an nginx listen address/);
    expect(() => nginxConfig(config(), { upstream: 'http://h:1/path' })).toThrow(/no path/);
    expect(() => nginxConfig(config(), { upstream: 'not a url' })).toThrow(/not a URL/);
  });

  it('keeps the status page and API reachable when the tree is served at "/"', () => {
    const text = nginxConfig(config('/d', undefined, '/'));
    expect(text).toContain('location ^~ / {');
    expect(text).toContain('error_page 403 404 = @maas_mirror;');
    expect(text).not.toContain('location / {');
  });
});

describe('trustedPeers', () => {
  it('trusts loopback and listed proxies only', () => {
    const trusted = trustedPeers(['192.0.2.7']);
    expect(trusted('127.0.0.1')).toBe(true);
    expect(trusted('::1')).toBe(true);
    expect(trusted('::ffff:127.0.0.1')).toBe(true);
    expect(trusted('::ffff:192.0.2.7')).toBe(true);
    expect(trusted('192.0.2.8')).toBe(false);
    expect(trusted(undefined)).toBe(false);
  });
});
