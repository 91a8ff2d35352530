// The bootloader table, written from MAAS's boot methods
// (provisioningserver/boot/{pxe,uefi_amd64,uefi_arm64,open_firmware_ppc64el,powernv}.py
// and maascommon/bootmethods.py): which files a method puts at the TFTP/HTTP
// root, and from which unpacked bootloaders/<type>/<arch>/ folder.

export interface BootMethodRow {
  /** MAAS boot method names this row stands for. */
  readonly methods: readonly string[];
  /** The `bootloader-type` of the bootloader product, i.e. the folder. */
  readonly bootloaderType: string;
  /** Folders to look in, first found wins. */
  readonly arches: readonly string[];
  /** Names served at the root. */
  readonly files: readonly string[];
}

export const BOOT_METHODS: readonly BootMethodRow[] = [
  {
    methods: ['pxe'],
    bootloaderType: 'pxe',
    // MAAS lists i386 and amd64; the amd64 product is the one still updated.
    arches: ['amd64', 'i386'],
    files: ['lpxelinux.0', 'chain.c32', 'ifcpu64.c32', 'ldlinux.c32', 'libcom32.c32', 'libutil.c32'],
  },
  {
    methods: ['uefi_amd64_tftp', 'uefi_amd64_http', 'uefi_ebc_tftp'],
    bootloaderType: 'uefi',
    arches: ['amd64'],
    files: ['bootx64.efi', 'grubx64.efi'],
  },
  {
    methods: ['uefi_arm64_tftp', 'uefi_arm64_http'],
    bootloaderType: 'uefi',
    arches: ['arm64'],
    files: ['bootaa64.efi', 'grubaa64.efi'],
  },
  {
    methods: ['open-firmware_ppc64el'],
    bootloaderType: 'open-firmware',
    arches: ['ppc64el', 'ppc64'],
    files: ['bootppc64.bin'],
  },
];

/** MAAS links pxelinux.0 to lpxelinux.0 for external DHCP servers that still name the old file. */
export const BOOT_ALIASES: Readonly<Record<string, string>> = { 'pxelinux.0': 'lpxelinux.0' };

/** The syslinux modules beyond MAAS's list: MAAS exposes the whole pxe folder for custom configs. */
const SYSLINUX_MODULE_RE = /^[a-z0-9_+-]{1,64}\.c32$/;

export interface BootloaderCandidate {
  readonly bootloaderType: string;
  readonly arch: string;
  readonly file: string;
}

const bareNames = new Map<string, BootMethodRow>();
for (const row of BOOT_METHODS) for (const f of row.files) bareNames.set(f, row);
const pxeRow = BOOT_METHODS.find((r) => r.bootloaderType === 'pxe')!;

/** Where a bare bootloader name can come from, in preference order; [] if it is not one. */
export function bootloaderCandidates(name: string): BootloaderCandidate[] {
  const lower = name.toLowerCase();
  const file = BOOT_ALIASES[lower] ?? lower;
  const row = bareNames.get(file) ?? (SYSLINUX_MODULE_RE.test(file) ? pxeRow : undefined);
  if (!row) return [];
  return row.arches.map((arch) => ({ bootloaderType: row.bootloaderType, arch, file }));
}
