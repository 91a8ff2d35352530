import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SourceOffer } from '../../src/mirror/offer.js';
import { makeEnv, makeKey, type Env } from '../helpers/env.js';
import { cli, run, walkFiles, writeJsonConfig } from '../faults/helpers.js';
import { mkdir, stat, writeFile } from 'node:fs/promises';

/**
 * `maas-mirror list`, the operator's sstream-query, through the real CLI
 * against a generated signed upstream: every product with its os, release,
 * arch, versions, items and bytes; S where the configuration selects, H
 * where the store holds; the filter keys and values; verified like a sync,
 * and nothing written to dataDir.
 */

const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const JAMMY_ARM = 'com.ubuntu.maas.stable:v3:boot:22.04:arm64:ga-22.04';
const V3 = 'com.ubuntu.maas:stable:v3:download';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

async function configFile(e: Env, source: Record<string, unknown> = {}): Promise<string> {
  return writeJsonConfig(join(e.dir, 'mm.yaml'), {
    dataDir: e.dataDir,
    sources: [{ name: 'stable', url: e.server.url, keyring: e.key.keyring, filters: [['release=noble', 'arch=amd64'], ['bootloader-type~.']], ...source }],
    download: { retries: 1, connectTimeout: '2s', idleTimeout: '5s' },
    tftp: { enabled: false },
  });
}

describe('maas-mirror list', () => {
  it('lists what upstream offers, marks what the config selects and what is held, and writes nothing', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json', 'stable-bootloader-download.json'] });
    const file = await configFile(env);

    // Before any sync: nothing held, and list leaves no dataDir behind.
    const first = await cli(['list', '--config', file, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(existsSync(env.dataDir)).toBe(false);
    const [offer] = (JSON.parse(first.stdout) as { sources: SourceOffer[] }).sources;
    expect(offer!.name).toBe('stable');
    const noble = offer!.products.find((p) => p.id === NOBLE)!;
    expect(noble).toMatchObject({ contentId: V3, os: 'ubuntu', release: 'noble', arch: 'amd64', subarch: 'ga-24.04' });
    const upstream = env.upstream.product(NOBLE).doc.products[NOBLE]!;
    const newest = Object.keys(upstream.versions).sort().at(-1)!;
    const items = Object.values(upstream.versions[newest]!.items);
    expect(noble.versions[0]).toEqual({ version: newest, items: items.length, bytes: items.reduce((n, i) => n + i.size, 0), selected: true, held: false });
    expect(noble.versions).toHaveLength(Object.keys(upstream.versions).length);
    expect(offer!.products.find((p) => p.id === JAMMY_ARM)!.versions.every((v) => !v.selected)).toBe(true);
    expect(offer!.keys.release!.values).toEqual(['jammy', 'noble']);
    expect(offer!.keys.arch!.values).toEqual(expect.arrayContaining(['amd64', 'arm64']));
    expect(offer!.warnings).toEqual([]);

    // After a sync: what it fetched is held.
    expect((await cli(['sync', '--config', file, '--quiet'])).code).toBe(0);
    const before = await Promise.all((await walkFiles(env.dataDir)).map(async (f) => [f, (await stat(f)).mtimeMs] as const));
    const text = await cli(['list', '--config', file]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`source stable (${env.server.url}`);
    expect(text.stdout).toMatch(new RegExp(`  ${NOBLE.replace(/\./g, '\\.')}  \\(ubuntu noble amd64 ga-24\\.04 kflavor=generic label=stable\\)\\n    SH ${newest}  ${items.length} items  [\\d.]+ KiB\\n`));
    expect(text.stdout).toMatch(/filter keys of stable and their values:\n(.*\n)* {2}release: jammy, noble\n/);
    // Read only: no file of dataDir was added or changed.
    const after = await Promise.all((await walkFiles(env.dataDir)).map(async (f) => [f, (await stat(f)).mtimeMs] as const));
    expect(after).toEqual(before);

    // Filters narrow the listing, as sstream-query's do.
    const narrowed = JSON.parse((await cli(['list', '--config', file, '--json', 'release=jammy', 'arch=arm64'])).stdout) as { sources: SourceOffer[] };
    expect(narrowed.sources[0]!.products.map((p) => p.id)).toEqual([JAMMY_ARM]);
  });

  it('rejects a bad filter or an unknown source (exit 2), and an upstream signed by another key (exit 1)', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const file = await configFile(env);
    const bad = await cli(['list', '--config', file, 'release==noble']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('did you mean "release=noble"?');
    const nope = await cli(['list', '--config', file, '--source', 'nope']);
    expect(nope.code).toBe(2);
    expect(nope.stderr).toContain('there is no source "nope"; the configuration has: stable');

    const other = await makeKey(env.dir, 'other');
    const wrongKey = await configFile(env, { keyring: other.keyring });
    const refused = await cli(['list', '--config', wrongKey]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/source stable cannot be read: .*which is not in keyring/);
    expect(refused.stdout).toBe('');
  });

  it('says which configured filters match nothing', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const r = await cli(['list', '--config', await configFile(env, { filters: [['release=nobel']] }), '--source', 'stable']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('warning: MM_FILTER_UNMATCHED: source stable: filter "release=nobel" matches nothing upstream offers; did you mean noble?');
  });

  it('lists the site-built images too (local, held), and takes --allow-downgrade as sync does', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const file = await configFile(env);
    expect((await cli(['sync', '--config', file, '--quiet'])).code).toBe(0);
    const root = join(env.dir, 'root');
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc', 'os-release'), 'NAME="rhel"\n');
    const tgz = join(env.dir, 'rhel9.tar.gz');
    await run('tar', ['-czf', tgz, '-C', root, '.']);
    const added = await cli(['images', 'add', tgz, '--os', 'rhel', '--release', '9', '--arch', 'amd64', '--config', file, '--json']);
    expect(added.code, added.stderr).toBe(0);
    const { image } = JSON.parse(added.stdout) as { image: { version: string } };

    const listed = JSON.parse((await cli(['list', '--config', file, '--json'])).stdout) as { local: SourceOffer['products'] };
    expect(listed.local).toEqual([
      expect.objectContaining({ contentId: 'local:custom-images', id: 'local:custom-images:rhel:9:amd64', os: 'rhel', release: '9', arch: 'amd64' }),
    ]);
    expect(listed.local[0]!.versions).toEqual([expect.objectContaining({ version: image.version, items: 2, selected: true, held: true })]);
    const text = await cli(['list', '--config', file]);
    expect(text.stdout).toMatch(new RegExp(`local images \\(site-built .*\\): 1 product\nlocal:custom-images\n  local:custom-images:rhel:9:amd64  \\(rhel 9 amd64 .*\\)\n    SH ${image.version}  2 items`));
    // Filters narrow them as they do upstream's.
    const narrowed = JSON.parse((await cli(['list', '--config', file, '--json', 'os=ubuntu'])).stdout) as { local: unknown[] };
    expect(narrowed.local).toEqual([]);

    const forced = await cli(['list', '--allow-downgrade', '--config', file, '--json']);
    expect(forced.code, forced.stderr).toBe(0);
  });
});
