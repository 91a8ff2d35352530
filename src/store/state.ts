import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { slices } from '../simplestreams/json-pieces.js';
import { join } from 'node:path';
import { errnoOf, StateError } from '../errors.js';
import { writeFileAtomic } from './fsutil.js';
import type { Layout } from './layout.js';

/** What we remember of one upstream document between syncs. */
export interface DocumentState {
  etag?: string;
  lastModified?: string;
  /** The `updated` date of the last accepted version (replay protection). */
  updated?: string;
  /** sha256 of the document as fetched (clear-signed), kept in state/<source>/docs/. */
  textSha256?: string;
  /** sha256 of its signed content once verified, kept beside it, so a 304 costs no second verification… */
  verifiedSha256?: string;
  /** …as long as the keyring is the one that verified it (fingerprints, sorted). */
  verifiedBy?: string;
}

export interface SourceState {
  documents: Record<string, DocumentState>;
}

/**
 * Per-source memory: conditional-request validators, accepted dates and the
 * verified text of each document, so a 304 costs nothing but the request.
 */
export class StateStore {
  constructor(
    private readonly layout: Layout,
    readonly source: string,
    /** A dry run reads the state but writes nothing to dataDir. */
    private readonly readOnly = false,
  ) {}

  private get dir(): string {
    return join(this.layout.stateDir, this.source);
  }

  async load(): Promise<SourceState> {
    const file = this.layout.state(this.source);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return { documents: {} };
      throw new StateError(file, errnoOf(err) ?? String(err));
    }
    let s: Partial<SourceState> | null;
    try {
      s = JSON.parse(text) as Partial<SourceState> | null;
    } catch (err) {
      throw new StateError(file, `not JSON: ${(err as Error).message}`);
    }
    if (typeof s !== 'object' || s === null || (s.documents !== undefined && (typeof s.documents !== 'object' || s.documents === null))) {
      throw new StateError(file, 'not a source state');
    }
    return { documents: s.documents ?? {} };
  }

  async save(state: SourceState): Promise<void> {
    await mkdir(this.layout.stateDir, { recursive: true });
    await writeFileAtomic(this.layout.state(this.source), JSON.stringify(state, null, 1) + '\n');
    const keep = new Set(Object.values(state.documents).flatMap((d) => [`${d.textSha256}.txt`, `${d.verifiedSha256}.txt`]));
    const names = await readdir(join(this.dir, 'docs')).catch(() => [] as string[]);
    for (const n of names) if (!keep.has(n)) await unlink(join(this.dir, 'docs', n)).catch(() => undefined);
  }

  async readText(sha256: string): Promise<string | undefined> {
    try {
      const text = await readFile(join(this.dir, 'docs', `${sha256}.txt`), 'utf8');
      return textSha256(text) === sha256 ? text : undefined;
    } catch {
      return undefined;
    }
  }

  async writeText(text: string): Promise<string> {
    const sha256 = textSha256(text);
    if (this.readOnly) return sha256;
    await mkdir(join(this.dir, 'docs'), { recursive: true });
    await writeFileAtomic(join(this.dir, 'docs', `${sha256}.txt`), text);
    return sha256;
  }
}

/** Characters hashed at a time: hashing a 12 MB document whole first copies all of it into UTF-8. */
const HASH_SLICE_CHARS = 256 * 1024;

/** sha256 of the text's UTF-8 bytes. */
function textSha256(text: string): string {
  const hash = createHash('sha256');
  for (const s of slices(text, HASH_SLICE_CHARS)) hash.update(s);
  return hash.digest('hex');
}
