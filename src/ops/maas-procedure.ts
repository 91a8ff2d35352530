import { shellQuote } from '../format.js';

/** One boot-source selection: what MAAS imports from the mirror. */
export interface MaasSelection {
  readonly os: string;
  readonly release: string;
  readonly arches: readonly string[];
}

export interface MaasProcedureInput {
  /** What boot-sources' url= takes: the tree's root, ending in "/" (MAAS appends streams/v1/index.sjson itself). */
  readonly treeUrl: string;
  /** The binary public key (gpgv, which MAAS runs, rejects armored keyrings). */
  readonly keyringUrl: string;
  readonly selections: readonly MaasSelection[];
}

/** Shown when the mirror holds nothing yet: what the shipped configuration selects. */
export const DEFAULT_SELECTION: MaasSelection = { os: 'ubuntu', release: 'noble', arches: ['amd64'] };

/**
 * The one procedure that makes a MAAS 3.x region use this mirror as its only
 * boot source. The status page, `maas-mirror demo` and the README all show
 * this text, so they cannot disagree. It is one shell block meant to be
 * pasted: a subshell with `set -eu` stops at the first failing step without
 * closing the operator's shell. The mirror is added before images.maas.io is
 * removed, so the region is never left without a source if a step fails.
 * Every value that comes from configuration or upstream metadata is
 * shell-quoted: pasting it runs exactly these commands and nothing else.
 */
export function maasProcedure(input: MaasProcedureInput): string {
  const selections = input.selections.length > 0 ? input.selections : [DEFAULT_SELECTION];
  const pyId = 'import json, sys; print(json.load(sys.stdin)["id"])';
  const pyOthers = 'import json, sys; print(*[s["id"] for s in json.load(sys.stdin) if s["id"] != int(sys.argv[1])])';
  return [
    '# On a host where the MAAS CLI is logged in (maas login $PROFILE ...).',
    '(set -eu',
    'PROFILE=${PROFILE:-admin}',
    '# 1. The mirror\'s public key, in the binary form MAAS needs',
    `curl -fsSL -o maas-mirror.gpg ${shellQuote(input.keyringUrl)}`,
    '# 2. Add the mirror as a boot source; the key goes with it',
    `SOURCE_ID=$(maas $PROFILE boot-sources create ${shellQuote(`url=${input.treeUrl}`)} keyring_data@=maas-mirror.gpg | python3 -c ${shellQuote(pyId)})`,
    '# 3. Choose what to import from it',
    ...selections.map(
      (s) =>
        `maas $PROFILE boot-source-selections create "$SOURCE_ID" ${[
          `os=${s.os}`,
          `release=${s.release}`,
          `arches=${[...s.arches].join(',')}`,
          'subarches=*',
          'labels=*',
        ]
          .map(shellQuote)
          .join(' ')}`,
    ),
    '# 4. Remove every other source (images.maas.io): MAAS manages images from one source only',
    `for id in $(maas $PROFILE boot-sources read | python3 -c ${shellQuote(pyOthers)} "$SOURCE_ID"); do`,
    '  maas $PROFILE boot-source delete "$id"',
    'done',
    '# 5. Import from the mirror',
    'maas $PROFILE boot-resources import',
    ')',
  ].join('\n');
}
