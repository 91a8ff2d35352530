import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Config } from '../config/load.js';
import type { PublicStatus } from './status.js';
import { CONTENT_SECURITY_POLICY } from './page-assets.js';
import { maasCommands, mirrorUrls, renderStatusPage } from './status-page.js';

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const http = (over: Partial<Config['http']> = {}): Config['http'] => ({ listen: [{ host: '0.0.0.0', port: 8080 }], prefix: PREFIX, publicUrl: undefined, ...over });
const EVIL = '<script>alert(1)</script>"\'&';

function status(over: Partial<PublicStatus> = {}): PublicStatus {
  return {
    version: '0.1.0',
    time: '2026-11-26T20:00:00.000Z',
    current: '20261126T195900000Z-abcdef',
    sources: [
      {
        name: 'stable',
        url: 'https://images.maas.io/ephemeral-v3/stable/',
        verify: true,
        check: { state: 'verified', sync: 'sync-1', at: '2026-11-26T19:00:00.000Z', code: null },
        onDemand: false,
        filters: [['arch=amd64', 'release~^(jammy|noble)$']],
        contentIds: null,
        maxVersions: 1,
        bytes: 300,
        products: [
          { id: 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04', contentId: 'c', source: 'stable', os: 'ubuntu', release: 'noble', arch: 'amd64', subarch: 'ga-24.04', title: '24.04 LTS', versions: [{ version: '20250709', files: 3, bytes: 100 }] },
          { id: 'com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04', contentId: 'c', source: 'stable', os: 'ubuntu', release: 'noble', arch: 'arm64', versions: [{ version: '20250709', files: 3, bytes: 100 }] },
          { id: 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04', contentId: 'c', source: 'stable', os: 'ubuntu', release: 'jammy', arch: 'amd64', versions: [{ version: '20250718', files: 3, bytes: 100 }] },
          { id: 'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64', contentId: 'b', source: 'stable', os: 'grub-efi-signed', arch: 'amd64', versions: [{ version: '20210819.0', files: 2, bytes: 10 }] },
        ],
      },
    ],
    running: null,
    lastSync: null,
    nextSync: null,
    store: null,
    disk: null,
    snapshots: [],
    warnings: [],
    ...over,
  };
}

describe('mirrorUrls', () => {
  it('takes the address from the listen address, with this host\'s name for a wildcard', () => {
    expect(mirrorUrls(http(), 'mirror.lan')).toEqual({ tree: `http://mirror.lan:8080${PREFIX}`, keyring: 'http://mirror.lan:8080/keyring.gpg' });
    expect(mirrorUrls(http({ listen: [{ host: '10.1.2.3', port: 80 }] })).tree).toBe(`http://10.1.2.3:80${PREFIX}`);
    expect(mirrorUrls(http({ listen: [{ host: 'fd00::1', port: 8080 }] })).tree).toBe(`http://[fd00::1]:8080${PREFIX}`);
  });
  it('prefers publicUrl, given as the base or as the tree URL', () => {
    expect(mirrorUrls(http({ publicUrl: 'https://proxy.example/mirror' }))).toEqual({
      tree: `https://proxy.example/mirror${PREFIX}`,
      keyring: 'https://proxy.example/mirror/keyring.gpg',
    });
    expect(mirrorUrls(http({ publicUrl: `https://proxy.example${PREFIX}` }))).toEqual({
      tree: `https://proxy.example${PREFIX}`,
      keyring: 'https://proxy.example/keyring.gpg',
    });
  });
});

describe('maasCommands', () => {
  it('names the tree, the keyring and a selection per release of what is held', () => {
    const text = maasCommands(status(), mirrorUrls(http(), 'mirror.lan'));
    expect(text).toContain(`maas $PROFILE boot-sources create url=http://mirror.lan:8080${PREFIX} keyring_data@=maas-mirror.gpg`);
    expect(text).toContain('curl -fsSL -o maas-mirror.gpg http://mirror.lan:8080/keyring.gpg');
    expect(text).toContain(`boot-source-selections create "$SOURCE_ID" os=ubuntu release=jammy arches=amd64 'subarches=*' 'labels=*'`);
    expect(text).toContain(`boot-source-selections create "$SOURCE_ID" os=ubuntu release=noble arches=amd64,arm64 'subarches=*' 'labels=*'`);
    // Bootloaders are not selected: MAAS takes them whatever the selections.
    expect(text).not.toContain('grub-efi');
  });

  it("selects the site's own images too, quoted for the shell", () => {
    const rhel = { id: 'local:rhel:9:amd64', contentId: 'local:custom-images', source: 'local', os: 'rhel', release: '9', arch: 'amd64', versions: [{ version: '20261203_01', files: 2, bytes: 10 }] };
    const odd = { ...rhel, id: 'local:custom:x', os: 'custom', release: "my image's", arch: 'arm64' };
    const text = maasCommands(status({ localImages: [rhel, odd] }), mirrorUrls(http(), 'mirror.lan'));
    expect(text).toContain(`boot-source-selections create "$SOURCE_ID" os=rhel release=9 arches=amd64 'subarches=*' 'labels=*'`);
    expect(text).toContain(`boot-source-selections create "$SOURCE_ID" os=custom 'release=my image'\\''s' arches=arm64 'subarches=*' 'labels=*'`);
    expect(text).toContain('os=ubuntu release=noble arches=amd64,arm64');
  });

  it('with only local images, selects those and nothing else', () => {
    const rhel = { id: 'local:rhel:9:amd64', contentId: 'local:custom-images', source: 'local', os: 'rhel', release: '9', arch: 'amd64', versions: [{ version: '20261203_01', files: 2, bytes: 10 }] };
    const text = maasCommands(status({ sources: [{ ...status().sources[0]!, products: [] }], localImages: [rhel] }), mirrorUrls(http(), 'mirror.lan'));
    expect(text).toContain('os=rhel release=9 arches=amd64');
    expect(text).not.toContain('os=ubuntu');
  });
});

describe('renderStatusPage', () => {
  it('escapes every value that comes from outside', () => {
    const s = status({
      sources: [{ ...status().sources[0]!, name: EVIL, url: `http://x/${EVIL}`, filters: [[EVIL]], products: [{ ...status().sources[0]!.products[0]!, id: EVIL, release: EVIL }] }],
      lastSync: {
        id: EVIL,
        reason: EVIL,
        result: 'partial',
        startedAt: '2026-11-26T19:00:00.000Z',
        finishedAt: '2026-11-26T19:01:00.000Z',
        durationMs: 60_000,
        failures: [{ source: EVIL, code: 'MM_X', message: EVIL, path: EVIL }],
        warnings: [],
        sources: [],
        snapshot: EVIL,
        published: true,
        downloaded: { files: 1, bytes: 1 },
        error: null,
      },
    });
    const page = renderStatusPage(s, mirrorUrls(http(), 'mirror.lan')).value;
    expect(page).not.toContain('<script>alert');
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;');
    // The one script element is ours.
    expect(page.match(/<script>/g)).toHaveLength(1);
  });

  it('tells a replayed older file apart from a source it could not read', () => {
    const check = { state: 'downgrade', sync: 'sync-2', at: '2026-11-26T19:00:00.000Z', code: 'MM_DOWNGRADE_REFUSED' } as const;
    const page = renderStatusPage(status({ sources: [{ ...status().sources[0]!, check }] }), mirrorUrls(http(), 'h')).value;
    expect(page).toContain('refused: replayed older metadata (MM_DOWNGRADE_REFUSED)');
    expect(page).not.toContain('could not read it');
  });

  it('shows the progress bar only while a sync runs', () => {
    const idle = renderStatusPage(status(), mirrorUrls(http(), 'h')).value;
    expect(idle).toContain('data-running="0"');
    expect(idle).toMatch(/<div id="progress" hidden>/);
    const running = renderStatusPage(
      status({
        running: {
          id: 'sync-1',
          reason: 'api',
          startedAt: '2026-11-26T19:00:00.000Z',
          progress: { phase: 'download', filesTotal: 10, filesDone: 4, bytesTotal: 1000, bytesDone: 420, rate: 100, current: ['a/b/squashfs'], startedAt: '2026-11-26T19:00:00.000Z', fraction: 0.42, etaSeconds: 6 },
        },
      }),
      mirrorUrls(http(), 'h'),
    ).value;
    expect(running).toContain('data-running="1"');
    expect(running).toContain('<div id="progress">');
    expect(running).toContain('<progress id="bar" max="1" value="0.42">');
    expect(running).toContain('<li>a/b/squashfs</li>');
  });

  it('allows exactly its own inline style and script through the CSP', () => {
    const page = renderStatusPage(status(), mirrorUrls(http(), 'h')).value;
    const script = /<script>([\s\S]*?)<\/script>/.exec(page)![1]!;
    const style = /<style>([\s\S]*?)<\/style>/.exec(page)![1]!;
    const sha = (t: string) => `'sha256-${createHash('sha256').update(t).digest('base64')}'`;
    expect(CONTENT_SECURITY_POLICY).toContain(`script-src ${sha(script)}`);
    expect(CONTENT_SECURITY_POLICY).toContain(`style-src ${sha(style)}`);
    expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
  });
});
