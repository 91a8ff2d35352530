import { BootTemplateError } from '../errors.js';

/**
 * The `.tmpl` language of boot.files: `{{url:KEY}}`, `{{path:KEY}}` and
 * `{{server}}`, where KEY is OS/RELEASE/ARCH/SUBARCH/KFLAVOR/FTYPE. One pass,
 * values are never scanned again (no recursion), and every placeholder is
 * resolved before a byte is produced, so a config is whole or not at all.
 */

/** A template larger than this is refused: boot configs are a few KiB. */
export const MAX_TEMPLATE_BYTES = 64 * 1024;
/** Placeholders per template. */
export const MAX_PLACEHOLDERS = 256;

const PLACEHOLDER_RE = /\{\{\s*([a-z]+)(?::([^{}\s]*))?\s*\}\}/g;
const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}(?:\/[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}){5}$/;

export type Placeholder = { readonly kind: 'server' } | { readonly kind: 'url' | 'path'; readonly image: string };

/** What the renderer asks for each image key: the item's path on this server (`/images/<sha256>/<ftype>`), or undefined. */
export interface TemplateContext {
  /** Base URL without a trailing slash, or undefined when it cannot be known (see serverBase). */
  readonly server: string | undefined;
  imagePath(image: string): string | undefined;
}

export type RenderResult = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly missing: readonly string[] };

/** Lists the placeholders of a template, or throws BootTemplateError for a budget or syntax problem. */
export function parsePlaceholders(name: string, text: string): Placeholder[] {
  const out: Placeholder[] = [];
  for (const m of text.matchAll(PLACEHOLDER_RE)) {
    if (out.length >= MAX_PLACEHOLDERS) throw new BootTemplateError(name, `it has more than ${MAX_PLACEHOLDERS} placeholders`);
    out.push(placeholder(name, m[1]!, m[2]));
  }
  return out;
}

function placeholder(name: string, kind: string, arg: string | undefined): Placeholder {
  if (kind === 'server') {
    if (arg !== undefined) throw new BootTemplateError(name, '{{server}} takes no argument');
    return { kind };
  }
  if (kind === 'url' || kind === 'path') {
    if (arg === undefined || !KEY_RE.test(arg)) {
      throw new BootTemplateError(name, `{{${kind}:${arg ?? ''}}} must name an image as OS/RELEASE/ARCH/SUBARCH/KFLAVOR/FTYPE, e.g. {{${kind}:ubuntu/noble/amd64/ga-24.04/generic/boot-kernel}}`);
    }
    return { kind, image: arg };
  }
  throw new BootTemplateError(name, `{{${kind}}} is not a placeholder; use {{url:…}}, {{path:…}} or {{server}}`);
}

/**
 * Renders a template. Unknown images make the whole answer `missing` (the
 * caller answers 404); a template that breaks a budget or the syntax throws
 * BootTemplateError.
 */
export function renderTemplate(name: string, text: string, ctx: TemplateContext): RenderResult {
  if (Buffer.byteLength(text) > MAX_TEMPLATE_BYTES) {
    throw new BootTemplateError(name, `it is larger than ${MAX_TEMPLATE_BYTES} bytes`);
  }
  const placeholders = parsePlaceholders(name, text);
  const missing = new Set<string>();
  const values: string[] = [];
  for (const p of placeholders) {
    if (p.kind !== 'path' && ctx.server === undefined) {
      throw new BootTemplateError(name, 'the server address is unknown: set http.publicUrl, or list a specific address (not 0.0.0.0 or ::) first in http.listen');
    }
    if (p.kind === 'server') {
      values.push(ctx.server!);
      continue;
    }
    const path = ctx.imagePath(p.image);
    if (path === undefined) missing.add(p.image);
    values.push(p.kind === 'url' ? `${ctx.server}${path}` : (path ?? ''));
  }
  if (missing.size > 0) return { ok: false, missing: [...missing] };
  let i = 0;
  return { ok: true, text: text.replace(PLACEHOLDER_RE, () => values[i++]!) };
}
