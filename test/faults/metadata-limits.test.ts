import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { clearsign } from '../../src/pgp/sign.js';
import { METADATA_LIMITS } from '../../src/simplestreams/limits.js';
import type { SyncReport } from '../../src/mirror/sync.js';
import { replaceBody, startProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { checkCurrent, Gpgv } from './helpers.js';

/**
 * Signed metadata shaped to exhaust the mirror: nested 100,000 deep (which
 * anything recursive, JSON.stringify included, dies on) or listing more
 * products than any real stream. The source that sends it is refused with
 * MM_METADATA_INVALID; the other source still publishes its new version and
 * the tree stays valid for gpgv. (A document too large is cut while it
 * downloads: see upstream.test.ts, MM_METADATA_TOO_LARGE.)
 */

const V3 = 'com.ubuntu.maas:stable:v3:download';
const BOOT = 'com.ubuntu.maas:stable:1:bootloader-download';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const BOOT_SJSON = `streams/v1/${BOOT}.sjson`;
const INDEX = 'streams/v1/index.sjson';

interface World {
  env: Env;
  proxy: FaultProxy;
  gpgv: Gpgv;
  sync(): Promise<SyncReport>;
}

let w: World | undefined;
afterEach(async () => {
  if (!w) return;
  await w.gpgv.close();
  await w.proxy.stop();
  await w.env.close();
  w = undefined;
});

/** Two sources on one upstream: `stable` (v3 images) direct, `boot` (bootloaders) through a proxy that turns hostile. */
async function world(): Promise<World> {
  const env = await makeEnv({ samples: ['stable-v3-download.json', 'stable-bootloader-download.json'] });
  const proxy = await startProxy(env.server.url);
  const config = env.config([
    { name: 'stable', contentIds: [V3.replaceAll('.', '\\.')] },
    { name: 'boot', url: proxy.url, contentIds: [BOOT.replaceAll('.', '\\.')] },
  ]);
  const sync = () => env.sync({ config });
  const first = await sync();
  expect(first.failures).toEqual([]);
  w = { env, proxy, gpgv: await Gpgv.create(join(env.dataDir, 'keys', 'public.gpg')), sync };
  return w;
}

/** The signed text of `doc` with the string "__HOSTILE__" replaced by `raw` (JSON.stringify cannot write it). */
async function signedWith(x: World, doc: unknown, raw: string): Promise<string> {
  const text = JSON.stringify(doc, null, 1).replace('"__HOSTILE__"', raw) + '\n';
  return clearsign(text, x.env.key.privateKey);
}

function serve(x: World, path: string, body: string): void {
  x.proxy.fault = (ctx) => (ctx.path === path ? replaceBody(ctx, body).then(() => 'hostile') : undefined);
}

/** The other source's new version is published, the hostile one keeps its previous content, and gpgv accepts the tree. */
async function assertOthersPublished(x: World, r: SyncReport, reason: RegExp): Promise<void> {
  expect(r.failures).toEqual([expect.objectContaining({ source: 'boot', code: 'MM_METADATA_INVALID', message: expect.stringMatching(reason) })]);
  expect(r.sources.find((s) => s.name === 'boot')?.result).toBe('failed');
  expect(r.published).toBe(true);
  const tree = (await checkCurrent(x.env.dataDir, x.gpgv))!;
  expect(Object.keys(tree.products.get(V3)!.products[NOBLE]!.versions)).toContain('20260101');
  expect(Object.keys(tree.products.get(BOOT)!.products).length).toBeGreaterThan(0);
}

const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

describe('hostile metadata shapes', () => {
  async function newNoble(x: World): Promise<void> {
    x.env.upstream.addVersion(NOBLE, '20260101');
    await x.env.upstream.write();
  }

  it('a products file with a field nested 100,000 deep refuses its source only', async () => {
    const x = await world();
    await newNoble(x);
    const doc = structuredClone(x.env.upstream.products.get(BOOT)!);
    const [pid] = Object.keys(doc.products);
    (doc.products[pid!] as Record<string, unknown>).nested = '__HOSTILE__';
    serve(x, BOOT_SJSON, await signedWith(x, doc, deep(100_000)));
    await assertOthersPublished(x, await x.sync(), new RegExp(`${BOOT_SJSON}: nests arrays and objects more than ${METADATA_LIMITS.maxDepth} deep`));
  });

  it('an index nested 100,000 deep refuses its source only', async () => {
    const x = await world();
    await newNoble(x);
    serve(x, INDEX, await signedWith(x, { ...x.env.upstream.index, vendor: '__HOSTILE__' }, deep(100_000)));
    await assertOthersPublished(x, await x.sync(), /index\.sjson: nests arrays and objects more than 32 deep/);
  });

  it(`a products file listing more than ${METADATA_LIMITS.maxProducts} products refuses its source only`, async () => {
    const x = await world();
    await newNoble(x);
    const doc = structuredClone(x.env.upstream.products.get(BOOT)!);
    for (let i = 0; i <= METADATA_LIMITS.maxProducts; i++) doc.products[`junk:${i}`] = { versions: {} };
    serve(x, BOOT_SJSON, await signedWith(x, doc, '""'));
    await assertOthersPublished(x, await x.sync(), new RegExp(`lists more than ${METADATA_LIMITS.maxProducts} products`));
  });
});
