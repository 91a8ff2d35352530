import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawGet } from '../helpers/raw-http.js';
import { publishSnapshot, sampleTree, snapshotId, tempDataDir, type TempData } from './fixture.js';
import { listenOnLoopback, PREFIX } from './server.js';

/**
 * Hostile paths sent byte for byte over a raw socket: HTTP clients would
 * normalise them before they ever reached the server.
 */

const MARKER = 'TOPSECRET-7f3a';
const PASSWD = 'root:x:0:0';

let t: TempData;
let server: Awaited<ReturnType<typeof listenOnLoopback>>;

const raw = (path: string) => rawGet(server.addresses[0]!, path);

const TRAVERSALS = ['..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%252e%252e', '%c0%ae%c0%ae', '..%00', '....', '..;'];
const SEPARATORS = ['/', '\\', '%2f', '%5c', '%5C', '//', '%252f'];
const PREFIXES = ['/', PREFIX, `${PREFIX}streams/v1/`, '/images/', '/MAAS/boot-resources/abcdef0/', '/bootloaders/uefi/amd64/', '//', '/\\'];
const TARGETS = ['SECRET.txt', 'keys/secret.key', 'etc/passwd'];

function hostilePaths(): string[] {
  const out = new Set<string>();
  for (const p of PREFIXES) for (const tr of TRAVERSALS) for (const s of SEPARATORS) for (const depth of [2, 3, 8]) for (const target of TARGETS) {
    out.add(p + `${tr}${s}`.repeat(depth) + target);
  }
  for (const extra of [
    `${PREFIX}leak`,
    `${PREFIX}leak-abs`,
    '/bootloaders/uefi/amd64/passwd-link',
    '/ldlinux.c32',
    `${PREFIX}%00`,
    `${PREFIX}streams%00/v1/index.json`,
    '/' + 'a/'.repeat(3000),
    '/%2e%2e%2f%2e%2e%2fSECRET.txt',
    '/..%2f..%2fSECRET.txt',
    '/images/../../SECRET.txt',
    'http://localhost/../../SECRET.txt',
    'http://localhost/%2e%2e/%2e%2e/SECRET.txt',
    '../../SECRET.txt',
    '*',
  ]) {
    out.add(extra);
  }
  return [...out];
}

beforeAll(async () => {
  t = await tempDataDir('mm-hostile-');
  const tree = sampleTree('h');
  await publishSnapshot(t.layout, { id: snapshotId(1), metadata: tree.metadata, items: tree.items });
  await writeFile(join(t.dataDir, 'SECRET.txt'), MARKER);
  await mkdir(t.layout.keysDir, { recursive: true });
  await writeFile(join(t.layout.keysDir, 'secret.key'), MARKER);
  const root = t.layout.snapshot(snapshotId(1));
  await symlink('../../SECRET.txt', join(root, 'leak'));
  await symlink(join(t.dataDir, 'SECRET.txt'), join(root, 'leak-abs'));
  const bl = join(t.layout.bootloadersStore, snapshotId(1), 'uefi/amd64');
  await mkdir(bl, { recursive: true });
  await symlink('/etc/passwd', join(bl, 'passwd-link'));
  await mkdir(join(t.layout.bootloadersStore, snapshotId(1), 'pxe/amd64'), { recursive: true });
  await symlink('../../../../SECRET.txt', join(t.layout.bootloadersStore, snapshotId(1), 'pxe/amd64/ldlinux.c32'));
  await symlink(join('bootloaders.d', snapshotId(1)), t.layout.bootloaders);
  server = await listenOnLoopback(t.layout);
});

afterAll(async () => {
  await server?.close(100);
  await t?.cleanup();
});

describe('hostile paths over real HTTP', () => {
  it('serves the tree normally (control)', async () => {
    const ok = await raw(`${PREFIX}streams/v1/index.json`);
    expect(ok.status).toBe(200);
    const backslash = await raw(`${PREFIX}streams\\v1\\index.json`);
    expect(backslash.status).toBe(200);
  });

  it('never leaks a byte from outside the tree, in any spelling', async () => {
    const paths = hostilePaths();
    expect(paths.length).toBeGreaterThan(1500);
    const statuses = new Map<number, number>();
    for (let i = 0; i < paths.length; i += 64) {
      const batch = paths.slice(i, i + 64);
      const answers = await Promise.all(batch.map((p) => raw(p)));
      answers.forEach((a, j) => {
        const p = batch[j]!;
        expect(a.text, p).not.toContain(MARKER);
        expect(a.text, p).not.toContain(PASSWD);
        expect([400, 404, 405], `${p} → ${a.status}`).toContain(a.status);
        expect(a.text, p).not.toMatch(/\n\s+at [^\n]+:\d+:\d+/);
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      });
    }
    expect(statuses.get(400)).toBeGreaterThan(0);
  });
});
