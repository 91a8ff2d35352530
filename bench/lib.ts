import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';

/** One measured figure, with the baseline measured in the same run when there is one. */
export interface BenchRow {
  group: string;
  name: string;
  value: number;
  unit: string;
  baseline?: number;
  baselineName?: string;
  /** value / baseline (or baseline / value for lower-is-better units, see `lowerIsBetter`). */
  ratio?: number;
  target?: string;
  pass?: boolean;
  note?: string;
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  let kernel = '';
  try {
    kernel = execFileSync('uname', ['-sr']).toString().trim();
  } catch {
    kernel = process.platform;
  }
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${kernel}, Node ${process.version}`;
}

/**
 * Best (highest) of n runs of each contender, taken in turns: the machine is
 * shared, and a burst of load elsewhere then hits every contender alike.
 */
export async function bestOf(contenders: (() => Promise<number>)[], n: number): Promise<number[]> {
  const top = contenders.map(() => 0);
  for (let i = 0; i < n; i++) {
    for (const [j, run] of contenders.entries()) top[j] = Math.max(top[j] ?? 0, await run());
  }
  return top;
}

export function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function table(rows: BenchRow[]): string {
  const head = '| group | measure | value | baseline | ratio | target | ok |\n|---|---|---|---|---|---|---|\n';
  return (
    head +
    rows
      .map(
        (r) =>
          `| ${r.group} | ${r.name} | ${round(r.value)} ${r.unit} | ${r.baseline !== undefined ? `${round(r.baseline)} ${r.unit} (${r.baselineName ?? ''})` : ''} | ${r.ratio !== undefined ? round(r.ratio) : ''} | ${r.target ?? ''} | ${r.pass === undefined ? '' : r.pass ? 'yes' : 'NO'} |`,
      )
      .join('\n') +
    '\n'
  );
}

let built: Promise<string> | undefined;

/**
 * The project compiled once per bench run (what the Docker image runs), so
 * child processes measure our code's memory and not the TypeScript loader's.
 * Returns the folder holding cli/, mirror/ … as .js.
 */
export function compiled(): Promise<string> {
  built ??= (async () => {
    const { mkdir, mkdtemp } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const root = join(import.meta.dirname, '..');
    // Inside the project, so the compiled files find node_modules.
    await mkdir(join(root, 'node_modules', '.cache'), { recursive: true });
    const out = await mkdtemp(join(root, 'node_modules', '.cache', 'mm-bench-build-'));
    await promisify(execFile)(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', out], { cwd: root });
    return out;
  })();
  return built;
}

/** Removes the compiled copy made by compiled(). */
export async function removeCompiled(): Promise<void> {
  if (!built) return;
  const dir = await built.catch(() => undefined);
  built = undefined;
  if (dir) await (await import('node:fs/promises')).rm(dir, { recursive: true, force: true });
}
