import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { startDaemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { run } from '../faults/helpers.js';
import { chromiumDom, preText } from './chromium.js';
import { pasteIntoBash } from './fake-maas.js';
import { freePort, listen, makeOps, opsApp } from './helpers.js';

const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
/** Each would create a file if a shell ever read it as code. */
const HOSTILE_OS = 'ubuntu$(touch${IFS}PWNED_OS)';
const HOSTILE_RELEASE = "noble';touch${IFS}PWNED_RELEASE;'`touch PWNED_TICK`";
const HOSTILE_ARCH = 'amd64"$(touch PWNED_ARCH)"';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

async function filesNamedPwned(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true })) if (String(e).includes('PWNED')) out.push(String(e));
  return out;
}

describe('the status page\'s MAAS commands, pasted into bash', () => {
  it('run only the MAAS CLI, with hostile upstream names arriving intact as single arguments', async () => {
    env = await makeEnv();
    const { doc } = env.upstream.product(NOBLE_AMD64);
    Object.assign(doc.products[NOBLE_AMD64]!, { os: HOSTILE_OS, release: HOSTILE_RELEASE, arch: HOSTILE_ARCH });
    await env.upstream.write();

    // The address MAAS should use comes from the configuration (here the listen address), not from whoever asks.
    const port = await freePort();
    const config = env.config([{ filters: [['release~noble']] }], {
      http: { listen: `127.0.0.1:${port}` },
      tftp: { enabled: false },
      schedule: { onStart: true, interval: '1h', jitter: '0s' },
    });
    const daemon = await startDaemon({ config, logger: silentLogger(), drainMs: 1000, retryBaseMs: 5 });
    onTestFinished(() => daemon.stop());
    const http = { url: `http://127.0.0.1:${port}` };
    const record = daemon.ops.coordinator.running ? (await once(daemon.ops.coordinator, 'end'))[0] : daemon.ops.coordinator.lastSync!;
    expect(record.result, JSON.stringify(record.failures)).toBe('ok');

    const dom = await chromiumDom(`${http.url}/`);
    const script = preText(dom, 'maas');
    expect(script).toContain('boot-source-selections');
    const run = await pasteIntoBash(script);
    expect(await filesNamedPwned(run.dir)).toEqual([]);
    expect(await filesNamedPwned(env.dir)).toEqual([]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);

    const keyring = createHash('sha256')
      .update(Buffer.from(await (await fetch(`${http.url}/keyring.gpg`)).arrayBuffer()))
      .digest('hex');
    const tree = `${http.url}/maas/images/ephemeral-v3/stable/`;
    expect(run.calls[0]).toEqual({ argv: ['admin', 'boot-sources', 'create', `url=${tree}`, 'keyring_data@=maas-mirror.gpg'], keyringSha256: keyring });
    const selections = run.calls.filter((c) => c.argv[1] === 'boot-source-selections').map((c) => c.argv);
    expect(selections).toContainEqual([
      'admin',
      'boot-source-selections',
      'create',
      '7',
      `os=${HOSTILE_OS}`,
      `release=${HOSTILE_RELEASE}`,
      `arches=${HOSTILE_ARCH}`,
      'subarches=*',
      'labels=*',
    ]);
    expect(selections).toContainEqual(['admin', 'boot-source-selections', 'create', '7', 'os=ubuntu', 'release=noble', 'arches=arm64', 'subarches=*', 'labels=*']);
    expect(run.calls.slice(-3).map((c) => c.argv)).toEqual([
      ['admin', 'boot-sources', 'read'],
      ['admin', 'boot-source', 'delete', '1'],
      ['admin', 'boot-resources', 'import'],
    ]);
  }, 120_000);

  it('never writes the request\'s Host header into the commands', async () => {
    env = await makeEnv();
    const config = env.config([{}], { http: { listen: '10.9.8.7:8080' } });
    const ops = makeOps({ config: () => config });
    const http = await listen(opsApp(ops));
    onTestFinished(() => http.close());
    const page = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${http.url}/`, { headers: { host: 'evil.example:1' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
    expect(page).not.toContain('evil.example');
    expect(page).toContain('url=http://10.9.8.7:8080/maas/images/ephemeral-v3/stable/');
  });

  it("select the site's own images, added through the API, alongside the mirrored ones", async () => {
    env = await makeEnv();
    const token = 'paste-test-token-0123456789';
    const port = await freePort();
    const config = env.config([{ filters: [['release~noble']] }], {
      http: { listen: `127.0.0.1:${port}` },
      api: { token },
      tftp: { enabled: false },
      schedule: { onStart: true, interval: '1h', jitter: '0s' },
    });
    const daemon = await startDaemon({ config, logger: silentLogger(), drainMs: 1000, retryBaseMs: 5 });
    onTestFinished(() => daemon.stop());
    const url = `http://127.0.0.1:${port}`;
    const record = daemon.ops.coordinator.running ? (await once(daemon.ops.coordinator, 'end'))[0] : daemon.ops.coordinator.lastSync!;
    expect(record.result, JSON.stringify(record.failures)).toBe('ok');

    const root = join(env.dir, 'rhel-root');
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc', 'os-release'), 'NAME="Red Hat Enterprise Linux"\n');
    const tarball = join(env.dir, 'rhel9.tar.gz');
    expect((await run('tar', ['-czf', tarball, '-C', root, '.'])).code).toBe(0);
    const added = await fetch(`${url}/api/v1/images?os=rhel&release=9&arch=amd64`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: await readFile(tarball),
    });
    expect(added.status, await added.clone().text()).toBe(201);

    const run2 = await pasteIntoBash(preText(await chromiumDom(`${url}/`), 'maas'));
    expect(run2.stderr).toBe('');
    expect(run2.code).toBe(0);
    const selections = run2.calls.filter((c) => c.argv[1] === 'boot-source-selections').map((c) => c.argv);
    expect(selections).toContainEqual(['admin', 'boot-source-selections', 'create', '7', 'os=rhel', 'release=9', 'arches=amd64', 'subarches=*', 'labels=*']);
    expect(selections.filter((a) => a[4] === 'os=ubuntu').map((a) => a[5])).toEqual(['release=noble']);
  }, 120_000);
});
