import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger, publishSnapshot, sha256, snapshotId, tempDataDir, type TempData } from '../../test/http/fixture.js';
import { BootTemplateError, NoSnapshotError, NotFoundError } from '../errors.js';
import { serverBase } from './boot-files.js';
import { MAX_PLACEHOLDERS, MAX_TEMPLATE_BYTES, renderTemplate } from './boot-template.js';
import type { Layout } from './layout.js';
import { Resolver, type Target } from './resolver.js';

const KERNEL = 'ubuntu/noble/amd64/ga-24.04/generic/boot-kernel';
const INITRD = 'ubuntu/noble/amd64/ga-24.04/generic/boot-initrd';

describe('renderTemplate', () => {
  const ctx = {
    server: 'http://10.0.0.1:8080',
    imagePath: (image: string) => (image === KERNEL ? '/images/abc/boot-kernel' : undefined),
  };

  it('fills url, path and server, and leaves other braces alone', () => {
    const r = renderTemplate('t', `KERNEL {{url:${KERNEL}}}\nTFTP {{ path:${KERNEL} }}\nS {{server}}\n{ not {{ a placeholder`, ctx);
    expect(r).toEqual({ ok: true, text: 'KERNEL http://10.0.0.1:8080/images/abc/boot-kernel\nTFTP /images/abc/boot-kernel\nS http://10.0.0.1:8080\n{ not {{ a placeholder' });
  });

  it('never renders half a config: every missing image is named, nothing is returned', () => {
    const r = renderTemplate('t', `{{url:${KERNEL}}} {{url:${INITRD}}} {{path:${INITRD}}} {{url:a/b/c/d/e/f}}`, ctx);
    expect(r).toEqual({ ok: false, missing: [INITRD, 'a/b/c/d/e/f'] });
  });

  it('does not render what a value brings in (no recursion)', () => {
    const r = renderTemplate('t', '{{server}}', { ...ctx, server: 'http://x/{{server}}' });
    expect(r).toEqual({ ok: true, text: 'http://x/{{server}}' });
  });

  it('refuses a bad placeholder, a template over its budgets, and a server it cannot know', () => {
    expect(() => renderTemplate('t', '{{kernel}}', ctx)).toThrow(BootTemplateError);
    expect(() => renderTemplate('t', '{{url:ubuntu/noble}}', ctx)).toThrow(/OS\/RELEASE\/ARCH\/SUBARCH\/KFLAVOR\/FTYPE/);
    expect(() => renderTemplate('t', '{{url:../../../../../x}}', ctx)).toThrow(BootTemplateError);
    expect(() => renderTemplate('t', '{{server:x}}', ctx)).toThrow(BootTemplateError);
    expect(() => renderTemplate('t', '{{server}}'.repeat(MAX_PLACEHOLDERS + 1), ctx)).toThrow(/more than 256 placeholders/);
    expect(() => renderTemplate('t', 'x'.repeat(MAX_TEMPLATE_BYTES + 1), ctx)).toThrow(/larger than/);
    expect(() => renderTemplate('t', '{{server}}', { ...ctx, server: undefined })).toThrow(/http\.publicUrl/);
    // {{path:…}} needs no server.
    expect(renderTemplate('t', `{{path:${KERNEL}}}`, { ...ctx, server: undefined })).toEqual({ ok: true, text: '/images/abc/boot-kernel' });
  });
});

describe('serverBase', () => {
  const http = { listen: [{ host: '0.0.0.0', port: 8080 }], prefix: '/maas/images/ephemeral-v3/stable/', publicUrl: undefined };

  it('is publicUrl (without the tree prefix), else the first specific listen address, else unknown', () => {
    expect(serverBase({ ...http, publicUrl: 'https://mirror.example/' })).toBe('https://mirror.example');
    expect(serverBase({ ...http, publicUrl: 'https://mirror.example/m/maas/images/ephemeral-v3/stable/' })).toBe('https://mirror.example/m');
    expect(serverBase({ ...http, listen: [{ host: '0.0.0.0', port: 80 }, { host: '10.1.2.3', port: 8080 }] })).toBe('http://10.1.2.3:8080');
    expect(serverBase({ ...http, listen: [{ host: 'fd00::1', port: 80 }] })).toBe('http://[fd00::1]:80');
    expect(serverBase(http)).toBeUndefined();
  });
});

/** A snapshot whose products file lists noble's kernel and initrd at `version`. */
async function publishNoble(layout: Layout, n: number, version: string, kernel: string): Promise<void> {
  const base = `noble/amd64/${version}/ga-24.04/generic`;
  const products = {
    content_id: 'com.ubuntu.maas:stable:v3:download',
    format: 'products:1.0',
    products: {
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04': {
        os: 'ubuntu', release: 'noble', arch: 'amd64', subarch: 'ga-24.04', kflavor: 'generic',
        versions: {
          [version]: {
            items: {
              'boot-kernel': { ftype: 'boot-kernel', path: `${base}/boot-kernel`, sha256: sha256(kernel), size: kernel.length },
              'boot-initrd': { ftype: 'boot-initrd', path: `${base}/boot-initrd`, sha256: sha256('INITRD'), size: 6 },
            },
          },
        },
      },
    },
  };
  const id = snapshotId(n);
  const basePath = 'streams/v1/com.ubuntu.maas:stable:v3:download';
  await publishSnapshot(layout, {
    id,
    metadata: { [`${basePath}.json`]: JSON.stringify(products) },
    items: { [`${base}/boot-kernel`]: kernel, [`${base}/boot-initrd`]: 'INITRD' },
  });
  const m = JSON.parse(await readFile(layout.manifest(id), 'utf8')) as { contents: unknown[] };
  m.contents = [{ contentId: 'com.ubuntu.maas:stable:v3:download', source: 'stable', basePath }];
  await writeFile(layout.manifest(id), JSON.stringify(m));
}

describe('boot.files in the namespace', () => {
  let t: TempData;
  let dir: string;
  beforeEach(async () => {
    t = await tempDataDir('mm-bootfiles-');
    dir = join(t.dataDir, 'boot');
    await mkdir(join(dir, 'pxelinux.cfg'), { recursive: true });
  });
  afterEach(() => t.cleanup());

  const config = (server: string | undefined = 'http://10.0.0.1:8080') => () => ({ dir, server });

  async function text(ns: Resolver, name: string): Promise<string> {
    const got = await ns.locate(name);
    if (!got.ok) throw got.error;
    return (await ns.readBootFile(got.target)).data.toString();
  }

  it('serves files at their relative path and templates without .tmpl, rendered against the current snapshot', async () => {
    await publishNoble(t.layout, 1, '20260101', 'KERNEL-1');
    await writeFile(join(dir, 'boot.ipxe'), '#!ipxe\nchain {{server}}/x\n');
    await writeFile(join(dir, 'pxelinux.cfg/default.tmpl'), `KERNEL {{url:${KERNEL}}}\nINITRD {{path:${INITRD}}}\n`);
    const ns = new Resolver({ layout: t.layout, linkTtlMs: 0, bootFiles: config() });

    // A plain file is served as it is, placeholders and all.
    expect(await text(ns, 'boot.ipxe')).toBe('#!ipxe\nchain {{server}}/x\n');
    expect(await text(ns, '\\pxelinux.cfg\\default')).toBe(
      `KERNEL http://10.0.0.1:8080/images/${sha256('KERNEL-1')}/boot-kernel\nINITRD /images/${sha256('INITRD')}/boot-initrd\n`,
    );
    // The rendered URL reaches the kernel through the hash route.
    const k = await ns.resolve(`images/${sha256('KERNEL-1')}/boot-kernel`);
    expect((await k.handle.readFile()).toString()).toBe('KERNEL-1');
    await k.close();
    // The template is served only rendered.
    expect((await ns.locate('pxelinux.cfg/default.tmpl')).ok).toBe(false);

    // A sync publishes a newer kernel: the same name now points at it.
    await publishNoble(t.layout, 2, '20260202', 'KERNEL-2');
    expect(await text(ns, 'pxelinux.cfg/default')).toContain(`/images/${sha256('KERNEL-2')}/boot-kernel`);
  });

  it('answers an unknown image with NotFound and a log line naming it', async () => {
    await publishNoble(t.layout, 3, '20260101', 'KERNEL');
    await writeFile(join(dir, 'grub.cfg.tmpl'), `linux {{url:${KERNEL}}}\ninitrd {{url:ubuntu/jammy/amd64/ga-22.04/generic/boot-initrd}}\n`);
    const { logger, lines } = captureLogger();
    const ns = new Resolver({ layout: t.layout, logger, bootFiles: config() });
    const got = await ns.locate('grub.cfg');
    expect(got.ok).toBe(true);
    await expect(ns.readBootFile((got as { target: Target }).target)).rejects.toThrow(NotFoundError);
    const line = lines.find((l) => String(l.msg).includes('not served'));
    expect(line?.msg).toContain('ubuntu/jammy/amd64/ga-22.04/generic/boot-initrd');
  });

  it('keeps to its folder: no traversal, no symlink out, nothing without boot.files or a snapshot', async () => {
    await writeFile(join(t.dataDir, 'secret'), 'SECRET');
    await symlink(join(t.dataDir, 'secret'), join(dir, 'leak'));
    await symlink(join(t.dataDir, 'secret'), join(dir, 'leak2.tmpl'));
    await symlink(t.dataDir, join(dir, 'up'));
    await writeFile(join(dir, 'inside'), 'IN');
    await symlink('inside', join(dir, 'alias'));
    await writeFile(join(dir, 'x.tmpl'), 'X');
    const ns = new Resolver({ layout: t.layout, bootFiles: config() });
    for (const name of ['leak', 'leak2', 'up/secret', '../secret', 'pxelinux.cfg', 'nothing']) {
      const got = await ns.locate(name);
      expect(got.ok, name).toBe(false);
    }
    expect(await text(ns, 'alias')).toBe('IN');
    // A template needs a snapshot to render against.
    const x = await ns.locate('x');
    expect(!x.ok && x.error).toBeInstanceOf(NoSnapshotError);
    // Without boot.files, the same names are simply not served.
    expect((await new Resolver({ layout: t.layout }).locate('inside')).ok).toBe(false);
    // A bootloader name is never shadowed by an operator's file.
    await writeFile(join(dir, 'lpxelinux.0'), 'NOT A BOOTLOADER');
    expect((await ns.locate('lpxelinux.0')).ok).toBe(false);
  });
});
