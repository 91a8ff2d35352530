import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ManifestFile } from '../store/manifest.js';

/**
 * The hook for on-demand items (manifest files with `held: false`).
 *
 * When a request names such a file (by tree path or hash prefix) and a hook
 * was given to createHttpApp, the hook owns the response: it should fetch
 * the item from `file.source`, verify size and sha256, store it as a blob,
 * and stream it to `res`, or answer an error. It should obey the rules held
 * items follow (sendEntity: preconditions, Range, validators), answer HEAD
 * without fetching, and count body bytes with addBytes for the access log.
 * Without a hook the mirror answers 503 "not yet held; pull-through not
 * available" (NotHeldError). The hook is called with the snapshot's own
 * entry, so `path` is the item path relative to the tree root. req and res
 * are node's own (the listening server serves files without express).
 */
export type PullThrough = (file: ManifestFile & { readonly path: string }, req: IncomingMessage, res: ServerResponse) => Promise<void>;
