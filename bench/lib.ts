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
