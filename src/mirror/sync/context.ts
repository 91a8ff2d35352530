import type { Logger } from 'pino';
import type { Config } from '../../config/load.js';
import type { BlobStore } from '../../store/blobs.js';
import type { Layout } from '../../store/layout.js';
import type { UpstreamClient } from '../client.js';
import type { SyncProgress } from '../progress.js';
import type { SyncHooks, SyncOptions } from '../sync.js';
import { failureOf, type SyncFailure } from './report.js';

/** What every phase of one sync shares. */
export interface SyncRun {
  readonly opts: SyncOptions;
  readonly config: Config;
  readonly log: Logger;
  readonly layout: Layout;
  readonly store: BlobStore;
  readonly client: UpstreamClient;
  readonly progress: SyncProgress;
  readonly hooks: SyncHooks;
  readonly failures: Failures;
}

/** The failures of one sync, in the order they happened. */
export class Failures {
  readonly list: SyncFailure[] = [];

  add(f: SyncFailure): SyncFailure {
    this.list.push(f);
    return f;
  }

  /** Records `err` for `source` and logs it at error level with `what` before the message. */
  report(log: Logger, source: string, err: unknown, what?: string): SyncFailure {
    const f = this.add(failureOf(source, err));
    log.error({ code: f.code }, what ? `${what}: ${f.message}` : f.message);
    return f;
  }

  touches(source: string): boolean {
    return this.list.some((f) => f.source === source);
  }
}
