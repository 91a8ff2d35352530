import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/load.js';
import { DEFAULT_SELECTION, maasProcedure } from '../../src/ops/maas-procedure.js';
import type { PublicStatus } from '../../src/ops/status.js';
import { selections } from '../../src/ops/status-page.js';
import { cliEnv, spawnCli, waitFor } from '../faults/helpers.js';
import { pasteIntoBash } from './fake-maas.js';

/** The ```sh block of the README's MAAS section. */
async function readmeProcedure(): Promise<string> {
  const readme = await readFile(join(PROJECT_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## MAAS integration'));
  const m = /```sh\n([\s\S]*?)\n```/.exec(section);
  if (!m) throw new Error('no sh block in the README\'s MAAS section');
  return m[1]!;
}

describe('one MAAS procedure', () => {
  it('the README shows exactly what the code generates', async () => {
    expect(await readmeProcedure()).toBe(
      maasProcedure({
        treeUrl: 'http://mirror:8080/maas/images/ephemeral-v3/stable/',
        keyringUrl: 'http://mirror:8080/keyring.gpg',
        selections: [DEFAULT_SELECTION],
      }),
    );
  });

  it('the demo prints the tree URL MAAS wants and that procedure, which runs against its server', async () => {
    const demo = spawnCli(['demo'], cliEnv({ MAAS_MIRROR_DEMO_HTTP_PORT: '0', MAAS_MIRROR_DEMO_TFTP_PORT: '0' }));
    onTestFinished(async () => {
      if (demo.exitCode === null) {
        demo.kill('SIGINT');
        await demo.exited;
      }
    });
    await waitFor(() => demo.output().includes('Ctrl-C stops'), 90_000, 'the demo to be ready');
    const out = demo.output();
    const tree = /^boot source\s+(\S+)$/m.exec(out)![1]!;
    const base = /^status page\s+(\S+)\/$/m.exec(out)![1]!;
    expect(tree).toMatch(/\/maas\/images\/ephemeral-v3\/stable\/$/);
    // What MAAS does with url=: append streams/v1/index.sjson.
    expect((await fetch(`${tree}streams/v1/index.sjson`)).status).toBe(200);

    const status = (await (await fetch(`${base}/status.json`)).json()) as PublicStatus;
    const procedure = maasProcedure({ treeUrl: tree, keyringUrl: `${base}/keyring.gpg`, selections: selections(status) });
    expect(out).toContain(`\n${procedure}\n`);
    expect(procedure).toContain('release=noble');

    const run = await pasteIntoBash(procedure);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const keyring = createHash('sha256')
      .update(Buffer.from(await (await fetch(`${base}/keyring.gpg`)).arrayBuffer()))
      .digest('hex');
    expect(run.calls.map((c) => c.argv.slice(1, 3).join(' '))).toEqual([
      'boot-sources create',
      ...selections(status).map(() => 'boot-source-selections create'),
      'boot-sources read',
      'boot-source delete',
      'boot-resources import',
    ]);
    expect(run.calls[0]).toEqual({ argv: ['admin', 'boot-sources', 'create', `url=${tree}`, 'keyring_data@=maas-mirror.gpg'], keyringSha256: keyring });

    demo.kill('SIGINT');
    expect(await demo.exited).toBe(0);
  }, 150_000);
});
