import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The house plan (README "Code layout"): data flows one way. A room may import
 * rooms of a lower rank only; rooms of one rank (http and tftp; ops and the
 * demo upstream) do not import each other. Type-only imports count too.
 */
const RANK: Readonly<Record<string, number>> = {
  errors: 0,
  log: 0,
  format: 0,
  simplestreams: 1,
  config: 2,
  store: 3,
  pgp: 4,
  mirror: 5,
  http: 6,
  tftp: 6,
  ops: 7,
  'demo-upstream': 7,
  cli: 8,
};

const SRC = join(import.meta.dirname);

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** src/<room>/… or src/<room>.ts → room. */
const roomOf = (file: string): string => relative(SRC, file).split('/')[0]!.replace(/\.[jt]s$/, '');

describe('code layout', () => {
  it('knows every room under src/', async () => {
    const rooms = new Set((await sources(SRC)).map(roomOf));
    expect([...rooms].filter((r) => !(r in RANK)), 'rooms missing from RANK (and from README "Code layout")').toEqual([]);
  });

  it('has no import from a lower room into a higher one, nor between rooms of one rank', async () => {
    const wrong: string[] = [];
    for (const file of await sources(SRC)) {
      const from = roomOf(file);
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/gm)) {
        const to = roomOf(resolve(dirname(file), m[1]!));
        if (to === from) continue;
        if (!(RANK[to]! < RANK[from]!)) wrong.push(`${relative(SRC, file)} imports ${m[1]} (${from} → ${to})`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
