import { Router, type Request, type Response } from 'express';
import { formatBytes } from '../cli/format.js';
import type { Config, Listen } from '../config/load.js';
import type { ProductSummary } from './catalog.js';
import type { SyncRecord } from './coordinator.js';
import { html, raw, type SafeHtml } from './html.js';
import { CONTENT_SECURITY_POLICY, SCRIPT, STYLE } from './page-assets.js';
import type { PublicStatus, SourceStatus } from './status.js';

export interface StatusPageDeps {
  readonly status: () => Promise<PublicStatus>;
  readonly config: () => Config;
}

/**
 * GET / (the status page) and GET /status.json (what it polls). Both are
 * public and read-only: the JSON is the public subset, without history,
 * paths or credentials; the API's /api/v1/status needs the token.
 */
export function statusPageRouter(deps: StatusPageDeps): Router {
  const router = Router();
  router.get('/status.json', async (_req: Request, res: Response) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json(await deps.status());
  });
  router.get('/', async (req: Request, res: Response) => {
    const status = await deps.status();
    const urls = mirrorUrls(deps.config().http, req.headers.host);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.type('html').send(renderStatusPage(status, urls).value);
  });
  return router;
}

export interface MirrorUrls {
  /** What MAAS's boot-sources url= takes: the tree, ending in "/". */
  readonly tree: string;
  readonly keyring: string;
}

const HOST_RE = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The URLs MAAS should use. http.publicUrl wins (behind a proxy); it may be
 * the server's base URL or the tree's URL itself. Otherwise the Host the
 * browser used, which reached us, so MAAS on the same network can too.
 */
export function mirrorUrls(http: Config['http'], hostHeader: string | undefined): MirrorUrls {
  const prefix = http.prefix;
  let base: string;
  if (http.publicUrl) {
    const u = new URL(http.publicUrl);
    const path = u.pathname.endsWith('/') ? u.pathname : `${u.pathname}/`;
    const root = path.endsWith(prefix) ? path.slice(0, path.length - prefix.length) : path.replace(/\/$/, '');
    base = `${u.protocol}//${u.host}${root}`;
  } else {
    const host = hostHeader && HOST_RE.test(hostHeader) ? hostHeader : fallbackHost(http.listen[0]);
    base = `http://${host}`;
  }
  return { tree: `${base}${prefix}`, keyring: `${base}/keyring.gpg` };
}

function fallbackHost(l: Listen | undefined): string {
  if (!l || l.host === '0.0.0.0' || l.host === '::') return `THIS-HOST:${l?.port ?? 8080}`;
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** The MAAS CLI lines for this mirror, with selections for what it holds. */
export function maasCommands(status: PublicStatus, urls: MirrorUrls): string {
  const keyring = '/etc/maas/maas-mirror.gpg';
  const lines = [
    '# 1. On every region controller: the mirror\'s public key',
    `sudo curl -fsSL -o ${keyring} ${urls.keyring}`,
    '#    (snap-installed MAAS: use /var/snap/maas/common/maas-mirror.gpg, below too)',
    '',
    '# 2. Add the mirror as a boot source; note the id it prints',
    `maas $PROFILE boot-sources create url=${urls.tree} keyring_filename=${keyring}`,
    '',
    '# 3. Choose what to import from it (SOURCE_ID from step 2)',
    ...selections(status).map((s) => `maas $PROFILE boot-source-selections create $SOURCE_ID ${s}`),
    '',
    '# 4. Import, and optionally drop the images.maas.io source',
    'maas $PROFILE boot-resources import',
    'maas $PROFILE boot-sources read   # then: maas $PROFILE boot-source delete <its id>',
  ];
  return lines.join('\n');
}

function selections(status: PublicStatus): string[] {
  const byRelease = new Map<string, Set<string>>();
  for (const s of status.sources) {
    for (const p of s.products) {
      if (!p.os || !p.release || !p.arch) continue;
      const key = `os=${p.os} release=${p.release}`;
      const arches = byRelease.get(key) ?? new Set<string>();
      arches.add(p.arch);
      byRelease.set(key, arches);
    }
  }
  if (byRelease.size === 0) return ["os=ubuntu release=noble arches=amd64 subarches='*' labels='*'"];
  return [...byRelease].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, arches]) => `${k} arches=${[...arches].sort().join(',')} subarches='*' labels='*'`);
}

export function renderStatusPage(status: PublicStatus, urls: MirrorUrls): SafeHtml {
  const r = status.running;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>maas-mirror${r ? ' — syncing' : ''}</title>
<style>${raw(STYLE)}</style>
</head>
<body data-running="${r ? '1' : '0'}">
<main>
<header>
<h1>maas-mirror</h1>
<p class="muted">version ${status.version} · current snapshot <code>${status.current ?? 'none yet'}</code> · ${fmtTime(status.time)}</p>
</header>

<section id="sync">
<h2>Sync</h2>
<div id="progress"${r ? '' : raw(' hidden')}>
<p><span class="badge running">syncing</span> <code id="sync-id">${r ? `${r.id} (${r.reason})` : ''}</code></p>
<progress id="bar" max="1"${r && r.progress.fraction !== null ? html` value="${r.progress.fraction}"` : ''}>${r ? Math.round((r.progress.fraction ?? 0) * 100) : 0}%</progress>
<p id="progress-text">${r ? progressText(r.progress) : ''}</p>
<ul id="current-files">${(r?.progress.current ?? []).map((f) => html`<li>${f}</li>`)}</ul>
</div>
<dl>
<dt>Last sync</dt><dd>${lastSync(status.lastSync)}</dd>
<dt>Next sync</dt><dd>${status.nextSync ? fmtTime(status.nextSync) : 'not scheduled'}</dd>
</dl>
${failures(status.lastSync)}
${warnings(status)}
</section>

<section id="sources">
<h2>Sources</h2>
${status.sources.map(source)}
</section>

${status.localImages?.length ? html`<section id="local-images">
<h2>Local images</h2>
<p><small>added with <code>maas-mirror images add</code>, published in the same signed tree</small></p>
<ul class="products">${status.localImages.map(product)}</ul>
</section>` : ''}

<section id="storage">
<h2>Storage</h2>
<dl>
<dt>Store</dt><dd>${status.store ? `${formatBytes(status.store.bytes)} in ${status.store.blobs} files` : 'not measured yet'}</dd>
<dt>Disk</dt><dd>${status.disk ? `${formatBytes(status.disk.used)} used of ${formatBytes(status.disk.total)}, ${formatBytes(status.disk.available)} free` : 'unknown'}</dd>
</dl>
${status.disk && status.disk.total > 0 ? html`<meter min="0" max="1" high="0.9" value="${(status.disk.used / status.disk.total).toFixed(3)}"></meter>` : ''}
</section>

<section id="snapshots">
<h2>Snapshots</h2>
${
  status.snapshots.length === 0
    ? html`<p class="muted">none yet: the first sync publishes one</p>`
    : html`<div class="scroll"><table>
<thead><tr><th>id</th><th>published</th><th class="num">files</th><th class="num">size</th></tr></thead>
<tbody>${[...status.snapshots].reverse().map(
        (s) => html`<tr><td><code>${s.id}</code>${s.current ? html` <span class="badge ok">current</span>` : ''}</td><td>${fmtTime(s.created)}</td><td class="num">${s.files}</td><td class="num">${formatBytes(s.bytes)}</td></tr>`,
      )}</tbody>
</table></div>`
}
</section>

<section id="maas">
<h2>Use this mirror in MAAS</h2>
<pre>${maasCommands(status, urls)}</pre>
<p class="muted">The keyring is also at <code>${urls.keyring.replace(/\.gpg$/, '.asc')}</code> (armored).</p>
</section>
</main>
<script>${raw(SCRIPT)}</script>
</body>
</html>
`;
}

function source(s: SourceStatus): SafeHtml {
  return html`<h3>${s.name} <span class="badge ${s.verified ? 'ok' : 'failed'}">${s.verified ? 'signature verified' : 'NOT verified'}</span>${s.onDemand ? html` <span class="badge">on demand</span>` : ''}</h3>
<p><code>${s.url}</code><br><small>newest ${s.maxVersions} version${s.maxVersions > 1 ? 's' : ''} per product${s.filters.length > 0 ? html` · filters: ${s.filters.map((g) => html`<code>${g.join(' & ')}</code> `)}` : ''} · ${formatBytes(s.bytes)}</small></p>
${
  s.products.length === 0
    ? html`<p class="muted">nothing published from this source yet</p>`
    : html`<ul class="products">${[...s.products].sort(imagesFirst).map(product)}</ul>`
}`;
}

/** OS images (what MAAS selections name) before bootloaders and the rest. */
function imagesFirst(a: ProductSummary, b: ProductSummary): number {
  const ka = `${a.release ? 0 : 1}${a.id}`;
  const kb = `${b.release ? 0 : 1}${b.id}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function product(p: ProductSummary): SafeHtml {
  const name = p.os
    ? [p.os, p.release, p.title ? `(${p.title})` : undefined, p.arch, p.subarch].filter(Boolean).join(' ')
    : p.id;
  return html`<li><strong>${name}</strong>${p.versions.map(
    (v) => html`<br><code>${v.version}</code> <small>· ${v.files} files · ${formatBytes(v.bytes)}</small>`,
  )}${name !== p.id ? html`<br><small><code>${p.id}</code></small>` : ''}</li>`;
}

function lastSync(r: SyncRecord | null): SafeHtml {
  if (!r) return html`<span class="muted">none since the daemon started</span>`;
  const label = r.result === 'locked' ? 'skipped: another run held the lock' : r.result;
  return html`<span class="badge ${r.result}">${label}</span> <code>${r.id}</code> (${r.reason}), ended ${fmtTime(r.finishedAt)} after ${fmtDuration(r.durationMs)}${
    r.downloaded.files > 0 ? `, fetched ${formatBytes(r.downloaded.bytes)} in ${r.downloaded.files} files` : ''
  }${r.published ? html`, published <code>${r.snapshot}</code>` : r.snapshot ? html`, <code>${r.snapshot}</code> stays current` : ''}`;
}

function failures(r: SyncRecord | null): SafeHtml | string {
  if (!r || (r.failures.length === 0 && (!r.error || r.result === 'locked'))) return '';
  const items = [
    ...(r.error && r.result !== 'locked' ? [html`<li><code>${r.error.code}</code> ${r.error.message}</li>`] : []),
    ...r.failures.slice(0, 50).map((f) => html`<li><code>${f.code}</code> ${f.source}: ${f.message}</li>`),
  ];
  return html`<h3>Failures</h3><ul class="failures">${items}</ul>${r.failures.length > 50 ? html`<p class="muted">and ${r.failures.length - 50} more (GET /api/v1/status)</p>` : ''}`;
}

function warnings(status: PublicStatus): SafeHtml | string {
  if (status.warnings.length === 0) return '';
  return html`<div id="warnings"><h3>Warnings</h3><ul class="warnings">${status.warnings.map((w) => html`<li><code>${w.code}</code> ${w.message}</li>`)}</ul></div>`;
}

function progressText(p: NonNullable<PublicStatus['running']>['progress']): string {
  return `${p.phase}: ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}, ${p.filesDone} of ${p.filesTotal} files, ${formatBytes(p.rate)}/s`;
}

function fmtTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, ' UTC');
}

function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
