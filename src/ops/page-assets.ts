import { createHash } from 'node:crypto';

/**
 * The status page's static style and script. Static on purpose: the
 * Content-Security-Policy allows exactly these by hash, so nothing
 * interpolated into the page can ever run or restyle it.
 */

export const STYLE = `
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #fafafa; --card: #fff; --muted: #6b6b70; --line: #e2e2e6;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #e95420; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e6e6; --bg: #161618; --card: #1f1f22; --muted: #9a9aa0; --line: #333338; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Ubuntu, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 64rem; margin: 0 auto; padding: 1rem; }
header h1 { margin: 0; font-size: 1.5rem; }
h2 { font-size: 1.15rem; margin: 0 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .25rem; overflow-wrap: anywhere; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; margin: 1rem 0; }
.muted, small { color: var(--muted); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem .3rem 0; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
code, pre { font-family: ui-monospace, "Ubuntu Mono", Menlo, monospace; font-size: .85rem; }
td code { overflow-wrap: anywhere; }
/* Wrapped only on screen: a copied command is still one line. */
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: .6rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; font-weight: 600; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.partial, .badge.locked, .badge.aborted { background: var(--warn); } .badge.failed { background: var(--bad); }
.badge.running { background: var(--accent); } .badge.kflavor { background: #5a4fcf; }
progress, meter { width: 100%; height: 1.1rem; accent-color: var(--accent); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
ul { margin: .25rem 0; padding-left: 1.2rem; }
li { overflow-wrap: anywhere; }
.failures li { color: var(--bad); }
.warnings li { color: var(--warn); }
ul.products { list-style: none; padding: 0; margin: .25rem 0 0; }
ul.products li { padding: .35rem 0; border-bottom: 1px solid var(--line); font-size: .9rem; }
@media (max-width: 30rem) { main { padding: .5rem; } section { padding: .6rem .7rem; } dl { grid-template-columns: 1fr; } dt { margin-top: .3rem; } }
`;

/** Polls /status.json: every 2 s while a sync runs (the progress bar), slowly otherwise; reloads when a sync ends. */
export const SCRIPT = `
(function () {
  "use strict";
  var running = document.body.getAttribute("data-running") === "1";
  function bytes(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
  }
  function duration(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
    return Math.floor(s / 3600) + " h" + (Math.floor((s % 3600) / 60) ? " " + Math.floor((s % 3600) / 60) + " min" : "");
  }
  function set(id, text) { var e = document.getElementById(id); if (e) e.textContent = text; }
  function show(st) {
    var r = st.running;
    if (!r) { if (running) location.reload(); return; }
    var p = r.progress;
    document.getElementById("progress").hidden = false;
    var bar = document.getElementById("bar");
    if (p.fraction === null) bar.removeAttribute("value"); else bar.value = p.fraction;
    set("sync-id", r.id + " (" + r.reason + ")");
    set("progress-text", p.phase + ": " + bytes(p.bytesDone) + " of " + bytes(p.bytesTotal) + ", " +
      p.filesDone + " of " + p.filesTotal + (p.filesTotal === 1 ? " file, " : " files, ") + bytes(p.rate) + "/s" +
      (p.etaSeconds === null ? "" : ", about " + duration(p.etaSeconds) + " left"));
    var ul = document.getElementById("current-files");
    while (ul.firstChild) ul.removeChild(ul.firstChild);
    p.current.forEach(function (f) { var li = document.createElement("li"); li.textContent = f; ul.appendChild(li); });
  }
  function poll() {
    fetch("status.json", { cache: "no-store" })
      .then(function (res) { return res.json(); })
      .then(function (st) {
        document.body.setAttribute("data-polled", st.time);
        show(st);
        running = !!st.running;
        setTimeout(poll, running ? 2000 : 15000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, running ? 2000 : 15000);
})();
`;

const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
