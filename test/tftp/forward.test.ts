import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tftpGet } from '../../src/tftp/client.js';
import { TftpRemoteError } from '../../src/tftp/errors.js';
import { encodeData } from '../../src/tftp/packet.js';
import { FORWARD_MAX_BYTES, forwardingOpener } from '../../src/tftp/forward.js';
import { TftpServer, openFromDirectory, type TransferEndEvent } from '../../src/tftp/index.js';
import { startDaemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { makeEnv } from '../helpers/env.js';
import { makeTree, random, run, sha256, tmpOut, until } from './helpers.js';

/**
 * boot.forward against a real tftpd-hpa standing in for a MAAS rack: reads we
 * cannot answer, for per-machine config names, are relayed through our own
 * transfer engine; nothing else reaches the rack.
 */

const rackFiles = {
  'pxelinux.cfg/01-52-54-00-12-34-56': Buffer.from('DEFAULT local\nLABEL local\n  LOCALBOOT 0\n'),
  'pxelinux.cfg/default': Buffer.from('DEFAULT rack-default\n'),
  'grub/grub.cfg-default-amd64': random(7000),
  'ipxe.cfg': Buffer.from('#!ipxe\nexit\n'),
  'pxelinux.cfg/big': random(FORWARD_MAX_BYTES + 1),
  'other.cfg': Buffer.from('not a per-machine config\n'),
  secret: Buffer.from('rack-only secret\n'),
};
const ourFiles = { 'bootx64.efi': random(20_000), 'pxelinux.cfg/local': Buffer.from('DEFAULT ours\n') };

const TIMEOUT = 300;
const RETRIES = 2;
const cleanups: (() => Promise<void> | void)[] = [];
let rackPort = 0;
let ours: Awaited<ReturnType<typeof startOurs>>;

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind({ address: '127.0.0.1', port: 0 }, r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startRack(): Promise<number> {
  const tree = await makeTree(rackFiles);
  cleanups.push(tree.cleanup);
  // in.tftpd chroots (-s) and drops to "nobody": the tree must be world-readable.
  await chmod(tree.dir, 0o755);
  const port = await freeUdpPort();
  const child = spawn('/usr/sbin/in.tftpd', ['-L', '-s', '-a', `127.0.0.1:${port}`, tree.dir], { stdio: 'ignore' });
  cleanups.push(() => {
    child.kill('SIGTERM');
  });
  for (let i = 0; i < 50; i++) {
    try {
      await tftpGet({ host: '127.0.0.1', port, file: 'other.cfg', timeoutMs: 100, retries: 1 });
      return port;
    } catch {
      if (child.exitCode !== null) throw new Error(`in.tftpd exited with ${child.exitCode}`);
    }
  }
  throw new Error('in.tftpd did not answer');
}

async function startOurs(forwardPort: number, options: { maxTransfers?: number } = {}) {
  const tree = await makeTree(ourFiles);
  cleanups.push(tree.cleanup);
  const server = new TftpServer({
    listen: [{ host: '127.0.0.1', port: 0 }],
    open: forwardingOpener(openFromDirectory(tree.dir), {
      host: '127.0.0.1',
      port: forwardPort,
      timeoutMs: TIMEOUT,
      retries: RETRIES,
      logger: silentLogger(),
    }),
    timeoutMs: TIMEOUT,
    retries: RETRIES,
    ...options,
  });
  const ends: TransferEndEvent[] = [];
  server.on('transferEnd', (e) => ends.push(e));
  const [bound] = await server.start();
  cleanups.push(() => server.stop({ deadlineMs: 0 }));
  return { server, port: bound!.port, ends };
}

const get = (file: string, port = ours.port) => tftpGet({ host: '127.0.0.1', port, file, timeoutMs: 1000, retries: 3 });
const errorOf = (file: string, port = ours.port) =>
  get(file, port).then(
    () => undefined,
    (err: unknown) => (err instanceof TftpRemoteError ? err.tftpCode : err),
  );

beforeAll(async () => {
  rackPort = await startRack();
  ours = await startOurs(rackPort);
});
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('boot.forward to tftpd-hpa', () => {
  it('relays per-machine configs to tftp-hpa, byte for byte', async () => {
    const out = await tmpOut();
    cleanups.push(out.cleanup);
    for (const name of ['pxelinux.cfg/01-52-54-00-12-34-56', 'grub/grub.cfg-default-amd64', 'ipxe.cfg'] as const) {
      const path = join(out.dir, name.replaceAll('/', '_'));
      await run('tftp', ['127.0.0.1', String(ours.port), '-m', 'binary', '-c', 'get', name, path]);
      expect(sha256(await readFile(path))).toBe(sha256(rackFiles[name]));
    }
    await until(() => ours.server.activeTransfers === 0);
  });

  it('serves the relayed file with our own options: tsize of the real size, blksize, windowsize', async () => {
    const r = await tftpGet({ host: '127.0.0.1', port: ours.port, file: '/grub/grub.cfg-default-amd64', blksize: 1024, windowsize: 4, tsize: true });
    expect(r.sha256).toBe(sha256(rackFiles['grub/grub.cfg-default-amd64']));
    expect(r.options).toEqual({ blksize: '1024', windowsize: '4', tsize: '7000' });
  });

  it('serves its own file of a forwarded name without asking the rack', async () => {
    expect((await get('pxelinux.cfg/local')).sha256).toBe(sha256(ourFiles['pxelinux.cfg/local']));
  });

  it('relays the rack’s "file not found" as ERROR 1 and frees the slot', async () => {
    expect(await errorOf('pxelinux.cfg/01-aa-bb-cc-dd-ee-ff')).toBe(1);
    await until(() => ours.server.activeTransfers === 0);
    expect(ours.ends.at(-1)).toMatchObject({ result: 'not_found', file: 'pxelinux.cfg/01-aa-bb-cc-dd-ee-ff' });
  });

  it('never forwards a name outside the per-machine set, though the rack has it', async () => {
    expect(await errorOf('other.cfg')).toBe(1);
    expect(await errorOf('secret')).toBe(1);
    // One level only under pxelinux.cfg/, and grub.cfg's own names only.
    expect(await errorOf('pxelinux.cfg/x/../../secret')).toBe(2);
    expect(await errorOf('grub/grub.cfgsecret')).toBe(1);
  });

  it('refuses traversal before anything is forwarded', async () => {
    for (const name of ['pxelinux.cfg/../secret', 'pxelinux.cfg\\..\\secret', '/grub/../secret', 'grub/grub.cfg-x/../../secret']) {
      expect(await errorOf(name)).toBe(2);
    }
  });

  it('refuses a rack file over the relay cap with ERROR 0 and frees the slot', async () => {
    expect(await errorOf('pxelinux.cfg/big')).toBe(0);
    await until(() => ours.server.activeTransfers === 0);
    expect(ours.ends.at(-1)).toMatchObject({ result: 'error', file: 'pxelinux.cfg/big' });
  });

  it('answers ERROR 0 when the rack is down, within our own timeout and retries, holding one slot meanwhile', async () => {
    // A "rack" that takes requests and never answers (no ICMP either): the worst case.
    const dead = createSocket('udp4');
    let asked = 0;
    dead.on('message', () => asked++);
    await new Promise<void>((r) => dead.bind({ address: '127.0.0.1', port: 0 }, r));
    cleanups.push(() => new Promise<void>((r) => dead.close(() => r())));
    const lonely = await startOurs(dead.address().port);

    const answer = errorOf('pxelinux.cfg/default', lonely.port);
    await until(() => asked === 1);
    expect(lonely.server.activeTransfers).toBe(1);
    expect(await answer).toBe(0);
    expect(lonely.ends.at(-1)).toMatchObject({ result: 'error', file: 'pxelinux.cfg/default' });
    expect(lonely.server.activeTransfers).toBe(0);
    // Our request and our own retries, no more.
    expect(asked).toBe(RETRIES + 1);
  });

  it('takes no answer from any address but the rack’s', async () => {
    // A "rack" that stays silent, and an impostor on another address that answers for it.
    const dead = createSocket('udp4');
    const impostor = createSocket('udp4');
    await new Promise<void>((r) => dead.bind({ address: '127.0.0.1', port: 0 }, r));
    await new Promise<void>((r) => impostor.bind({ address: '127.0.0.2', port: 0 }, r));
    cleanups.push(() => new Promise<void>((r) => dead.close(() => r())));
    cleanups.push(() => new Promise<void>((r) => impostor.close(() => r())));
    dead.on('message', (_msg, rinfo) => impostor.send(encodeData(1, Buffer.from('DEFAULT evil\n')), rinfo.port, rinfo.address));
    const lonely = await startOurs(dead.address().port);
    expect(await errorOf('pxelinux.cfg/default', lonely.port)).toBe(0);
  });

  it('stops asking the rack when the waiting request is evicted for a new client', async () => {
    const dead = createSocket('udp4');
    let asked = 0;
    dead.on('message', () => asked++);
    await new Promise<void>((r) => dead.bind({ address: '127.0.0.1', port: 0 }, r));
    cleanups.push(() => new Promise<void>((r) => dead.close(() => r())));
    const full = await startOurs(dead.address().port, { maxTransfers: 1 });

    void errorOf('pxelinux.cfg/default', full.port);
    await until(() => asked === 1);
    // The server is full with a request nobody has acknowledged: a new client takes its slot.
    expect((await get('bootx64.efi', full.port)).sha256).toBe(sha256(ourFiles['bootx64.efi']));
    await until(() => full.ends.length === 2);
    expect(full.ends.map((e) => e.result)).toEqual(['evicted', 'ok']);
    await new Promise((r) => setTimeout(r, TIMEOUT * (RETRIES + 1)));
    expect(asked).toBe(1);
  });
});

describe('boot.forward in the daemon', () => {
  it('relays from the address in its configuration, and only per-machine names', async () => {
    const env = await makeEnv();
    cleanups.push(() => env.close());
    const daemon = await startDaemon({
      config: env.config([{}], { schedule: { onStart: false, interval: '1h', jitter: '0s' }, boot: { forward: `127.0.0.1:${rackPort}` } }),
      logger: silentLogger(),
      httpListen: [{ host: '127.0.0.1', port: 0 }],
      tftpListen: [{ host: '127.0.0.1', port: 0 }],
      drainMs: 200,
    });
    cleanups.push(() => daemon.stop());
    const port = daemon.tftpAddresses[0]!.port;
    const out = await tmpOut();
    cleanups.push(out.cleanup);
    await run('tftp', ['127.0.0.1', String(port), '-m', 'binary', '-c', 'get', 'pxelinux.cfg/default', join(out.dir, 'default')]);
    expect(await readFile(join(out.dir, 'default'))).toEqual(rackFiles['pxelinux.cfg/default']);
    expect(await errorOf('other.cfg', port)).toBe(1);
  });
});
