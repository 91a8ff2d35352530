import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { parseConfig } from '../config/load.js';
import { ExitCode } from '../errors.js';
import { UpstreamServer } from '../demo-upstream/server.js';
import { UpstreamFixture } from '../demo-upstream/upstream.js';
import { createLogger } from '../log.js';
import type { CommandContext } from './commands.js';
import { startDaemon } from './daemon.js';
import { maasProcedure } from '../ops/maas-procedure.js';
import { selections } from '../ops/status-page.js';

/** Port `preferred` on loopback if it is free, else any free one. */
async function pickPort(preferred: number): Promise<number> {
  for (const port of [preferred, 0]) {
    const s = createServer();
    try {
      s.listen(port, '127.0.0.1');
      await once(s, 'listening');
      const got = (s.address() as { port: number }).port;
      s.close();
      await once(s, 'close');
      return got;
    } catch {
      s.close();
    }
  }
  throw new Error('no free loopback port');
}

/**
 * `maas-mirror demo`: the whole thing without internet. A small signed
 * upstream (the generator the tests use) on loopback, mirrored by the real
 * sync and served over HTTP and TFTP, until Ctrl-C removes it all.
 */
export async function demo(ctx: CommandContext): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'maas-mirror-demo-'));
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn', destination: process.stderr });
  const out = ctx.stdout;
  let upstreamServer: UpstreamServer | undefined;
  try {
    out.write(`building a signed demo upstream in ${dir} …\n`);
    const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'maas-mirror demo upstream' }], format: 'object' });
    const keyring = join(dir, 'upstream-keyring.gpg');
    await writeFile(keyring, privateKey.toPublic().write());
    const upstream = await UpstreamFixture.create({ dir: join(dir, 'upstream'), key: privateKey });
    upstreamServer = new UpstreamServer({ root: upstream.dir });
    const upstreamUrl = await upstreamServer.start();
    const httpPort = await pickPort(Number(process.env.MAAS_MIRROR_DEMO_HTTP_PORT ?? 8080));
    const tftpPort = Number(process.env.MAAS_MIRROR_DEMO_TFTP_PORT ?? 6969);
    const configText = JSON.stringify(
      {
        dataDir: join(dir, 'data'),
        sources: [
          {
            name: 'demo',
            url: upstreamUrl,
            keyring,
            filters: [['os=ubuntu', 'arch=amd64', 'release~^(jammy|noble)$'], ['bootloader-type~.']],
          },
        ],
        http: { listen: `127.0.0.1:${httpPort}` },
        tftp: { listen: `127.0.0.1:${tftpPort}` },
        schedule: { onStart: true, interval: '1h', jitter: '0s' },
      },
      null,
      1,
    );
    const configFile = join(dir, 'maas-mirror.yaml');
    await writeFile(configFile, configText);
    const config = parseConfig(configText, configFile);
    const daemon = await startDaemon({ config, logger, drainMs: 1000 });
    const first = daemon.ops.coordinator.running ? await once(daemon.ops.coordinator, 'end') : [daemon.ops.coordinator.lastSync];
    const record = first[0] as { result: string; snapshot: string | null } | undefined;
    const base = `http://127.0.0.1:${daemon.http.addresses[0]!.port}`;
    const tree = `${base}${config.http.prefix}`;
    const tftp = daemon.tftpAddresses[0];
    const procedure = maasProcedure({ treeUrl: tree, keyringUrl: `${base}/keyring.gpg`, selections: selections(await daemon.ops.publicStatus()) });
    out.write(
      [
        '',
        `first sync: ${record?.result ?? 'unknown'}, snapshot ${record?.snapshot ?? 'none'}`,
        '',
        `status page     ${base}/`,
        `boot source     ${tree}`,
        `mirror keyring  ${base}/keyring.gpg  (also ${join(config.dataDir, 'keys', 'public.gpg')})`,
        `metrics         ${base}/metrics`,
        tftp ? `tftp            tftp ${tftp.host} ${tftp.port} -m binary -c get bootx64.efi` : 'tftp            off (see the log)',
        `config          ${configFile}`,
        '',
        'To make a MAAS 3.x region use this mirror, paste this where the MAAS CLI is logged in:',
        '',
        procedure,
        '',
        'Ctrl-C stops the demo and removes everything it made.',
        '',
      ].join('\n'),
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    out.write('stopping …\n');
    await daemon.stop();
    return ExitCode.ok;
  } finally {
    await upstreamServer?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
