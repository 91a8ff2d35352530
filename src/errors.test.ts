import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as registry from './errors.js';
import { MirrorError, REPORT_CODES } from './errors.js';

const ROOT = join(import.meta.dirname, '..');

type ErrorClass = abstract new (...args: never[]) => MirrorError;

/** The code and status a class declares, read from its own body (field initializers run only on construction). */
function declared(cls: ErrorClass): { code?: string; status?: number } {
  const text = cls.toString();
  const code = /\bcode\s*=\s*["'](MM_[A-Z0-9_]+)["']/.exec(text)?.[1];
  const status = /\bstatusCode\s*=\s*(\d{3})\b/.exec(text)?.[1];
  return { code, status: status === undefined ? undefined : Number(status) };
}

/** Every code of the registry with the HTTP status it answers with ('—': only recorded in sync reports). */
function registryCodes(): Map<string, string> {
  const codes = new Map<string, string>();
  for (const value of Object.values(registry)) {
    if (typeof value !== 'function' || !(value.prototype instanceof MirrorError)) continue;
    const cls = value as ErrorClass;
    const { code } = declared(cls);
    expect(code, `${cls.name} declares a code`).toBeDefined();
    let status: number | undefined;
    for (let c: unknown = cls; status === undefined && c !== MirrorError; c = Object.getPrototypeOf(c)) status = declared(c as ErrorClass).status;
    codes.set(code!, String(status ?? 500));
  }
  for (const code of Object.values(REPORT_CODES)) if (!codes.has(code)) codes.set(code, '—');
  return codes;
}

/** The rows of README's "Errors" table: code → HTTP status. */
async function readmeCodes(): Promise<Map<string, string>> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = /\n## Errors\n([\s\S]*?)(?=\n## )/.exec(readme)?.[1];
  expect(section, 'README has an "Errors" section').toBeDefined();
  const rows = new Map<string, string>();
  for (const m of section!.matchAll(/^\| `(MM_[A-Z0-9_]+)` \| ([^|]+?) \| ([^|]+?) \|$/gm)) {
    expect(rows.has(m[1]!), `${m[1]} is listed once`).toBe(false);
    rows.set(m[1]!, m[2]!.trim());
  }
  return rows;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(p)));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

describe('the error registry', () => {
  it('and README\'s "Errors" table list the same codes with the same HTTP status', async () => {
    const inCode = registryCodes();
    const inReadme = await readmeCodes();
    expect([...inReadme.keys()].filter((c) => !inCode.has(c)), 'codes in README but not in src/errors.ts').toEqual([]);
    expect([...inCode.keys()].filter((c) => !inReadme.has(c)), 'codes in src/errors.ts but not in README').toEqual([]);
    for (const [code, status] of inCode) expect(inReadme.get(code), `HTTP status of ${code}`).toBe(status);
  });

  it('holds every error class and code: none is defined or spelled out elsewhere in src/', async () => {
    const offenders: string[] = [];
    for (const file of await sourceFiles(join(ROOT, 'src'))) {
      if (file === join(ROOT, 'src', 'errors.ts')) continue;
      const text = await readFile(file, 'utf8');
      if (/class \w+ extends (MirrorError|Error)\b/.test(text)) offenders.push(`${file}: an error class`);
      if (/['"`]MM_[A-Z0-9_]+['"`]/.test(text)) offenders.push(`${file}: a bare MM_ code`);
    }
    expect(offenders).toEqual([]);
  });

  it('gives every error a status; an error class without one answers 500', () => {
    class Appended extends MirrorError {
      readonly code = 'MM_APPENDED';
    }
    expect(new Appended('x').statusCode).toBe(500);
    expect(new registry.NotFoundError('x').statusCode).toBe(404);
    expect(new registry.SyncRunningError('s1').toJSON()).toEqual({ code: 'MM_SYNC_RUNNING', message: expect.any(String), running: 's1' });
  });
});
