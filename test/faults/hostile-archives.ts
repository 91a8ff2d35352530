import { execFileSync, spawn } from 'node:child_process';
import { Header } from 'tar';

/**
 * Hostile bootloader archives, made at test time with the system xz (never
 * committed): small on disk, huge or endless once unpacked.
 */

const MiB = 1024 * 1024;

function header(path: string, size: number, type: 'File' | 'Directory' = 'File'): Buffer {
  const block = Buffer.alloc(512);
  new Header({ path, type, size, mode: 0o644, mtime: new Date('2025-01-01T00:00:00Z'), uid: 0, gid: 0 }).encode(block, 0);
  return block;
}

function xz(input: Buffer): Buffer {
  return execFileSync('xz', ['-0', '-T1', '-c'], { input, maxBuffer: 64 * MiB });
}

/** xz of `n` zero bytes, compressed from a stream (no buffer of that size in this process). */
function xzZeros(n: number): Buffer {
  return execFileSync('sh', ['-c', `head -c ${n} /dev/zero | xz -0 -T1 -c`], { maxBuffer: 64 * MiB });
}

/**
 * One entry `name` of `size` zero bytes (4 GiB by default). xz decoders read
 * concatenated streams as one, so the zeros are one 64 MiB stream repeated:
 * about 650 KB on disk for 4 GiB.
 */
export function zeroBomb(size = 4 * 1024 * MiB, name = 'bootx64.efi'): Buffer {
  const chunk = 64 * MiB;
  if (size % chunk !== 0) throw new Error('zeroBomb: size must be a multiple of 64 MiB');
  const zeros = xzZeros(chunk);
  // The zeros after the body double as the end-of-archive blocks.
  return Buffer.concat([xz(header(name, size)), ...Array.from({ length: size / chunk }, () => zeros), xz(Buffer.alloc(1024))]);
}

/** `count` empty files (e000000, e000001, …), made in batches through one xz. */
export async function manyEmptyEntries(count: number): Promise<Buffer> {
  const child = spawn('xz', ['-0', '-T1', '-c'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const out: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  const closed = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`xz exited ${code}`))));
  });
  const batch = 2000;
  for (let i = 0; i < count; i += batch) {
    const blocks: Buffer[] = [];
    for (let j = i; j < Math.min(count, i + batch); j++) blocks.push(header(`e${String(j).padStart(6, '0')}`, 0));
    if (!child.stdin.write(Buffer.concat(blocks))) await new Promise((r) => child.stdin.once('drain', r));
  }
  child.stdin.end(Buffer.alloc(1024));
  await closed;
  return Buffer.concat(out);
}

/** A genuine small file, then `size` zero bytes under a name that is refused (so nothing big is written). */
export function slowArchive(size = 192 * MiB): Buffer {
  const chunk = 64 * MiB;
  const zeros = xzZeros(chunk);
  return Buffer.concat([
    xz(Buffer.concat([header('bootx64.efi', 4), Buffer.from('SLOW'), Buffer.alloc(508), header('/abs/skipped.bin', size)])),
    ...Array.from({ length: size / chunk }, () => zeros),
    xz(Buffer.alloc(1024)),
  ]);
}

/** A genuine small tar, then `size` zero bytes after its end that no header declares (4 GiB by default). */
export function trailingZerosBomb(size = 4 * 1024 * MiB): Buffer {
  const chunk = 64 * MiB;
  const zeros = xzZeros(chunk);
  return Buffer.concat([xz(Buffer.concat([header('bootx64.efi', 4), Buffer.from('TAIL'), Buffer.alloc(508)])), ...Array.from({ length: size / chunk }, () => zeros)]);
}
