import type { Config } from '../config/load.js';

/**
 * boot.files: an operator's folder (pxelinux.cfg/default, grub/grub.cfg, iPXE
 * scripts) served read-only at its relative paths; `NAME.tmpl` is served as
 * NAME, rendered against the current snapshot (see boot-template.ts).
 */
export interface BootFilesConfig {
  /** The folder, absolute. */
  readonly dir: string;
  /** What `{{server}}` and `{{url:…}}` start with, no trailing slash; undefined when unknown. */
  readonly server: string | undefined;
}

export const TEMPLATE_SUFFIX = '.tmpl';

/** Larger static boot files are refused (they are configs and scripts, read whole into memory for TFTP and HTTP alike). */
export const MAX_BOOT_FILE_BYTES = 4 * 1024 * 1024;

export function bootFilesConfig(config: Pick<Config, 'http' | 'boot'>): BootFilesConfig | undefined {
  return config.boot.files === undefined ? undefined : { dir: config.boot.files, server: serverBase(config.http) };
}

/**
 * The base URL machines reach us at: http.publicUrl (with the tree prefix
 * removed if it was given as the tree's URL), else the first specific listen
 * address. Never a request's Host header: a config must not say what a
 * client claimed.
 */
export function serverBase(http: Config['http']): string | undefined {
  if (http.publicUrl) {
    const u = new URL(http.publicUrl);
    const path = u.pathname.endsWith('/') ? u.pathname : `${u.pathname}/`;
    const root = path.endsWith(http.prefix) ? path.slice(0, path.length - http.prefix.length) : path.replace(/\/$/, '');
    return `${u.protocol}//${u.host}${root}`;
  }
  const l = http.listen.find((x) => x.host !== '0.0.0.0' && x.host !== '::');
  if (!l) return undefined;
  return `http://${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
}
