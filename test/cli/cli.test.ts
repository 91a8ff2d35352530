import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { usageLine } from '../../src/cli/args.js';
import { COMMANDS } from '../../src/cli/commands.js';
import { PROJECT_ROOT } from '../../src/config/load.js';
import { cli, writeJsonConfig } from '../faults/helpers.js';

const run = promisify(execFile);

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-cli-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function configIn(dir: string, extra: Record<string, unknown> = {}): Promise<string> {
  return writeJsonConfig(join(dir, 'maas-mirror.yaml'), {
    dataDir: join(dir, 'data'),
    sources: [{ name: 'stable', url: 'http://127.0.0.1:9/', verify: false, filters: [['arch=amd64'], ['bootloader-type~.']] }],
    ...extra,
  });
}

const noStack = (text: string) => expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

describe('maas-mirror command line', () => {
  it('prints each command\'s own usage for <command> --help', async () => {
    for (const c of COMMANDS) {
      const r = await cli([...c.name.split(' '), '--help']);
      expect(r.code, c.name).toBe(0);
      expect(r.stdout.split('\n')[0]).toBe(`Usage: ${usageLine(c)}`);
      for (const flag of Object.keys(c.flags ?? {})) expect(r.stdout).toContain(`--${flag}`);
    }
    const overview = await cli(['--help']);
    expect(overview.code).toBe(0);
    for (const c of COMMANDS) expect(overview.stdout).toContain(`  ${c.name} `);
  }, 180_000);

  it('prints the version', async () => {
    const pkg = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await cli(['--version']);
    expect(r).toMatchObject({ code: 0, stdout: `maas-mirror ${pkg.version}\n` });
  });

  it('refuses an unknown option, an extra argument or an unknown command with exit 2, naming it and the closest spelling', async () => {
    const flag = await cli(['sync', '--dryrun']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('unknown option "--dryrun" for sync (did you mean "--dry-run"?)');
    const extra = await cli(['snapshots', 'now']);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain('snapshots takes no arguments: unexpected argument "now"');
    const positional = await cli(['gc', 'dry-run']);
    expect(positional.stderr).toContain('(did you mean "--dry-run"?)');
    const second = await cli(['rollback', 'a', 'b']);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain('unexpected argument "b"');
    const command = await cli(['sycn']);
    expect(command.code).toBe(2);
    expect(command.stderr).toContain('unknown command "sycn" (did you mean "sync"?)');
    const sub = await cli(['keys', 'exprot']);
    expect(sub.code).toBe(2);
    expect(sub.stderr).toContain('(did you mean "keys export"?)');
    const global = await cli(['--versoin']);
    expect(global.code).toBe(2);
    expect(global.stderr).toContain('unknown option "--versoin" (did you mean "--version"?)');
    const required = await cli(['images', 'add', 'x.tar.gz', '--os', 'rhel']);
    expect(required.code).toBe(2);
    expect(required.stderr).toContain('images add needs --os, --release and --arch (missing: --release, --arch)');
    for (const r of [flag, extra, second, command, sub, global, required]) {
      expect(r.stdout).toBe('');
      noStack(r.stderr);
    }
  }, 60_000);

  it('prints a command group\'s usage for "<group> --help", and a subcommand\'s own --version flag is not the global one', async () => {
    const group = await cli(['images', '--help']);
    expect(group.code).toBe(0);
    for (const name of ['images add', 'images list', 'images remove']) expect(group.stdout).toContain(`Usage: maas-mirror ${name}`);
    const keys = await cli(['keys', '--help']);
    expect(keys).toMatchObject({ code: 0, stdout: expect.stringContaining('Usage: maas-mirror keys export') });
    const version = await cli(['images', 'remove', 'rhel/9/amd64', '--version', '20260101_01', '--config', '/nonexistent/c.yaml']);
    expect(version.stdout).not.toMatch(/^maas-mirror \d/);
    expect(version.code).toBe(2);
  }, 60_000);

  it('keys export -o into a missing folder is a clear exit 2, not a stack trace', async () => {
    const dir = await tempDir();
    const config = await configIn(dir);
    const r = await cli(['keys', 'export', '--config', config, '-o', join(dir, 'missing', 'k.gpg')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`maas-mirror: cannot write ${join(dir, 'missing', 'k.gpg')}: its folder ${join(dir, 'missing')} does not exist; choose another -o path or create its folder first\n`);
    const json = await cli(['keys', 'export', '--config', config, '-o', join(dir, 'missing', 'k.gpg'), '--armor']);
    expect(json.code).toBe(2);
    noStack(json.stderr);
  });

  it('check-config prints one OK line, and the whole resolved configuration only with --json', async () => {
    const dir = await tempDir();
    const config = await configIn(dir);
    const r = await cli(['check-config', '--config', config]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `OK ${config}: 1 source (stable: 2 filter groups), dataDir ${join(dir, 'data')}, http 0.0.0.0:8080, tftp 0.0.0.0:69, sync every 6 h, API off\n`,
    );
    const json = await cli(['check-config', '--config', config, '--json']);
    expect(json.code).toBe(0);
    const doc = JSON.parse(json.stdout) as { dataDir: string; publish: { keyName: string }; sources: { name: string }[] };
    expect(doc.dataDir).toBe(join(dir, 'data'));
    expect(doc.sources[0]!.name).toBe('stable');
    expect(doc.publish.keyName).toBe(`maas-mirror on ${hostname()}`);
  });

  it('check-config --json hides the credentials of every URL it prints, and the API token', async () => {
    const dir = await tempDir();
    const config = await configIn(dir, {
      sources: [{ name: 'stable', url: 'https://mirror-user:s3cret-src@mirror.example/maas/', verify: false }],
      download: { proxy: 'http://proxy-user:s3cret-proxy@proxy.example:3128' },
      http: { publicUrl: 'http://web-user:s3cret-web@mirror.example:8080/' },
      api: { token: 's3cret-token-0123456789' },
    });
    const r = await cli(['check-config', '--config', config, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toContain('s3cret');
    const doc = JSON.parse(r.stdout) as { sources: { url: string }[]; download: { proxy: string }; http: { publicUrl: string }; api: { token: string } };
    expect(doc.sources[0]!.url).toBe('https://***@mirror.example/maas/');
    expect(doc.download.proxy).toBe('http://***@proxy.example:3128');
    expect(doc.http.publicUrl).toBe('http://***@mirror.example:8080/');
    expect(doc.api.token).toBe('[set]');
  });

  it('names the mirror in its signing key\'s user id (publish.keyName, by default from the hostname)', async () => {
    const userIds = async (config: string) => {
      const r = await cli(['keys', 'export', '--armor', '--config', config]);
      expect(r.code, r.stderr).toBe(0);
      const gnupg = await tempDir();
      const file = join(gnupg, 'k.asc');
      await writeFile(file, r.stdout);
      const { stdout } = await run('gpg', ['--homedir', gnupg, '--batch', '--with-colons', '--show-keys', file]);
      return stdout
        .split('\n')
        .filter((l) => l.startsWith('uid:'))
        .map((l) => l.split(':')[9]);
    };
    const named = await tempDir();
    expect(await userIds(await configIn(named, { publish: { keyName: 'tier-2 mirror, rack room B' } }))).toEqual(['tier-2 mirror, rack room B']);
    const plain = await tempDir();
    expect(await userIds(await configIn(plain))).toEqual([`maas-mirror on ${hostname()}`]);
  }, 120_000);

  it('the README lists every command with the usage the code prints', async () => {
    const readme = await readFile(join(PROJECT_ROOT, 'README.md'), 'utf8');
    const block = /## Commands\n\n```\n([\s\S]*?)\n```/.exec(readme)![1]!;
    expect(block.split('\n')).toEqual(COMMANDS.map((c) => usageLine(c)));
  });
});
