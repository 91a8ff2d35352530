import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';

/** Headless Chromium with a throw-away profile, removed when the test ends; resolves with stdout. */
export async function chromium(args: string[], windowSize = '412,915'): Promise<string> {
  const profile = await mkdtemp(join(tmpdir(), 'mm-chromium-'));
  onTestFinished(() => rm(profile, { recursive: true, force: true }));
  return new Promise((resolve, reject) => {
    execFile(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        `--user-data-dir=${profile}`,
        `--window-size=${windowSize}`,
        ...args,
      ],
      { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`chromium failed: ${err.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

/** The DOM as Chromium built it, after its scripts ran. */
export function chromiumDom(url: string, extra: string[] = []): Promise<string> {
  return chromium(['--dump-dom', ...extra, url]);
}

export function decodeEntities(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&nbsp;/g, '\u00a0')
    .replace(/&amp;/g, '&');
}

/** What a person copies out of the first <pre> of <section id="…">: its text, as the browser shows it. */
export function preText(dom: string, section: string): string {
  const m = new RegExp(`<section id="${section}"[\\s\\S]*?<pre[^>]*>([\\s\\S]*?)</pre>`).exec(dom);
  if (!m) throw new Error(`no <pre> in <section id="${section}">`);
  return decodeEntities(m[1]!.replace(/<[^>]+>/g, ''));
}
