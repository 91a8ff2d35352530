import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { parseConfig, type Config } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { UpstreamFixture, type UpstreamOptions } from '../../src/demo-upstream/upstream.js';
import { UpstreamServer } from '../../src/demo-upstream/server.js';
import { runSync, type SyncOptions, type SyncReport } from '../../src/mirror/sync.js';

export interface TestKey {
  privateKey: openpgp.PrivateKey;
  publicKey: openpgp.PublicKey;
  /** Binary keyring file holding the public key. */
  keyring: string;
}

export async function makeKey(dir: string, name = 'upstream'): Promise<TestKey> {
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: `test ${name}` }],
    format: 'object',
  });
  const keyring = join(dir, `${name}.gpg`);
  await writeFile(keyring, privateKey.toPublic().write());
  return { privateKey, publicKey: privateKey.toPublic(), keyring };
}

export interface SourceYaml {
  name?: string;
  url?: string;
  keyring?: string;
  filters?: string[][];
  contentIds?: string[];
  maxVersions?: number;
  verify?: boolean;
  onDemand?: boolean;
}

export interface Env {
  dir: string;
  dataDir: string;
  key: TestKey;
  upstream: UpstreamFixture;
  server: UpstreamServer;
  config(sources?: SourceYaml[], extra?: Record<string, unknown>): Config;
  sync(opts?: Partial<SyncOptions> & { config?: Config }): Promise<SyncReport>;
  close(): Promise<void>;
}

/**
 * A fresh world for one test: a generated upstream signed by a key made
 * now, served on 127.0.0.1, and an empty dataDir.
 */
export async function makeEnv(options: Partial<UpstreamOptions> = {}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-test-'));
  const key = await makeKey(dir);
  const upstream = await UpstreamFixture.create({ dir: join(dir, 'upstream'), key: key.privateKey, ...options });
  const server = new UpstreamServer({ root: upstream.dir });
  await server.start();
  const dataDir = join(dir, 'data');
  const env: Env = {
    dir,
    dataDir,
    key,
    upstream,
    server,
    config(sources = [{}], extra = {}) {
      const doc = {
        dataDir,
        sources: sources.map((s, i) => ({
          name: s.name ?? (i === 0 ? 'stable' : `src${i}`),
          url: s.url ?? server.url,
          ...(s.verify === false ? {} : { keyring: s.keyring ?? key.keyring }),
          ...(s.filters ? { filters: s.filters } : {}),
          ...(s.contentIds ? { contentIds: s.contentIds } : {}),
          ...(s.maxVersions ? { maxVersions: s.maxVersions } : {}),
          ...(s.verify === false ? { verify: false } : {}),
          ...(s.onDemand ? { onDemand: true } : {}),
        })),
        download: { concurrency: 4, retries: 3, connectTimeout: '2s', idleTimeout: '2s' },
        ...extra,
      };
      return parseConfig(JSON.stringify(doc), join(dir, 'maas-mirror.yaml'), {});
    },
    sync(opts = {}) {
      return runSync({ logger: silentLogger(), retryBaseMs: 5, ...opts, config: opts.config ?? env.config() });
    },
    async close() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return env;
}
