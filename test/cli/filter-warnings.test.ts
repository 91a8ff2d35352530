import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SyncReport } from '../../src/mirror/sync.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { cli, cliEnv, writeJsonConfig } from '../faults/helpers.js';

/**
 * A filter typo must not silently drop a release: through the real CLI, a
 * term that matches nothing upstream is a MM_FILTER_UNMATCHED warning in the
 * log, the --json report, the human output and check-config, with what
 * upstream offers nearest to it; a product the published tree loses is said
 * before the new tree is published.
 */

const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const JAMMY = 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

async function configFile(e: Env, filters: string[][], name = 'mm.yaml'): Promise<string> {
  return writeJsonConfig(join(e.dir, name), {
    dataDir: e.dataDir,
    sources: [{ name: 'stable', url: e.server.url, keyring: e.key.keyring, filters }],
    download: { retries: 1, connectTimeout: '2s', idleTimeout: '5s' },
    tftp: { enabled: false },
  });
}

async function syncJson(file: string): Promise<{ code: number; report: SyncReport; stderr: string }> {
  const r = await cli(['sync', '--config', file, '--json'], cliEnv({ LOG_LEVEL: 'info' }));
  return { code: r.code, report: JSON.parse(r.stdout) as SyncReport, stderr: r.stderr };
}

describe('filters that match nothing upstream', () => {
  it('warns about a misspelt value with the nearest values upstream offers (report, log, human output, check-config)', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    // The typo'd group selects nothing; the other still publishes a tree, without noble.
    const file = await configFile(env, [['os=ubuntu', 'release=nobel', 'arch=amd64'], ['release=jammy', 'arch=amd64']]);
    const { code, report, stderr } = await syncJson(file);
    expect(code, stderr).toBe(0);
    expect(report.published).toBe(true);
    const w = report.warnings.filter((x) => x.code === 'MM_FILTER_UNMATCHED');
    expect(w).toHaveLength(1);
    expect(w[0]).toMatchObject({ source: 'stable', term: 'release=nobel', suggestions: ['noble'] });
    expect(w[0]!.message).toMatch(/filter "release=nobel" matches nothing upstream offers; did you mean noble\? values of release upstream offers: jammy, noble/);
    // The log says it too, with its code.
    const logged = stderr.split('\n').filter((l) => l.includes('"code":"MM_FILTER_UNMATCHED"'));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('did you mean noble?');

    const human = await cli(['sync', '--config', file]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/1 warning:\n {2}\[stable\] MM_FILTER_UNMATCHED: source stable: filter "release=nobel" matches nothing upstream offers; did you mean noble\?/);

    // check-config reads the metadata that sync verified, without the network.
    await env.server.stop();
    const check = await cli(['check-config', '--config', file]);
    expect(check.code).toBe(0);
    expect(check.stderr).toMatch(/source stable: filters checked against the metadata the last sync verified \(.+\): 1 warning/);
    expect(check.stderr).toMatch(/warning: MM_FILTER_UNMATCHED: source stable: filter "release=nobel" matches nothing upstream offers; did you mean noble\?/);
    // The warnings go to stderr: stdout stays the one-line summary, or the JSON with --json.
    expect(check.stdout).toMatch(/^OK .*\n$/);
    JSON.parse((await cli(['check-config', '--json', '--config', file])).stdout);
  });

  it('names an unknown key with the keys that exist, and a group whose terms never meet', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const file = await configFile(env, [['arc=amd64'], ['release=jammy', 'subarch=ga-24.04'], ['release=noble']]);
    const { code, report, stderr } = await syncJson(file);
    expect(code, stderr).toBe(0);
    const [key, group] = report.warnings;
    expect(key).toMatchObject({ code: 'MM_FILTER_UNMATCHED', term: 'arc=amd64', suggestions: ['arch'] });
    expect(key!.message).toMatch(/no item has the key "arc"; did you mean arch\? keys upstream offers: .*\barch\b.*\brelease\b/);
    expect(group).toMatchObject({ code: 'MM_FILTER_UNMATCHED', term: 'release=jammy & subarch=ga-24.04' });
    expect(group!.message).toContain('no item matches them all together');
    expect(report.warnings).toHaveLength(2);
  });

  it('still refuses to publish an empty tree when nothing at all is selected, with the warning that says why', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const { code, report } = await syncJson(await configFile(env, [['release=nobel']]));
    expect(code).toBe(1);
    expect(report.published).toBe(false);
    expect(report.warnings.map((w) => w.term)).toEqual(['release=nobel']);
    expect(report.failures.map((f) => f.code)).toEqual(['MM_MAAS_RULES']);
  });

  it('refuses "arch==amd64" at configuration load, saying what was meant', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const file = await configFile(env, [['arch==amd64']]);
    for (const args of [['check-config'], ['sync']]) {
      const r = await cli([...args, '--config', file]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('sources[0].filters[0][0]: filter "arch==amd64": "==" is not an operator; did you mean "arch=amd64"?');
    }
    const regex = await cli(['check-config', '--config', await configFile(env, [['release=~^no']], 'b.yaml')]);
    expect(regex.code).toBe(2);
    expect(regex.stderr).toContain('did you mean "release~^no"?');
  });

  it('says, before publishing, that a product the current snapshot has is dropped', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const good = await syncJson(await configFile(env, [['release=noble', 'arch=amd64'], ['release=jammy', 'arch=amd64']]));
    expect(good.code).toBe(0);
    expect(good.report.warnings).toEqual([]);

    const typo = await syncJson(await configFile(env, [['release=nobel', 'arch=amd64'], ['release=jammy', 'arch=amd64']], 'typo.yaml'));
    expect(typo.code, typo.stderr).toBe(0);
    expect(typo.report.published).toBe(true);
    const dropped = typo.report.warnings.find((w) => w.code === 'MM_PRODUCT_DROPPED');
    expect(dropped).toMatchObject({ source: 'stable', products: [NOBLE] });
    expect(dropped!.message).toContain(`product ${NOBLE} is published now but will not be in the new snapshot (the filters no longer select it)`);
    const lines = typo.stderr.split('\n');
    const warnedAt = lines.findIndex((l) => l.includes('"code":"MM_PRODUCT_DROPPED"'));
    const publishedAt = lines.findIndex((l) => l.includes('published a new snapshot'));
    expect(warnedAt).toBeGreaterThanOrEqual(0);
    expect(publishedAt).toBeGreaterThan(warnedAt);

    // A dry run says it too.
    const dry = await cli(['sync', '--dry-run', '--config', await configFile(env, [['release=noble']], 'dry.yaml')]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`[stable] MM_PRODUCT_DROPPED: source stable: product ${JAMMY} is published now but will not be in the new snapshot (the filters no longer select it)`);
  });
});
