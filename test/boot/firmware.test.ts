import { execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/load.js';
import { UpstreamFixture, type RealFile } from '../../src/demo-upstream/upstream.js';
import { makeKey } from '../helpers/env.js';
import { writeInitrd } from './initrd.js';
import { FILES, KERNEL, Lab, requireTools } from './lab.js';

/**
 * Real firmware boots through maas-mirror: SeaBIOS + iPXE → lpxelinux.0 →
 * kernel and initrd over HTTP, and OVMF → shim → grub → kernel and initrd
 * over TFTP, with Debian's real bootloaders inside a generated bootloader
 * stream and configs rendered from boot.files templates. The mirror is the
 * real CLI (`sync`, then `serve`) inside a network namespace of its own.
 */

const run = promisify(execFile);
const BIN = join(PROJECT_ROOT, 'bin', 'maas-mirror.js');
const IMAGE = 'ubuntu/noble/amd64/ga-24.04/generic';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const MARKER = `maas-mirror-boot-ok-${process.pid}`;
/** MM_BOOT_VMS=N boots more machines at once (by hand, e.g. with MM_BOOT_PCAP, to look for a rare failure). */
const VMS = Number(process.env.MM_BOOT_VMS ?? 5);
/** Per boot; with TCG (no usable KVM) a UEFI boot alone takes 60–110 s here. */
const BOOT_TIMEOUT_MS = Number(process.env.MM_BOOT_TIMEOUT_MS ?? 200_000);
const HTTP_PORT = 8080;

/**
 * no_timer_check: under TCG on a loaded host the kernel's check that the timer ticks through
 * the IO-APIC can fail and panic ("IO-APIC + timer doesn't work"), as seen in a 25-machine storm.
 */
const PXELINUX_CFG = `DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL {{url:${IMAGE}/boot-kernel}}
  INITRD {{url:${IMAGE}/boot-initrd}}
  APPEND console=ttyS0 panic=-1 no_timer_check
`;

const GRUB_CFG = `set timeout=0
menuentry 'noble' {
  linux {{path:${IMAGE}/boot-kernel}} console=ttyS0 panic=-1 no_timer_check
  initrd {{path:${IMAGE}/boot-initrd}}
}
`;

let dir: string;
let lab: Lab | undefined;
let taps: string[] = [];
let kvm = false;
let serve: ChildProcess | undefined;

/** Which real Debian file each item of the stream carries. */
function realFiles(initrd: string): (productId: string, item: string) => RealFile | undefined {
  const bios = FILES.syslinuxModules;
  return (productId, item) => {
    if (productId === NOBLE && item === 'boot-kernel') return KERNEL;
    if (productId === NOBLE && item === 'boot-initrd') return initrd;
    if (productId.endsWith(':pxelinux:pxe:amd64') && item === 'syslinux') {
      return Object.fromEntries([['lpxelinux.0', FILES.lpxelinux], ...['ldlinux.c32', 'libcom32.c32', 'libutil.c32', 'chain.c32', 'menu.c32'].map((m) => [m, join(bios, m)])]) as Record<string, string>;
    }
    if (productId.endsWith(':grub-efi-signed:uefi:amd64') && item === 'shim-signed') return { 'bootx64.efi': FILES.shim };
    if (productId.endsWith(':grub-efi-signed:uefi:amd64') && item === 'grub2-signed') return { 'grubx64.efi': FILES.grub };
    return undefined;
  };
}

async function inNs(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('ip', ['netns', 'exec', lab!.ns, ...args], { maxBuffer: 16 * 1024 * 1024 });
}

async function waitFor<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  const until = Date.now() + 60_000;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > until) throw new Error(`${what} did not get ready within 60 s; see the logs in ${dir}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function waitReady(url: string): Promise<true> {
  return waitFor(async () => {
    if (serve?.exitCode !== null && serve?.exitCode !== undefined) throw new Error(`maas-mirror serve exited (${serve.exitCode}); see ${join(dir, 'serve.log')}`);
    return inNs(['curl', '-fsS', '-o', '/dev/null', url]).then(() => true as const, () => undefined);
  }, `maas-mirror serve at ${url}`);
}

beforeAll(async () => {
  ({ kvm } = requireTools());
  dir = await mkdtemp(join(tmpdir(), 'mm-boot-'));
  lab = new Lab(dir);
  taps = await lab.create(VMS);

  const initrd = join(dir, 'initrd.gz');
  await writeInitrd(initrd, FILES.busybox, MARKER);
  const key = await makeKey(dir);
  const upstream = await UpstreamFixture.create({ dir: join(dir, 'upstream'), key: key.privateKey, realFiles: realFiles(initrd) });
  lab.spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'upstream-serve.ts'), upstream.dir], join(dir, 'upstream.log'));
  const upstreamUrl = await waitFor(async () => /^http:\S+/m.exec(await readFile(join(dir, 'upstream.log'), 'utf8').catch(() => ''))?.[0], 'the upstream server');

  const boot = join(dir, 'boot-files');
  await mkdir(join(boot, 'pxelinux.cfg'), { recursive: true });
  await mkdir(join(boot, 'grub'), { recursive: true });
  await writeFile(join(boot, 'pxelinux.cfg', 'default.tmpl'), PXELINUX_CFG);
  await writeFile(join(boot, 'grub', 'grub.cfg.tmpl'), GRUB_CFG);
  const config = join(dir, 'maas-mirror.yaml');
  await writeFile(
    config,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      sources: [{ name: 'stable', url: upstreamUrl, keyring: key.keyring }],
      http: { listen: `${lab.address}:${HTTP_PORT}` },
      tftp: { listen: `${lab.address}:69` },
      boot: { files: boot },
      schedule: { onStart: false },
    }),
  );
  const env = { ...process.env, LOG_LEVEL: 'debug' };
  await run('ip', ['netns', 'exec', lab.ns, process.execPath, BIN, 'sync', '--quiet', '--config', config], { env, maxBuffer: 64 * 1024 * 1024 });
  serve = lab.spawn(process.execPath, [BIN, 'serve', '--config', config], join(dir, 'serve.log'), env);
  await waitReady(`http://${lab.address}:${HTTP_PORT}/readyz`);
  lab.startDhcp();
  // MM_BOOT_PCAP=FILE records the HTTP and TFTP traffic on the lab's bridge (tcpdump), to look at a failed boot.
  if (process.env.MM_BOOT_PCAP) lab.spawn('tcpdump', ['-i', 'br0', '-U', '-s', '600', '-w', process.env.MM_BOOT_PCAP, `tcp port ${HTTP_PORT} or udp`], join(dir, 'tcpdump.log'));
  kvm = kvm && (await lab.firmwareRunsUnderKvm(taps[0]!));
  process.stdout.write(`firmware boot suite: qemu with ${kvm ? 'KVM' : 'TCG (no usable KVM for firmware here)'}\n`);
}, 180_000);

afterAll(async () => {
  await lab?.close();
  // MM_BOOT_KEEP=1 keeps the logs, serial consoles and data of a run to look at.
  if (dir && !process.env.MM_BOOT_KEEP) await rm(dir, { recursive: true, force: true });
}, 60_000);

function mac(i: number): string {
  return `52:54:00:4d:4d:${(0x10 + i).toString(16)}`;
}

/**
 * lpxelinux's network stack can stop taking packets from the NIC in the middle of a download: the
 * guest then idles in `hlt` forever while our side retransmits to it (seen 1 time in 10–40 BIOS boots
 * under TCG on a loaded host; captured, the server's answers were complete every time). Real firmware
 * in that state stays there until someone power-cycles the machine, which is what MAAS operators
 * do. So a machine shown in that state — guest idle with interrupts on, and nothing of ours
 * acknowledged for NIC_SILENT_MS while we retransmit — is power-cycled once and must then boot. Any
 * other failure, or a second lost NIC, fails the test.
 */
const NIC_SILENT_MS = 30_000;
/** One in the default five; a larger storm by hand (MM_BOOT_VMS) allows one per five machines. */
const MAX_POWER_CYCLES = Math.max(1, Math.floor(VMS / 5));
const powerCycled: string[] = [];

async function boot(name: string, i: number, uefi: boolean) {
  for (let attempt = 1; ; attempt++) {
    const run = attempt === 1 ? name : `${name}-power-cycled`;
    const r = await lab!.boot({
      name: run, tap: taps[i]!, mac: mac(i), uefi, kvm, marker: MARKER, timeoutMs: BOOT_TIMEOUT_MS,
      ...(attempt === 1 ? { watchNic: { port: HTTP_PORT, silentMs: NIC_SILENT_MS } } : {}),
    });
    if (r.reached) return r;
    if (r.lostNic && attempt === 1) {
      powerCycled.push(`${name}: ${r.lostNic}`);
      process.stdout.write(`firmware boot suite: ${name} power-cycled once: ${r.lostNic}\n`);
      continue;
    }
    const log = await readFile(join(dir, 'serve.log'), 'utf8').catch(() => '');
    const why = r.lostNic ? `Its firmware stopped taking packets again after a power cycle: ${r.lostNic}` : `When time ran out: ${r.stuck}`;
    throw new Error(`${run} did not reach the marker. Serial console:\n${r.serial.slice(-3000)}\n${why}\nmaas-mirror log (end):\n${log.slice(-3000)}`);
  }
}

/**
 * Machine i boots BIOS when even, UEFI when odd (MM_BOOT_FIRMWARE=bios: all BIOS, for a by-hand run);
 * all at once, started by the first test that asks.
 */
let booting: Promise<PromiseSettledResult<Awaited<ReturnType<typeof boot>>>[]> | undefined;
function bootAll() {
  const uefi = (i: number) => i % 2 === 1 && process.env.MM_BOOT_FIRMWARE !== 'bios';
  booting ??= Promise.allSettled(Array.from({ length: VMS }, (_, i) => boot(uefi(i) ? `uefi-${i}` : `bios-${i}`, i, uefi(i))));
  return booting;
}

function failures(results: PromiseSettledResult<unknown>[], which: (i: number) => boolean): string[] {
  return results.flatMap((r, i) => (which(i) && r.status === 'rejected' ? [String(r.reason).slice(0, 4000)] : []));
}

// The machines boot concurrently (the suite's wall time is that of one boot); each test checks its part of the same run.
describe('network boot with real firmware', () => {
  it('BIOS: iPXE → lpxelinux.0 → ldlinux.c32 → pxelinux.cfg/default (rendered) → kernel and initrd over HTTP', async () => {
    expect(failures(await bootAll(), (i) => i % 2 === 0)).toEqual([]);
    const log = await readFile(join(dir, 'serve.log'), 'utf8');
    expect(log).toMatch(/"path":"\/images\/[0-9a-f]{64}\/boot-kernel","status":200/);
    expect(log).toMatch(/"file":"pxelinux.cfg\/default","bytes":\d+/);
  }, 2 * BOOT_TIMEOUT_MS + 20_000);

  it('UEFI: OVMF → shim (bootx64.efi) → grub (grubx64.efi) → grub/grub.cfg (rendered) → kernel and initrd over TFTP', async () => {
    expect(failures(await bootAll(), (i) => i % 2 === 1)).toEqual([]);
    const log = await readFile(join(dir, 'serve.log'), 'utf8');
    expect(log).toMatch(/"file":"grub\/grub.cfg","bytes":\d+/);
    expect(log).toMatch(/"file":"images\/[0-9a-f]{64}\/boot-initrd","bytes":\d+/);
  }, 2 * BOOT_TIMEOUT_MS + 20_000);

  it(`${VMS} machines booting at once all reach the marker, at most ${MAX_POWER_CYCLES} after a power cycle`, async () => {
    const results = await bootAll();
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(VMS);
    // A lost NIC now and then is the client's rare fault; more would say something of ours provokes it.
    expect(powerCycled.length, powerCycled.join('\n')).toBeLessThanOrEqual(MAX_POWER_CYCLES);
  }, 2 * BOOT_TIMEOUT_MS + 20_000);
});
