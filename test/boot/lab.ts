import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, closeSync } from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../../src/config/load.js';

const run = promisify(execFile);

/**
 * A boot lab: a network namespace with a bridge and tap devices (nothing
 * routed out), processes started inside it, and qemu machines on the taps.
 * Everything it makes is listed and removed by close(), also after a failure.
 */

/** Debian files the firmware suite boots with, and the packages that hold them. */
export const FILES = {
  lpxelinux: '/usr/lib/PXELINUX/lpxelinux.0',
  syslinuxModules: '/usr/lib/syslinux/modules/bios',
  shim: '/usr/lib/shim/shimx64.efi.signed',
  grub: '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed',
  ovmfCode: '/usr/share/OVMF/OVMF_CODE.fd',
  ovmfVars: '/usr/share/OVMF/OVMF_VARS.fd',
  ipxeRom: '/usr/lib/ipxe/qemu/efi-virtio.rom',
  busybox: '/bin/busybox',
  qemu: '/usr/bin/qemu-system-x86_64',
  dnsmasq: '/usr/sbin/dnsmasq',
} as const;

export const APT_HINT =
  'apt-get install qemu-system-x86 ipxe-qemu ovmf dnsmasq-base busybox-static pxelinux syslinux-common shim-signed grub-efi-amd64-signed, and put a kernel at .cache/boot/vmlinuz (.ci/run does both)';

/** The kernel: MAAS_MIRROR_TEST_KERNEL, else what .ci/run unpacks from Debian's linux-image-amd64. */
export const KERNEL = process.env.MAAS_MIRROR_TEST_KERNEL ?? join(PROJECT_ROOT, '.cache', 'boot', 'vmlinuz');

/** Throws, naming every missing piece and how to install it: the suite must not pass by skipping. */
export function requireTools(): { kvm: boolean } {
  const missing = [...Object.values(FILES), KERNEL].filter((f) => !existsSync(f));
  if (process.getuid?.() !== 0) missing.push('root (network namespaces and tap devices)');
  if (missing.length > 0) throw new Error(`the firmware boot suite needs ${missing.join(', ')}: ${APT_HINT}`);
  let kvm = false;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    closeSync(openSync('/dev/kvm', 'r+'));
    kvm = true;
  } catch {
    kvm = false;
  }
  return { kvm };
}

export interface BootOptions {
  readonly name: string;
  readonly tap: string;
  readonly mac: string;
  readonly uefi: boolean;
  readonly kvm: boolean;
  readonly marker: string;
  readonly timeoutMs: number;
  /** Stops waiting early when it turns true. */
  readonly until?: () => Promise<boolean>;
}

export class Lab {
  readonly ns: string;
  readonly subnet: string;
  readonly address: string;
  private readonly children = new Set<ChildProcess>();
  private created = false;

  constructor(readonly dir: string, index = 0) {
    this.ns = `mmboot-${process.pid}-${index}`;
    this.subnet = `10.${200 + (process.pid % 50)}.${index}`;
    this.address = `${this.subnet}.1`;
  }

  async ip(...args: string[]): Promise<void> {
    await run('ip', args);
  }

  /** The namespace, its loopback and a bridge holding `taps` tap devices. */
  async create(taps: number): Promise<string[]> {
    await this.ip('netns', 'add', this.ns);
    this.created = true;
    await this.ip('-n', this.ns, 'link', 'set', 'lo', 'up');
    await this.ip('-n', this.ns, 'link', 'add', 'br0', 'type', 'bridge');
    await this.ip('-n', this.ns, 'addr', 'add', `${this.address}/24`, 'dev', 'br0');
    await this.ip('-n', this.ns, 'link', 'set', 'br0', 'up');
    const names: string[] = [];
    for (let i = 0; i < taps; i++) {
      const tap = `tap${i}`;
      await this.ip('-n', this.ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
      await this.ip('-n', this.ns, 'link', 'set', tap, 'master', 'br0', 'up');
      names.push(tap);
    }
    return names;
  }

  /** Starts a command inside the namespace; its output goes to `log`. `ip netns exec` execs, so the pid is the command's. */
  spawn(command: string, args: readonly string[], log: string, env?: NodeJS.ProcessEnv): ChildProcess {
    const out = openSync(log, 'a');
    const child = spawn('ip', ['netns', 'exec', this.ns, command, ...args], { stdio: ['ignore', out, out], env });
    closeSync(out);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** DHCP only (port=0): BIOS gets lpxelinux.0, UEFI x64 (arch 7 or 9) bootx64.efi, both from this.address. */
  startDhcp(): ChildProcess {
    return this.spawn(
      FILES.dnsmasq,
      [
        '--keep-in-foreground',
        '--port=0',
        '--conf-file=/dev/null',
        '--interface=br0',
        '--bind-interfaces',
        `--dhcp-range=${this.subnet}.100,${this.subnet}.200,1h`,
        `--dhcp-leasefile=${join(this.dir, 'leases')}`,
        `--pid-file=${join(this.dir, 'dnsmasq.pid')}`,
        '--dhcp-match=set:efi64,option:client-arch,7',
        '--dhcp-match=set:efi64,option:client-arch,9',
        `--dhcp-boot=tag:efi64,bootx64.efi,,${this.address}`,
        `--dhcp-boot=tag:!efi64,lpxelinux.0,,${this.address}`,
        '--log-dhcp',
        '--log-facility=-',
      ],
      join(this.dir, 'dnsmasq.log'),
    );
  }

  /**
   * Boots one machine from the network on `tap` and waits for `marker` on its
   * serial console, or for qemu to exit, or for `timeoutMs`.
   */
  async boot(opts: BootOptions): Promise<{ reached: boolean; serial: string }> {
    const serial = join(this.dir, `${opts.name}.serial`);
    const args = [
      // Not -cpu host: nested KVM refuses some of the host's MSRs.
      ...(opts.kvm ? ['-enable-kvm'] : ['-accel', 'tcg']),
      '-m', '384', '-display', 'none', '-no-reboot', '-monitor', 'none',
      '-serial', `file:${serial}`,
      '-netdev', `tap,id=n0,ifname=${opts.tap},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=n0,mac=${opts.mac}`,
      '-boot', 'n',
    ];
    if (opts.uefi) {
      const vars = join(this.dir, `${opts.name}.vars.fd`);
      await copyFile(FILES.ovmfVars, vars);
      args.push('-drive', `if=pflash,format=raw,readonly=on,file=${FILES.ovmfCode}`, '-drive', `if=pflash,format=raw,file=${vars}`);
    }
    const vm = this.spawn(FILES.qemu, args, join(this.dir, `${opts.name}.qemu.log`));
    const exited = new Promise<void>((resolve) => vm.once('exit', () => resolve()));
    const deadline = Date.now() + opts.timeoutMs;
    let text = '';
    for (;;) {
      text = await readFile(serial, 'latin1').catch(() => '');
      if (text.includes(opts.marker) || (await opts.until?.())) break;
      const done = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 250))]);
      if (done || Date.now() > deadline) {
        text = await readFile(serial, 'latin1').catch(() => '');
        break;
      }
    }
    vm.kill('SIGKILL');
    await exited;
    const qemuLog = await readFile(join(this.dir, `${opts.name}.qemu.log`), 'utf8').catch(() => '');
    return { reached: text.includes(opts.marker), serial: `${text}${qemuLog ? `\n[qemu] ${qemuLog}` : ''}` };
  }

  /**
   * Whether firmware runs under KVM here. Nested KVM can accept qemu and
   * still not run SeaBIOS's option ROMs or OVMF (an emulation failure, or
   * iPXE never sending): a BIOS machine must ask for DHCP within a few seconds.
   */
  async firmwareRunsUnderKvm(tap: string): Promise<boolean> {
    const mac = '52:54:00:4d:4d:ff';
    const log = join(this.dir, 'dnsmasq.log');
    const asked = async () => (await readFile(log, 'utf8').catch(() => '')).includes(mac);
    await this.boot({ name: 'kvm-probe', tap, mac, uefi: false, kvm: true, marker: '\u0000never', timeoutMs: 10_000, until: asked });
    return asked();
  }

  /** Ends every process started here, then deletes the namespace (and with it the bridge and taps). */
  async close(): Promise<void> {
    const waits = [...this.children].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 3000).unref();
        }),
    );
    await Promise.all(waits);
    if (this.created) {
      await this.ip('netns', 'del', this.ns);
      this.created = false;
    }
  }
}
