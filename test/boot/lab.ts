import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, closeSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
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
  /**
   * Watches for a firmware that stopped taking packets (see `lostNic`) and stops
   * waiting when it has, with the evidence as `lostNic` in the result.
   */
  readonly watchNic?: { readonly port: number; readonly silentMs: number };
}

export interface BootResult {
  readonly reached: boolean;
  readonly serial: string;
  /** When the marker was not reached and the machine still ran: what it was doing. */
  readonly stuck: string;
  /** Set when `watchNic` found the firmware no longer taking packets: the evidence. */
  readonly lostNic?: string;
}

/** How often a running machine is checked for a lost NIC, once it has had time to boot that far. */
const NIC_CHECK_EVERY_MS = 10_000;

/**
 * From `ss -tinoH` output: the first connection whose retransmission or window-probe timer runs
 * while nothing has been acknowledged for at least `silentMs`, as "state, timer, lastack".
 */
export function unansweredConnection(ss: string, silentMs: number): string | undefined {
  // Each connection is a line of addresses and timer, then an indented line of TCP info.
  const lines = ss.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const head = lines[i]!;
    const info = lines[i + 1]?.startsWith('\t') || lines[i + 1]?.startsWith(' ') ? lines[i + 1]! : '';
    const timer = /timer:\((on|persist),([^,)]*)/.exec(head);
    const lastack = /lastack:(\d+)/.exec(info);
    if (!timer || !lastack || Number(lastack[1]) < silentMs) continue;
    const backoff = /backoff:(\d+)/.exec(info)?.[1] ?? '0';
    const acked = /bytes_acked:(\d+)/.exec(info)?.[1] ?? '?';
    return `${head.trim().split(/\s+/)[0]} ${timer[1] === 'on' ? 'retransmitting' : 'probing a zero window'} (backoff ${backoff}), ${acked} bytes acknowledged, the last ${Math.round(Number(lastack[1]) / 1000)} s ago`;
  }
  return undefined;
}

/** The instruction pointer, flags and halt state from `info registers`: enough to tell a hung guest from a busy one. */
function cpuLine(registers: string): string {
  const pick = (re: RegExp) => re.exec(registers)?.[1] ?? '?';
  const eflags = Number.parseInt(pick(/EFL=([0-9a-f]+)/), 16);
  const interrupts = Number.isNaN(eflags) ? '?' : (eflags & 0x200) !== 0 ? 'on' : 'off';
  return `IP=${pick(/[ER]IP=([0-9a-f]+)/)} CS=${pick(/CS =([0-9a-f]+)/)} HLT=${pick(/HLT=(\d)/)} interrupts ${interrupts} EFL=${pick(/EFL=([0-9a-f]+)/)}`;
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
        // dnsmasq pings an address before offering it and waits for no answer, one address at a time: with
        // ten machines asking at once the offers came 18 s late, after iPXE had given up (15 s). Nothing else
        // can hold an address on this bridge.
        '--no-ping',
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
  async boot(opts: BootOptions): Promise<BootResult> {
    const serial = join(this.dir, `${opts.name}.serial`);
    const args = [
      // Not -cpu host: nested KVM refuses some of the host's MSRs.
      ...(opts.kvm ? ['-enable-kvm'] : ['-accel', 'tcg']),
      '-m', '384', '-display', 'none', '-no-reboot',
      '-monitor', `unix:${this.monitorPath(opts.name)},server=on,wait=off`,
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
    let enough = false;
    let lostNic: string | undefined;
    let nextNicCheck = Date.now() + (opts.watchNic?.silentMs ?? 0);
    for (;;) {
      text = await readFile(serial, 'latin1').catch(() => '');
      enough = (await opts.until?.()) ?? false;
      if (opts.watchNic && !text.includes(opts.marker) && Date.now() >= nextNicCheck) {
        nextNicCheck = Date.now() + NIC_CHECK_EVERY_MS;
        lostNic = await this.lostNic(opts, opts.watchNic.port, opts.watchNic.silentMs);
      }
      if (text.includes(opts.marker) || enough || lostNic) break;
      const done = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 250))]);
      if (done || Date.now() > deadline) {
        text = await readFile(serial, 'latin1').catch(() => '');
        break;
      }
    }
    const reached = text.includes(opts.marker);
    const stuck = !reached && !enough && !lostNic && vm.exitCode === null && vm.signalCode === null ? await this.diagnose(opts) : '';
    vm.kill('SIGKILL');
    await exited;
    // Switched off: its connections go too, as they would once TCP gave up, so that the same machine
    // booting again (same address, same first client port) is not taken for the old connection.
    if (lostNic) await this.dropConnections(opts.mac);
    const qemuLog = await readFile(join(this.dir, `${opts.name}.qemu.log`), 'utf8').catch(() => '');
    return { reached, serial: `${text}${qemuLog ? `\n[qemu] ${qemuLog}` : ''}`, stuck, ...(lostNic ? { lostNic } : {}) };
  }

  /**
   * Whether the firmware has stopped taking packets from its NIC, shown from both ends at once:
   * the guest CPU sits halted with interrupts enabled, waiting for an interrupt, at the same place a
   * second apart; and a connection from the server's `port` to it has data the server keeps
   * retransmitting (or a zero window it keeps probing) with nothing acknowledged for `silentMs`. A
   * TCP stack that still runs answers a retransmission or a probe within a round trip; one that is
   * merely slow answers late, not never. Returns the evidence, or undefined.
   */
  async lostNic(opts: BootOptions, port: number, silentMs: number): Promise<string | undefined> {
    const ip = await this.leasedAddress(opts.mac);
    if (!ip) return undefined;
    const sockets = await run('ip', ['netns', 'exec', this.ns, 'ss', '-tinoH', 'state', 'connected', 'sport', '=', `:${port}`, 'dst', ip]).then((r) => r.stdout, () => '');
    const silent = unansweredConnection(sockets, silentMs);
    if (!silent) return undefined;
    const [first, second] = (await this.registersTwice(opts.name)).map(cpuLine) as [string, string];
    if (first !== second || !/HLT=1 interrupts on/.test(first)) return undefined;
    return `guest idle waiting for an interrupt (${first}) while the server's connection to ${ip} went unacknowledged: ${silent}`;
  }

  private async dropConnections(mac: string): Promise<void> {
    const ip = await this.leasedAddress(mac);
    if (ip) await run('ip', ['netns', 'exec', this.ns, 'ss', '-K', 'dst', ip]).catch(() => undefined);
  }

  private monitorPath(name: string): string {
    return join(this.dir, `${name}.monitor`);
  }

  /**
   * What a machine that never reached its marker was doing when time ran out: its CPU state twice,
   * a second apart (halted, interrupts off, or spinning in place), and the server side of its TCP
   * connections (bytes the server still waits to have acknowledged, retransmissions, window probes).
   */
  async diagnose(opts: BootOptions): Promise<string> {
    const [first, second] = await this.registersTwice(opts.name);
    await writeFile(join(this.dir, `${opts.name}.registers`), `${first}\n---- 1 s later ----\n${second}`);
    const ip = await this.leasedAddress(opts.mac);
    const sockets = ip ? await run('ip', ['netns', 'exec', this.ns, 'ss', '-tinoa', 'dst', ip]).then((r) => r.stdout, (e: Error) => e.message) : 'no lease';
    return `cpu (then 1 s later):\n${cpuLine(first)}\n${cpuLine(second)}\nserver sockets to ${ip ?? '?'}:\n${sockets.trim()}`;
  }

  /** `info registers` now and a second later: a guest that sits in one place shows it twice. */
  private async registersTwice(name: string): Promise<[string, string]> {
    const first = await this.monitor(name, 'info registers');
    await new Promise((r) => setTimeout(r, 1000));
    return [first, await this.monitor(name, 'info registers')];
  }

  private async leasedAddress(mac: string): Promise<string | undefined> {
    const leases = await readFile(join(this.dir, 'leases'), 'utf8').catch(() => '');
    return leases.split('\n').map((l) => l.split(' ')).find((f) => f[1] === mac)?.[2];
  }

  /** One human-monitor command; its answer (empty when the monitor does not answer within 3 s). */
  private monitor(name: string, command: string): Promise<string> {
    return new Promise((resolve) => {
      let out = '';
      const socket = createConnection(this.monitorPath(name));
      const done = () => {
        socket.destroy();
        resolve(out);
      };
      const timer = setTimeout(done, 3000);
      socket.on('error', () => {
        clearTimeout(timer);
        done();
      });
      socket.on('data', (d: Buffer) => {
        out += d.toString('latin1');
        // The prompt comes back after the answer.
        if (out.includes(command) && out.trimEnd().endsWith('(qemu)') && out.indexOf('(qemu)') !== out.lastIndexOf('(qemu)')) {
          clearTimeout(timer);
          done();
        }
      });
      socket.on('connect', () => socket.write(`${command}\n`));
    });
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
