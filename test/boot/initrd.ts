import { readFile, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';

/**
 * A busybox initramfs (cpio "newc", gzipped) whose /init prints `marker` on
 * the console and powers the machine off. Written here rather than with
 * cpio(1) so /dev/console can be a device node without mknod rights.
 */
export async function writeInitrd(file: string, busybox: string, marker: string): Promise<void> {
  const init = `#!/bin/sh\n/bin/busybox echo "${marker}"\n/bin/busybox poweroff -f\n`;
  const entries: CpioEntry[] = [
    { name: 'bin', mode: 0o040755 },
    { name: 'dev', mode: 0o040755 },
    { name: 'proc', mode: 0o040755 },
    { name: 'bin/busybox', mode: 0o100755, data: await readFile(busybox) },
    { name: 'bin/sh', mode: 0o120777, data: Buffer.from('busybox') },
    { name: 'dev/console', mode: 0o020600, rdev: [5, 1] },
    { name: 'init', mode: 0o100755, data: Buffer.from(init) },
  ];
  await writeFile(file, gzipSync(cpioNewc(entries)));
}

interface CpioEntry {
  readonly name: string;
  readonly mode: number;
  readonly data?: Buffer;
  readonly rdev?: readonly [number, number];
}

export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((e, i) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const fields = [i + 1, e.mode, 0, 0, e.mode & 0o040000 ? 2 : 1, 0, data.length, 0, 0, e.rdev?.[0] ?? 0, e.rdev?.[1] ?? 0, name.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii');
    parts.push(header, name, pad(header.length + name.length), data, pad(data.length));
  });
  return Buffer.concat(parts);
}
