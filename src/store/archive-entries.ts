import { posix } from 'node:path';

/**
 * Archive safety, entry by entry: which tar entries may be unpacked into a
 * folder, judged from their header alone (type, path, link target) before a
 * byte of them is written.
 */

const ALLOWED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

/**
 * Why a tar entry may not be unpacked into its folder, or undefined when it may.
 * links: paths (as entryKey gives them) of the symbolic links already named in
 * the folder. The kernel follows a link before applying a ".." after it, so a
 * path that goes through one is not judged on paper: it is refused. (Links
 * named later are caught by removeEscapingLinks once the folder is unpacked.)
 */
export function refuseReason(
  entry: { path: string; type: string; linkpath?: string; size?: number },
  links: { has(path: string): boolean } = new Set<string>(),
): string | undefined {
  if (!ALLOWED_TYPES.has(entry.type)) return `entry type ${entry.type} is not unpacked`;
  if (isAbsolute(entry.path)) return 'absolute path';
  if (hasDotDot(entry.path)) return 'path contains ".."';
  const own = parts(entry.path);
  const via = linkOnTheWay([], own, links, false);
  if (via !== undefined) return `path goes through the link ${via}`;
  if (entry.type === 'SymbolicLink' || entry.type === 'Link') {
    const link = entry.linkpath ?? '';
    if (link === '') return 'link without a target';
    if (isAbsolute(link)) return `${entry.type === 'Link' ? 'hard' : 'symbolic'} link to an absolute path`;
    // A symlink resolves from its own folder; a hard link names a path from the archive root.
    const from = entry.type === 'SymbolicLink' ? posix.dirname(slashes(entry.path)) : '.';
    const resolved = posix.normalize(posix.join(from, slashes(link)));
    if (resolved === '..' || resolved.startsWith('../') || (entry.type === 'Link' && hasDotDot(link))) {
      return `link points outside its folder (${link})`;
    }
    // A symlink may name a link as its last step (checked once unpacked); a hard link may not
    // (link(2) would copy that symlink elsewhere, where its target means something else).
    const through = linkOnTheWay(entry.type === 'SymbolicLink' ? own.slice(0, -1) : [], parts(link), links, entry.type === 'Link');
    if (through !== undefined) return `link target goes through the link ${through} (${link})`;
  }
  return undefined;
}

/** The key of an entry path in refuseReason's links: "./a//b/" → "a/b". */
export function entryKey(path: string): string {
  return parts(path).join('/');
}

/** The first link in links met while stepping from `at` along `steps` (the last step included when last). */
function linkOnTheWay(at: readonly string[], steps: readonly string[], links: { has(path: string): boolean }, last: boolean): string | undefined {
  const here = [...at];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step === '..') {
      here.pop();
      continue;
    }
    here.push(step);
    const key = here.join('/');
    if ((last || i < steps.length - 1) && links.has(key)) return key;
  }
  return undefined;
}

function slashes(p: string): string {
  return p.replaceAll('\\', '/');
}

export function isAbsolute(p: string): boolean {
  return p.startsWith('/') || p.startsWith('\\') || /^[A-Za-z]:/.test(p);
}

function hasDotDot(p: string): boolean {
  return slashes(p).split('/').includes('..');
}

/** The steps of a relative path ("" and "." dropped, ".." kept). */
export function parts(p: string): string[] {
  return slashes(p)
    .split('/')
    .filter((s) => s !== '' && s !== '.');
}
