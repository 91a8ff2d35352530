import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { benchFront } from './front.js';
import { benchHttp } from './http.js';
import { benchHttpWorkers } from './http-workers.js';
import { LAN_MODEL_LIMITS, benchLan } from './lan.js';
import { machine, removeCompiled, table, type BenchRow } from './lib.js';
import { benchScale } from './scale.js';
import { benchSync } from './sync.js';
import { benchTftp } from './tftp.js';
import { benchWan } from './wan.js';

/**
 * `npm run bench`: every benchmark against its baseline measured in the same
 * run (curl + sha256sum and dd for sync, nginx for HTTP, tftpd-hpa for TFTP),
 * and how cost grows with the stream. Writes BENCHMARKS.md.
 * `npm run bench -- sync http` runs only those groups; the other groups' rows
 * and notes of the last BENCHMARKS.md stay as they were.
 */
const log = (l: string) => process.stderr.write(`${l}\n`);
const groups: Record<string, () => Promise<BenchRow[]>> = {
  sync: () => benchSync({ log }),
  http: async () => [...(await benchHttp({ log })), ...(await benchHttpWorkers({ log }))],
  front: () => benchFront({ log }),
  tftp: () => benchTftp({ log }),
  lan: () => benchLan({ log }),
  scale: () => benchScale(undefined, log),
  wan: () => benchWan({ log }),
};
const BASELINES: Record<string, string> = { http: 'nginx', front: 'nginx', tftp: 'tftpd-hpa', lan: 'tftpd-hpa' };
const wanted = process.argv.slice(2).filter((a) => a in groups);
const rows: BenchRow[] = [];
const started = new Date();
for (const name of wanted.length > 0 ? wanted : Object.keys(groups)) {
  log(`== ${name}`);
  // The group before may leave gigabytes of dirty pages; their writeback would land in this group's figures.
  execFileSync('sync');
  await new Promise((r) => setTimeout(r, 2000));
  try {
    for (const r of await groups[name]!()) rows.push({ ...r, baselineName: r.baselineName ?? (r.baseline !== undefined ? BASELINES[name] : undefined) });
  } catch (err) {
    log(`${name} failed: ${(err as Error).stack ?? String(err)}`);
    rows.push({ group: name, name: 'benchmark failed', value: Number.NaN, unit: '', note: (err as Error).message });
  }
}
const file = join(import.meta.dirname, '..', 'BENCHMARKS.md');
const ran = new Set(rows.map((r) => r.group));
// Rows and notes of groups not run this time, kept from the last file (the group is their first cell / first word).
const previous = (await readFile(file, 'utf8').catch(() => '')).split('\n');
const keptRows = previous.filter((l) => /^\| (?!group \|)(?!---)\S+ \|/.test(l) && !ran.has(l.split('|')[1]!.trim()));
const keptNotes = previous.filter((l) => /^- \S+ \/ /.test(l) && !ran.has(l.slice(2).split(' / ')[0]!));
const md = `# Benchmarks

Measured by \`npm run bench\` on ${started.toISOString().slice(0, 10)}${keptRows.length > 0 ? ` (groups ${[...ran].join(', ')}; the other rows are from an earlier run)` : ''}: ${machine()}.
Every ratio compares against a baseline measured in the same run on the same machine; the machine is
shared, so figures vary between runs by tens of percent. The tables below are the last run's.

${table(rows)}${keptRows.map((l) => l + '\n').join('')}
Notes:
${[
  ...rows.filter((r) => r.note).map((r) => `- ${r.group} / ${r.name}: ${r.note}`),
  ...keptNotes,
].join('\n')}
${rows.some((r) => r.group === 'lan') || keptRows.some((l) => l.startsWith('| lan |')) ? `\n${LAN_MODEL_LIMITS}\n` : ''}`;
await removeCompiled();
await writeFile(file, md);
process.stdout.write(table(rows));
