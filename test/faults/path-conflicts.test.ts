import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { checkCurrent, Gpgv } from './helpers.js';

/**
 * Signed items whose paths cannot sit in one tree beside the metadata or
 * another item: `streams`, `streams/v1`, the index itself, a file where
 * another item needs a folder. Only the version listing such an item is left
 * out (MM_PATH_CONFLICT); every other new version is published and the tree
 * stays valid for gpgv.
 */

const V3 = 'com.ubuntu.maas:stable:v3:download';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const JAMMY = 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04';
const NEW = '20260101';

let env: Env | undefined;
let gpgv: Gpgv | undefined;
afterEach(async () => {
  await gpgv?.close();
  await env?.close();
  env = undefined;
  gpgv = undefined;
});

function items(e: Env, productId: string, version: string): Record<string, { path: string }> {
  return e.upstream.product(productId).doc.products[productId]!.versions[version]!.items;
}

describe('item paths that clash with the tree', () => {
  it.each([
    ['streams', () => 'streams'],
    ['streams/v1', () => 'streams/v1'],
    ['streams/v1/index.json', () => 'streams/v1/index.json'],
    ['the products file', () => `streams/v1/${V3}.sjson`],
    ['a file inside a metadata file', () => 'streams/v1/index.sjson/x'],
    // JAMMY's new version comes first in the document: its items take their paths before NOBLE's.
    ['a file inside another item (file vs folder)', (e: Env) => `${items(e, JAMMY, NEW)['boot-kernel']!.path}/x`],
    ['the folder of another item (folder vs file)', (e: Env) => items(e, JAMMY, NEW)['boot-kernel']!.path.split('/').slice(0, -1).join('/')],
  ])('an item at %s leaves out its version only, with MM_PATH_CONFLICT', async (_what, pathOf) => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const first = await env.sync();
    expect(first.failures).toEqual([]);
    gpgv = await Gpgv.create(join(env.dataDir, 'keys', 'public.gpg'));

    env.upstream.addVersion(NOBLE, NEW);
    env.upstream.addVersion(JAMMY, NEW);
    const hostile = items(env, NOBLE, NEW)['manifest']!;
    const path = pathOf(env);
    // Bytes the mirror already holds: the clash is met at publish, not at download.
    env.upstream.setItemLike(path, items(env, NOBLE, '20250709')['manifest']!.path);
    hostile.path = path;
    await env.upstream.write();

    const r = await env.sync();
    expect(r.failures).toEqual([
      expect.objectContaining({ source: 'stable', code: 'MM_PATH_CONFLICT', path, product: NOBLE, message: expect.stringContaining(`${NOBLE} ${NEW}`) }),
    ]);
    expect(r.published).toBe(true);
    const tree = (await checkCurrent(env.dataDir, gpgv))!;
    const products = tree.products.get(V3)!.products;
    expect(Object.keys(products[JAMMY]!.versions)).toContain(NEW);
    expect(Object.keys(products[NOBLE]!.versions)).not.toContain(NEW);
    expect(Object.keys(products[NOBLE]!.versions)).toContain('20250709');
    expect(tree.items.has(path)).toBe(false);
  });
});
