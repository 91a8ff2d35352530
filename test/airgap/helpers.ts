import { execFile, spawn } from 'node:child_process';
import { readFile, realpath, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseIndex, parseProducts } from '../../src/simplestreams/parse.js';
import { validateForMaas } from '../../src/simplestreams/maas-rules.js';
import type { ProductsDocument } from '../../src/simplestreams/types.js';
import { walk } from '../helpers/tree.js';

export const run = promisify(execFile);
const BIN = join(import.meta.dirname, '../../bin/maas-mirror.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The CLI as an operator runs it, from the sources. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, prefix: string[] = []): Promise<CliResult> {
  const cmd = [...prefix, process.execPath, BIN, ...args];
  return new Promise((resolve) => {
    const p = spawn(cmd[0]!, cmd.slice(1), {
      env: { ...process.env, MAAS_MIRROR_FROM_SOURCE: '1', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A configuration file (JSON is YAML) with one source. */
export async function writeConfig(file: string, dataDir: string, source: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  await writeFile(
    file,
    JSON.stringify({ dataDir, sources: [source], download: { retries: 1, connectTimeout: '2s', idleTimeout: '2s' }, ...extra }),
  );
  return file;
}

// What FAT and exFAT refuse in a name: C0 controls, DEL, "*:<>?\| ; and a trailing dot or space.
// eslint-disable-next-line no-control-regex
const FAT_REFUSED = /[\u0000-\u001f\u007f"*:<>?\\|]|[. ]$/;

/** Every file and folder name under `dir` that FAT/exFAT would refuse. */
export async function fatUnsafeNames(dir: string): Promise<string[]> {
  const bad: string[] = [];
  for (const file of await walk(dir)) {
    for (const seg of relative(dir, file).split('/')) if (FAT_REFUSED.test(seg)) bad.push(relative(dir, file));
  }
  return bad;
}

/**
 * Checks a published tree as MAAS and gpgv would: every .sjson and
 * .json.gpg verifies with `keyring`, and the index and products pass the
 * MAAS rules. Returns product id → version keys.
 */
export async function checkTree(root: string, keyring: string): Promise<Record<string, string[]>> {
  const dir = await realpath(root);
  const files = await walk(join(dir, 'streams'));
  const signed = files.filter((f) => f.endsWith('.sjson'));
  if (signed.length === 0) throw new Error(`no .sjson under ${dir}`);
  for (const f of signed) await run('gpgv', ['--keyring', keyring, f]);
  for (const f of files.filter((x) => x.endsWith('.json.gpg'))) await run('gpgv', ['--keyring', keyring, f, f.replace(/\.gpg$/, '')]);
  const index = parseIndex(await readFile(join(dir, 'streams/v1/index.json'), 'utf8'), 'index.json');
  const products = new Map<string, ProductsDocument>();
  for (const e of Object.values(index.index)) products.set(e.path, parseProducts(await readFile(join(dir, e.path), 'utf8'), e.path));
  const problems = validateForMaas(index, products);
  if (problems.length > 0) throw new Error(`MAAS would reject ${dir}: ${JSON.stringify(problems.slice(0, 3))}`);
  const versions: Record<string, string[]> = {};
  for (const doc of products.values()) for (const [pid, p] of Object.entries(doc.products)) versions[pid] = Object.keys(p.versions).sort();
  return versions;
}

/** Runs a command as root without the capabilities that bypass file permissions: mode 000 then means unreadable. */
export const WITHOUT_DAC_OVERRIDE =
  process.getuid?.() === 0
    ? ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search']
    : [];
