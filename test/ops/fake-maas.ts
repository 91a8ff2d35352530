import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';

/**
 * A stand-in for the MAAS CLI, the one part that cannot run here: it records
 * each call's argv as a JSON line, reads the keyring_data@= file as the real
 * CLI does, and answers like MAAS (a new source is id 7, images.maas.io is 1).
 */
const FAKE_MAAS = `#!/usr/bin/env node
const fs = require('node:fs');
const args = process.argv.slice(2);
const rec = { argv: args };
const kd = args.find((a) => a.startsWith('keyring_data@='));
if (kd) rec.keyringSha256 = require('node:crypto').createHash('sha256').update(fs.readFileSync(kd.slice('keyring_data@='.length))).digest('hex');
fs.appendFileSync(process.env.MAAS_LOG, JSON.stringify(rec) + '\\n');
const cmd = args.slice(1, 3).join(' ');
if (cmd === 'boot-sources create') process.stdout.write(JSON.stringify({ id: 7, url: args[3].slice(4), keyring_filename: '', keyring_data: '...' }, null, 4) + '\\n');
else if (cmd === 'boot-sources read') process.stdout.write(JSON.stringify([{ id: 1, url: 'http://images.maas.io/ephemeral-v3/stable/' }, { id: 7, url: 'mirror' }], null, 4) + '\\n');
else process.stdout.write('Success.\\n');
`;

/** Runs `script` as if pasted into bash, with the fake MAAS CLI first on PATH, in an empty folder removed when the test ends. */
export async function pasteIntoBash(script: string): Promise<{ code: number; stderr: string; calls: { argv: string[]; keyringSha256?: string }[]; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-paste-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  const work = join(dir, 'work');
  await Promise.all([mkdir(bin), mkdir(work)]);
  await writeFile(join(bin, 'maas'), FAKE_MAAS);
  await chmod(join(bin, 'maas'), 0o755);
  const log = join(dir, 'maas.log');
  await writeFile(log, '');
  const env = { PATH: `${bin}:${process.env.PATH}`, HOME: dir, MAAS_LOG: log, LANG: 'C' };
  const code = await new Promise<{ code: number; stderr: string }>((resolve) => {
    const child = execFile('bash', [], { cwd: work, env, timeout: 30_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
    child.stdin!.end(script);
  });
  const calls = (await readFile(log, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { argv: string[]; keyringSha256?: string });
  return { ...code, calls, dir };
}

