import { REPORT_CODES } from '../../errors.js';
import type { ContentBuild } from '../next-tree.js';
import type { Published } from '../published.js';
import { selectContent, type WantedFile } from '../select.js';
import { flattenProducts } from '../../simplestreams/flatten.js';
import type { FlatItem } from '../../simplestreams/types.js';
import type { SourceContent, SourceMetadata } from '../source.js';
import type { SyncFailure } from './report.js';

export interface SelectedAll {
  readonly builds: ContentBuild[];
  /** Files to hold, by sha256 (on-demand sources hold nothing ahead). */
  readonly wanted: Map<string, WantedFile>;
  readonly failures: SyncFailure[];
}

/**
 * Phase 2 (pure): apply every source's filters and version limits. One content id comes from one
 * source, and one path holds one content: what breaks either is left out and reported.
 */
export function selectAll(
  metas: readonly SourceMetadata[],
  previous: Published | undefined,
  localContentId: string,
  flatOf: (content: SourceContent) => readonly FlatItem[] = (c) => flattenProducts(c.doc),
): SelectedAll {
  const out: SelectedAll = { builds: [], wanted: new Map(), failures: [] };
  const pathOwner = new Map<string, WantedFile>();
  const contentOwner = new Map<string, string>();
  for (const meta of metas) {
    for (const content of meta.contents) {
      if (content.contentId === localContentId) {
        out.failures.push({
          source: meta.source.name,
          code: REPORT_CODES.contentConflict,
          message: `content id ${content.contentId} is images.contentId, where local images are published; set images.contentId to another id or narrow this source's contentIds (an export written by this version names its mirror's images "${content.contentId}:from-<key id>")`,
        });
        continue;
      }
      const owner = contentOwner.get(content.contentId);
      if (owner) {
        out.failures.push({
          source: meta.source.name,
          code: REPORT_CODES.contentConflict,
          message: `content id ${content.contentId} comes from sources ${owner} and ${meta.source.name}; one published index cannot hold both. Narrow one source's contentIds`,
        });
        continue;
      }
      contentOwner.set(content.contentId, meta.source.name);
      const sel = selectContent(meta.source, content, flatOf(content));
      for (const p of sel.problems) {
        out.failures.push({ source: meta.source.name, code: REPORT_CODES.metadataInvalid, message: p.message, path: p.path });
      }
      const versions = sel.versions.filter((v) =>
        v.files.every((f) => {
          const other = pathOwner.get(f.path);
          if (!other || other.sha256 === f.sha256) return true;
          out.failures.push({
            source: meta.source.name,
            code: REPORT_CODES.pathConflict,
            message: `${f.path} is published by source ${other.source} with other content; ${v.productId} ${v.version} of ${meta.source.name} left out`,
            path: f.path,
          });
          return false;
        }),
      );
      for (const v of versions) {
        for (const f of v.files) {
          if (!pathOwner.has(f.path)) pathOwner.set(f.path, f);
          if (!meta.source.onDemand && !out.wanted.has(f.sha256)) out.wanted.set(f.sha256, f);
        }
      }
      out.builds.push({
        contentId: content.contentId,
        source: meta.source.name,
        onDemand: meta.source.onDemand,
        basePath: content.basePath,
        entry: content.entry,
        upstream: content.doc,
        upstreamLength: content.textLength,
        selected: versions,
        previous: previous?.contents.get(content.contentId)?.doc,
      });
    }
  }
  return out;
}
