import { hostname } from 'node:os';
import { Router, type Request, type Response } from 'express';
import type { Config, Listen } from '../config/load.js';
import { formatBytes, formatDuration, plural } from '../format.js';
import type { ProductSummary } from './catalog.js';
import type { SyncRecord } from './coordinator.js';
import { html, raw, type SafeHtml } from './html.js';
import { maasProcedure, type MaasSelection } from './maas-procedure.js';
import { CONTENT_SECURITY_POLICY, SCRIPT, STYLE } from './page-assets.js';
import type { ProgressStatus, PublicStatus, SourceCheck, SourceStatus } from './status.js';

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
  router.get('/', async (_req: Request, res: Response) => {
    const status = await deps.status();
    const urls = mirrorUrls(deps.config().http);
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

/**
 * The URLs MAAS should use, from the configuration only (never from the
 * request's Host header, which a client chooses). http.publicUrl wins
 * (behind a proxy); it may be the server's base URL or the tree's URL
 * itself. Otherwise the first listen address, with this host's name for a
 * wildcard address.
 */
export function mirrorUrls(http: Config['http'], host: string = hostname()): MirrorUrls {
  const prefix = http.prefix;
  let base: string;
  if (http.publicUrl) {
    const u = new URL(http.publicUrl);
    const path = u.pathname.endsWith('/') ? u.pathname : `${u.pathname}/`;
    const root = path.endsWith(prefix) ? path.slice(0, path.length - prefix.length) : path.replace(/\/$/, '');
    base = `${u.protocol}//${u.host}${root}`;
  } else {
    base = `http://${listenHost(http.listen[0], host)}`;
  }
  return { tree: `${base}${prefix}`, keyring: `${base}/keyring.gpg` };
}

function listenHost(l: Listen | undefined, host: string): string {
  const port = l?.port ?? 8080;
  if (!l || l.host === '0.0.0.0' || l.host === '::') return `${host}:${port}`;
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** The MAAS procedure for this mirror, with selections for the OS images it holds. */
export function maasCommands(status: PublicStatus, urls: MirrorUrls): string {
  return maasProcedure({ treeUrl: urls.tree, keyringUrl: urls.keyring, selections: selections(status) });
}

/**
 * One selection per os and release, with every arch the mirror holds for it:
 * the mirrored sources' images and the site's own (`images add`) alike.
 * Bootloaders need none: MAAS takes them whatever the selections.
 */
export function selections(status: PublicStatus): MaasSelection[] {
  const byRelease = new Map<string, { os: string; release: string; arches: Set<string> }>();
  for (const products of [...status.sources.map((s) => s.products), status.localImages ?? []]) {
    for (const p of products) {
      if (!p.os || !p.release || !p.arch) continue;
      const key = JSON.stringify([p.os, p.release]);
      const entry = byRelease.get(key) ?? { os: p.os, release: p.release, arches: new Set<string>() };
      entry.arches.add(p.arch);
      byRelease.set(key, entry);
    }
  }
  return [...byRelease]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, e]) => ({ os: e.os, release: e.release, arches: [...e.arches].sort() }));
}

/**
 * One section of the page. The page is these in order: to add one (say a
 * warnings block), write a function from the status to a <section> and put
 * it in SECTIONS.
 */
export type PageSection = (status: PublicStatus, urls: MirrorUrls) => SafeHtml | string;

export const SECTIONS: readonly PageSection[] = [syncSection, sourcesSection, localImagesSection, storageSection, snapshotsSection, maasSection];

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
<p class="muted">version ${status.version} · current snapshot <code>${status.current ?? 'none yet'}</code> · ${fmtTime(status.time)}${workersNote(status)}</p>
</header>
${SECTIONS.map((section) => section(status, urls))}
</main>
<script>${raw(SCRIPT)}</script>
</body>
</html>
`;
}

function syncSection(status: PublicStatus): SafeHtml {
  const r = status.running;
  return html`
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
</section>`;
}

function warnings(status: PublicStatus): SafeHtml | string {
  if (status.warnings.length === 0) return '';
  return html`<div id="warnings"><h3>Warnings</h3><ul class="warnings">${status.warnings.map((w) => html`<li><code>${w.code}</code> ${w.message}</li>`)}</ul></div>`;
}

function localImagesSection(status: PublicStatus): SafeHtml | string {
  if (!status.localImages?.length) return '';
  return html`
<section id="local-images">
<h2>Local images</h2>
<p><small>added with <code>maas-mirror images add</code>, published in the same signed tree</small></p>
<ul class="products">${status.localImages.map(product)}</ul>
</section>`;
}

function sourcesSection(status: PublicStatus): SafeHtml {
  return html`
<section id="sources">
<h2>Sources</h2>
${status.sources.map(source)}
</section>`;
}

function storageSection(status: PublicStatus): SafeHtml {
  return html`
<section id="storage">
<h2>Storage</h2>
<dl>
<dt>Store</dt><dd>${status.store ? `${formatBytes(status.store.bytes)} in ${plural(status.store.blobs, 'file')}` : 'not measured yet'}</dd>
<dt>Disk</dt><dd>${status.disk ? `${formatBytes(status.disk.used)} used of ${formatBytes(status.disk.total)}, ${formatBytes(status.disk.available)} free` : 'unknown'}</dd>
</dl>
${status.disk && status.disk.total > 0 ? html`<meter min="0" max="1" high="0.9" value="${(status.disk.used / status.disk.total).toFixed(3)}"></meter>` : ''}
</section>`;
}

function snapshotsSection(status: PublicStatus): SafeHtml {
  return html`
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
</section>`;
}

function maasSection(status: PublicStatus, urls: MirrorUrls): SafeHtml {
  return html`
<section id="maas">
<h2>Use this mirror in MAAS</h2>
<p class="muted">Paste into a shell where the MAAS CLI is logged in (MAAS 3.x). It adds this mirror, selects what it holds, removes images.maas.io and imports.</p>
<pre id="maas-commands">${maasCommands(status, urls)}</pre>
<p class="muted">The keyring is also at <code>${urls.keyring.replace(/\.gpg$/, '.asc')}</code> (armored).</p>
</section>`;
}

function source(s: SourceStatus): SafeHtml {
  return html`<h3>${s.name} ${checkBadge(s.check)}${s.onDemand ? html` <span class="badge">on demand</span>` : ''}</h3>
<p><code>${s.url}</code><br><small>newest ${plural(s.maxVersions, 'version')} per product${filterGroups(s.filters)} · ${formatBytes(s.bytes)}</small></p>
${
  s.products.length === 0
    ? html`<p class="muted">nothing published from this source yet</p>`
    : html`<ul class="products">${[...s.products].sort(imagesFirst).map(product)}</ul>`
}`;
}

/** The badge says what the last sync found, not what the configuration asks for. */
function checkBadge(c: SourceCheck): SafeHtml {
  const when = c.at ? ` (${fmtTime(c.at)})` : '';
  switch (c.state) {
    case 'verified':
      return html`<span class="badge ok" title="sync ${c.sync}${when}">signature verified</span>`;
    case 'invalid':
      return html`<span class="badge failed" title="sync ${c.sync}${when}">signature refused: ${c.code}</span>`;
    case 'unreachable':
      return html`<span class="badge failed" title="sync ${c.sync}${when}">not verified: last sync could not read it${c.code ? ` (${c.code})` : ''}</span>`;
    case 'downgrade':
      return html`<span class="badge failed" title="sync ${c.sync}${when}">refused: replayed older metadata (${c.code})</span>`;
    case 'unchecked':
      return html`<span class="badge">not checked yet</span>`;
    case 'off':
      return html`<span class="badge failed">signatures NOT checked (verify: false)</span>`;
  }
}

/** Groups are ORed, terms inside a group ANDed: shown that way, so one long line is not mistaken for one condition. */
function filterGroups(groups: readonly (readonly string[])[]): SafeHtml | string {
  if (groups.length === 0) return '';
  const shown = groups.map((g, i) => html`${i > 0 ? html` <strong>or</strong> ` : ''}<code class="filter-group">${g.join(' and ')}</code>`);
  return html` · filters: ${groups.length > 1 ? 'one of ' : ''}${shown}`;
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
  const flavour = p.kflavor ? html` <span class="badge kflavor">${p.kflavor} kernel</span>` : '';
  return html`<li><strong>${name}</strong>${flavour}${p.versions.map(
    (v) => html`<br><code>${v.version}</code> <small>· ${plural(v.files, 'file')} · ${formatBytes(v.bytes)}</small>`,
  )}${name !== p.id ? html`<br><small><code>${p.id}</code></small>` : ''}</li>`;
}

function lastSync(r: SyncRecord | null): SafeHtml {
  if (!r) return html`<span class="muted">none yet</span>`;
  const label = r.result === 'locked' ? 'skipped: another run held the lock' : r.result;
  return html`<span class="badge ${r.result}">${label}</span> <code>${r.id}</code> (${r.reason}), ended ${fmtTime(r.finishedAt)} after ${formatDuration(r.durationMs)}${
    r.downloaded.files > 0 ? `, fetched ${formatBytes(r.downloaded.bytes)} in ${plural(r.downloaded.files, 'file')}` : ''
  }${r.published ? html`, published <code>${r.snapshot}</code>` : r.snapshot ? html`, <code>${r.snapshot}</code> stays current` : ''}`;
}

function failures(r: SyncRecord | null): SafeHtml | string {
  if (!r || (r.failures.length === 0 && (!r.error || r.result === 'locked'))) return '';
  const total = r.failuresTotal ?? r.failures.length;
  const items = [
    ...(r.error && r.result !== 'locked' ? [html`<li><code>${r.error.code}</code> ${r.error.message}</li>`] : []),
    ...r.failures.slice(0, 50).map((f) => html`<li><code>${f.code}</code> ${f.source}: ${f.message}</li>`),
  ];
  const shown = Math.min(50, r.failures.length);
  return html`<h3>Failures</h3><ul class="failures">${items}</ul>${total > shown ? html`<p class="muted">and ${total - shown} more (GET /api/v1/status)</p>` : ''}`;
}

/** The script's poll writes the same words (page-assets.ts): keep the two in step. */
export function progressText(p: ProgressStatus): string {
  const eta = p.etaSeconds !== null ? `, about ${formatDuration(p.etaSeconds * 1000)} left` : '';
  return `${p.phase}: ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}, ${p.filesDone} of ${plural(p.filesTotal, 'file')}, ${formatBytes(p.rate)}/s${eta}`;
}

function fmtTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, ' UTC');
}

/** With http.workers above 1: how many serve now, of those configured. */
function workersNote(status: PublicStatus): string {
  const w = status.httpWorkers;
  return w && w.configured > 1 ? ` · HTTP workers ${w.running} of ${w.configured}` : '';
}
