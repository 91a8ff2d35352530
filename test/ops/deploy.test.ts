import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, PROJECT_ROOT } from '../../src/config/load.js';
import { makeOps, opsApp, listen } from './helpers.js';

const run = promisify(execFile);

interface Instruction {
  readonly op: string;
  readonly args: string;
  readonly stage: number;
}

/** Dockerfile instructions with continuation lines joined and comments dropped; stage counts FROMs. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  // Comment lines go first (a backslash ending one continues nothing), then continuations join.
  const joined = text
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ');
  for (const line of joined.split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(t);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2]!.replace(/\s+/g, ' '), stage });
  }
  return out;
}

const dockerfile = readFile(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');

describe('Dockerfile', () => {
  it('builds in one stage and runs from a slim current-LTS Node in another', async () => {
    const ins = parseDockerfile(await dockerfile);
    const args = Object.fromEntries(ins.filter((i) => i.op === 'ARG').map((i) => i.args.split('=') as [string, string]));
    const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? ''));
    expect(froms).toHaveLength(2);
    expect(froms[0]).toMatch(/ AS build$/);
    for (const f of froms) {
      const major = Number(/^node:(\d+)-slim\b/.exec(f)?.[1]);
      // An LTS line: even before 27, every release from 27 on.
      expect(major).toBeGreaterThanOrEqual(24);
      expect(major < 27 ? major % 2 : 0).toBe(0);
    }
    const build = ins.filter((i) => i.stage === 0 && i.op === 'RUN').map((i) => i.args).join(' && ');
    expect(build).toContain('npm ci');
    expect(build).toContain('npm run build');
    expect(build).toMatch(/npm prune --omit=dev/);
    const runtime = ins.filter((i) => i.stage === 1);
    expect(runtime.filter((i) => i.op === 'COPY' && i.args.startsWith('--from=build')).map((i) => i.args)).toEqual(
      expect.arrayContaining([expect.stringContaining('/src/dist'), expect.stringContaining('/src/node_modules')]),
    );
    // Nothing in the runtime stage compiles or installs from npm.
    expect(runtime.filter((i) => i.op === 'RUN' && /\bnpm\b/.test(i.args))).toEqual([]);
  });

  it('runs as the non-root user maas-mirror under tini, serving by default', async () => {
    const ins = parseDockerfile(await dockerfile).filter((i) => i.stage === 1);
    const users = ins.filter((i) => i.op === 'USER');
    expect(users.at(-1)?.args).toBe('maas-mirror');
    const userIdx = ins.indexOf(users.at(-1)!);
    // Nothing after the switch runs as root again.
    expect(ins.slice(userIdx).filter((i) => i.op === 'RUN')).toEqual([]);
    const useradd = ins.find((i) => i.op === 'RUN' && i.args.includes('useradd'))?.args;
    expect(useradd).toMatch(/useradd --system .*maas-mirror$/m);
    // A pinned uid/gid, the one the README tells operators to give the data folder to.
    const uid = /useradd --system --uid (\d+) /.exec(useradd!)?.[1];
    expect(useradd).toContain(`groupadd --system --gid ${uid} maas-mirror`);
    expect(await readFile(join(PROJECT_ROOT, 'README.md'), 'utf8')).toContain(`install -d -o ${uid} -g ${uid} /srv/maas-mirror/data`);
    expect(await dockerfile).toContain(`install -d -o ${uid} -g ${uid} /srv/maas-mirror/data`);
    const entry = JSON.parse(ins.find((i) => i.op === 'ENTRYPOINT')!.args) as string[];
    expect(entry.slice(0, 2)).toEqual(['/usr/bin/tini', '--']);
    expect(ins.find((i) => i.op === 'RUN' && i.args.includes('apt-get install'))?.args).toMatch(/\btini\b/);
    expect(entry.slice(2)).toEqual(['node', '/opt/maas-mirror/bin/maas-mirror.js']);
    expect(JSON.parse(ins.find((i) => i.op === 'CMD')!.args)).toEqual(['serve']);
    const workdir = ins.filter((i) => i.op === 'WORKDIR').at(-1)!.args;
    expect(`${workdir}/bin/maas-mirror.js`).toBe(entry[3]);
  });

  it('declares the volumes, ports and configuration path', async () => {
    const ins = parseDockerfile(await dockerfile).filter((i) => i.stage === 1);
    // Only the data: an anonymous volume on the configuration folder would hide the image's default from later runs.
    expect(ins.filter((i) => i.op === 'VOLUME').map((i) => JSON.parse(i.args) as string[])).toEqual([['/var/lib/maas-mirror']]);
    expect(ins.find((i) => i.op === 'EXPOSE')!.args.split(' ').sort()).toEqual(['69/udp', '8080']);
    expect(ins.find((i) => i.op === 'ENV')!.args).toContain('MAAS_MIRROR_CONFIG=/etc/maas-mirror/maas-mirror.yaml');
  });

  it('ships a default configuration with the container paths', async () => {
    const ins = parseDockerfile(await dockerfile);
    const sed = ins.find((i) => i.op === 'RUN' && i.args.startsWith('sed '))!.args;
    const exprs = [...sed.matchAll(/-e '([^']*)'/g)].map((m) => m[1]!);
    expect(exprs.length).toBeGreaterThan(0);
    const { stdout } = await run('sed', [...exprs.flatMap((e) => ['-e', e]), join(PROJECT_ROOT, 'config', 'maas-mirror.yaml')]);
    const config = parseConfig(stdout, '/etc/maas-mirror/maas-mirror.yaml', {});
    expect(config.dataDir).toBe('/var/lib/maas-mirror');
    for (const s of config.sources) {
      expect(s.keyring).toMatch(/^\/opt\/maas-mirror\/config\/keyrings\//);
      // COPY config ./config puts it there.
      expect(existsSync(join(PROJECT_ROOT, s.keyring!.replace('/opt/maas-mirror/', '')))).toBe(true);
    }
  });

  it('copies only files that exist and that .dockerignore lets through', async () => {
    const ins = parseDockerfile(await dockerfile);
    const allowed = (await readFile(join(PROJECT_ROOT, '.dockerignore'), 'utf8'))
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''));
    const sources = ins
      .filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(' ').slice(0, -1));
    expect(sources.length).toBeGreaterThan(3);
    for (const src of sources) {
      expect(existsSync(join(PROJECT_ROOT, src)), src).toBe(true);
      expect(allowed.some((a) => src === a || src.startsWith(`${a}/`)), `${src} is excluded by .dockerignore`).toBe(true);
    }
  });

  it('has a HEALTHCHECK that follows the configured port and really tells ready from not ready', async () => {
    const ins = parseDockerfile(await dockerfile);
    const hc = ins.find((i) => i.op === 'HEALTHCHECK' && i.stage === 1)!.args;
    const cmd = JSON.parse(/CMD (\[.*\])$/.exec(hc)![1]!) as string[];
    expect(cmd).toEqual(['node', '/opt/maas-mirror/bin/maas-mirror.js', 'healthcheck']);
    expect(hc).not.toMatch(/curl|wget|8080/);

    const dataDir = await mkdtemp(join(tmpdir(), 'mm-hc-'));
    const http = await listen(opsApp(makeOps({ config: () => parseConfig(JSON.stringify({ dataDir, sources: [{ name: 's', url: 'http://127.0.0.1:9/', verify: false }] }), join(dataDir, 'c.yaml'), {}) })));
    // The daemon's configuration moved HTTP to another port: the probe reads it from there.
    const configFile = join(dataDir, 'maas-mirror.yaml');
    await writeFile(configFile, JSON.stringify({ dataDir, sources: [{ name: 's', url: 'http://127.0.0.1:9/', verify: false }], http: { listen: `0.0.0.0:${http.port}` } }));
    const probe = (...extra: string[]) =>
      run(process.execPath, [join(PROJECT_ROOT, 'bin', 'maas-mirror.js'), ...cmd.slice(2), ...extra], {
        env: { ...process.env, MAAS_MIRROR_CONFIG: configFile, MAAS_MIRROR_FROM_SOURCE: '1' },
      }).then(
        () => 0,
        (err: { code?: number }) => err.code ?? -1,
      );
    try {
      expect(await probe()).toBe(1); // no snapshot yet
      expect(await probe('--url', `${http.url}/livez`)).toBe(0);
      expect(await probe('--url', 'http://127.0.0.1:9/readyz')).toBe(1); // nothing listening
    } finally {
      await http.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

/** A node_modules holding only what package-lock.json marks as production dependencies: what `npm prune --omit=dev` leaves. */
async function productionModules(dir: string): Promise<void> {
  const lock = JSON.parse(await readFile(join(PROJECT_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  await mkdir(dir);
  for (const [path, meta] of Object.entries(lock.packages)) {
    const name = /^node_modules\/((?:@[^/]+\/)?[^/]+)$/.exec(path)?.[1];
    if (!name || meta.dev || !existsSync(join(PROJECT_ROOT, path))) continue;
    if (name.startsWith('@')) await mkdir(join(dir, name.split('/')[0]!), { recursive: true });
    await symlink(join(PROJECT_ROOT, path), join(dir, name));
  }
}

describe('npm run build', () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'mm-build-'));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('compiles to a dist/ whose CLI runs --help from the image layout', async () => {
    // Into a temp dir, never dist/: bin/maas-mirror.js would prefer a dist/ in the work tree.
    const tsc = join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const build = await run(process.execPath, [tsc, '-p', join(PROJECT_ROOT, 'tsconfig.build.json'), '--outDir', join(out, 'dist')], {
      cwd: PROJECT_ROOT,
    }).then(
      () => '',
      (err: { stdout?: string }) => err.stdout ?? String(err),
    );
    expect(build).toBe('');
    expect(existsSync(join(out, 'dist', 'cli', 'main.js'))).toBe(true);
    expect(existsSync(join(out, 'dist', 'ops', 'index.js'))).toBe(true);
    expect(existsSync(join(out, 'dist', 'ops', 'html.test.js'))).toBe(false);

    // /opt/maas-mirror after `npm prune --omit=dev`: package.json, the production dependencies only, dist, bin.
    await copyFile(join(PROJECT_ROOT, 'package.json'), join(out, 'package.json'));
    await productionModules(join(out, 'node_modules'));
    expect(existsSync(join(out, 'node_modules', 'tsx'))).toBe(false);
    expect(existsSync(join(out, 'node_modules', 'typescript'))).toBe(false);
    await mkdir(join(out, 'bin'));
    await copyFile(join(PROJECT_ROOT, 'bin', 'maas-mirror.js'), join(out, 'bin', 'maas-mirror.js'));
    const version = (JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const entry of [join(out, 'dist', 'cli', 'main.js'), join(out, 'bin', 'maas-mirror.js')]) {
      const { stdout } = await run(process.execPath, [entry, '--help'], { cwd: out });
      expect(stdout).toContain('Usage: maas-mirror <command>');
      expect(stdout).toContain('serve');
      expect((await run(process.execPath, [entry, '--version'], { cwd: out })).stdout).toBe(`maas-mirror ${version}\n`);
    }
    // Without a build and without tsx: a clear exit 2 saying how to build.
    await rm(join(out, 'dist'), { recursive: true });
    const bare = await run(process.execPath, [join(out, 'bin', 'maas-mirror.js'), '--help'], { cwd: out }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain(`no build in ${join(out, 'dist')} and no tsx to run the sources`);
    expect(bare.stderr).toContain('npm ci && npm run build && npm prune --omit=dev');
    await writeFile(join(out, 'ok'), '');
  }, 120_000);
});

describe('systemd unit', () => {
  const unit = readFile(join(PROJECT_ROOT, 'config', 'maas-mirror.service'), 'utf8');
  const settings = async () => {
    const map = new Map<string, string[]>();
    let section = '';
    for (const raw of (await unit).split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const s = /^\[(\w+)\]$/.exec(line);
      if (s) {
        section = s[1]!;
        continue;
      }
      const [k, ...v] = line.split('=');
      const key = `${section}.${k}`;
      map.set(key, [...(map.get(key) ?? []), v.join('=')]);
    }
    return map;
  };

  it('is hardened: dedicated user, read-only system, one capability', async () => {
    const s = await settings();
    const one = (k: string) => s.get(`Service.${k}`)?.at(-1);
    expect(one('User')).toBe('maas-mirror');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('ReadWritePaths')).toBe('/var/lib/maas-mirror');
    expect(one('ProtectHome')).toBe('yes');
    expect(one('PrivateTmp')).toBe('yes');
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(one('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(one('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(one('Restart')).toBe('on-failure');
    expect(one('ExecStart')).toMatch(/maas-mirror\.js serve$/);
    expect(s.get('Service.Environment')).toContain('MAAS_MIRROR_CONFIG=/etc/maas-mirror/maas-mirror.yaml');
    // The token never sits in the unit itself.
    expect(await unit).not.toMatch(/^Environment=MAAS_MIRROR_API_TOKEN/m);
    expect(s.get('Install.WantedBy')).toEqual(['multi-user.target']);
  });

  it('says how to install with steps that build with the dev dependencies and run without them', async () => {
    const steps = (await unit)
      .split('\n')
      .filter((l) => l.startsWith('#') && /\bnpm\b/.test(l))
      .join('\n');
    expect(steps).toContain('npm ci && npm run build && npm prune --omit=dev');
    // `npm ci --omit=dev` leaves no tsc for `npm run build`.
    expect(steps).not.toMatch(/npm ci --omit=dev/);
    const pkg = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    expect(pkg.scripts!.build).toMatch(/^tsc /);
    expect(pkg.devDependencies!.typescript).toBeDefined();
    expect(pkg.devDependencies!.tsx).toBeDefined();
    expect(pkg.dependencies!.tsx).toBeUndefined();
    expect((await unit).match(/^ExecStart=.*$/m)![0]).toBe('ExecStart=/usr/bin/node /opt/maas-mirror/bin/maas-mirror.js serve');
  });

  it('passes systemd-analyze verify without a warning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mm-unit-'));
    try {
      await copyFile(join(PROJECT_ROOT, 'config', 'maas-mirror.service'), join(dir, 'maas-mirror.service'));
      const { stdout, stderr } = await run('systemd-analyze', ['verify', join(dir, 'maas-mirror.service')]);
      expect(stdout + stderr).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('cron.example', () => {
  it('has a local quiet sync and a --trigger line, both well-formed cron.d entries', async () => {
    const text = await readFile(join(PROJECT_ROOT, 'config', 'cron.example'), 'utf8');
    const field = String.raw`(\*|\*/\d+|\d+(-\d+)?(,\d+(-\d+)?)*)`;
    const entry = new RegExp(String.raw`^#?(${field}\s+){5}(\S+)\s+(.+)$`);
    const entries = text
      .split('\n')
      .map((l) => entry.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ user: m.at(-2)!, command: m.at(-1)! }));
    const local = entries.find((e) => /maas-mirror(\.js)? sync --quiet$/.test(e.command));
    const trigger = entries.find((e) => /maas-mirror(\.js)? sync --trigger https?:\/\/\S+/.test(e.command));
    expect(local?.user).toBe('maas-mirror');
    expect(trigger?.user).toBe('maas-mirror');
    // Only one of the two is active, so they never race for the lock.
    expect(text.split('\n').filter((l) => /^\d/.test(l))).toHaveLength(1);
  });
});
