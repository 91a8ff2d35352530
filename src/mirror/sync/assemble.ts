import type { MaasProblem } from '../../simplestreams/maas-rules.js';
import { buildModel, type ContentBuild, type ModelOutcome, type PublishContent, type PublishModel } from '../next-tree.js';
import { maasProblems } from '../publish.js';

export interface Rejection {
  readonly source: string;
  readonly contentId: string;
  readonly productId: string;
  readonly problems: readonly MaasProblem[];
}

export interface Assembled extends ModelOutcome {
  /** Products left out because MAAS would reject them (their previous versions stay). */
  readonly rejected: readonly Rejection[];
  /** Problems of the tree as a whole: when any remain, nothing may be published. */
  readonly treeProblems: readonly MaasProblem[];
}

export interface AssembleInput {
  readonly builds: readonly ContentBuild[];
  readonly carried: readonly PublishContent[];
  readonly held: (sha256: string) => boolean;
  /** The published tree's fingerprint, unless it must be republished anyway (a repaired file). */
  readonly checkedFingerprint?: string;
  /**
   * A first sync left with nothing because a source failed: there is no tree to hold against MAAS's
   * rules, and blaming the filters ("widen it") would send the operator the wrong way.
   */
  readonly nothingToCheck?: boolean;
  /** Adds what rides along outside the sources (site-built images) to each tree built. */
  readonly extend?: (model: PublishModel) => PublishModel;
}

/**
 * Phase 5 (pure): the tree the held files make, checked against the rules MAAS enforces. MAAS fails
 * a whole products file (and the import) for one bad product, so such products are left out and
 * the tree is built again; a tree identical to the published one was checked when it was published.
 */
export function assembleTree(input: AssembleInput): Assembled {
  const { builds, carried, held } = input;
  const build = (rejected?: ReadonlySet<string>): ModelOutcome => {
    const out = buildModel({ builds, carried, held, rejected });
    return input.extend ? { ...out, model: input.extend(out.model) } : out;
  };
  const first = build();
  if (first.model.fingerprint === input.checkedFingerprint || (input.nothingToCheck && first.model.contents.length === 0)) return { ...first, rejected: [], treeProblems: [] };
  let outcome = first;
  let problems = maasProblems(first.model);
  const rejected: Rejection[] = [];
  if (problems.byProduct.size > 0) {
    outcome = build(new Set(problems.byProduct.keys()));
    for (const [key, list] of problems.byProduct) {
      const [contentId, productId] = key.split('\u0000') as [string, string];
      const source = builds.find((b) => b.contentId === contentId)?.source ?? 'publish';
      rejected.push({ source, contentId, productId, problems: list });
    }
    problems = maasProblems(outcome.model);
  }
  const treeProblems = [...problems.tree, ...[...problems.byProduct.values()].flat()];
  return { ...outcome, rejected, treeProblems };
}
